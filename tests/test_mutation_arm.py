"""The mutants of the conformance harness's mutation arm (`tools/`): each keeps its
function's primal output, plants the error it names, and jaxcheck catches it."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck

TOOLS = Path(__file__).resolve().parents[1] / "tools"
X = jnp.array([0.3, 1.2, -0.7, 2.0])  # float64: tests/conftest.py enables x64


def _load(name: str) -> ModuleType:
    """A module of `tools/` (not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up
    spec.loader.exec_module(module)
    return module


plugin = _load("_conformance_plugin")
harness = _load("jax_conformance")


def _jvp(f, x, t):
    return jax.jvp(f, (x,), (t,))[1]


def test_scale_mutant_keeps_the_primal_and_scales_the_jvp():
    mutant = plugin.make_mutant(jnp.sin, (X,), "scale", 1e-3)
    assert np.array_equal(mutant(X), jnp.sin(X))
    assert np.array_equal(jax.jvp(mutant, (X,), (jnp.ones(4),))[0], jnp.sin(X))
    t = jnp.arange(1.0, 5.0)
    np.testing.assert_allclose(_jvp(mutant, X, t), 1.001 * jnp.cos(X) * t, rtol=1e-12)
    assert plugin.planted_error(jnp.sin, mutant, (X,)) == pytest.approx(1e-3)
    with pytest.raises(jaxcheck.GradCheckError):
        jaxcheck.check_grads(mutant, (X,), 1)


def test_zero_delta_is_the_function_and_passes():
    mutant = plugin.make_mutant(jnp.sin, (X,), "scale", 0.0)
    assert plugin.planted_error(jnp.sin, mutant, (X,)) == 0.0
    jaxcheck.check_grads(mutant, (X,), 2, modes=["fwd", "rev"])


def test_swap_mutant_is_caught():
    mutant = plugin.make_mutant(jnp.sin, (X,), "swap")
    assert np.array_equal(mutant(X), jnp.sin(X))
    t = jnp.ones(4)
    expected = (jnp.cos(X) * t)[jnp.array([3, 1, 2, 0])]
    np.testing.assert_allclose(_jvp(mutant, X, t), expected)
    with pytest.raises(jaxcheck.GradCheckError):
        jaxcheck.check_grads(mutant, (X,), 1)


def test_swap_and_drop_do_not_apply_to_a_single_entry():
    scalar_out = lambda x: jnp.sum(jnp.sin(x))  # noqa: E731
    assert plugin.make_mutant(scalar_out, (X,), "swap") is None
    assert plugin.make_mutant(jnp.sin, (jnp.float64(0.5),), "drop") is None


def test_drop_mutant_drops_one_input_term():
    f = lambda x, y: x * y  # noqa: E731
    y = X + 1.0
    mutant = plugin.make_mutant(f, (X, y), "drop")
    t_x, t_y = jnp.ones(4), jnp.full(4, 2.0)
    _, t_out = jax.jvp(mutant, (X, y), (t_x, t_y))
    np.testing.assert_allclose(t_out, X * t_y)  # the y * t_x term is gone
    with pytest.raises(jaxcheck.GradCheckError):
        jaxcheck.check_grads(mutant, (X, y), 1)


def test_scale2_mutant_is_seen_at_order_two_only():
    mutant = plugin.make_mutant(jnp.sin, (X,), "scale2", 1e-2)
    t = jnp.ones(4)
    np.testing.assert_array_equal(_jvp(mutant, X, t), jnp.cos(X))
    second = jax.jvp(lambda x: _jvp(mutant, x, t), (X,), (t,))[1]
    np.testing.assert_allclose(second, -1.01 * jnp.sin(X), rtol=1e-12)
    jaxcheck.check_grads(mutant, (X,), 1)
    with pytest.raises(jaxcheck.GradCheckError):
        jaxcheck.check_grads(mutant, (X,), 2, modes=["fwd"])


def test_scale_vjp_mutant_is_caught_in_rev_mode():
    mutant = plugin.make_mutant(jnp.sin, (X,), "scale_vjp", 1e-3)
    assert np.array_equal(mutant(X), jnp.sin(X))
    assert plugin.planted_error(jnp.sin, mutant, (X,), "scale_vjp") == pytest.approx(
        1e-3
    )
    with pytest.raises(jaxcheck.GradCheckError):
        jaxcheck.check_grads(mutant, (X,), 1, modes=["rev"])


def test_mutants_of_pytrees_keep_the_primal():
    def f(d):
        return {"a": jnp.sin(d["x"]) * d["y"], "b": (jnp.sum(d["x"]), d["x"][:2])}

    args = ({"x": X, "y": 2.0},)
    for kind in ("scale", "drop", "swap"):
        mutant = plugin.make_mutant(f, args, kind, 1e-2)
        assert jax.tree_util.tree_all(
            jax.tree_util.tree_map(np.array_equal, mutant(*args), f(*args))
        )
        assert plugin.planted_error(f, mutant, args) > 0


def test_a_delta_below_the_dtype_plants_nothing():
    x = X.astype(jnp.bfloat16)
    mutant = plugin.make_mutant(jnp.sin, (x,), "scale", 1e-3)  # bfloat16 eps 8e-3
    assert plugin.planted_error(jnp.sin, mutant, (x,)) == 0.0


def test_mutate_call_records_a_ladder_per_kind():
    record = plugin.mutate_call(
        jnp.sin,
        (X,),
        1,
        ["fwd", "rev"],
        tools={"jaxcheck": jaxcheck.check_grads},
        deltas=(1e-1, 1e-12),
        kinds=("scale", "scale2", "swap"),
    )
    assert record["status"] == "ok" and record["dtype"] == "float64"
    assert record["baseline"]["jaxcheck"]["outcome"] == "pass"
    got = [(m["kind"], m["delta"], m["jaxcheck"]["outcome"]) for m in record["mutants"]]
    # scale2 needs order 2; a relative error of 1e-12 is below any tolerance
    assert got == [
        ("scale", 1e-1, "fail"),
        ("scale", 1e-12, "pass"),
        ("swap", None, "fail"),
    ]
    assert harness.smallest_caught(record["mutants"][:2], "jaxcheck") == 1e-1


def test_mutate_call_skips_a_function_without_jvp():
    def no_jvp(x):
        return jax.pure_callback(lambda v: v, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    record = plugin.mutate_call(
        no_jvp, (X,), 1, tools={"jaxcheck": jaxcheck.check_grads}
    )
    assert record["status"] == "skipped" and record["reason"].startswith("no JVP")


def test_sample_is_spread_over_dtypes_and_orders():
    calls = [
        {
            "nodeid": f"t{i}",
            "index": 0,
            "order": 1 + (i % 4 == 0),
            "outcome": "ok",
            "time": 0.1,
            "args": [f"{dtype}[3]"],
        }
        for i, dtype in enumerate(["float32"] * 30 + ["bfloat16"] * 3 + ["int32"] * 5)
    ]
    sample = harness.sample_calls(calls, 10)
    assert len(sample) == 10
    assert sample == harness.sample_calls(calls, 10)  # deterministic
    strata = {harness.stratum(c) for c in sample}
    assert strata == {("float32", 1), ("float32", 2), ("bfloat16", 1), ("bfloat16", 2)}
    assert [c["nodeid"] for c in sample] == sorted(
        (c["nodeid"] for c in sample), key=lambda n: int(n[1:])
    )


def test_explain_miss_gives_jaxcheck_s_report_of_the_check_jax_failed():
    mutant = plugin.make_mutant(jnp.sin, (X,), "scale", 1e-3)
    message = "\nNot equal to tolerance rtol=1e-05, atol=1e-05\nJVP tangent\n"
    report = plugin.explain_miss(mutant, (X,), message, None, None, None)
    assert "out (jvp)" in report
    assert plugin.explain_miss(mutant, (X,), "\nx\nJVP of JVP tangent", 1, 1, 1) == ""


def test_summary_lists_what_jax_catches_and_jaxcheck_misses():
    def ran(delta, jax_outcome, jaxcheck_outcome):
        return {
            "kind": "scale",
            "delta": delta,
            "status": "run",
            "planted": delta,
            "jax": {"outcome": jax_outcome, "message": "", "time": 0.1},
            "jaxcheck": {"outcome": jaxcheck_outcome, "message": "", "time": 0.2},
        }

    record = {
        "kind": "mutant_call",
        "nodeid": "t.py::T::test",
        "index": 0,
        "function": "sin",
        "order": 1,
        "modes": ["fwd", "rev"],
        "args": ["float32[3]"],
        "atol": "None",
        "rtol": "None",
        "eps": "None",
        "status": "ok",
        "dtype": "float32",
        "mutants": [ran(1.0, "fail", "fail"), ran(0.1, "fail", "pass")],
    }
    arm = {
        "mutant_calls": [record],
        "settings": {"calls": [["t.py::T::test", 0]], "deltas": [1.0, 0.1]},
        "wall": 1.0,
    }
    summary = harness.mutation_summary(arm, None)
    assert summary["caught"] == {"jax": {"scale": 2}, "jaxcheck": {"scale": 1}}
    assert [(m["kind"], m["delta"]) for m in summary["misses"]] == [("scale", 0.1)]
    row = summary["ladders"]["scale"]["float32"]
    assert (row["jax"]["reliable"], row["jaxcheck"]["reliable"]) == (0.1, 1.0)
    assert row["jaxcheck"]["caught_at"] == {"1.0": 1, "0.1": 0}


def test_repeated_runs_time_each_call_by_its_least_time():
    def run(times, outcome="ok"):
        calls = [
            {"nodeid": "t::a", "index": i, "time": t, "outcome": outcome}
            for i, t in enumerate(times)
        ]
        return {"calls": calls, "tests": {}}

    merged = harness.fastest_calls([run([0.5, 0.2]), run([0.3, 0.4], "failed")])
    assert [c["time"] for c in merged["calls"]] == [0.3, 0.2]
    assert [c["times"] for c in merged["calls"]] == [[0.5, 0.3], [0.2, 0.4]]
    assert [c["outcome"] for c in merged["calls"]] == ["ok", "ok"]  # the first run's
    assert merged["runs"] == 2
