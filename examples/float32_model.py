"""A float32 model: float32 gradients, checked without x64.

Without x64 (JAX's default) parameters are float32, and the lecture's rule of
thumb (relative difference below 1e-7) is a float64 rule: float32 keeps about 7
digits, so the analytic gradient is itself rounded at about 1e-7 relative, and a
float32 finite difference would lose a third of the digits again. jaxcheck takes
the differences in a float64 twin of the loss (`shadow=True`, the default: the
leaves and floating args cast up), accurate to about 1e-10, and compares the
float32 gradient with them within float32's floor (rtol 1e-4) plus each entry's
round-off. So a right gradient passes, and a wrong one still fails: here a bias
gradient that is 5% off in one entry.
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
print(f"rel diff {report.rel_diff:.1e}: the float32 gradient's own rounding")
assert "float64 twin" in str(report)  # where the differences were taken

grad = jax.grad(loss)(params, x, y)
grad["b1"] = grad["b1"].at[3].multiply(1.05)  # a 5% error in one entry
wrong = jaxcheck.check_grad(loss, params, x, y, grad=grad)
print(wrong.verdict)
assert [e.location for e in wrong.failures] == ["['b1'][3]"]
