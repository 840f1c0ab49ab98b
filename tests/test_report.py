"""`GradCheckReport`: the table, the worst entries, the per-leaf summaries and the
JSON form, checked against numbers computed independently."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import location, plant, reference_grad, relative_difference

import jaxcheck

pytestmark = pytest.mark.core


def loss(params, x):
    return (
        jnp.sum(jnp.sin(x @ params["w"]))
        + 0.5 * jnp.sum(params["b"] ** 2)
        + params["c"] ** 3
    )


PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2),
    "b": jnp.linspace(0.5, 2.0, 4),
    "c": jnp.array(0.8),
    "n": 3,
    "idx": jnp.arange(2),
}
X = jnp.linspace(0.2, 1.0, 6).reshape(2, 3)
EXACT = reference_grad(loss, PARAMS, X)
LEAVES = ["['b']", "['c']", "['w']"]  # dict keys in sorted order
# Planted bugs, largest first: the order `worst` must find them in.
BUGS = [("['b']", (1,), 0.1), ("['w']", (2, 0), 0.01), ("['c']", (), 0.001)]


def _planted():
    grad = EXACT
    for path, index, delta in BUGS:
        grad = plant(grad, path, index, delta)
    return grad


BAD = _planted()
OK_REPORT = jaxcheck.check_grad(loss, PARAMS, X, grad=EXACT)
BAD_REPORT = jaxcheck.check_grad(loss, PARAMS, X, grad=BAD)
NUMERIC = jaxcheck.numerical_grad(loss, PARAMS, X)


def _leaf(tree, path):
    return dict(
        (jax.tree_util.keystr(k), v)
        for k, v in jax.tree_util.tree_leaves_with_path(tree)
    )[path]


# --------------------------------------------------------------------------
# ok and the counts


def test_ok_report():
    assert OK_REPORT.ok
    assert OK_REPORT.num_entries == 11
    assert OK_REPORT.num_failed == 0
    assert OK_REPORT.failures == []


def test_failing_report():
    assert not BAD_REPORT.ok
    assert BAD_REPORT.num_entries == 11
    assert BAD_REPORT.num_failed == 3
    assert [e.location for e in BAD_REPORT.failures] == [
        location(path, index) for path, index, _ in BUGS
    ]


def test_repr():
    assert repr(BAD_REPORT).startswith("GradCheckReport(ok=False")
    assert "failed=3/11" in repr(BAD_REPORT)


# --------------------------------------------------------------------------
# str(report)


@pytest.mark.parametrize(
    "report, verdict", [(OK_REPORT, "OK:"), (BAD_REPORT, "FAILED:")]
)
def test_str_lists_every_leaf_and_ends_with_the_verdict(report, verdict):
    text = str(report)
    lines = text.splitlines()
    for path in LEAVES:
        assert any(line.strip().startswith(path) for line in lines), path
    assert lines[-1].startswith(verdict)
    assert lines[-1] == report.verdict
    assert "not perturbed" in text and "['n']" in text and "['idx']" in text


def test_str_of_failing_report_names_each_bad_entry():
    text = str(BAD_REPORT)
    for path, index, _ in BUGS:
        assert location(path, index) in text
    assert (
        "FAILED: 3 of 11 entries differ, in ['b'], ['c'], ['w']; worst ['b'][1]" in text
    )


def test_grad_check_error_message_is_the_verdict_then_the_report():
    with pytest.raises(jaxcheck.GradCheckError) as info:
        jaxcheck.assert_grad(loss, PARAMS, X, grad=BAD)
    first, rest = str(info.value).split("\n", 1)
    assert first == BAD_REPORT.verdict
    assert rest == str(BAD_REPORT)
    # pytest's one-line summary shows the start of the first line: the leaf.
    assert "['b']" in first[:80]


@pytest.mark.parametrize(
    "check",
    [
        lambda: jaxcheck.check_jacobian(jnp.sin, jnp.arange(3.0), jac=jnp.eye(3)),
        lambda: jaxcheck.check_vjp(jnp.sin, (jnp.arange(3.0),), vjp_fn=lambda c: (c,)),
        lambda: jaxcheck.check_jvp(
            jnp.sin, (jnp.arange(3.0),), jvp_fn=lambda p, t: (p[0], t[0])
        ),
        lambda: jaxcheck.check_grad(loss, PARAMS, X, grad=BAD),
    ],
)
def test_every_check_returns_a_false_report_on_a_wrong_derivative(check):
    report = check()
    assert not report.ok and not bool(report)
    assert report.verdict.startswith("FAILED")
    assert report.failures and report.failures[0].status == "mismatch"


def test_a_passing_report_is_true():
    assert jaxcheck.check_grad(loss, PARAMS, X)
    assert jaxcheck.check_jacobian(jnp.sin, jnp.arange(3.0))


def test_str_with_complex_leaf():
    fun = lambda z: jnp.sum(jnp.abs(z) ** 2)  # noqa: E731
    z = jnp.array([1 + 2j, -0.5j])
    report = jaxcheck.check_grad(fun, z, grad=2 * z)  # should be 2·conj(z)
    text = str(report)
    assert "complex128" in text
    assert text.splitlines()[-1].startswith("FAILED:")
    assert location("params", (0,)) in text


# --------------------------------------------------------------------------
# worst(k)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 11, 100])
def test_worst_returns_at_most_k_sorted_worst_first(k):
    worst = BAD_REPORT.worst(k)
    assert len(worst) == min(k, 11)
    assert all(isinstance(e, jaxcheck.EntryReport) for e in worst)
    scores = [e.abs_err / e.tolerance for e in worst]
    assert scores == sorted(scores, reverse=True)
    expected = [location(path, index) for path, index, _ in BUGS][:k]
    assert [e.location for e in worst[:3]] == expected
    assert [e.status for e in worst[:3]] == ["mismatch"] * min(k, 3)
    assert all(e.status == "ok" for e in worst[3:])


def test_worst_entries_are_distinct_and_cover_every_entry():
    worst = BAD_REPORT.worst(100)
    locations = {e.location for e in worst}
    assert len(locations) == 11
    expected = {location("['c']")}
    expected |= {location("['b']", (i,)) for i in range(4)}
    expected |= {location("['w']", (i, j)) for i in range(3) for j in range(2)}
    assert locations == expected


def test_worst_puts_nonfinite_entries_first():
    grad = plant(plant(EXACT, "['w']", (0, 1), math.nan), "['b']", (3,), 100.0)
    report = jaxcheck.check_grad(loss, PARAMS, X, grad=grad)
    first, second = report.worst(2)
    assert (first.location, first.status) == ("['w'][0, 1]", "analytic nan/inf")
    assert (second.location, second.status) == ("['b'][3]", "mismatch")


def test_entry_fields():
    numeric_w = _leaf(NUMERIC, "['w']")
    for e in BAD_REPORT.worst(11):
        given = complex(np.asarray(_leaf(BAD, e.path))[e.index])
        numeric = complex(np.asarray(_leaf(NUMERIC, e.path))[e.index])
        assert e.analytic == pytest.approx(given, rel=1e-15)
        # A failing entry is refined (Richardson): it moves by its truncation error.
        near = dict(rel=1e-15) if e.status == "ok" else dict(rel=1e-15, abs=1e-9)
        assert e.numeric == pytest.approx(numeric, **near)
        assert e.abs_err == pytest.approx(abs(given - numeric), rel=1e-9, abs=1e-9)
        scale = max(abs(given), abs(numeric))
        assert e.rel_err == pytest.approx(e.abs_err / scale, rel=1e-9, abs=1e-300)
        assert e.tolerance > 0
        assert e.step > 0
        assert e.location == location(e.path, e.index)
    assert numeric_w.shape == (3, 2)


def test_entry_of_zero_d_leaf_has_empty_index():
    [entry] = [e for e in BAD_REPORT.worst(11) if e.path == "['c']"]
    assert entry.index == ()
    assert entry.location == "['c']"


def test_default_step_is_a_power_of_two_scaled_to_the_entry():
    # h = u^(1/3)·max(1, |θ|) rounded to a power of two (central, float64).
    u = float(jnp.finfo(jnp.float64).eps)
    for e in OK_REPORT.worst(11):
        theta = float(np.asarray(_leaf(PARAMS, e.path))[e.index])
        raw = u ** (1 / 3) * max(1.0, abs(theta))
        assert math.log2(e.step) == round(math.log2(e.step))
        assert raw / math.sqrt(2) <= e.step <= raw * math.sqrt(2)


def test_rel_err_of_nan_entry_is_not_zero():
    grad = plant(EXACT, "['w']", (0, 1), math.nan)
    report = jaxcheck.check_grad(loss, PARAMS, X, grad=grad)
    [entry] = report.failures
    assert entry.status == "analytic nan/inf"
    assert math.isnan(entry.abs_err)
    assert math.isnan(entry.rel_err)


# --------------------------------------------------------------------------
# LeafSummary


@pytest.mark.parametrize(
    "report, grad", [(OK_REPORT, EXACT), (BAD_REPORT, BAD)], ids=["ok", "bad"]
)
def test_leaf_summaries(report, grad):
    assert [s.path for s in report.leaves] == LEAVES
    failed = {path: 0 for path in LEAVES}
    if grad is BAD:
        for path, _, _ in BUGS:
            failed[path] += 1
    for s in report.leaves:
        assert isinstance(s, jaxcheck.LeafSummary)
        param = PARAMS[s.path[2]]
        assert s.shape == param.shape
        assert s.size == param.size
        assert s.dtype == "float64"
        a = np.asarray(_leaf(grad, s.path), np.float64)
        n = np.asarray(_leaf(NUMERIC, s.path), np.float64)
        err = np.abs(a - n)
        # Failing entries are refined (Richardson): they move by their
        # truncation error, far below the planted errors.
        rel = 1e-9 if grad is EXACT else 1e-6
        assert s.max_abs_err == pytest.approx(err.max(), rel=rel, abs=1e-300)
        assert s.max_rel_err == pytest.approx(
            (err / np.maximum(np.abs(a), np.abs(n))).max(), rel=rel, abs=1e-300
        )
        assert s.rel_diff == pytest.approx(
            relative_difference(a, n), rel=rel, abs=1e-300
        )
        assert s.failed == failed[s.path]
        assert s.status == ("mismatch" if failed[s.path] else "ok")
    assert BAD_REPORT.rel_diff == pytest.approx(
        relative_difference(BAD, NUMERIC), rel=1e-9
    )


def test_leaf_summary_of_nonfinite_leaf():
    grad = plant(EXACT, "['w']", (0, 1), math.inf)
    report = jaxcheck.check_grad(loss, PARAMS, X, grad=grad)
    summaries = {s.path: s for s in report.leaves}
    assert summaries["['w']"].status == "nan/inf"
    assert summaries["['w']"].failed == 1
    assert summaries["['b']"].status == "ok"
    assert not report.ok


def test_skipped():
    assert OK_REPORT.skipped == (
        ("['idx']", "int64 array: not floating, not perturbed"),
        ("['n']", "int: static, passed through"),
    )


# --------------------------------------------------------------------------
# to_dict


def _nan_report():
    return jaxcheck.check_grad(
        loss, PARAMS, X, grad=plant(EXACT, "['w']", (0, 1), math.nan)
    )


def _complex_report():
    z = jnp.array([1 + 2j, -0.5j])
    return jaxcheck.check_grad(lambda z: jnp.sum(jnp.abs(z) ** 2), z, grad=2 * z)


@pytest.mark.parametrize(
    "make",
    [lambda: OK_REPORT, lambda: BAD_REPORT, _nan_report, _complex_report],
    ids=["ok", "bad", "nan", "complex"],
)
def test_to_dict_round_trips_through_json(make):
    report = make()
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)  # strict JSON: no bare NaN
    assert json.loads(text) == data
    assert data["ok"] is report.ok
    assert data["num_entries"] == report.num_entries
    assert data["num_failed"] == report.num_failed
    assert data["verdict"] == report.verdict
    assert [leaf["path"] for leaf in data["leaves"]] == [s.path for s in report.leaves]
    assert [e["location"] for e in data["worst"]] == [
        e.location for e in report.worst(report.num_entries)
    ][:20]


def test_to_dict_contents():
    data = BAD_REPORT.to_dict(worst=3)
    assert data["method"] == "central"
    assert data["fun"] == "loss"
    assert [e["location"] for e in data["worst"]] == [
        "['b'][1]",
        "['w'][2, 0]",
        "['c']",
    ]
    assert data["worst"][1]["index"] == [2, 0]
    assert data["leaves"][2]["shape"] == [3, 2]
    assert data["skipped"] == [
        {"path": "['idx']", "reason": "int64 array: not floating, not perturbed"},
        {"path": "['n']", "reason": "int: static, passed through"},
    ]
    assert data["rel_diff"] == pytest.approx(BAD_REPORT.rel_diff)


def test_to_dict_with_nan():
    data = _nan_report().to_dict()
    [first] = data["worst"][:1]
    assert first["status"] == "analytic nan/inf"
    assert first["analytic"] == "nan"
    assert data["rel_diff"] == "nan"
