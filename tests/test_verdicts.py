"""The default verdicts on hard cases: per-entry bounds, kinks, domain edges,
analytic NaN, nondeterminism. `jax.test_util.check_grads` gets each of these
wrong (a miss or a false alarm) with its defaults; jaxcheck must not."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck import GradCheckError


def at(path, index=()):
    inner = f"[{', '.join(map(str, index))}]" if index else ""
    return re.escape(path + inner)


def _mlp_loss(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.sum((h @ params["w2"]) ** 2)


def _mlp_params(dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {
        "w1": jax.random.normal(k1, (4, 6), dtype) / 2,
        "b1": jnp.zeros(6, dtype),
        "w2": jax.random.normal(k2, (6, 3), dtype) / 2,
    }


X = jax.random.normal(jax.random.PRNGKey(1), (5, 4))


def _scaled(grad, path, factor, index=None):
    grad = dict(grad)
    leaf = grad[path]
    grad[path] = leaf * factor if index is None else leaf.at[index].multiply(factor)
    return grad


# --------------------------------------------------------------------------
# Tight where the differences are accurate


def test_a_relative_error_of_1e_5_in_float64_is_caught():
    params = _mlp_params()
    grad = jax.grad(_mlp_loss)(params, X)
    assert jaxcheck.check_grad(_mlp_loss, params, X, grad=grad).ok
    bad = _scaled(grad, "w2", 1 + 1e-5, (2, 1))
    with pytest.raises(GradCheckError, match=at("['w2']", (2, 1))):
        jaxcheck.assert_grad(_mlp_loss, params, X, grad=bad)


def test_a_wrong_small_leaf_beside_a_large_one_is_caught():
    def loss(p):
        return 1e3 * jnp.sum(jnp.sin(p["big"])) + jnp.sum(p["small"] ** 2)

    params = {"big": jnp.linspace(0.0, 1.0, 50), "small": jnp.array([1e-3, 2e-3])}
    grad = jax.grad(loss)(params)
    assert jaxcheck.check_grad(loss, params, grad=grad).ok
    bad = dict(grad, small=grad["small"] * 1.01)
    with pytest.raises(GradCheckError, match=at("['small']")):
        jaxcheck.assert_grad(loss, params, grad=bad)


def test_failing_entries_are_reported_against_their_bound():
    params = _mlp_params()
    grad = jax.grad(_mlp_loss)(params, X)
    report = jaxcheck.check_grad(
        _mlp_loss, params, X, grad=_scaled(grad, "b1", 1.001, 3)
    )
    [entry] = report.failures()
    assert entry.location == "['b1'][3]"
    assert entry.abs_err > 10 * entry.tolerance
    assert "× its pass band" in report.verdict()


def test_large_parameters_and_steep_functions_pass():
    # The Richardson term widens the band where truncation is large: exp(3θ) at
    # θ up to 8 (J ≈ 3e10) and θ = 1e4 scaled steps.
    loss = lambda p: jnp.sum(jnp.exp(3 * p["a"])) + jnp.sum(jnp.cos(p["b"]))  # noqa: E731
    params = {"a": jnp.linspace(-8.0, 8.0, 9), "b": jnp.array([1e4, -3e4, 1e-6])}
    assert jaxcheck.check_grad(loss, params).ok


# --------------------------------------------------------------------------
# Kinks


@pytest.mark.parametrize(
    "fun",
    [jax.nn.relu, jnp.abs, lambda x: jnp.where(x > 0, x, 0.1 * x)],
    ids=["relu", "abs", "leaky_relu"],
)
def test_a_valid_subgradient_at_a_kink_is_not_a_failure(fun):
    loss = lambda w: jnp.sum(fun(w))  # noqa: E731
    w = jnp.array([0.0, 1.0, -2.0])
    report = jaxcheck.check_grad(loss, w)
    assert report.ok, report
    assert [e.location for e in report.kinks()] == ["params[0]"]
    assert report.leaves[0].kinks == 1
    assert "kink" in report.verdict()


def test_a_value_outside_the_one_sided_slopes_at_a_kink_fails():
    loss = lambda w: jnp.sum(jax.nn.relu(w))  # noqa: E731
    w = jnp.array([0.0, 1.0])
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(loss, w, grad=jnp.array([1.5, 1.0]))


def test_a_kink_just_off_the_point_is_recognised():
    # abs at θ = h/3: the stencil straddles the kink.
    h = 2.0**-17
    loss = lambda w: jnp.sum(jnp.abs(w))  # noqa: E731
    report = jaxcheck.check_grad(loss, jnp.array([h / 3, 1.0]))
    assert report.ok, report


# --------------------------------------------------------------------------
# Non-finite values


def test_analytic_nan_is_a_failure_with_the_where_hint():
    def unsafe(x):
        # The gradient of the branch not taken is NaN at x = 0.
        return jnp.sum(jnp.where(x > 0, jnp.sqrt(jnp.abs(x)), 0.0))

    report = jaxcheck.check_grad(unsafe, jnp.array([0.0, 4.0]))
    assert not report.ok
    assert report.worst(1)[0].status == "analytic nan/inf"
    assert "double-where" in report.verdict()
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(unsafe, jnp.array([0.0, 4.0]))


# --------------------------------------------------------------------------
# Nondeterminism


def _noisy(x):
    # A host callback that draws fresh noise on every call (it takes x so that
    # it is called once per evaluation in a batch).
    noise = jax.pure_callback(
        lambda x: np.random.default_rng().normal(size=()),
        jax.ShapeDtypeStruct((), jnp.float64),
        jax.lax.stop_gradient(x),
        vmap_method="sequential",
    )
    return jnp.sum(x**2) + 1e-6 * noise


def test_a_nondeterministic_function_is_reported_as_such():
    report = jaxcheck.check_grad(_noisy, jnp.arange(3.0))
    assert report.nondeterministic
    assert not report.ok
    assert report.spread > 0
    assert report.verdict().startswith("NONDETERMINISTIC")
    with pytest.raises(GradCheckError, match="nondet_tol"):
        jaxcheck.assert_grad(_noisy, jnp.arange(3.0))


def test_nondet_tol_accepts_a_known_spread():
    report = jaxcheck.check_grad(_noisy, jnp.arange(3.0), nondet_tol=1.0, eps=1e-1)
    assert not report.nondeterministic
    assert report.spread <= 1.0


def test_a_deterministic_function_has_no_spread():
    report = jaxcheck.check_grad(_mlp_loss, _mlp_params(), X)
    assert report.spread == 0.0 and not report.nondeterministic


# --------------------------------------------------------------------------
# Stochastic functions: a fixed key is never perturbed


def test_dropout_with_a_fixed_key_checks_cleanly():
    def loss(params, x, key):
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        keep = jax.random.bernoulli(key, 0.7, h.shape)
        h = jnp.where(keep, h / 0.7, 0.0)
        return jnp.sum((h @ params["w2"]) ** 2)

    params = _mlp_params()
    for key in (jax.random.key(3), jax.random.PRNGKey(3)):  # typed and raw uint32
        report = jaxcheck.check_grad(loss, params, X, key)
        assert report.ok, report
    grad = jax.grad(loss)(params, X, jax.random.key(3))
    with pytest.raises(GradCheckError, match=at("['w1']")):
        jaxcheck.assert_grad(
            loss, params, X, jax.random.key(3), grad=_scaled(grad, "w1", 1.01)
        )
