"""The pytest plugin: a `gradcheck` fixture, its defaults from the command line or
the ini file, and a marker for slow full checks.

Registered through the `pytest11` entry point, so installing jaxcheck is enough.
It imports jax only when a test asks for `gradcheck` or x64 is switched on, so it
costs nothing in a test suite that does not use it. Its command-line and ini
options, and how they are read, are in `_tools.pytest_options`.

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

from .pytest_options import MARKER, add_options, cache_limit, check_options, setting

_OPTIONS = pytest.StashKey[dict]()
_CACHE = pytest.StashKey[Any]()
_CACHE_DECIDED = pytest.StashKey[bool]()
CACHE_SUBDIRECTORY = "jaxcheck-xla"  # under pytest's cache directory


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declares the plugin's options (see `_tools.pytest_options`)."""
    add_options(parser)


def _start_default_cache(config: pytest.Config) -> None:
    """Turns the default cache on, at the fixture's first use, unless the user
    chose otherwise (their own cache directory, no pytest cache, or opted out)."""
    if config.stash.get(_CACHE_DECIDED, False):
        return
    config.stash[_CACHE_DECIDED] = True
    if not setting(config, "cache") or getattr(config, "cache", None) is None:
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
    if setting(config, "x64"):
        import jax

        jax.config.update("jax_enable_x64", True)
    directory = setting(config, "cache_dir")
    if directory:
        from .._runtime.compilation_cache import enable_compilation_cache

        path = pathlib.Path(config.rootpath, directory)  # relative: from rootdir
        chosen = setting(config, "cache_size") not in ("", None)
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
    elif _is_xdist_controller(config) and setting(config, "cache"):
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
    if setting(config, "slow"):
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
    directory = setting(request.config, "report_dir")
    return GradCheck(
        request.config.stash[_OPTIONS],
        pathlib.Path(request.config.rootpath, directory) if directory else None,
        request.node.nodeid,
    )
