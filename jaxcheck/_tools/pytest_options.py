"""The pytest plugin's options: declared, read (command line over ini file) and
validated once, at start-up.

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
| `--jaxcheck-no-cache` | `jaxcheck_cache = false` | no default cache (see plugin) |
| `--jaxcheck-cache-size MB` | `jaxcheck_cache_size = MB` | its size limit (256) |

(An explicit `--jaxcheck-cache-dir` gets a size limit only when one is given.
Under pytest-xdist the workers share the directory and the controller trims it
once they are done.)
"""

from __future__ import annotations

from typing import Any

import pytest

_FLOATS = ("rtol", "atol", "eps")
_MODES = ("full", "fast", "sample")  # check_grad's; named here to keep jax unloaded
MARKER = "slow_gradcheck"
DEFAULT_CACHE_MB = 256


def add_options(parser: pytest.Parser) -> None:
    """Declares the command-line and ini options of the table above."""
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


def setting(config: pytest.Config, name: str) -> Any:
    """The command-line value of `name`, else the ini value ("" when unset)."""
    value = config.getoption(f"jaxcheck_{name}")
    return config.getini(f"jaxcheck_{name}") if value is None else value


def check_options(config: pytest.Config) -> dict[str, Any]:
    """The defaults of the `gradcheck` fixture, validated."""
    options: dict[str, Any] = {}
    for name in _FLOATS:
        value = setting(config, name)
        if value in ("", None):
            continue
        try:
            options[name] = float(value)
        except ValueError:
            raise pytest.UsageError(
                f"ini option `jaxcheck_{name}` must be a number, got {value!r}; "
                f"write e.g. `jaxcheck_{name} = 1e-6` or remove it."
            ) from None
    method = setting(config, "method")
    if method:
        from .._base.validate import METHODS  # imports jax: only when a method is set

        if method not in METHODS:
            raise pytest.UsageError(
                f"`--jaxcheck-method` / ini option `jaxcheck_method` must be one of "
                f"{', '.join(METHODS)}, got {method!r}."
            )
        options["method"] = method
    mode = setting(config, "mode")
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
    value = setting(config, "cache_size")
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
