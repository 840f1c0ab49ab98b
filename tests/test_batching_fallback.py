"""A `fun` that cannot be batched (here a host callback without a batching rule)
is evaluated one point at a time, with a warning and a note that say why; an
error of `fun` itself still surfaces."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck import BatchingFallbackWarning
from jaxcheck._engine import jaxpr as _jaxpr

pytestmark = pytest.mark.skipif(
    jax.__version_info__ < (0, 6),
    reason="JAX before 0.6 batches a pure_callback in a loop: no fallback to test",
)


@pytest.fixture(autouse=True, params=["eager", "compiled"])
def way(request, monkeypatch):
    # Both ways to evaluate batched points fall back to one point at a time.
    # (A check this small is evaluated one point at a time to begin with.)
    monkeypatch.setattr(_jaxpr, "ONE_BY_ONE_MAX_DISPATCHES", 0)
    if request.param == "compiled":
        monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)
    return request.param


def make_host_sin(derivative_factor=1.0):
    @jax.custom_jvp
    def host_sin(x):  # `vmap` of a pure_callback without vmap_method raises
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    @host_sin.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return host_sin(x), derivative_factor * jnp.cos(x) * t

    return host_sin


HOST_SIN = make_host_sin()
W = jnp.linspace(0.1, 1.0, 5)


def loss(w):
    return jnp.sum(HOST_SIN(w) ** 2)


def test_an_unbatchable_fun_is_checked_one_point_at_a_time(way):
    with pytest.warns(BatchingFallbackWarning, match="pure_callback"):
        report = jaxcheck.check_grad(loss, W)
    assert report.ok, str(report)
    assert report.evaluation == f"{way}, one point at a time"
    assert "evaluated one point at a time: `fun` cannot be batched" in report.note
    assert "NotImplementedError" in str(report)


def test_a_wrong_rule_of_an_unbatchable_fun_is_still_caught():
    wrong = make_host_sin(derivative_factor=1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchingFallbackWarning)
        with pytest.raises(jaxcheck.GradCheckError, match=r"in params; worst params\["):
            jaxcheck.assert_grad(lambda w: jnp.sum(wrong(w) ** 2), W)


def test_the_drop_in_falls_back_too():
    with pytest.warns(BatchingFallbackWarning):
        jaxcheck.check_grads(HOST_SIN, (W,), order=1, modes=("rev",))
    wrong = make_host_sin(derivative_factor=1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchingFallbackWarning)
        with pytest.raises(AssertionError):
            jaxcheck.check_grads(wrong, (W,), order=1, modes=("rev",))


def test_an_error_of_fun_itself_is_not_hidden_by_the_fallback():
    def picky(x):  # batchable, but fails away from the unperturbed point
        if np.any(x > 1.0):
            raise ValueError("picky: x > 1")
        return np.sin(x)

    def fun(w):
        shape = jax.ShapeDtypeStruct(w.shape, w.dtype)
        value = jax.pure_callback(picky, shape, w, vmap_method="sequential")
        return 0.0 * jnp.sum(value) + jnp.sum(w**2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchingFallbackWarning)  # no fallback
        with pytest.raises(Exception, match="picky: x > 1") as caught:
            jaxcheck.check_grad(fun, W, grad=lambda w: 2 * w)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "jaxcheck: raised by `fun` while evaluating chunk" in notes


@pytest.mark.parametrize("mode", ["fast", "sample"])
def test_the_screening_modes_fall_back_too(mode):
    with pytest.warns(BatchingFallbackWarning):
        report = jaxcheck.check_grad(loss, W, mode=mode)
    assert report.ok, str(report)
    wrong = make_host_sin(derivative_factor=1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchingFallbackWarning)
        bad = jaxcheck.check_grad(lambda w: jnp.sum(wrong(w) ** 2), W, mode=mode)
    assert not bad.ok and "params" in bad.verdict
