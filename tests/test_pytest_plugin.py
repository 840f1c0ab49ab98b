"""The pytest plugin, run inside pytest with `pytester`: the `gradcheck` fixture,
its defaults from the ini file and the command line, the located report in the
output of a failed test, the slow-check marker, x64, and the entry point."""

import json
import pathlib
import tomllib

import pytest

pytestmark = pytest.mark.core

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Load the plugin from this checkout, not from whatever jaxcheck is installed;
# hypothesis's plugin would add 1-2 s to every inner session.
PLUGIN = ("-p", "no:jaxcheck", "-p", "jaxcheck._tools.pytest_plugin")
PLUGIN += ("-p", "no:hypothesispytest")

MODEL = """
import jax.numpy as jnp
from helpers import matmul_missing_transpose

PARAMS = {"layers": [{"w": jnp.eye(3) + 0.1 * jnp.arange(9.0).reshape(3, 3)}] * 2}
X = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)

def loss(params, x, mm=jnp.matmul):
    h = jnp.tanh(x @ params["layers"][0]["w"])
    return jnp.sum(jnp.tanh(mm(h, params["layers"][1]["w"])) ** 2)

def buggy_loss(params, x):
    return loss(params, x, mm=matmul_missing_transpose)
"""


def test_fixture_passes_a_right_gradient_and_locates_a_wrong_one(pytester):
    pytester.makepyfile(
        model=MODEL,
        test_model="""
        import jaxcheck
        from model import PARAMS, X, buggy_loss, loss

        def test_right(gradcheck):
            report = gradcheck(loss, PARAMS, X)
            assert report.ok and report.num_entries == 18

        def test_wrong(gradcheck):
            gradcheck(buggy_loss, PARAMS, X)

        def test_report_does_not_fail(gradcheck):
            assert not gradcheck.report(buggy_loss, PARAMS, X).ok

        def test_plain_assert_grad(gradcheck):
            jaxcheck.assert_grad(buggy_loss, PARAMS, X)
        """,
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=2, failed=2)
    # fnmatch reads "[" as a character class: "[[]" is a literal bracket.
    lines = [
        "*test_wrong*",
        "*gradcheck(buggy_loss, PARAMS, X)",
        "E *GradCheckError: FAILED: 6 of 18 entries differ, in ['layers'][1]['w']; *",
        "E * Gradient check of `buggy_loss`*",
        "E * leaf *",
        "E * ['layers'][0]['w'] *0  ok",
        "E * ['layers'][1]['w'] *6  mismatch",
        "E * worst entries:",
        "E * ['layers'][1]['w'][*",
        "E * FAILED: 6 of 18 entries differ, in ['layers'][1]['w']; *",
        "test_model.py:9: GradCheckError",
    ]
    result.stdout.fnmatch_lines([line.replace("[", "[[]") for line in lines])
    # The fixture's own frames are hidden: the failure points at the test line.
    result.stdout.no_fnmatch_line("*_pytest_plugin.py*")
    result.stdout.no_fnmatch_line("*_check.py*")  # nor those of assert_grad


@pytest.mark.parametrize("columns", [80, 200])
def test_the_short_summary_shows_the_verdict(pytester, monkeypatch, columns):
    """pytest's summary shows the first line of the error, cut to the terminal:
    it is the verdict, so the failing leaf shows as soon as the width allows."""
    monkeypatch.setenv("COLUMNS", str(columns))
    # pytest does not cut the summary at all on CI (CI or BUILD_NUMBER set).
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    pytester.makepyfile(
        model=MODEL,
        test_model="""
        from model import PARAMS, X, buggy_loss

        def test_wrong(gradcheck):
            gradcheck(buggy_loss, PARAMS, X)
        """,
    )
    result = pytester.runpytest(*PLUGIN, "-rf")
    [line] = [x for x in result.stdout.lines if x.startswith("FAILED test_model")]
    assert len(line) <= columns
    assert "jaxcheck.GradCheckError: FAILED: 6 of 1" in line
    if columns >= 120:
        assert "in ['layers'][1]['w']; worst ['layers'][1]['w'][" in line


