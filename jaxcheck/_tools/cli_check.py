"""`jaxcheck check TARGET`: a gradient check for CI, with a meaningful exit code.

TARGET is `package.module:factory` or `path/to/file.py:factory`. The factory takes
no arguments and returns `(fun, params, *args)`, or a dict with `fun`, `params`,
optionally `args` and any keyword argument of `check_grad` (such as `grad` or
`rtol`); options given on the command line win over the dict's.

Exit codes: 0 when the gradient is right, 1 when it is wrong, 2 for a usage error
(a bad TARGET, a factory that raises or returns the wrong thing, bad options).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

OK, WRONG, USAGE = 0, 1, 2
_OPTION_NAMES = (
    "method", "mode", "samples", "seed", "eps", "atol", "rtol", "chunk_size"
)  # fmt: skip


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .._base.validate import METHODS

    parser.add_argument(
        "target",
        metavar="TARGET",
        help="package.module:factory or path/to/file.py:factory; the factory "
        "returns (fun, params, *args) or a dict with fun, params, args",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="finite differences: central (default), forward, backward, central4 "
        "(five points) or complex (complex step)",
    )
    parser.add_argument(
        "--mode",
        choices=("full", "fast", "sample"),
        default=None,
        help="full (every entry, default), fast (random directions per leaf, "
        "then the suspect entries) or sample (--samples entries per leaf)",
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="entries per leaf with --mode sample"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seeds fast mode's directions and sample mode's entries (default 0)",
    )
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="one absolute step for every entry "
        "(default: a step per entry from its dtype and magnitude)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        help="absolute tolerance per entry "
        "(default: the entry's error bound plus its dtype's floor)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="relative tolerance per entry "
        "(default: its dtype's floor, e.g. 1e-6 for float64)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="perturbed evaluations per "
        "batch (default: as many as the memory budget allows)",
    )
    parser.add_argument(
        "--x64", action="store_true", help="enable jax_enable_x64 before loading"
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="keep compiled programs in DIR, so the next run skips compiling them",
    )
    parser.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="write heatmaps of the error (matplotlib)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the verdict line"
    )


def _load_factory(target: str) -> Callable[..., Any]:
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise UsageError(
            f"TARGET must be `package.module:factory` or `path/to/file.py:factory`, "
            f"got {target!r}."
        )
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise UsageError(f"TARGET file {where!r} does not exist.")
        directory = os.path.dirname(path)
        sys.path.insert(0, directory)  # as when the file is run as a script
        module_name = "_jaxcheck_target_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())  # as `python -m`
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            if error.name and where.startswith(error.name):
                raise UsageError(
                    f"TARGET module {where!r} was not found (from {os.getcwd()}); "
                    "check the name, or give a path to the file."
                ) from None
            raise
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(
            f"TARGET {target!r}: the module has no callable `{name}`"
            + ("" if factory is None else f" (it is a {type(factory).__name__})")
            + "."
        )
    return factory


def _problem(made: Any, target: str) -> tuple[Any, Any, tuple[Any, ...], dict]:
    """`(fun, params, args, options)` from what the factory returned."""
    if isinstance(made, dict):
        allowed = {"fun", "params", "args", "grad", "memory_budget", *_OPTION_NAMES}
        for key in sorted(set(made) - allowed, key=str):
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"the dict returned by {target} has the unknown key {key!r}{hint} "
                f"It may have {', '.join(sorted(allowed))}."
            )
        if "fun" not in made or "params" not in made:
            raise UsageError(
                f"the dict returned by {target} must have keys `fun` and `params` "
                "and may have `args`, `grad` and options of `check_grad`; got "
                f"keys {sorted(made)}."
            )
        args = made.get("args", ())
        if not isinstance(args, (tuple, list)):
            raise UsageError(
                f"`args` in the dict returned by {target} must be a tuple of the "
                f"further arguments of `fun`, got {type(args).__name__}; write "
                "`args=(x,)` for a single one."
            )
        options = {k: v for k, v in made.items() if k not in ("fun", "params", "args")}
        return made["fun"], made["params"], tuple(args), options
    if isinstance(made, (tuple, list)) and len(made) >= 2 and callable(made[0]):
        return made[0], made[1], tuple(made[2:]), {}
    raise UsageError(
        f"{target} must return (fun, params, *args) or a dict with `fun` and "
        f"`params`; it returned {type(made).__name__}."
    )


def _compilation_cache(directory: str | None) -> Any:
    """The persistent cache in `directory` (closed on exit), or nothing."""
    if not directory:
        return contextlib.nullcontext()
    from .._runtime.compilation_cache import enable_compilation_cache

    try:
        return enable_compilation_cache(directory)
    except ValueError as error:
        raise UsageError(f"--cache-dir: {error}") from None


def _check(args: argparse.Namespace) -> int:
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    from .._checks.grad import check_grad

    factory = _load_factory(args.target)
    try:
        made = factory()
    except Exception as error:
        error.add_note(f"jaxcheck: raised by the factory {args.target}.")
        raise
    fun, params, fun_args, options = _problem(made, args.target)
    for name in _OPTION_NAMES:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    with _compilation_cache(args.cache_dir):
        try:
            report = check_grad(fun, params, *fun_args, **options)
        except (TypeError, ValueError) as error:
            raise UsageError(f"{args.target}: {error}") from None
    print(report.verdict if args.quiet else report)
    try:
        if args.json:
            with open(args.json, "w") as out:
                out.write(report.to_json() + "\n")
        if args.plot:
            report.plot(args.plot)
    except (OSError, ImportError) as error:
        raise UsageError(f"could not write the report: {error}") from None
    return OK if report.ok else WRONG


def run(args: argparse.Namespace) -> int:
    """Runs `jaxcheck check`; returns the exit code."""
    try:
        return _check(args)
    except UsageError as error:
        print(f"jaxcheck check: error: {error}", file=sys.stderr)
    except Exception:  # raised by the user's module, factory or fun
        traceback.print_exc()
        print(
            f"jaxcheck check: error: {args.target} raised; see the traceback above.",
            file=sys.stderr,
        )
    return USAGE
