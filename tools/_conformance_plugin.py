"""pytest plugin for `tools/jax_conformance.py`: routes and records `check_grads`.

Loaded with `-p _conformance_plugin` (its folder on `PYTHONPATH`) so that its
`pytest_configure` runs before any test module is imported. It then replaces
`check_grads` in every module that binds JAX's own (`jax._src.public_test_util`,
`jax._src.test_util`, `jax.test_util`, and any other already-imported module that
holds the same function) with a recorder around either JAX's `check_grads` or
`jaxcheck.check_grads`.

Environment (set by `jax_conformance.py`):

- `JAX_CONFORMANCE_ARM`: `jax` (the reference) or `jaxcheck`.
- `JAX_CONFORMANCE_OUT`: a JSON-lines file; one line per `check_grads` call
  (`"kind": "call"`) and per finished test (`"kind": "test"`), appended and
  flushed as they happen, so a run killed by its timeout still leaves its records.
- `JAX_CONFORMANCE_DEFER` (default `1`): when `1`, a failing `check_grads` call is
  recorded and the test goes on, and the test then fails with the first such error
  once its body has finished. Every call of every test is thus made and timed in
  both arms (`check_grads` returns None, so nothing after it depends on it). With
  `0` the error is raised at once, as a plain drop-in would.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

ARM_ENV = "JAX_CONFORMANCE_ARM"
OUT_ENV = "JAX_CONFORMANCE_OUT"
DEFER_ENV = "JAX_CONFORMANCE_DEFER"
# Words in a jaxcheck report, warning or error that mark a fallback.
FALLBACKS = {"one_at_a_time": "one at a time", "fast_mode": "fast mode"}
_MODULES = ("jax._src.public_test_util", "jax._src.test_util", "jax.test_util")
_MAX_DETAIL = 2000


class _State:
    """What the recorder knows about the test that is running."""

    def __init__(self, out: str, arm: str, defer: bool) -> None:
        self.file = open(out, "a", encoding="utf-8")  # closed in pytest_unconfigure
        self.arm = arm
        self.defer = defer
        self.nodeid: str | None = None
        self.index = 0
        self.deferred: list[BaseException] = []
        self.outcomes: dict[str, dict[str, Any]] = {}

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, default=repr) + "\n")
        self.file.flush()


_state: _State | None = None


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message`, the cause a failure is grouped by."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")


def _describe(args: Any) -> list[str]:
    """`dtype[shape]` of each leaf of `args` (type name for non-arrays)."""
    import jax
    import numpy as np

    out = []
    for leaf in jax.tree_util.tree_leaves(args):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            out.append(type(leaf).__name__)
        else:
            out.append(f"{np.dtype(dtype).name}{list(np.shape(leaf))}")
    return out


def _tolerance(tol: Any, dtypes: set[str]) -> str:
    """`tol` as text; of a per-dtype dict, only the entries of `dtypes`."""
    if not isinstance(tol, dict):
        return repr(tol)
    import numpy as np

    def name(key: Any) -> str:
        try:
            return np.dtype(key).name
        except TypeError:
            return repr(key)

    kept = {name(k): v for k, v in tol.items() if name(k) in dtypes}
    return repr(kept) if kept else f"<dict of {len(tol)} dtypes>"


def _fallbacks(texts: Sequence[str]) -> list[str]:
    text = "\n".join(texts).lower()
    return [name for name, words in FALLBACKS.items() if words in text]


def _report_collector() -> tuple[list[Any], Callable[[], None]]:
    """Collects the reports jaxcheck's `check_grads` judges, when it can.

    jaxcheck's `check_grads` returns None, so the report text of a passing call
    is only reachable by wrapping `raise_if_failed(report, what)` where its
    module calls it.
    Returns the list the reports go to and a function that undoes the wrapping;
    if that private function is gone, the list stays empty.
    """
    reports: list[Any] = []
    try:
        from jaxcheck import _check_grads as module
    except ImportError:
        return reports, lambda: None
    original = getattr(module, "raise_if_failed", None)
    if original is None:
        return reports, lambda: None

    def collecting(report: Any, *rest: Any, **kwargs: Any) -> Any:
        reports.append(report)
        return original(report, *rest, **kwargs)

    module.raise_if_failed = collecting

    def undo() -> None:
        module.raise_if_failed = original

    return reports, undo


def _make_recorder(impl: Callable[..., None]) -> Callable[..., None]:
    def check_grads(
        f: Callable[..., Any],
        args: Sequence[Any],
        order: int,
        modes: Sequence[str] = ("fwd", "rev"),
        atol: Any = None,
        rtol: Any = None,
        eps: Any = None,
    ) -> None:
        state = _state
        assert state is not None
        record: dict[str, Any] = {
            "kind": "call",
            "nodeid": state.nodeid or os.environ.get("PYTEST_CURRENT_TEST", "?"),
            "index": state.index,
            "order": order,
            "modes": list(modes),
            "args": _describe(args),
        }
        dtypes = {d.split("[")[0] for d in record["args"]}
        for name, tol in (("atol", atol), ("rtol", rtol), ("eps", eps)):
            record[name] = _tolerance(tol, dtypes)
        state.index += 1
        error: BaseException | None = None
        reports, undo = ([], lambda: None)
        if state.arm == "jaxcheck":
            reports, undo = _report_collector()
        with warnings.catch_warnings(record=True) as caught:
            start = time.perf_counter()
            try:
                impl(f, args, order, modes, atol, rtol, eps)
            except Exception as exc:  # recorded, then raised or deferred
                error = exc
            finally:
                record["time"] = time.perf_counter() - start
                undo()
        for w in caught:  # hand them on to pytest's own warning capture
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        texts = [str(w.message) for w in caught]
        record["warnings"] = texts[:20]
        for report in reports:
            try:
                texts.append(str(report))
            except Exception as exc:  # a report that cannot print is a finding too
                record.setdefault("report_errors", []).append(first_line(exc))
        if error is None:
            record["outcome"] = "ok"
        else:
            record["outcome"] = first_line(error)
            record["detail"] = str(error)[:_MAX_DETAIL]
            texts.append(str(error))
        record["fallbacks"] = _fallbacks(texts) if state.arm == "jaxcheck" else []
        state.write(record)
        if error is not None:
            if not state.defer:
                raise error
            state.deferred.append(error)

    check_grads.__doc__ = impl.__doc__
    check_grads.__wrapped__ = impl  # type: ignore[attr-defined]
    return check_grads


def pytest_configure(config: pytest.Config) -> None:
    global _state
    arm, out = os.environ.get(ARM_ENV), os.environ.get(OUT_ENV)
    if arm not in ("jax", "jaxcheck") or not out:
        raise pytest.UsageError(
            f"_conformance_plugin needs {ARM_ENV}=jax|jaxcheck and {OUT_ENV}=FILE"
        )
    import importlib

    import jax._src.public_test_util as public_test_util

    original = public_test_util.check_grads
    if arm == "jaxcheck":
        import jaxcheck

        impl = jaxcheck.check_grads
    else:
        impl = original
    recorder = _make_recorder(impl)
    patched = []
    for name in _MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "check_grads"):
            module.check_grads = recorder
            patched.append(name)
    for name, module in list(sys.modules.items()):
        if name not in patched and getattr(module, "check_grads", None) is original:
            module.check_grads = recorder
            patched.append(name)
    _state = _State(out, arm, os.environ.get(DEFER_ENV, "1") != "0")
    where = getattr(sys.modules.get(impl.__module__), "__file__", "?")
    _state.write(
        {
            "kind": "start",
            "arm": arm,
            "patched": patched,
            "impl": f"{impl.__module__}.{impl.__qualname__} from {where}",
            "pid": os.getpid(),
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _state is not None:
        _state.write({"kind": "end"})
        _state.file.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Iterator[None]:
    assert _state is not None
    _state.nodeid, _state.index, _state.deferred = item.nodeid, 0, []
    try:
        return (yield)
    finally:
        outcome = _state.outcomes.pop(item.nodeid, None)
        if outcome is not None:
            outcome["calls"] = _state.index
            _state.write(outcome)
        _state.nodeid = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    if _state is not None and _state.deferred:
        raise _state.deferred[0]  # the test ran to its end; fail it now
    return result


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _state is None:
        return
    record = _state.outcomes.setdefault(
        report.nodeid, {"kind": "test", "nodeid": report.nodeid, "outcome": "passed"}
    )
    if report.failed:
        if record["outcome"] != "failed":  # the first failure is the cause
            record["outcome"] = "failed"
            record["when"] = report.when
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)
            record["message"] = message[:_MAX_DETAIL]
    elif report.skipped and record["outcome"] == "passed":
        record["outcome"] = "skipped"
    if report.when == "call":
        record["duration"] = report.duration
