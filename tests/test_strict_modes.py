"""Every public check runs under the settings careful users (and JAX's own test
suite) turn on: strict dtype promotion, rank promotion that raises, and JAX's
internal checks. jaxcheck must never promote dtypes or broadcast ranks
implicitly itself; the functions here do neither, so any error is jaxcheck's."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core


@contextlib.contextmanager
def strict():
    with (
        jax.numpy_dtype_promotion("strict"),
        jax.numpy_rank_promotion("raise"),
        jax.enable_checks(True),
    ):
        yield


def mixed_loss(p, x):
    """float32 and float64 leaves, cast explicitly, with a bias added by rank."""
    h = jnp.tanh(x @ p["w"].astype(jnp.float64) + p["b"][None, :])
    return jnp.sum(h**2) + jnp.sum(p["v"] ** 2).astype(jnp.float64)


PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(3, 2),
    "b": jnp.array([0.1, -0.2]),
    "v": jnp.array([0.5, 1.5], jnp.float32),
}
X = jnp.linspace(0.0, 1.0, 12).reshape(4, 3)
Z = jnp.array([0.5 + 0.25j, -1.0 + 2.0j], jnp.complex128)


def vector(x, z):
    return {"y": jnp.sin(x) * 2.0, "z": z * z, "r": jnp.abs(z) ** 2}


def _custom_vjp_sin():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), jnp.cos(x)), lambda c, g: (g * c,))
    return f


def _custom_jvp_sin():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
    return f


CHECKS = {
    "check_grad": lambda: jaxcheck.check_grad(mixed_loss, PARAMS, X),
    "check_grad fast": lambda: jaxcheck.check_grad(mixed_loss, PARAMS, X, mode="fast"),
    "check_grad sample": lambda: jaxcheck.check_grad(
        mixed_loss, PARAMS, X, mode="sample", samples=2
    ),
    "check_grad central4": lambda: jaxcheck.check_grad(
        mixed_loss, PARAMS, X, method="central4"
    ),
    "check_grad complex step": lambda: jaxcheck.check_grad(
        lambda w: jnp.sum(jnp.sin(w) * w), jnp.array([0.3, 1.2]), method="complex"
    ),
    "check_grad complex params": lambda: jaxcheck.check_grad(
        lambda z: jnp.sum(jnp.abs(z * z) ** 2), Z
    ),
    "check_hessian of a model": lambda: jaxcheck.check_hessian(
        lambda b, x: jnp.sum(jnp.tanh(x @ b) ** 2),
        jnp.array([0.1, -0.2, 0.3]),
        X,
    ),
    "numerical_grad": lambda: jaxcheck.numerical_grad(mixed_loss, PARAMS, X),
    "check_jacobian": lambda: jaxcheck.check_jacobian(vector, X[0], Z),
    "check_vjp": lambda: jaxcheck.check_vjp(vector, (X[0], Z)),
    "check_jvp": lambda: jaxcheck.check_jvp(vector, (X[0], Z)),
    "check_hessian": lambda: jaxcheck.check_hessian(
        lambda x: jnp.sum(jnp.sin(x) * x), X[0]
    ),
    "check_custom_vjp": lambda: jaxcheck.check_custom_vjp(_custom_vjp_sin(), X[0]),
    "check_custom_jvp": lambda: jaxcheck.check_custom_jvp(_custom_jvp_sin(), X[0]),
    "check_grads": lambda: jaxcheck.check_grads(vector, (X[0], Z), 2),
    "taylor_test": lambda: jaxcheck.taylor_test(mixed_loss, PARAMS, X),
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_every_check_runs_under_strict_settings(name):
    with strict():
        result = CHECKS[name]()
    if hasattr(result, "ok"):
        assert result.ok, str(result)


def test_a_planted_bug_is_still_caught_under_strict_settings():
    @jax.custom_jvp
    def f(z):
        return z * z

    f.defjvp(lambda p, t: (p[0] * p[0], p[0] * t[0]))  # should be 2·z·t
    located = r"out\.(real|imag)\[\d\] \(jvp\)"
    with strict(), pytest.raises(GradCheckError, match=located):
        jaxcheck.assert_jvp(f, (Z,))
    with strict(), pytest.raises(GradCheckError, match=r"JVP check failed"):
        jaxcheck.check_grads(f, (Z,), 1, modes=("fwd",))
    wrong = {**jax.grad(mixed_loss)(PARAMS, X), "b": jnp.zeros(2)}
    with strict():
        report = jaxcheck.check_grad(mixed_loss, PARAMS, X, grad=wrong)
    assert not report.ok and "['b']" in str(report)
    np.testing.assert_array_equal(PARAMS["b"], jnp.array([0.1, -0.2]))


def _two_dtypes(x, y):
    """Outputs of two float dtypes, as `lax.mul(..., out_dtype)` tests make."""
    return x * x, (y * 2.0).astype(jnp.float64)


def test_outputs_of_two_float_dtypes_under_strict_promotion():
    x, y = jnp.ones(3, jnp.float32), jnp.linspace(0.5, 1.5, 3)
    with strict():
        jaxcheck.check_grads(_two_dtypes, (x, y), 2, modes=("fwd", "rev"))
        report = jaxcheck.check_jacobian(_two_dtypes, x, y)
    assert report.ok

    @jax.custom_jvp
    def wrong(x, y):
        return _two_dtypes(x, y)

    wrong.defjvp(
        lambda p, t: (
            _two_dtypes(*p),
            (3 * p[0] * t[0], (2.0 * t[1]).astype(p[1].dtype)),
        )
    )  # x·x has derivative 2·x
    with strict(), pytest.raises(GradCheckError, match=r"\[0\]"):
        jaxcheck.check_grads(wrong, (x, y), 1, modes=("fwd",))
