"""The pytest plugin: a `gradcheck` fixture, its defaults from the command line or
the ini file, and a marker for slow full checks.

Registered through the `pytest11` entry point, so installing jaxcheck is enough.
It imports jax only when a test asks for `gradcheck` or x64 is switched on, so it
costs nothing in a test suite that does not use it.

Command line (overrides the ini file) and ini settings:

| command line | ini | meaning |
|---|---|---|
| `--jaxcheck-x64` | `jaxcheck_x64 = true` | `jax_enable_x64` before collection |
| `--jaxcheck-rtol R` | `jaxcheck_rtol = R` | default `rtol` of `gradcheck` |
| `--jaxcheck-atol A` | `jaxcheck_atol = A` | default `atol` |
| `--jaxcheck-eps H` | `jaxcheck_eps = H` | default `eps` (one step for all) |
| `--jaxcheck-method M` | `jaxcheck_method = M` | a `method` of `check_grad` |
| `--jaxcheck-mode M` | `jaxcheck_mode = M` | a `mode`: full, fast or sample |
| `--jaxcheck-slow` | `jaxcheck_slow = true` | run tests marked `slow_gradcheck` |
| `--jaxcheck-report-dir D` | `jaxcheck_report_dir = D` | failed reports as JSON, PNG |
| `--jaxcheck-cache-dir D` | `jaxcheck_cache_dir = D` | persistent compilation cache |
| `--jaxcheck-no-cache` | `jaxcheck_cache = false` | no default cache (below) |
| `--jaxcheck-cache-size MB` | `jaxcheck_cache_size = MB` | its size limit (256) |

(An explicit `--jaxcheck-cache-dir` gets a size limit only when one is given.
Under pytest-xdist the workers share the directory and the controller trims it
once they are done.)

The persistent compilation cache is on by default: at the first use of the
`gradcheck` fixture (so a session that does not check imports no jax), in
`.pytest_cache/d/jaxcheck-xla` (pytest's cache directory), trimmed to its size
limit, oldest programs first, when the session ends. A second run of the suite
then loads the programs instead of compiling them. It is left off when JAX
already has a cache directory (`JAX_COMPILATION_CACHE_DIR` or
`jax_compilation_cache_dir`: the user's choice stands), when pytest's cache is
disabled (`-p no:cacheprovider`), and with `--jaxcheck-no-cache`.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable
from typing import Any

import pytest

_FLOATS = ("rtol", "atol", "eps")
_MODES = ("full", "fast", "sample")  # check_grad's; named here to keep jax unloaded
MARKER = "slow_gradcheck"
_OPTIONS = pytest.StashKey[dict]()
_CACHE = pytest.StashKey[Any]()
_CACHE_DECIDED = pytest.StashKey[bool]()
DEFAULT_CACHE_MB = 256
CACHE_SUBDIRECTORY = "jaxcheck-xla"  # under pytest's cache directory


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jaxcheck", "gradient checks with jaxcheck")
    group.addoption(
        "--jaxcheck-x64",
        action="store_true",
        default=None,
        help="enable jax_enable_x64 before collection (float64 checks are sharpest)",
    )
    parser.addini("jaxcheck_x64", "enable jax_enable_x64", type="bool", default=False)
    for name in _FLOATS:
        group.addoption(
            f"--jaxcheck-{name}",
            type=float,
            default=None,
            metavar=name.upper(),
            help=f"default `{name}` of the gradcheck fixture",
        )
        parser.addini(f"jaxcheck_{name}", f"default `{name}` of gradcheck", default="")
    group.addoption(
        "--jaxcheck-method",
        default=None,
        help="default finite-difference method of the gradcheck fixture "
        "(central, forward, backward, ...; see check_grad)",
    )
    parser.addini("jaxcheck_method", "default method of gradcheck", default="")
    group.addoption(
        "--jaxcheck-mode",
        default=None,
        help="default mode of the gradcheck fixture (full, fast or sample)",
    )
    parser.addini("jaxcheck_mode", "default mode of gradcheck", default="")
    group.addoption(
        "--jaxcheck-slow",
        action="store_true",
        default=None,
        help=f"run the tests marked {MARKER} (skipped otherwise)",
    )
    parser.addini(
        "jaxcheck_slow", f"run the tests marked {MARKER}", type="bool", default=False
    )
    group.addoption(
        "--jaxcheck-report-dir",
        default=None,
        metavar="DIR",
        help="write the report of each failed gradcheck to DIR as JSON and PNG",
    )
    parser.addini(
        "jaxcheck_report_dir", "directory for reports of failed checks", default=""
    )
    group.addoption(
        "--jaxcheck-cache-dir",
        default=None,
        metavar="DIR",
        help="keep compiled programs in DIR (see enable_compilation_cache), so the "
        "next run of the suite skips compiling them",
    )
    parser.addini(
        "jaxcheck_cache_dir", "persistent compilation cache directory", default=""
    )
    group.addoption(
        "--jaxcheck-no-cache",
        action="store_false",
        dest="jaxcheck_cache",
        default=None,
        help="do not keep compiled programs in pytest's cache directory (the "
        "default at the first use of gradcheck)",
    )
    parser.addini(
        "jaxcheck_cache",
        "keep compiled programs in pytest's cache directory",
        type="bool",
        default=True,
    )
    group.addoption(
        "--jaxcheck-cache-size",
        default=None,
        metavar="MB",
        help=f"size limit of the compilation cache (default {DEFAULT_CACHE_MB}); "
        "the oldest programs are deleted when the session ends",
    )
    parser.addini(
        "jaxcheck_cache_size", "size limit of the compilation cache, MB", default=""
    )


def _setting(config: pytest.Config, name: str) -> Any:
    """The command-line value of `name`, else the ini value ("" when unset)."""
    value = config.getoption(f"jaxcheck_{name}")
    return config.getini(f"jaxcheck_{name}") if value is None else value


def check_options(config: pytest.Config) -> dict[str, Any]:
    """The defaults of the `gradcheck` fixture, validated."""
    options: dict[str, Any] = {}
    for name in _FLOATS:
        value = _setting(config, name)
        if value in ("", None):
            continue
        try:
            options[name] = float(value)
        except ValueError:
            raise pytest.UsageError(
                f"ini option `jaxcheck_{name}` must be a number, got {value!r}; "
                f"write e.g. `jaxcheck_{name} = 1e-6` or remove it."
            ) from None
    method = _setting(config, "method")
    if method:
        from .._base.validate import METHODS  # imports jax: only when a method is set

        if method not in METHODS:
            raise pytest.UsageError(
                f"`--jaxcheck-method` / ini option `jaxcheck_method` must be one of "
                f"{', '.join(METHODS)}, got {method!r}."
            )
        options["method"] = method
    mode = _setting(config, "mode")
    if mode:
        if mode not in _MODES:  # once, at start-up, not in every test
            raise pytest.UsageError(
                f"`--jaxcheck-mode` / ini option `jaxcheck_mode` must be one of "
                f"{', '.join(_MODES)}, got {mode!r}."
            )
        options["mode"] = mode
    return options


def cache_limit(config: pytest.Config) -> int:
    """The compilation cache's size limit in bytes, validated."""
    value = _setting(config, "cache_size")
    if value in ("", None):
        return DEFAULT_CACHE_MB << 20
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = float("nan")
    if not megabytes >= 0 or megabytes == float("inf"):
        raise pytest.UsageError(
            "`--jaxcheck-cache-size` / ini option `jaxcheck_cache_size` must be a "
            f"non-negative number of MB, got {value!r}; e.g. `jaxcheck_cache_size = "
            f"{DEFAULT_CACHE_MB}`."
        )
    return int(megabytes * (1 << 20))


