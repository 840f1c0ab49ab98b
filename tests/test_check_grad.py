"""`check_grad` and `assert_grad`: correct gradients pass, planted bugs are caught
and located by leaf path and index."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    QA_PARAMS,
    QA_X,
    QA_Y,
    at,
    init_mlp,
    location,
    matmul_missing_transpose,
    mlp_apply,
    mlp_backprop,
    mlp_data,
    mlp_leaf_paths,
    mlp_loss,
    plant,
    qa_loss,
    qa_output,
    reference_grad,
    relative_difference,
    square_double_grad,
    square_nonfinite_grad,
    tanh_double_grad,
)

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

METHODS = ["central", "forward", "backward"]
PARAMS = init_mlp()
X, Y = mlp_data()
EXACT = reference_grad(mlp_loss, PARAMS, X, Y)


def _backprop_with_bug(path, index, delta):
    """The hand-derived gradient with entry `index` of `path` off by `delta`."""

    def grad(params, x, y):
        return plant(mlp_backprop(params, x, y), path, index, delta)

    return grad


def _failing_leaves(report):
    return {s.path for s in report.leaves if s.status != "ok"}


# --------------------------------------------------------------------------
# Correct gradients pass


@pytest.mark.parametrize("grad_as", ["jax.grad", "backprop", "callable", "values"])
@pytest.mark.parametrize("method", METHODS)
def test_correct_mlp_passes(method, grad_as):
    grad = {
        "jax.grad": None,
        "backprop": mlp_backprop,
        "callable": lambda params, x, y: EXACT,
        "values": EXACT,
    }[grad_as]
    report = jaxcheck.assert_grad(mlp_loss, PARAMS, X, Y, grad=grad, method=method)
    assert isinstance(report, jaxcheck.GradCheckReport)
    assert report.ok
    assert report.num_failed == 0
    assert report.num_entries == 86
    assert [s.path for s in report.leaves] == mlp_leaf_paths()
    assert jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, grad=grad, method=method).ok


def test_backprop_matches_jax_grad():
    for a, b in zip(
        jax.tree_util.tree_leaves(mlp_backprop(PARAMS, X, Y)),
        jax.tree_util.tree_leaves(EXACT),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_grad_check_error_is_an_assertion_error():
    assert issubclass(GradCheckError, AssertionError)


# --------------------------------------------------------------------------
# A hand-written gradient with one wrong entry is named by path and index


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("grad_as", ["backprop", "values"])
@pytest.mark.parametrize(
    "path, index",
    [
        ("['layers'][1]['w']", (3, 5)),
        ("['layers'][0]['b']", (2,)),
        ("['layers'][2]['w']", (0, 1)),
    ],
)
def test_one_wrong_entry_is_located(path, index, grad_as, method):
    if grad_as == "backprop":
        grad = _backprop_with_bug(path, index, 1e-3)
    else:
        grad = plant(EXACT, path, index, 1e-3)
    with pytest.raises(GradCheckError, match=at(path, index)):
        jaxcheck.assert_grad(mlp_loss, PARAMS, X, Y, grad=grad, method=method)
    report = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, grad=grad, method=method)
    assert not report.ok
    [failure] = report.failures
    assert (failure.path, failure.index) == (path, index)
    assert failure.location == location(path, index)
    assert failure.status == "mismatch"
    assert _failing_leaves(report) == {path}


# --------------------------------------------------------------------------
# custom_vjp rules inside the loss are what check_grad checks


def loss_missing_transpose(params, x, y):
    out = mlp_apply(params, x, matmul=matmul_missing_transpose, buggy_layer=1)
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def loss_tanh_factor_two(params, x, y):
    out = mlp_apply(params, x, activation=tanh_double_grad, buggy_layer=0)
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def loss_penalty_factor_two(params, x, y):
    return mlp_loss(params, x, y) + 0.1 * jnp.sum(
        square_double_grad(params["layers"][1]["b"])
    )


CUSTOM_VJP_BUGS = {
    "matmul_missing_transpose": (loss_missing_transpose, {"['layers'][1]['w']"}),
    "tanh_factor_two": (
        loss_tanh_factor_two,
        {"['layers'][0]['w']", "['layers'][0]['b']"},
    ),
    "penalty_factor_two": (loss_penalty_factor_two, {"['layers'][1]['b']"}),
}


def loss_penalty_correct(params, x, y):
    return mlp_loss(params, x, y) + 0.1 * jnp.sum(params["layers"][1]["b"] ** 2)


# The forward passes are right: the true gradient of each buggy loss.
TRUE_GRADS = {
    "matmul_missing_transpose": EXACT,
    "tanh_factor_two": EXACT,
    "penalty_factor_two": reference_grad(loss_penalty_correct, PARAMS, X, Y),
}


@pytest.mark.parametrize("method", ["central", "backward"])
@pytest.mark.parametrize("bug", sorted(CUSTOM_VJP_BUGS))
def test_wrong_custom_vjp_is_caught(bug, method):
    loss, bad_leaves = CUSTOM_VJP_BUGS[bug]
    numeric = jaxcheck.numerical_grad(loss, PARAMS, X, Y, method=method)
    tol = 1e-7 if method == "central" else 1e-5
    for a, b in zip(
        jax.tree_util.tree_leaves(numeric),
        jax.tree_util.tree_leaves(TRUE_GRADS[bug]),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)

    report = jaxcheck.check_grad(loss, PARAMS, X, Y, method=method)
    assert not report.ok
    assert _failing_leaves(report) == bad_leaves
    assert {e.path for e in report.failures} == bad_leaves
    for path in bad_leaves:
        with pytest.raises(GradCheckError, match=at(path)):
            jaxcheck.assert_grad(loss, PARAMS, X, Y, method=method)


def test_missing_transpose_fails_off_the_diagonal_only():
    report = jaxcheck.check_grad(loss_missing_transpose, PARAMS, X, Y)
    failures = report.failures
    assert failures
    assert all(i != j for i, j in (e.index for e in failures))
    # dW and its transpose agree on the diagonal.
    entries = report.worst(report.num_entries)
    diagonal = [
        e
        for e in entries
        if e.path == "['layers'][1]['w']" and e.index[0] == e.index[1]
    ]
    assert len(diagonal) == 6
    assert all(e.status == "ok" for e in diagonal)


# --------------------------------------------------------------------------
# Tolerances are per entry, never scaled by the size of a leaf


def big_and_small(params):
    return 0.5 * jnp.sum(params["big"] ** 2) + jnp.sum(jnp.sin(params["small"]))


BIG_AND_SMALL = {"big": jnp.linspace(-3.0, 3.0, 2000), "small": jnp.array([0.3])}


def test_wrong_small_leaf_beside_large_correct_leaf():
    def grad(params):
        return {"big": params["big"], "small": jnp.cos(params["small"]) * (1 + 1e-3)}

    report = jaxcheck.check_grad(big_and_small, BIG_AND_SMALL, grad=grad)
    # Over the whole gradient the bug is invisible: rel diff ~ 1e-5 ...
    assert report.rel_diff < 1e-5
    # ... but entry by entry it is caught, and only there.
    assert not report.ok
    [failure] = report.failures
    assert failure.location == "['small'][0]"
    assert _failing_leaves(report) == {"['small']"}
    with pytest.raises(GradCheckError, match=at("['small']", (0,))):
        jaxcheck.assert_grad(big_and_small, BIG_AND_SMALL, grad=grad)


def test_large_correct_leaf_beside_small_leaf_passes():
    assert jaxcheck.check_grad(big_and_small, BIG_AND_SMALL).ok


# --------------------------------------------------------------------------
# Explicit atol and rtol


def sum_sin(w):
    return jnp.sum(jnp.sin(w))


W = jnp.linspace(-1.0, 2.0, 8)


def test_rtol_override():
    grad = jnp.cos(W) * (1 + 1e-3)  # 0.1% off everywhere
    assert not jaxcheck.check_grad(sum_sin, W, grad=grad).ok
    assert jaxcheck.check_grad(sum_sin, W, grad=grad, rtol=2e-3).ok
    assert not jaxcheck.check_grad(sum_sin, W, grad=grad, rtol=5e-4).ok


def test_atol_override():
    grad = plant(jnp.cos(W), "params", (3,), 0.5)
    assert jaxcheck.check_grad(sum_sin, W, grad=grad, atol=1.0, rtol=0.0).ok
    with pytest.raises(GradCheckError, match=at("params", (3,))):
        jaxcheck.assert_grad(sum_sin, W, grad=grad, atol=0.1, rtol=0.0)


@pytest.mark.parametrize("atol, rtol", [(0.1, 0.0), (0.0, 0.01), (1e-3, 1e-2)])
def test_explicit_tolerance_is_the_pass_band(atol, rtol):
    report = jaxcheck.check_grad(sum_sin, W, atol=atol, rtol=rtol)
    for e in report.worst(report.num_entries):
        expected = atol + rtol * max(abs(e.analytic), abs(e.numeric))
        assert e.tolerance == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_zero_tolerance_drops_the_round_off_allowance():
    # With the defaults, sin's round-off error passes; with atol = rtol = 0 only an
    # exact match would.
    assert jaxcheck.check_grad(sum_sin, W).ok
    report = jaxcheck.check_grad(sum_sin, W, atol=0.0, rtol=0.0)
    assert not report.ok
    assert all(e.abs_err > 0 for e in report.failures)


# --------------------------------------------------------------------------
# rel_diff is ‖g − ĝ‖ / (‖g‖ + ‖ĝ‖)


@pytest.mark.parametrize("delta", [0.0, 1e-6, 0.05])
def test_rel_diff_matches_independent_computation(delta):
    grad = plant(EXACT, "['layers'][2]['w']", (1, 0), delta)
    report = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, grad=grad)
    numeric = jaxcheck.numerical_grad(mlp_loss, PARAMS, X, Y)
    # An entry that fails at first is refined (Richardson), so its numerical
    # value may move by its truncation error: far less than the planted delta.
    assert report.rel_diff == pytest.approx(
        relative_difference(grad, numeric), rel=1e-9 if delta == 0 else 1e-3
    )
    flat_grad = dict(
        (jax.tree_util.keystr(k), v)
        for k, v in jax.tree_util.tree_leaves_with_path(grad)
    )
    flat_numeric = dict(
        (jax.tree_util.keystr(k), v)
        for k, v in jax.tree_util.tree_leaves_with_path(numeric)
    )
    for s in report.leaves:
        expected = relative_difference(flat_grad[s.path], flat_numeric[s.path])
        rel = 1e-9 if delta == 0 else 1e-3
        assert s.rel_diff == pytest.approx(expected, rel=rel, abs=1e-300)


def test_rel_diff_of_correct_gradient_is_tiny():
    report = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y)
    assert 0 <= report.rel_diff < 1e-9


# --------------------------------------------------------------------------
# Non-finite gradients always fail


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=str)
def test_nonfinite_custom_vjp_fails(value):
    square = square_nonfinite_grad(value)

    def loss(params):
        return jnp.sum(square(params["w"])) + jnp.sum(params["b"] ** 2)

    params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array([1.0, 2.0])}
    for atol in [None, 1e300]:
        report = jaxcheck.check_grad(loss, params, atol=atol)
        assert not report.ok
        assert report.num_failed == 2
        assert {e.location: e.status for e in report.failures} == {
            "['w'][0]": "analytic nan/inf",
            "['w'][1]": "analytic nan/inf",
        }
        summaries = {s.path: s for s in report.leaves}
        assert summaries["['w']"].status == "nan/inf"
        assert summaries["['b']"].status == "ok"
    with pytest.raises(GradCheckError, match=r"analytic nan/inf") as info:
        jaxcheck.assert_grad(loss, params)
    assert location("['w']", (0,)) in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=str)
def test_nonfinite_entry_in_given_gradient_fails(value):
    grad = {"w": jnp.array([1.0, value, -2.0])}
    params = {"w": jnp.array([0.5, 1.0, -1.0])}
    loss = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    report = jaxcheck.check_grad(loss, params, grad=grad)
    assert not report.ok
    [failure] = report.failures
    assert (failure.location, failure.status) == ("['w'][1]", "analytic nan/inf")
    with pytest.raises(GradCheckError, match=at("['w']", (1,))):
        jaxcheck.assert_grad(loss, params, grad=grad)


def test_nonfinite_numeric_derivative_is_inconclusive():
    # sqrt at 1e-12 with a step of 1e-6: θ − h is negative, J(θ − h) is NaN, and
    # still at the retried steps 1e-6 / 8^k, k ≤ 3.
    loss = lambda w: jnp.sum(jnp.sqrt(w))  # noqa: E731
    w = jnp.array([1e-12, 1.0])
    report = jaxcheck.check_grad(loss, w, eps=1e-6)
    assert not report.ok
    [failure] = report.failures
    assert (failure.location, failure.status) == ("params[0]", "inconclusive")
    assert "inconclusive" in report.verdict
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(loss, w, eps=1e-6)


def test_step_across_a_domain_edge_is_retried_smaller():
    # log and sqrt at 1e-6: the default step (≈7.6e-6) crosses 0; a step 8 or 64
    # times smaller does not, and the correct gradient passes.
    loss = lambda w: jnp.sum(jnp.log(w)) + jnp.sum(jnp.sqrt(w))  # noqa: E731
    w = jnp.array([1e-6, 3e-6, 1.0])
    report = jaxcheck.check_grad(loss, w)
    assert report.ok, report
    assert report.steps[0] < 1e-6
    wrong = lambda w: 1.01 / w + 0.5 / jnp.sqrt(w)  # noqa: E731
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(loss, w, grad=wrong)


# --------------------------------------------------------------------------
# The seeds


def test_qa_seed_correct_gradient_passes():
    grad = {"w": jnp.array([0.7744, 0.0]), "b": jnp.array(0.7744)}
    assert jaxcheck.check_grad(qa_loss, QA_PARAMS, QA_X, QA_Y, grad=grad).ok
    assert jaxcheck.check_grad(qa_loss, QA_PARAMS, QA_X, QA_Y).ok


def test_qa_seed_output_gradient_against_loss_fails():
    # The Q&A's mistake: the gradient of the output, checked against the loss.
    def output_grad(params, x, y):
        return jax.grad(qa_output)(params, x)

    with pytest.raises(GradCheckError, match=at("['w']", (0,))) as info:
        jaxcheck.assert_grad(qa_loss, QA_PARAMS, QA_X, QA_Y, grad=output_grad)
    assert "['b']" in str(info.value)
    report = jaxcheck.check_grad(qa_loss, QA_PARAMS, QA_X, QA_Y, grad=output_grad)
    failures = {e.location: (e.analytic, e.numeric) for e in report.failures}
    assert set(failures) == {"['w'][0]", "['b']"}
    for analytic, numeric in failures.values():
        assert analytic == pytest.approx(1.0)
        assert numeric == pytest.approx(0.7744, abs=1e-9)


@pytest.mark.parametrize("theta", [jnp.array(1.0), 1.0], ids=["array", "float"])
def test_lecture_cube(theta):
    cube = lambda t: t**3  # noqa: E731
    assert jaxcheck.check_grad(cube, theta).ok
    assert jaxcheck.check_grad(cube, theta, grad=lambda t: 3 * jnp.asarray(t) ** 2).ok
    with pytest.raises(
        GradCheckError, match=r"FAILED: 1 of 1 entries differ, in params"
    ):
        jaxcheck.assert_grad(cube, theta, grad=lambda t: 2 * jnp.asarray(t) ** 2)
