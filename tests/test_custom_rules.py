"""`check_custom_vjp` and `check_custom_jvp`: correct rules pass; each planted bug
is caught by the check that names it."""

import functools
import json
import re

import jax
import jax.numpy as jnp
import pytest
import rules

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

X, W, B = rules.dense_inputs()


# --------------------------------------------------------------------------
# custom_vjp


def test_correct_vjp_rule_passes():
    report = jaxcheck.check_custom_vjp(rules.dense, X, W, B)
    assert len(report.reports) == 3
    assert all(r.ok for r in report.reports.values())


def test_wrong_residual_is_caught():
    with pytest.raises(GradCheckError, match=r"bwd rule with cotangent 0(.|\n)*"):
        jaxcheck.assert_custom_vjp(rules.dense_wrong_residual, X, W, B)


def test_missing_transpose_is_located():
    with pytest.raises(GradCheckError, match=re.escape("worst primals[1][")):
        jaxcheck.assert_custom_vjp(rules.dense_missing_transpose, X, W, B)


def test_wrong_entry_is_located():
    with pytest.raises(GradCheckError, match=re.escape("worst primals[2][1]")):
        jaxcheck.assert_custom_vjp(rules.dense_wrong_b, X, W, B)


def test_missing_cotangent_is_named():
    with pytest.raises(GradCheckError, match="returned 2 cotangents for 3 primals"):
        jaxcheck.assert_custom_vjp(rules.dense_missing_cotangent, X, W, B)


def test_wrong_dtype_is_named():
    with pytest.raises(GradCheckError, match=re.escape("rule[1] has dtype float32")):
        jaxcheck.assert_custom_vjp(rules.dense_wrong_dtype, X, W, B)


def test_wrong_fwd_output_is_named():
    with pytest.raises(GradCheckError, match="fwd rule's primal output"):
        jaxcheck.assert_custom_vjp(rules.dense_wrong_output, X, W, B)


def test_bad_batching_is_caught():
    with pytest.raises(GradCheckError, match="under vmap over 3 directions"):
        jaxcheck.assert_custom_vjp(rules.dense_bad_batching, X, W, B)


def test_nondiff_argnums():
    x, scale = jnp.linspace(0.5, 1.5, 4), jnp.array(0.7)
    report = jaxcheck.check_custom_vjp(rules.scaled_act, 3, x, scale, num_cotangents=1)
    assert all(r.ok for r in report.reports.values())
    with pytest.raises(GradCheckError, match=re.escape("nondiff_argnums (0,)")):
        jaxcheck.assert_custom_vjp(rules.scaled_act_wrong, 3, x, scale)


def test_custom_vjp_bad_arguments():
    with pytest.raises(TypeError, match="@jax.custom_vjp"):
        jaxcheck.check_custom_vjp(jnp.sin, X)
    with pytest.raises(ValueError, match="no rule yet"):
        jaxcheck.check_custom_vjp(jax.custom_vjp(jnp.sin), X)
    with pytest.raises(ValueError, match="nondiff_argnums"):
        jaxcheck.check_custom_vjp(rules.scaled_act, 3)
    with pytest.raises(ValueError, match="`num_cotangents`"):
        jaxcheck.check_custom_vjp(rules.dense, X, W, B, num_cotangents=0)


def test_complex_vjp_rule():
    z = jnp.array([1 + 2j, 0.5 - 1j])
    assert jaxcheck.check_custom_vjp(rules.abs2, z, num_cotangents=1)
    with pytest.raises(GradCheckError, match=re.escape("primals[0][")):
        jaxcheck.assert_custom_vjp(rules.abs2_wrong, z)


# --------------------------------------------------------------------------
# custom_jvp


def test_correct_jvp_rule_passes():
    report = jaxcheck.check_custom_jvp(rules.sin, jnp.linspace(0.1, 1.0, 4))
    assert all(r.ok for r in report.reports.values())


def test_wrong_jvp_rule_is_located():
    with pytest.raises(GradCheckError, match=re.escape("jvp rule with tangent 0")):
        jaxcheck.assert_custom_jvp(rules.sin_wrong_first, jnp.linspace(0.1, 1.0, 4))


