"""`numerical_grad`: exact cases, the seed examples, default steps, complex and
low-precision leaves, and chunked evaluation."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import QA_PARAMS, QA_X, QA_Y, assert_trees_close, qa_loss, qa_output

import jaxcheck
from jaxcheck._engine import blocks as _blocks

pytestmark = pytest.mark.core

METHODS = ["central", "forward", "backward"]

# --------------------------------------------------------------------------
# Quadratics: the central difference is exact, one-sided ones are off by ±h/2·f''


def quadratic(t, a, b):
    return 0.5 * t @ a @ t + b @ t + 3.0


def _quadratic_problem(n, seed=0):
    """θ, A, b, the exact gradient Aθ + b and diag A, for A symmetric positive."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    a = jnp.asarray(m @ m.T / n + np.eye(n))
    b = jnp.asarray(rng.normal(size=n))
    theta = jnp.asarray(rng.uniform(-2, 2, size=n))
    return theta, a, b, a @ theta + b, jnp.diag(a)


# Only round-off remains, about u·|J|/2h: 1e-10 for the default h ≈ 6e-6.
@pytest.mark.parametrize(
    "eps, atol", [(None, 1e-9), (0.5, 1e-12), (1e-2, 1e-11), (1e-3, 1e-10)]
)
@pytest.mark.parametrize("n", [1, 12])
def test_central_difference_of_quadratic_is_exact(n, eps, atol):
    theta, a, b, grad, _ = _quadratic_problem(n)
    numeric = jaxcheck.numerical_grad(quadratic, theta, a, b, eps=eps)
    assert numeric.dtype == jnp.float64
    np.testing.assert_allclose(numeric, grad, rtol=0, atol=atol)