def _start_default_cache(config: pytest.Config) -> None:
    """Turns the default cache on, at the fixture's first use, unless the user
    chose otherwise (their own cache directory, no pytest cache, or opted out)."""
    if config.stash.get(_CACHE_DECIDED, False):
        return
    config.stash[_CACHE_DECIDED] = True
    if not _setting(config, "cache") or getattr(config, "cache", None) is None:
        return
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's (or the option's) own
        return
    from .._runtime.compilation_cache import enable_compilation_cache

    directory = config.cache.mkdir(CACHE_SUBDIRECTORY)
    # Under pytest-xdist the workers share the directory: only the controller
    # trims it, once every worker is done (see pytest_unconfigure).
    worker = hasattr(config, "workerinput")
    config.stash[_CACHE] = enable_compilation_cache(
        directory, max_bytes=None if worker else cache_limit(config)
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: a slow, full gradient check; skipped unless --jaxcheck-slow "
        "or `jaxcheck_slow = true`",
    )
    config.stash[_OPTIONS] = check_options(config)
    limit = cache_limit(config)  # validated at start-up, not at the first check
    if _setting(config, "x64"):
        import jax

        jax.config.update("jax_enable_x64", True)
    directory = _setting(config, "cache_dir")
    if directory:
        from .._runtime.compilation_cache import enable_compilation_cache

        path = pathlib.Path(config.rootpath, directory)  # relative: from rootdir
        chosen = _setting(config, "cache_size") not in ("", None)
        try:
            config.stash[_CACHE] = enable_compilation_cache(
                path,
                max_bytes=limit
                if chosen and not hasattr(config, "workerinput")
                else None,
            )
        except (TypeError, ValueError) as error:
            raise pytest.UsageError(f"--jaxcheck-cache-dir: {error}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = config.stash.get(_CACHE, None)
    if cache is not None:
        cache.close()
    elif _is_xdist_controller(config) and _setting(config, "cache"):
        # The workers kept programs in the default directory; trim it now.
        if getattr(config, "cache", None) is not None:
            from .._runtime.compilation_cache import trim

            trim(config.cache.mkdir(CACHE_SUBDIRECTORY), cache_limit(config))


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands the tests to pytest-xdist workers."""
    return not hasattr(config, "workerinput") and bool(
        getattr(config.option, "numprocesses", None)
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if _setting(config, "slow"):
        return
    skip = pytest.mark.skip(
        reason=f"{MARKER}: run with --jaxcheck-slow or `jaxcheck_slow = true`"
    )
    for item in items:
        if item.get_closest_marker(MARKER):
            item.add_marker(skip)


class GradCheck:
    """The `gradcheck` fixture: `assert_grad` with the session's defaults.

    `gradcheck(fun, params, *args, **options)` checks and fails the test with the
    report table when the gradient is wrong; `gradcheck.report(...)` returns the
    report without failing. Keyword options override the defaults in `options`.
    """

    def __init__(
        self,
        options: dict[str, Any],
        report_dir: pathlib.Path | None = None,
        name: str = "gradcheck",
    ):
        self.options = dict(options)
        self.report_dir = report_dir
        self.name = re.sub(r"[^\w.-]+", "_", name).strip("_")

    def report(
        self, fun: Callable[..., Any], params: Any, *args: Any, **options: Any
    ) -> Any:
        from .._checks.grad import check_grad

        return check_grad(fun, params, *args, **(self.options | options))

    def __call__(
        self, fun: Callable[..., Any], params: Any, *args: Any, **options: Any
    ) -> Any:
        __tracebackhide__ = True
        from .._base.errors import GradCheckError, failure_message

        report = self.report(fun, params, *args, **options)
        if not report.ok:
            raise GradCheckError(failure_message(report) + self._save(report))
        return report

    def _save(self, report: Any) -> str:
        """Writes `report` to the report directory; says where, for the message."""
        if self.report_dir is None:
            return ""
        self.report_dir.mkdir(parents=True, exist_ok=True)
        json_path = self.report_dir / f"{self.name}.json"
        json_path.write_text(report.to_json() + "\n")
        saved = [json_path.name]
        try:
            report.plot(self.report_dir / f"{self.name}.png")
            saved.append(f"{self.name}.png")
        except ImportError:
            saved.append("no PNG: matplotlib is not installed")
        return f"\nReport saved in {self.report_dir}: {', '.join(saved)}"


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradCheck:
    """Checks a gradient entry by entry and fails the test with a located report.

    Defaults come from `--jaxcheck-rtol/atol/eps/method` or the matching
    `jaxcheck_*` ini options; keyword arguments override them per call. With
    `--jaxcheck-report-dir`, a failed check also writes its report there, named
    after the test, as JSON and (with matplotlib) PNG; a relative DIR is taken
    from the rootdir.
    """
    _start_default_cache(request.config)
    directory = _setting(request.config, "report_dir")
    return GradCheck(
        request.config.stash[_OPTIONS],
        pathlib.Path(request.config.rootpath, directory) if directory else None,
        request.node.nodeid,
    )