def test_symbolic_zeros():
    x, y = jnp.linspace(0.1, 1.0, 3), jnp.linspace(-1.0, 2.0, 3)
    report = jaxcheck.check_custom_jvp(rules.mul, x, y, num_tangents=1)
    assert len(report.reports) == 1 + 1 + 2
    with pytest.raises(GradCheckError, match=re.escape("for primals[0] only")):
        jaxcheck.assert_custom_jvp(rules.mul_wrong_zero, x, y)


def test_wrong_jvp_output_structure_is_named():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (jnp.sin(p[0]), (jnp.cos(p[0]) * t[0]).astype(jnp.float32)))
    shaped = "output tangent is shaped like `fun`'s output: differs"
    with pytest.raises(GradCheckError, match=shaped):
        jaxcheck.assert_custom_jvp(f, jnp.linspace(0.1, 1.0, 3))


def test_custom_jvp_bad_arguments():
    with pytest.raises(TypeError, match="@jax.custom_jvp"):
        jaxcheck.check_custom_jvp(rules.dense, X)


def test_bwd_structure_is_named():
    @jax.custom_vjp
    def double(p):
        return {"y": 2 * p["w"]}

    double.defvjp(lambda p: (double(p), None), lambda _, g: ({"v": 2 * g["y"]},))
    with pytest.raises(GradCheckError, match=re.escape("rule[0] has the structure")):
        jaxcheck.assert_custom_vjp(double, {"w": jnp.ones(2)})


def test_custom_jvp_nondiff_argnums():
    @functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
    def power(n, x):
        return x**n

    @power.defjvp
    def _(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return x**n, n * x ** (n - 1) * t

    report = jaxcheck.check_custom_jvp(
        power, 3, jnp.linspace(0.5, 1.5, 3), num_tangents=1
    )
    assert all(r.ok for r in report.reports.values())


def test_a_rule_check_returns_one_report_of_every_step():
    report = jaxcheck.check_custom_vjp(rules.dense_wrong_b, X, W, B)
    assert not report and not report.ok
    names = [step.name for step in report.steps]
    assert names[0].startswith("the fwd rule's primal output")
    assert any(name.startswith("the VJP under vmap") for name in names)
    assert report.failures and report.failures[0].report is not None
    assert report.verdict.startswith("FAILED: bwd rule with cotangent 0")
    assert "worst primals[2][1]" in report.verdict
    assert report.worst(1)[0].location.startswith("primals[2][1]")
    data = json.loads(report.to_json())
    assert data["ok"] is False and len(data["steps"]) == len(report.steps)
    assert "FAILED  bwd rule with cotangent 0" in str(report)


def test_a_structural_failure_ends_the_rule_check():
    report = jaxcheck.check_custom_vjp(rules.dense_missing_cotangent, X, W, B)
    assert [s.ok for s in report.steps] == [True, False]
    assert report.reports == {} and report.rel_diff == 0.0
    with pytest.raises(ValueError, match="nothing to plot"):
        report.plot("unused.png")
    good = jaxcheck.check_custom_jvp(rules.sin, jnp.linspace(0.1, 1.0, 4))
    assert good and good.verdict.startswith("OK: the custom_jvp rule of `sin`")


def test_rule_checks_take_the_shared_options_progress_devices_shadow():
    @jax.custom_vjp
    def square(x):
        return x**2

    square.defvjp(lambda x: (x**2, x), lambda x, g: (2 * x * g,))

    @jax.custom_jvp
    def cube(x):
        return x**3

    cube.defjvp(lambda p, t: (p[0] ** 3, 3 * p[0] ** 2 * t[0]))
    x = jnp.linspace(0.5, 1.5, 4).astype(jnp.float32)
    for check, fun in ((jaxcheck.check_custom_vjp, square),
                       (jaxcheck.check_custom_jvp, cube)):  # fmt: skip
        calls: list[int] = []
        report = check(
            fun, x, progress=lambda done, total, calls=calls: calls.append(done),
            devices=[jax.devices()[0]], shadow=False,
        )  # fmt: skip
        assert report.ok and calls  # the value checks reported their progress
        assert all("float64 twin" not in r.note for r in report.reports.values())
        with pytest.raises(TypeError, match="`shadow`"):
            check(fun, x, shadow="no")