@pytest.mark.parametrize("method, sign", [("forward", 1.0), ("backward", -1.0)])
def test_one_sided_difference_of_quadratic_is_off_by_half_step(method, sign):
    # J(θ + h eᵢ) − J(θ) = h·∂ᵢJ + h²/2·Aᵢᵢ exactly, so the forward difference is
    # ∂ᵢJ + h/2·Aᵢᵢ and the backward one ∂ᵢJ − h/2·Aᵢᵢ.
    theta, a, b, grad, diag = _quadratic_problem(12)
    eps = 1e-3
    numeric = jaxcheck.numerical_grad(quadratic, theta, a, b, eps=eps, method=method)
    np.testing.assert_allclose(numeric, grad + sign * eps / 2 * diag, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------
# The lecture seed: θ³ at θ = 1 with ε = 0.01


def cube(theta):
    return theta**3


@pytest.mark.parametrize(
    "method, expected", [("central", 3.0001), ("forward", 3.0301), ("backward", 2.9701)]
)
@pytest.mark.parametrize(
    "theta", [jnp.array(1.0), 1.0, np.float64(1.0)], ids=lambda v: type(v).__name__
)
def test_lecture_cube(theta, method, expected):
    numeric = jaxcheck.numerical_grad(cube, theta, eps=0.01, method=method)
    assert np.shape(numeric) == ()
    assert float(numeric) == pytest.approx(expected, abs=1e-10)


def test_lecture_cube_errors():
    # Two-sided error is O(ε²) = 1e-4, one-sided O(ε) ≈ 3e-2.
    central = float(jaxcheck.numerical_grad(cube, jnp.array(1.0), eps=0.01))
    forward = float(
        jaxcheck.numerical_grad(cube, jnp.array(1.0), eps=0.01, method="forward")
    )
    assert abs(central - 3.0) == pytest.approx(1e-4, rel=1e-6)
    assert abs(forward - 3.0) == pytest.approx(0.0301, rel=1e-6)


# --------------------------------------------------------------------------
# The Q&A seed: a linear unit, its squared loss and its raw output


@pytest.mark.parametrize("method", METHODS)
def test_qa_seed_gradient_of_loss(method):
    numeric = jaxcheck.numerical_grad(qa_loss, QA_PARAMS, QA_X, QA_Y, method=method)
    tol = 1e-9 if method == "central" else 1e-6
    np.testing.assert_allclose(numeric["w"], [0.7744, 0.0], atol=tol)
    np.testing.assert_allclose(numeric["b"], 0.7744, atol=tol)


@pytest.mark.parametrize("eps", [None, 1e-4, 0.1])
def test_qa_seed_gradient_of_output(eps):
    # The output is linear: its derivative is x (and 1 for the bias) for any ε.
    numeric = jaxcheck.numerical_grad(qa_output, QA_PARAMS, QA_X, eps=eps)
    np.testing.assert_allclose(numeric["w"], [1.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(numeric["b"], 1.0, atol=1e-10)


# --------------------------------------------------------------------------
# Default steps: relative error < 1e-8 (central) on smooth float64 functions

SMOOTH = {
    "sin_exp": (lambda x: jnp.sum(jnp.sin(x) * jnp.exp(x / 3)), np.linspace(-2, 2, 7)),
    "log_large": (lambda x: jnp.sum(jnp.log(x)), np.array([1e3, 2e3, 5e2, 3e4])),
    "rosenbrock": (
        lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
        np.linspace(-1.2, 1.2, 6),
    ),
    "small_entries": (
        lambda x: jnp.sum(jnp.cos(x) * x**2 + x),
        np.array([1e-3, -2e-4, 5e-3]),
    ),
    "softplus_product": (
        lambda x: jnp.sum(jax.nn.softplus(x)) * jnp.sum(x**2),
        np.array([-3.0, 0.5, 2.0]),
    ),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_default_step_is_accurate(name, method):
    fun, x = SMOOTH[name]
    x = jnp.asarray(x)
    exact = jax.jit(jax.grad(fun))(x)
    numeric = jaxcheck.numerical_grad(fun, x, method=method)
    per_entry = np.max(np.abs(numeric - exact) / np.abs(exact))
    bound = 1e-8 if method == "central" else 1e-6
    assert per_entry < bound


def test_default_step_scales_with_magnitude():
    # A fixed step of 6e-6 would vanish against 1e12 (θ + h rounds to θ); steps
    # scaled to each entry's magnitude work across twelve decades in one leaf.
    fun = lambda x: jnp.sum(jnp.log(x))  # noqa: E731
    x = jnp.array([0.5, 1.0, 1e6, 1e12])
    numeric = jaxcheck.numerical_grad(fun, x)
    np.testing.assert_allclose(numeric, 1 / x, rtol=1e-8)


# --------------------------------------------------------------------------
# Complex leaves follow JAX's convention: ∂J/∂x − i ∂J/∂y


def _abs2_plus_imag(z):
    return jnp.sum(jnp.abs(z) ** 2 + jnp.imag(z))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.complex64])
def test_complex_leaf_matches_jax_grad(dtype, method):
    z = jnp.array([1 + 2j, -0.5 + 0.3j, 0.0 - 1.5j], dtype)
    numeric = jaxcheck.numerical_grad(_abs2_plus_imag, z, method=method)
    assert numeric.dtype == dtype
    closed_form = 2 * z.real - 1j * (2 * z.imag + 1)
    exact = jax.jit(jax.grad(_abs2_plus_imag))(z)
    np.testing.assert_allclose(exact, closed_form, rtol=1e-6)
    if dtype == jnp.complex128:
        tol = 1e-8 if method == "central" else 1e-6
    else:
        tol = 1e-2
    np.testing.assert_allclose(numeric, exact, rtol=tol, atol=tol)


def test_python_complex_leaf():
    fun = lambda z: jnp.abs(z) ** 2  # noqa: E731
    numeric = jaxcheck.numerical_grad(fun, 1 + 2j)
    assert complex(numeric) == pytest.approx(complex(jax.grad(fun)(1 + 2j)), abs=1e-8)
    assert complex(numeric) == pytest.approx(2 - 4j, abs=1e-8)


@pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")
def test_mixed_real_and_complex_leaves_warn_nothing():
    params = {"z": jnp.array([1 + 2j, -0.5 + 0.3j]), "r": jnp.array([0.5, 2.0])}
    fun = lambda p: _abs2_plus_imag(p["z"]) + jnp.sum(p["r"] ** 2)  # noqa: E731
    numeric = jaxcheck.numerical_grad(fun, params)
    np.testing.assert_allclose(numeric["r"], 2 * params["r"], rtol=1e-8)
    assert numeric["r"].dtype == jnp.float64


def test_mixed_real_and_complex_leaves_values():
    params = {"z": jnp.array([1 + 2j, -0.5 + 0.3j]), "r": jnp.array([0.5, 2.0])}
    fun = lambda p: _abs2_plus_imag(p["z"]) + jnp.sum(p["r"] ** 2)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        numeric = jaxcheck.numerical_grad(fun, params)
    assert_trees_close(numeric, jax.grad(fun)(params), rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------
# Low-precision leaves stay in their dtype

# (dtype, relative tolerance of the numeric gradient of a quadratic)
LOW_PRECISION = {
    "float16": (jnp.float16, 2e-2),
    "bfloat16": (jnp.bfloat16, 5e-2),
    "float32": (jnp.float32, 1e-4),
    "float64": (jnp.float64, 1e-10),
}


@pytest.mark.parametrize("method", ["central", "forward"])
@pytest.mark.parametrize(
    "dtype_name",
    [
        "float16",
        "bfloat16",
        "float32",
        "float64",
    ],
)
def test_leaf_dtype_is_kept(dtype_name, method):
    dtype, rtol = LOW_PRECISION[dtype_name]
    x = jnp.array([0.5, 1.0, -2.0, 0.25], dtype)

    def fun(x):
        # Runs at trace time: every evaluation sees the leaf in its own dtype.
        assert x.dtype == dtype, f"leaf promoted to {x.dtype}"
        return jnp.sum(x**2)

    numeric = jaxcheck.numerical_grad(fun, x, method=method)
    assert numeric.dtype == dtype
    if method == "central":
        np.testing.assert_allclose(
            np.asarray(numeric, np.float64), 2 * np.asarray(x, np.float64), rtol=rtol
        )


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32"])
def test_low_precision_leaf_with_float32_loss(dtype_name):
    dtype, rtol = LOW_PRECISION[dtype_name]
    x = jnp.array([0.5, 1.0, -2.0, 0.25], dtype)

    def fun(x):
        assert x.dtype == dtype, f"leaf promoted to {x.dtype}"
        return jnp.sum(x.astype(jnp.float32) ** 2)

    numeric = jaxcheck.numerical_grad(fun, x)
    assert numeric.dtype == dtype
    np.testing.assert_allclose(
        np.asarray(numeric, np.float64), 2 * np.asarray(x, np.float64), rtol=rtol
    )


def test_float32_leaf_beside_float64_leaf_is_not_promoted():
    params = {"a": jnp.array([0.3, -0.2], jnp.float32), "b": jnp.array([0.1, 0.7])}
    seen = set()

    def fun(p):
        seen.add((p["a"].dtype, p["b"].dtype))
        return jnp.sum(jnp.sin(p["a"])) * jnp.sum(jnp.cos(p["b"]))

    numeric = jaxcheck.numerical_grad(fun, params)
    assert seen == {(jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))}
    assert numeric["a"].dtype == jnp.float32
    assert numeric["b"].dtype == jnp.float64
    exact = jax.grad(fun)(params)
    np.testing.assert_allclose(numeric["a"], exact["a"], rtol=1e-3)
    np.testing.assert_allclose(numeric["b"], exact["b"], rtol=1e-8)


# --------------------------------------------------------------------------
# Chunking: any chunk size gives the same numbers


def _chunk_fun(p):
    return jnp.sum(jnp.sin(p["a"]) * jnp.exp(p["a"])) + jnp.sum(jnp.tanh(p["b"]) ** 2)


CHUNK_PARAMS = {
    "a": jnp.linspace(-1.0, 1.0, 10),
    "b": jnp.linspace(-0.5, 0.7, 6).reshape(2, 3),
}


@pytest.mark.parametrize("method", ["central", "forward"])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 33, 1000])
def test_chunk_size_does_not_change_numbers(chunk_size, method):
    default = jaxcheck.numerical_grad(_chunk_fun, CHUNK_PARAMS, method=method)
    chunked = jaxcheck.numerical_grad(
        _chunk_fun, CHUNK_PARAMS, method=method, chunk_size=chunk_size
    )
    for name in CHUNK_PARAMS:
        np.testing.assert_allclose(chunked[name], default[name], rtol=1e-13, atol=0)


