"""What a new user meets first: relative figures only where they mean something,
a fast-mode verdict that says what was checked how (with the same diagnosis as a
full check), and notes in the user's terms when `fun` is called wrongly or
branches on a traced value."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_modes import WIDE, WIDE_GRAD, WIDE_X, wide_loss

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core


def partly_flat(params):
    # ['z'] has a zero gradient; its numeric side is round-off (0 against 1e-11
    # would otherwise read as a 100 % relative error).
    return jnp.sum(params["w"] ** 2) + 1e-3 * jnp.sum(jnp.cos(0.0 * params["z"]))


PARAMS = {"w": jnp.arange(1.0, 4.0), "z": jnp.linspace(1.0, 2.0, 4)}


def test_a_zero_gradient_shows_no_relative_figures():
    report = jaxcheck.check_grad(partly_flat, PARAMS)
    assert report.ok
    w, z = report.leaves
    assert w.rel_diff < 1e-9 and w.max_rel_err < 1e-9
    assert np.isnan(z.rel_diff) and np.isnan(z.max_rel_err)  # undefined, not 100 %
    row = next(line for line in str(report).splitlines() if "['z']" in line)
    assert row.split()[4:6] == ["—", "—"] and "1.00e+00" not in row
    assert "zero to within its pass band" in str(report)
    assert json.loads(report.to_json())["leaves"][1]["rel_diff"] == "nan"


def test_a_gradient_zero_everywhere_says_so_in_the_verdict():
    report = jaxcheck.check_grad(lambda z: jnp.sum(jnp.cos(0.0 * z)), PARAMS["z"])
    assert report.ok
    assert report.verdict.endswith("agree (the gradient is zero to round-off).")


def test_a_wrong_zero_gradient_keeps_its_relative_figures():
    # Analytic 0 where the numeric gradient is 2w: a missing term, 100 % off.
    wrong = {"w": jnp.zeros(3), "z": jnp.zeros(4)}
    report = jaxcheck.check_grad(partly_flat, PARAMS, grad=wrong)
    assert not report.ok
    assert report.leaves[0].max_rel_err == pytest.approx(1.0)
    assert "rel diff 1.0e+00" in report.verdict


def test_fast_mode_verdict_says_what_was_checked_one_by_one_and_diagnoses():
    wrong = {**WIDE_GRAD, "w": WIDE_GRAD["w"].at[17].multiply(1.01)}
    report = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, grad=wrong, mode="fast")
    assert not report.ok
    w = next(s for s in report.leaves if s.path == "['w']")
    assert w.failed == 50 and report.num_entries < WIDE["w"].size
    assert report.verdict.startswith(
        f"FAILED: 50 of {report.num_entries} entries checked one by one differ, in "
        "['w']; worst ['w'][17, "
    )
    assert (
        f"probes narrowed the 2,050 entries to these {report.num_entries}."
        in report.verdict
    )
    assert w.diagnosis == (
        "only row 17 is wrong (the rest passed the probes); analytic ≈ 1.01 × numeric"
    )
    assert "['w']: only row 17 is wrong" in str(report)
    with pytest.raises(GradCheckError, match=r"^FAILED: 50 of \d+ entries checked"):
        jaxcheck.assert_grad(wide_loss, WIDE, WIDE_X, grad=wrong, mode="fast")


def test_sample_mode_verdict_counts_sampled_entries():
    wrong = {**WIDE_GRAD, "b": WIDE_GRAD["b"] * 2}
    report = jaxcheck.check_grad(
        wide_loss, WIDE, WIDE_X, grad=wrong, mode="sample", samples=8
    )
    assert report.verdict.startswith("FAILED: 8 of 16 sampled entries differ, in ['b']")


def loss(params, x):
    return jnp.sum(params * x)


def _notes(error):
    return "\n".join(getattr(error, "__notes__", []))


@pytest.mark.parametrize(
    "args, said",
    [((), "here with 0 arguments after `params`"), ((1.0, 2.0), "with 2 arguments")],
)
def test_a_call_that_does_not_fit_fun_is_explained(args, said):
    with pytest.raises(TypeError, match=r"loss\(\)") as caught:
        jaxcheck.check_grad(loss, jnp.ones(3), *args)
    notes = _notes(caught.value)
    assert "`fun` is called as `fun(params, *args)`" in notes and said in notes


def test_a_type_error_inside_fun_gets_no_call_note():
    def uses_a_helper_wrongly(params):
        return jnp.sum(loss(params))  # the helper, not `fun`, misses an argument

    with pytest.raises(TypeError, match="missing 1 required") as caught:
        jaxcheck.check_grad(uses_a_helper_wrongly, jnp.ones(3))
    assert "fun(params, *args)" not in _notes(caught.value)


def test_python_control_flow_on_a_traced_value_is_explained():
    def branches(params):
        return jnp.sum(params) if params[0] > 0 else 0.0

    with pytest.raises(jax.errors.TracerBoolConversionError) as caught:
        jaxcheck.check_grad(branches, jnp.ones(3))
    notes = _notes(caught.value)
    assert "must not use the values of its inputs in Python" in notes
    assert "jnp.where" in notes


def test_a_large_leaf_with_a_few_real_entries_keeps_its_relative_figures():
    # 2,000 entries at zero and 5 that are not: the relative figures are real.
    def loss(w):
        return 1e-3 * jnp.sum(w[:5] ** 2) + jnp.sum(jnp.cos(0.0 * w))

    report = jaxcheck.check_grad(loss, jnp.linspace(1.0, 2.0, 2000))
    assert report.ok and not np.isnan(report.rel_diff)
    assert not np.isnan(report.leaves[0].max_rel_err)
    assert "zero to round-off" not in report.verdict
