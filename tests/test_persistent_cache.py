"""`enable_compilation_cache`: a second process loads a check's compiled programs
from disk instead of compiling them; the settings are restored on close; the
pytest plugin and the CLI turn it on; bad directories are refused."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import jaxcheck

pytestmark = pytest.mark.core

# As in test_pytest_plugin: this checkout's plugin, without hypothesis's.
PLUGIN = ("-p", "no:jaxcheck", "-p", "jaxcheck._tools.pytest_plugin")
PLUGIN += ("-p", "no:hypothesispytest")

# A check in a fresh process, with the cache in argv[1]. It prints the report and
# how many programs JAX says it found in the persistent cache and compiled anew.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxcheck

    events = []
    jax.monitoring.register_event_listener(lambda name, **_: events.append(name))
    jaxcheck.enable_compilation_cache(sys.argv[1])

    def loss(params, x):
        return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)

    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), "b": jnp.ones(3)}
    report = jaxcheck.check_grad(loss, params, jnp.ones((5, 4)), mode=sys.argv[2])
    print(json.dumps({
        "report": report.to_dict(),
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "misses": events.count("/jax/compilation_cache/cache_misses"),
    }, default=str))
    """
)


def _run_child(directory, mode="full"):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_verdicts(a, b):
    for key in ("ok", "rel_diff", "leaves"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_second_process_loads_every_program(tmp_path, mode):
    first = _run_child(tmp_path, mode)
    files = set(os.listdir(tmp_path))
    assert first["misses"] > 0 and files  # compiled, and kept on disk
    second = _run_child(tmp_path, mode)
    assert second["misses"] == 0, "the second process compiled something again"
    # (older JAX also loads a few programs back in the first process)
    assert second["hits"] == first["hits"] + first["misses"]
    assert set(os.listdir(tmp_path)) == files  # nothing new written
    assert first["report"]["ok"] is True
    _same_verdicts(first["report"], second["report"])


def test_close_restores_jax_settings(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    with jaxcheck.enable_compilation_cache(tmp_path / "new") as cache:
        assert cache.directory == tmp_path / "new" and cache.directory.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "new")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    assert jax.config.jax_compilation_cache_dir == before


def test_default_directory_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with jaxcheck.enable_compilation_cache() as cache:
        assert cache.directory == tmp_path / "jaxcheck"


def test_bad_directories_are_refused(tmp_path):
    with pytest.raises(TypeError, match="`directory` must be a path"):
        jaxcheck.enable_compilation_cache(123)
    with pytest.raises(ValueError, match="`directory` is empty"):
        jaxcheck.enable_compilation_cache("")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="`directory` .*is not a directory"):
        jaxcheck.enable_compilation_cache(a_file)
    with pytest.raises(ValueError, match="`directory` .*cannot be created"):
        jaxcheck.enable_compilation_cache(a_file / "below")
    assert jax.config.jax_compilation_cache_dir is None  # nothing was turned on


def test_pytest_option_turns_the_cache_on(pytester):
    # A function and shape of its own: the in-process run compiles afresh.
    pytester.makepyfile(
        """
        import jax.numpy as jnp

        def test_own(gradcheck):
            gradcheck(lambda w: jnp.sum(jnp.cosh(w) * w**5), jnp.arange(1.0, 14.0))
        """
    )
    result = pytester.runpytest(*PLUGIN, "--jaxcheck-cache-dir", "xla-cache")
    result.assert_outcomes(passed=1)
    assert any((pytester.path / "xla-cache").iterdir())
    assert jax.config.jax_compilation_cache_dir is None  # closed with the session


def test_pytest_option_refuses_a_file(pytester):
    pytester.makefile(".txt", taken="")
    result = pytester.runpytest(*PLUGIN, "--jaxcheck-cache-dir", "taken.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--jaxcheck-cache-dir: `directory`*not a directory*"])


_CUBE_TEST = """
import jax.numpy as jnp

def test_cube(gradcheck):
    gradcheck(lambda w: jnp.sum(w**3), jnp.arange(1.0, 4.0))
"""


def _default_cache(pytester):
    return pytester.path / ".pytest_cache" / "d" / "jaxcheck-xla"


def test_the_plugin_keeps_programs_in_pytests_cache_by_default(pytester):
    # A function and shape of its own: the in-process run compiles afresh.
    pytester.makepyfile(
        """
        import jax.numpy as jnp

        def test_unique(gradcheck):
            gradcheck(lambda w: jnp.sum(jnp.sinh(w) * w**7), jnp.arange(1.0, 12.0))
        """
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    assert any(_default_cache(pytester).iterdir())
    assert jax.config.jax_compilation_cache_dir is None  # closed with the session


def test_the_default_cache_waits_for_the_fixture(pytester):
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    assert not _default_cache(pytester).exists()


@pytest.mark.parametrize(
    "how", [("--jaxcheck-no-cache",), ("-p", "no:cacheprovider"), "ini"]
)
def test_the_default_cache_can_be_turned_off(pytester, how):
    pytester.makepyfile(_CUBE_TEST)
    if how == "ini":
        pytester.makeini("[pytest]\njaxcheck_cache = false\n")
        how = ()
    pytester.runpytest(*PLUGIN, *how).assert_outcomes(passed=1)
    assert not _default_cache(pytester).exists()


def test_a_cache_directory_the_user_configured_stands(pytester, tmp_path):
    pytester.makepyfile(_CUBE_TEST)
    own = str(tmp_path / "own")
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", own)
    try:
        pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
        assert jax.config.jax_compilation_cache_dir == own
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
    assert not _default_cache(pytester).exists()


def test_the_cache_is_trimmed_to_its_size_when_the_session_ends(pytester):
    pytester.makepyfile(_CUBE_TEST)
    pytester.runpytest(*PLUGIN, "--jaxcheck-cache-size", "0").assert_outcomes(passed=1)
    assert not any(_default_cache(pytester).iterdir())


def test_trim_deletes_the_oldest_files_first(tmp_path):
    from jaxcheck._runtime.compilation_cache import trim

    for age, name in enumerate(["new", "mid", "old"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1e9 - age * 1000, 1e9 - age * 1000))
    assert trim(tmp_path, 250) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid", "new"]
    assert trim(tmp_path, 0) == 2 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("size", ["-1", "lots", "inf"])
def test_a_bad_cache_size_is_a_usage_error(pytester, size):
    pytester.makepyfile(_CUBE_TEST)
    result = pytester.runpytest(*PLUGIN, f"--jaxcheck-cache-size={size}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jaxcheck_cache_size*non-negative number of MB*"])


def test_max_bytes_is_validated():
    with pytest.raises(TypeError, match="`max_bytes` must be an int"):
        jaxcheck.enable_compilation_cache(max_bytes=1.5)
    with pytest.raises(ValueError, match="`max_bytes` must be >= 0"):
        jaxcheck.enable_compilation_cache(max_bytes=-1)
    assert jax.config.jax_compilation_cache_dir is None