def _sin_exp(a):
    return jnp.sum(jnp.sin(a) * jnp.exp(a))


TEN = jnp.linspace(-1.0, 1.0, 10)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunk_size_on_a_single_ten_entry_leaf(chunk_size):
    default = jaxcheck.numerical_grad(_sin_exp, TEN)
    chunked = jaxcheck.numerical_grad(_sin_exp, TEN, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked, default, rtol=1e-13, atol=0)
    np.testing.assert_allclose(chunked, jax.grad(_sin_exp)(TEN), rtol=1e-8)


@pytest.mark.parametrize("n", [1, 5, 10, 25, 99, 100, 1001])
@pytest.mark.parametrize("per_budget", [1, 3, 10, 64])
def test_chunk_length_respects_memory_budget(per_budget, n):
    per_evaluation = 1000
    chunk = _blocks.chunk_length(n, per_evaluation, per_budget * per_evaluation, None)
    assert 1 <= chunk <= min(per_budget, n)


@pytest.mark.parametrize("n", [1, 7, 10, 11, 25, 99, 100, 1001])
@pytest.mark.parametrize("per_budget", [1, 3, 10])
def test_chunk_length_is_balanced(per_budget, n):
    # As few chunks as the budget allows, and the padding of the last one is less
    # than one entry per chunk.
    chunk = _blocks.chunk_length(n, 8, per_budget * 8, None)
    n_chunks = math.ceil(n / chunk)
    assert n_chunks == math.ceil(n / min(per_budget, n))
    assert 0 <= n_chunks * chunk - n < n_chunks


