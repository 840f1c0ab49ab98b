"""`jaxcheck check TARGET`: targets as files and modules, factories returning a tuple
or a dict, the report as text, JSON and PNG, and the exit codes 0, 1 and 2."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import jaxcheck
from jaxcheck._tools.cli import main

pytestmark = pytest.mark.core

ROOT = pathlib.Path(__file__).resolve().parent.parent

FACTORIES = """
import jax.numpy as jnp
from helpers import init_mlp, matmul_missing_transpose, mlp_apply, mlp_data

PARAMS = init_mlp()
X, Y = mlp_data()


def loss(params, x, y, matmul=jnp.matmul):
    out = mlp_apply(params, x, matmul=matmul, buggy_layer=1)
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def buggy_loss(params, x, y):
    return loss(params, x, y, matmul=matmul_missing_transpose)


def good():
    return loss, PARAMS, X, Y


def bad():
    return buggy_loss, PARAMS, X, Y


def as_dict():
    return {"fun": loss, "params": PARAMS, "args": (X, Y), "rtol": 1e-3}


def vector_output():
    return (lambda p: p["w"] * 2, {"w": jnp.ones(3)})


def args_not_a_tuple():
    return {"fun": loss, "params": PARAMS, "args": X}


def misspelled():
    return {"fun": loss, "params": PARAMS, "args": (X, Y), "methdo": "forward"}


def returns_none():
    return None


def raises():
    raise RuntimeError("no data today")


NOT_CALLABLE = 3
"""


@pytest.fixture
def target(tmp_path, monkeypatch):
    """`path:factory` of a factory in a fresh file; sys.path restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "factories.py").write_text(FACTORIES)
    return lambda name: f"{tmp_path / 'factories.py'}:{name}"


def test_right_gradient_exits_0(target, capsys):
    assert main(["check", target("good")]) == 0
    out = capsys.readouterr().out
    assert "OK: all 86 entries of 6 leaves agree" in out
    assert "['layers'][1]['w']" in out


def test_wrong_gradient_exits_1_and_names_the_leaf(target, capsys, tmp_path):
    json_path, png_path = tmp_path / "report.json", tmp_path / "report.png"
    code = main(
        ["check", target("bad"), "--json", str(json_path), "--plot", str(png_path)]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED:" in out and "in ['layers'][1]['w']" in out
    data = json.loads(json_path.read_text())
    assert data["ok"] is False
    assert data["worst"][0]["location"].startswith("['layers'][1]['w'][")
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_dict_factory_and_command_line_options(target, capsys, tmp_path):
    json_path = tmp_path / "r.json"
    assert main(["check", target("as_dict"), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("OK: all 86 entries")
    args = ["check", target("as_dict"), "--method", "forward", "--json", str(json_path)]
    assert main([*args, "--quiet", "--rtol", "1e-2", "--eps", "1e-6"]) == 0
    assert json.loads(json_path.read_text())["method"] == "forward"
    # A step far too large for forward differences: the command line wins.
    assert main([*args, "--quiet", "--eps", "0.5", "--atol", "0"]) == 1
    capsys.readouterr()


def test_cache_dir_keeps_the_compiled_programs(target, capsys, tmp_path, monkeypatch):
    import jax

    from jaxcheck._engine import jaxpr as _jaxpr

    # A problem this small runs op by op; make it compile, as a larger one does.
    monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)
    cache = tmp_path / "xla"
    assert main(["check", target("good"), "--quiet", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("OK: all 86 entries")
    assert any(cache.iterdir())
    assert jax.config.jax_compilation_cache_dir is None  # closed after the check
    (tmp_path / "a_file").write_text("")
    args = ["check", target("good"), "--cache-dir", str(tmp_path / "a_file")]
    assert main(args) == 2
    assert "--cache-dir: `directory`" in capsys.readouterr().err


def test_module_target(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))
    package = tmp_path / "mymodels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mlp.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "mymodels.mlp:bad", "--quiet"]) == 1
    assert "['layers'][1]['w']" in capsys.readouterr().out
    for name in [m for m in sys.modules if m.startswith("mymodels")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    "make_target, message",
    [
        (lambda t: "no_colon", "TARGET must be `package.module:factory`"),
        (lambda t: "nowhere/file.py:make", "TARGET file 'nowhere/file.py' does not"),
        (lambda t: "no_such_module_xyz:make", "'no_such_module_xyz' was not found"),
        (lambda t: t("missing"), "has no callable `missing`"),
        (lambda t: t("NOT_CALLABLE"), "has no callable `NOT_CALLABLE` (it is a int)"),
        (lambda t: t("returns_none"), "must return (fun, params, *args)"),
        (lambda t: t("vector_output"), "scalar"),
        (lambda t: t("raises"), "raised; see the traceback above"),
    ],
)
def test_usage_errors_exit_2(target, capsys, make_target, message):
    assert main(["check", make_target(target)]) == 2
    assert message in capsys.readouterr().err


def test_unwritable_output_exits_2(target, capsys, tmp_path):
    out = str(tmp_path / "missing_dir" / "r.json")
    assert main(["check", target("good"), "--json", out]) == 2
    assert "could not write the report" in capsys.readouterr().err


def test_bad_option_exits_2(target, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", target("good"), "--method", "sideways"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_exit_code_of_the_command(tmp_path):
    (tmp_path / "factories.py").write_text(FACTORIES)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxcheck._tools.cli",
            "check",
            "factories.py:bad",
            "--x64",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "float64" in run.stdout
    assert "FAILED: " in run.stdout


def test_version_and_help_of_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxcheck {jaxcheck.__version__}"
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    help_text = capsys.readouterr().out
    lines = help_text.splitlines()
    for option in ("--method", "--atol", "--rtol", "--chunk-size", "--samples"):
        k = next(i for i, x in enumerate(lines) if x.strip().startswith(option))
        same_line = len(lines[k].strip().split(maxsplit=2)) == 3
        next_line = lines[k + 1].startswith(" " * 10)
        assert same_line or next_line, f"{option} has no help text"


def test_an_unknown_option_shows_the_command_usage(target, capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", target("good"), "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: jaxcheck check")
    assert "unrecognized arguments: --bogus" in err


def test_a_factory_dict_is_validated(target, capsys):
    assert main(["check", target("args_not_a_tuple")]) == 2
    assert "`args` in the dict" in capsys.readouterr().err
    assert main(["check", target("misspelled")]) == 2
    assert "unknown key 'methdo'; did you mean 'method'?" in capsys.readouterr().err


def test_sample_mode_takes_samples_and_seed(target, capsys):
    argv = ["check", target("bad"), "--mode", "sample", "--samples", "4"]
    assert main([*argv, "--seed", "3", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED") and "['layers'][1]['w']" in out
