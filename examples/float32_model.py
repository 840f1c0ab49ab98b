"""A float32 model, checked in float32.

Without x64 (JAX's default) parameters are float32, and the lecture's rule of
thumb (relative difference below 1e-7) cannot hold: float32 keeps about 7 digits
and a finite difference loses about a third of them. jaxcheck picks the step and
tolerances from each leaf's dtype (step 2⁻⁸·max(1, |θ|), rtol 2e-3, plus the
round-off of J), so a right gradient passes, and a wrong one still fails: here a
bias gradient that is 5% off in one entry.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

f32 = jnp.float32  # explicit, so this holds with or without jax_enable_x64


def loss(params, x, y):
    h = jax.nn.softplus(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


rng = np.random.default_rng(0)
params = {
    "w1": jnp.asarray(rng.normal(size=(6, 10)) / 3, f32),
    "b1": jnp.asarray(rng.normal(size=10) / 10, f32),
    "w2": jnp.asarray(rng.normal(size=(10, 2)) / 3, f32),
    "b2": jnp.zeros(2, f32),
}
x = jnp.asarray(rng.normal(size=(64, 6)), f32)
y = jnp.asarray(rng.normal(size=(64, 2)), f32)

report = jaxcheck.check_grad(loss, params, x, y)
print(report)
assert report.ok
assert all(s.dtype == "float32" for s in report.leaves)
print(f"rel diff {report.rel_diff:.1e}: above 1e-7, and fine for float32")

grad = jax.grad(loss)(params, x, y)
grad["b1"] = grad["b1"].at[3].multiply(1.05)  # a 5% error in one entry
wrong = jaxcheck.check_grad(loss, params, x, y, grad=grad)
print(wrong.verdict)
assert [e.location for e in wrong.failures] == ["['b1'][3]"]
