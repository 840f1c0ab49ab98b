"""Every example script runs, and its own assertions hold."""

import pathlib
import runpy

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", [str(path)])  # as `python examples/<name>.py`
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "OK:" in out or "ok = True" in out


def test_demo_runs_and_exits_zero(capsys):
    from jaxcheck._cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "J must be the loss" in out
    assert "3.000100" in out and "3.030100" in out
    assert "FAILED" in out and "['layers'][2]['b'][0]" in out
