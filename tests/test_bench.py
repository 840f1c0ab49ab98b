"""Smoke tests of the benchmark, `tools/bench.py`, on tiny models: seconds, not
minutes. pyproject.toml puts tools/ on the tests' path."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bench
import bench_model as _bench
import bench_plot as _bench_plot
import bench_torch as _bench_torch

TINY = ["--widths", "3", "--repeats", "1", "--modes", "full", "fast"]


def _page_columns() -> list[str]:
    """The columns of the benchmark table on the documentation's benchmarks page."""
    root = pathlib.Path(__file__).resolve().parent.parent
    page = (root / "docs" / "benchmarks.md").read_text()
    section = page.split("\n## Full, fast and sample checks", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| N |"))
    return [c.strip() for c in header.strip("|").split("|")]


_PAGE_COLUMNS = _page_columns()


def _table(out: str) -> list[dict[str, str]]:
    """The rows of the printed markdown table, keyed by column header."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def test_width_is_the_one_closest_to_the_target():
    assert _bench.n_params(32) == 2788 and _bench.n_params(96) == 20644
    assert [_bench.width_for(n) for n in (1e3, 2.8e3, 20644, 1e4)] == [17, 32, 96, 65]
    assert _bench.width_for(1) == 1


def test_bench_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main([*TINY, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "JAX " in out and "cores" in out and "torch" in out
    assert "one random direction" in out
    (row,) = _table(out)
    assert list(row) == _PAGE_COLUMNS  # a rerun compares with the published table
    assert row["N"] == "91"
    first, compiling = row["jaxcheck first s"].rstrip(")").split(" (")
    assert float(first) >= float(compiling) > 0
    for column in (
        "jaxcheck repeated s",
        "loop first s",
        "check_grads† first s",
        "evals/s",
        "fast first s",
    ):
        assert float(row[column]) > 0, column
    first_ratio, repeated_ratio = row["loop / jaxcheck, first · repeated"].split(" · ")
    for ratio in (first_ratio, repeated_ratio):
        assert ratio.endswith("×") and float(ratio[:-1]) > 0
    assert row["sample first s"] == "—"  # not in --modes
    assert row["evals/s ÷ forwards/s"].endswith("×")
    if _bench_torch.import_torch() is not None:
        assert float(row["torch gradcheck s"]) > 0
        assert float(row["torch fast_mode† s"]) > 0
        assert row["torch / jaxcheck first"].endswith("×")
    else:
        assert row["torch gradcheck s"] == "not run"

    record = json.loads(path.read_text())
    assert record["machine"]["cores"] >= 1
    (result,) = record["results"]
    assert (result["N"], result["h"]) == (91, 3)
    for method in ("jaxcheck", "fast", "loop", "check_grads"):
        assert result[method]["ok"] == [True]
        assert all(t > 0 for t in result[method]["first"] + result[method]["second"])
    assert len(result["forward"]) > 0


def test_bench_skips_the_loop_above_its_limit(capsys):
    assert bench.main([*TINY, "--max-loop-params", "50"]) == 0
    (row,) = _table(capsys.readouterr().out)
    assert row["loop first s"] == "not run"
    assert row["loop / jaxcheck, first · repeated"] == "—"
    assert float(row["jaxcheck repeated s"]) > 0


def test_memory_mode_stops_the_check_at_the_limit(tmp_path, capsys):
    path = tmp_path / "memory.json"
    argv = ["--memory", "--memory-params", "100", "--memory-seconds", "0.2"]
    assert bench.main([*argv, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "STOPPED after the 0.2 s limit" in out and "memory stays bounded" in out
    assert "peak RSS while checking" in out and "memory_budget 1,073,741,824" in out
    memory = json.loads(path.read_text())["memory"]
    assert memory["check"]["stopped"] and not memory["baseline"]["stopped"]
    assert memory["baseline"]["peak_rss_bytes"] > 10 << 20  # python + jax, at least
    assert memory["memory_budget"] == 1 << 30


def test_memory_mode_reports_a_finished_check(tmp_path, capsys):
    path = tmp_path / "memory.json"
    argv = ["--memory", "--memory-params", "300", "--memory-batch", "2"]
    assert bench.main([*argv, "--memory-seconds", "300", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "batch 2" in out and "The check finished in" in out and "ok=True" in out
    memory = json.loads(path.read_text())["memory"]
    assert memory["batch"] == 2 and not memory["check"]["stopped"]
    assert memory["check"]["peak_rss_bytes"] > memory["baseline"]["peak_rss_bytes"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--repeats", "0"),
        ("--memory-batch", "0"),
        ("--params", "-1"),
        ("--params", "0"),
        ("--widths", "2.5"),
        ("--memory-seconds", "nan"),
        ("--max-loop-params", "many"),
        ("--suite-size", "91"),
        ("--gpu-full", "0"),
        ("--gpu-budget", "-1"),
    ],
)
def test_bench_rejects_a_bad_option(option, value, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main([option, value])
    assert exited.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err


def test_torch_checks_the_same_model_as_jax():
    torch = pytest.importorskip("torch")
    model = _bench.build_model(3)
    loss, weights = _bench_torch.torch_loss(torch, model)
    expected = _bench.mlp_loss(*jax.tree.map(jnp.asarray, model))
    np.testing.assert_allclose(loss(*weights).item(), float(expected), rtol=1e-14)
    assert _bench_torch.torch_gradcheck(torch, model, fast=False)
    assert _bench_torch.torch_gradcheck(torch, model, fast=True)


def test_plot_of_times_against_n(tmp_path):
    pytest.importorskip("matplotlib")
    results = [
        {"N": n, "jaxcheck": {"first": [t]}, "torch_slow": {"time": [3 * t]}}
        for n, t in ((100, 0.1), (1000, 0.5))
    ]
    path = tmp_path / "times.png"
    _bench_plot.plot_times(results, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_gpu_mode_runs_every_measurement_on_the_default_device(tmp_path, capsys):
    path = tmp_path / "gpu.json"
    argv = ["--gpu", "--gpu-full", "100", "--gpu-fast", "300"]
    argv += ["--gpu-torch", "100", "--gpu-float32", "100", "--json", str(path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| jaxcheck")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "jaxcheck full",
        "jaxcheck fast",
    ]
    measured = json.loads(path.read_text())["gpu"]
    assert measured["full"][0]["ok"] and measured["fast"][0]["ok"]
    assert measured["full"][0]["compile_s"] <= measured["full"][0]["first_s"]
    float32 = measured["float32"][0]
    assert float32["default"]["ok"] and float32["highest"]["ok"]  # CPU: no TF32


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_gpu_mode_skips_what_exceeds_its_time_budget(capsys):
    argv = ["--gpu", "--gpu-full", "100", "--gpu-fast", "300"]
    argv += ["--gpu-float32", "100", "--gpu-budget", "1e-9"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    # full and fast (and torch's row, where torch is installed); float32 apart
    assert out.count("skipped: time budget") == 2 + (_has_torch() and 1)


def test_suite_functions_have_distinct_jaxprs():
    from bench_suite import MAX_SUITE_SIZE, suite_functions

    params = {"a": jnp.linspace(0.1, 0.9, 5), "b": jnp.linspace(-1.0, 1.0, 5)}
    funs = suite_functions(MAX_SUITE_SIZE)
    texts = {str(jax.make_jaxpr(f)(params)) for f in funs}
    assert len(texts) == MAX_SUITE_SIZE
    with pytest.raises(ValueError, match="`count` must be in 1..90"):
        suite_functions(MAX_SUITE_SIZE + 1)


def test_suite_child_times_each_call_of_a_tool():
    from bench_suite import _child, _row

    run = _child("check_grad", 2)
    assert run["ok"] and len(run["times"]) == 2 and min(run["times"]) > 0
    row = _row("check_grad", run, run)
    assert row["median_ratio"] == row["total_ratio"] == 1.0
