"""Every example script runs, and its own assertions hold."""

import pathlib
import re
import runpy

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


# The lines each example exists to show (regular expressions, searched in order).
KEY_LINES = {
    "custom_vjp_log1pexp": [
        r"OK: all 6 entries of 2 leaves agree",
        r"FAILED: 6 of 6 entries differ, in \['b'\], \['w'\]; worst \['w'\]\[",
    ],
    "dropout_fixed_key": [
        r"fixed key: OK: all 84 entries of 3 leaves agree",
        r"different keys: FAILED: 84 of 84 entries differ",
    ],
    "equinox_model": [
        r"OK: all 171 entries of 6 leaves agree",
        r"FAILED: \d+ of 171 entries differ, in \.blocks\[1\]\.weight; worst "
        r"\.blocks\[1\]\.weight\[",
    ],
    "flax_model": [
        r"OK: all 97 entries of 4 leaves agree",
        r"FAILED: \d+ of 97 entries differ, in \['hidden'\]",
    ],
    "float32_model": [
        r"float32 .* 0  ok",
        r"OK: all 92 entries of 4 leaves agree",
        r"rel diff \d\.\de-0[78]: the float32 gradient's own rounding",
        r"FAILED: 1 of 92 entries differ, in \['b1'\]; worst \['b1'\]\[3\]",
    ],
    "hard_cases": [
        r"float64 layer, rule 1e-5 off +False +pass ✗ +FAIL",
        r"abs at 0, right rule +True +FAIL ✗ +pass",
        r"OK: jaxcheck got every case right",
    ],
    "large_model_fast": [
        r"133,002 parameters",
        r"OK: all 8 leaves \(133002 entries\) agree along random directions",
        r"\[1\]\['w'\]: only row 17 is wrong \(the rest passed the probes\)",
        r"FAILED: \d+ of \d+ entries checked one by one differ, in \[1\]\['w'\]",
        r"Fast mode: directional probes narrowed the 133,002 entries",
    ],
    "multiprocess": [
        r"2 processes, 4 devices",
        r"OK: all 208 entries of 3 leaves agree",
    ],
    "optax_training": [
        r"at initialization: OK: all 42 entries of 4 leaves agree",
        r"loss after 200 steps: ",
        r"after training: FAILED: \d+ of 42 entries differ, in \['hidden'\]",
    ],
    "output_vs_loss": [
        r"differences of output: +dw = \[1\. 0\.\]",
        r"OK: all 3 entries of 2 leaves agree",
        r"Differencing the output instead: FAILED: 2 of 3 entries differ",
    ],
    "softmax_rule": [
        r"OK: the custom_vjp rule of `make_softmax.<locals>.softmax` passed all",
        r"FAILED: bwd rule with cotangent 0 \(seed 0\): 6 of 6 entries differ",
    ],
    "two_sided_differences": [
        r"1e-02 +3\.03010000 +3\.0e-02 +3\.00010000 +1\.0e-04",
        r"default step: rel diff \d\.\de-1\d, ok = True",
    ],
}


def test_every_example_has_its_key_lines():
    assert sorted(KEY_LINES) == sorted(p.stem for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", [str(path)])  # as `python examples/<name>.py`
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    position = 0
    for pattern in KEY_LINES[path.stem]:
        found = re.compile(pattern).search(out, position)
        assert found, (
            f"{path.name} no longer prints /{pattern}/ (after {position}):\n{out}"
        )
        position = found.end()


def test_demo_runs_and_exits_zero(capsys):
    from jaxcheck._tools.cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "J must be the loss" in out
    assert "an entry that does not agree at its first step" in out
    assert "3.000100" in out and "3.030100" in out
    assert "FAILED" in out and "['layers'][2]['b'][0]" in out
