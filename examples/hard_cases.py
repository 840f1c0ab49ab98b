"""Hard cases for a gradient checker: `jax.test_util.check_grads` and jaxcheck side
by side, both with their default settings.

Each case is a loss whose gradient comes from a `custom_vjp` rule, either right
or with a planted bug. A good checker passes every right rule (no false alarm)
and fails every wrong one (no miss). Run it to see the table; it asserts that
jaxcheck gets every case right.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

import jaxcheck

jax.config.update("jax_enable_x64", True)


def scaled_rule(fun, factor=1.0, entry=None):
    """`fun` with a custom_vjp whose cotangent is off by `factor` (at `entry`)."""

    @jax.custom_vjp
    def f(x):
        return fun(x)

    def fwd(x):
        return fun(x), x

    def bwd(x, g):
        (grad,) = jax.vjp(fun, x)[1](g)
        wrong = grad * factor if entry is None else grad.at[entry].multiply(factor)
        return (wrong,)

    f.defvjp(fwd, bwd)
    return f


def layer_loss(dtype, factor=1.0, entry=None):
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 6), dtype)
    w = (jax.random.normal(jax.random.PRNGKey(0), (6, 5)) / 3).astype(dtype)
    hidden = scaled_rule(lambda w: jnp.tanh(x @ w), factor, entry)
    return (lambda w: jnp.sum(hidden(w) ** 2)), w


def small_beside_large(factor):
    big = scaled_rule(lambda v: 1e3 * jnp.sin(v))
    small = scaled_rule(lambda v: v**2, factor)
    params = (jnp.linspace(0.0, 1.0, 50), jnp.array([1e-3, 2e-3]))
    return (lambda p: jnp.sum(big(p[0])) + jnp.sum(small(p[1]))), params


def elementwise(fun, *points):
    return (lambda w: jnp.sum(scaled_rule(fun)(w))), jnp.array(points)


CASES = [
    # (name, (loss, params), the gradient is right)
    ("float32 layer, rule 1% off", layer_loss(jnp.float32, 1.01), False),
    ("float32 layer, one entry 10% off", layer_loss(jnp.float32, 1.1, (2, 3)), False),
    ("float64 layer, rule 1e-5 off", layer_loss(jnp.float64, 1 + 1e-5), False),
    ("small leaf 1% off beside a large one", small_beside_large(1.01), False),
    ("float32 layer, right rule", layer_loss(jnp.float32), True),
    ("log at 1e-6, right rule", elementwise(jnp.log, 1e-6, 1.0, 2.0), True),
    ("relu at 0, right rule", elementwise(jax.nn.relu, 0.0, 1.0, -2.0), True),
    ("abs at 0, right rule", elementwise(jnp.abs, 0.0, 1.0, -2.0), True),
]


def passes_check_grads(loss, params):
    try:
        check_grads(loss, (params,), order=1, modes=("rev",))
        return True
    except (AssertionError, FloatingPointError):
        return False


def mark(ok, right):
    return ("pass" if ok else "FAIL") + ("" if ok == right else " ✗")


def main():
    print(f"{'case':<38} {'right?':>6} {'check_grads':>12} {'jaxcheck':>9}")
    all_right = True
    for name, (loss, params), right in CASES:
        old = passes_check_grads(loss, params)
        new = jaxcheck.check_grad(loss, params).ok
        all_right &= new == right
        print(
            f"{name:<38} {str(right):>6} {mark(old, right):>12} {mark(new, right):>9}"
        )
    assert all_right
    print("OK: jaxcheck got every case right (✗ marks a miss or a false alarm).")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