def test_report_dir_keeps_json_and_png_of_failed_checks(pytester):
    pytester.makepyfile(
        model=MODEL,
        test_model="""
        from model import PARAMS, X, buggy_loss, loss

        def test_right(gradcheck):
            gradcheck(loss, PARAMS, X)

        def test_wrong(gradcheck):
            gradcheck(buggy_loss, PARAMS, X)
        """,
    )
    result = pytester.runpytest(*PLUGIN, "--jaxcheck-report-dir=reports")
    result.assert_outcomes(passed=1, failed=1)
    reports = pytester.path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "test_model.py_test_wrong.json",
        "test_model.py_test_wrong.png",
    ]
    data = json.loads((reports / "test_model.py_test_wrong.json").read_text())
    assert data["worst"][0]["location"].startswith("['layers'][1]['w'][")
    result.stdout.fnmatch_lines(
        [f"E *Report saved in {reports}: test_model.py_test_wrong.json, *.png"]
    )


def _expect_options(pytester, expected):
    pytester.makepyfile(
        f"""
        import jax.numpy as jnp

        def test_options(gradcheck):
            assert gradcheck.options == {expected!r}
            report = gradcheck(lambda w: jnp.sum(w**3), jnp.ones(2), rtol=0.25)
            assert report.method == {expected["method"]!r}
        """
    )


def test_defaults_come_from_the_ini_file_and_the_command_line(pytester):
    pytester.makeini(
        """
        [pytest]
        jaxcheck_rtol = 0.5
        jaxcheck_method = forward
        """
    )
    _expect_options(pytester, {"rtol": 0.5, "method": "forward"})
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    _expect_options(
        pytester,
        {"rtol": 1e-3, "atol": 1e-9, "eps": 1e-4, "method": "central", "mode": "fast"},
    )
    result = pytester.runpytest(
        *PLUGIN,
        "--jaxcheck-rtol=1e-3",
        "--jaxcheck-atol=1e-9",
        "--jaxcheck-eps=1e-4",
        "--jaxcheck-method=central",
        "--jaxcheck-mode=fast",
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "ini, message",
    [
        ("jaxcheck_rtol = tight", "`jaxcheck_rtol` must be a number, got 'tight'"),
        ("jaxcheck_method = sideways", "`jaxcheck_method` must be one of central,"),
        ("jaxcheck_mode = turbo", "`jaxcheck_mode` must be one of full, fast, sample"),
    ],
)
def test_bad_ini_value_is_a_usage_error(pytester, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_bad_mode_on_the_command_line_fails_once_at_start_up(pytester):
    pytester.makepyfile("def test_a(gradcheck): pass\ndef test_b(gradcheck): pass")
    result = pytester.runpytest(*PLUGIN, "--jaxcheck-mode", "turbo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*`--jaxcheck-mode`*must be one of full*'turbo'*"])
    assert "test_a" not in result.stdout.str()


def test_slow_marker_skips_unless_asked(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slow_gradcheck
        def test_full_check():
            pass

        def test_quick():
            pass
        """
    )
    result = pytester.runpytest(*PLUGIN, "-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*slow_gradcheck: run with --jaxcheck-slow*"])
    pytester.runpytest(*PLUGIN, "--jaxcheck-slow").assert_outcomes(passed=2)
    pytester.makeini("[pytest]\njaxcheck_slow = true\n")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)


def test_x64_option_enables_float64_before_collection(pytester, monkeypatch):
    # A fresh process (x64 is a global switch, already on in this one), where
    # JAX's default dtype is float32 unless the option switches x64 on.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        """
        import jax.numpy as jnp

        DTYPE = jnp.ones(1).dtype  # at import, during collection

        def test_dtype(pytestconfig):
            assert str(DTYPE) == pytestconfig.getini("expected_dtype")
        """
    )
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addini("expected_dtype", "")
        """
    )
    pytester.makeini("[pytest]\nexpected_dtype = float64\njaxcheck_x64 = true\n")
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1)


def test_entry_point_registers_the_plugin():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["pytest11"]
    assert entry == {"jaxcheck": "jaxcheck._tools.pytest_plugin"}