@pytest.mark.parametrize(
    "n, chunk_size, expected", [(10, 7, 7), (10, 1, 1), (10, 10, 10), (10, 1000, 10)]
)
def test_chunk_length_with_explicit_chunk_size(n, chunk_size, expected):
    assert _blocks.chunk_length(n, 10**9, 1, chunk_size) == expected


@pytest.mark.parametrize("budget", [1, 999])
def test_chunk_length_budget_too_small(budget):
    with pytest.raises(ValueError, match="`memory_budget`"):
        _blocks.chunk_length(10, 1000, budget, None)


def test_memory_budget_sets_the_chunk_of_a_check(monkeypatch):
    from jaxcheck._engine import numerical as _numerical
    from jaxcheck._engine import perturb as _perturb

    original = _blocks.chunk_length
    seen = []

    def spy(n, per_evaluation, memory_budget, chunk_size):
        chunk = original(n, per_evaluation, memory_budget, chunk_size)
        seen.append((n, per_evaluation, chunk))
        return chunk

    for module in (_blocks, _numerical, _perturb):
        if hasattr(module, "chunk_length"):
            monkeypatch.setattr(module, "chunk_length", spy)
    default = jaxcheck.numerical_grad(_sin_exp, TEN)
    [(n, per_evaluation, _)] = seen
    assert n == 21  # two evaluations per entry, and J(θ) once
    seen.clear()
    small = jaxcheck.numerical_grad(_sin_exp, TEN, memory_budget=3 * per_evaluation + 1)
    [(_, _, chunk)] = seen
    assert chunk <= 3
    np.testing.assert_allclose(small, default, rtol=1e-13, atol=0)
