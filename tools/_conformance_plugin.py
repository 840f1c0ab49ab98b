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

The mutation arm (`JAX_CONFORMANCE_ARM=mutants`) plants errors instead. With
`JAX_CONFORMANCE_MUTANTS` naming a JSON file `{"calls": [[nodeid, index], ...],
"deltas": [...], "full_ladder": false}`, each listed `check_grads` call is not
made; instead, `mutate_call` wraps its function in mutants (`make_mutant`) and
runs both JAX's `check_grads` and `jaxcheck.check_grads` on each with the call's
arguments, order, modes and tolerances, and writes one `"kind": "mutant_call"`
record per call. The calls not listed return at once (`check_grads` returns
None). See `make_mutant` for the kinds of mutant and `mutate_call` for the
ladder of relative errors and the record.
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
MUTANTS_ENV = "JAX_CONFORMANCE_MUTANTS"
ARMS = ("jax", "jaxcheck", "mutants")
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
        from jaxcheck._checks import check_grads as module
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


# ------------------------------------------------------------------ mutation arm

#: The kinds of mutant `make_mutant` builds, in the order `mutate_call` runs them.
MUTANT_KINDS = ("scale", "scale_vjp", "scale2", "drop", "swap")
#: The kinds that plant a relative error `delta`, tried down a ladder of them.
LADDER_KINDS = ("scale", "scale_vjp", "scale2")
#: The relative errors the ladder kinds plant, largest first.
DELTAS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
_MAX_MESSAGE = 600


def _dtype(x: Any) -> Any:
    """The dtype of an array, a Python number or a shape-and-dtype."""
    import numpy as np

    dtype = getattr(x, "dtype", None)
    return np.dtype(np.result_type(x) if dtype is None else dtype)


def _is_inexact(x: Any) -> bool:
    """Whether `x` (an array, a Python number or a shape-and-dtype) has a
    floating or complex dtype, so that it has tangents of its own."""
    import jax.numpy as jnp

    return bool(jnp.issubdtype(_dtype(x), jnp.inexact))


def dtype_label(args: Any) -> str:
    """The dtypes JAX computes the inexact leaves of `args` in (Python floats and
    NumPy float64 are float32 with x64 off), joined by "+"; "none" if none."""
    import jax
    import numpy as np

    names = {
        np.dtype(jax.dtypes.canonicalize_dtype(_dtype(leaf))).name
        for leaf in jax.tree_util.tree_leaves(args)
        if _is_inexact(leaf)
    }
    return "+".join(sorted(names)) or "none"


def make_mutant(
    f: Callable[..., Any], args: Sequence[Any], kind: str, delta: float = 0.0
) -> Callable[..., Any] | None:
    """`f` with an error planted in its derivatives, or None where `kind` does
    not apply to `f` at `args`.

    The mutant is `jax.custom_jvp` around `f` ("scale_vjp": `jax.custom_vjp`),
    so all its arguments are differentiable (as `check_grads` treats them) and
    may be pytrees. Its primal output is `f`'s: called plainly it calls `f`, and
    its rule returns the primal output of `jax.jvp(f, ...)` (`jax.vjp`). Reverse
    mode transposes the same (linear) JVP rule, so VJPs carry the same error as
    JVPs. Kinds:

    - "scale": each inexact output tangent times 1 + `delta`. Every derivative of
      order 1 and up is scaled, so only the first-order checks can see it: a
      check of order 2 differentiates the mutated JVP, and agrees with it.
    - "scale_vjp": the JVP exact (there is none: a `custom_vjp` function has no
      forward mode, so it is checked in "rev" mode only), each inexact input
      cotangent of the VJP times 1 + `delta`: an error in a transpose rule alone.
    - "scale2": the JVP is exact, but its derivative with respect to the primals
      (the second-order term) is scaled by 1 + `delta`: the rule returns
      `t + delta * (t - t_stopped)`, where `t_stopped` is the same JVP taken at
      `lax.stop_gradient` of the primals (equal in value, so the difference is 0).
      Only a check of order 2 or more can see it.
    - "drop": a term dropped from the JVP. With two or more inexact input leaves
      that have entries, the first one's tangent is zeroed (its partial
      derivative is dropped); with one such leaf, the tangent of its entries at
      odd flat indices is zeroed. None for a single input of one entry.
    - "swap": in the output tangent, the entries at flat indices 0 and n - 1 of
      the first inexact output leaf with n >= 2 entries are swapped. None when no
      output leaf has two entries.

    `delta` is used by the `LADDER_KINDS` only; with `delta` = 0 they are `f`
    wrapped without an error (the baseline).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    tree = jax.tree_util
    args = tuple(args)
    if kind not in MUTANT_KINDS:
        raise ValueError(f"unknown mutant kind {kind!r}; kinds: {MUTANT_KINDS}")
    drop: tuple[int, Any] | None = None
    swap: tuple[int, Any] | None = None
    if kind == "drop":
        leaves = tree.tree_leaves(args)
        live = [i for i, x in enumerate(leaves) if _is_inexact(x) and np.size(x)]
        if len(live) >= 2:
            drop = (live[0], None)
        elif live and np.size(leaves[live[0]]) >= 2:
            shape = np.shape(leaves[live[0]])
            drop = (live[0], (np.arange(int(np.prod(shape))) % 2 == 0).reshape(shape))
        else:
            return None
    elif kind == "swap":
        leaves = tree.tree_leaves(jax.eval_shape(f, *args))
        sizes = [int(np.prod(o.shape)) if _is_inexact(o) else 0 for o in leaves]
        where = next((i for i, n in enumerate(sizes) if n >= 2), None)
        if where is None:
            return None
        perm = np.arange(sizes[where])
        perm[0], perm[-1] = perm[-1], perm[0]
        swap = (where, perm)

    def scaled(t: Any, factor: float) -> Any:
        return tree.tree_map(lambda x: x + x * factor if _is_inexact(x) else x, t)

    if kind == "scale_vjp":

        @jax.custom_vjp
        def vjp_mutant(*primals: Any) -> Any:
            return f(*primals)

        def fwd(*primals: Any) -> Any:
            return jax.vjp(f, *primals)  # the VJP function is the residual

        def bwd(vjp_fn: Callable[[Any], Any], cotangent: Any) -> Any:
            cotangents = vjp_fn(cotangent)
            return scaled(cotangents, delta) if delta else cotangents

        vjp_mutant.defvjp(fwd, bwd)
        vjp_mutant.__name__ = f"{kind}_mutant"
        return vjp_mutant

    @jax.custom_jvp
    def mutant(*primals: Any) -> Any:
        return f(*primals)

    def rule(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
        if drop is not None:
            flat, treedef = tree.tree_flatten(tangents)
            where, keep = drop
            t = flat[where]
            flat[where] = jnp.zeros_like(t) if keep is None else jnp.where(keep, t, 0)
            tangents = tree.tree_unflatten(treedef, flat)
        out, t_out = jax.jvp(f, primals, tangents)
        if kind == "scale" and delta:
            t_out = scaled(t_out, delta)
        elif kind == "scale2" and delta:
            _, t_stopped = jax.jvp(f, lax.stop_gradient(primals), tangents)
            t_out = tree.tree_map(
                lambda t, s: t + delta * (t - s) if _is_inexact(t) else t,
                t_out,
                t_stopped,
            )
        elif swap is not None:
            flat, treedef = tree.tree_flatten(t_out)
            where, perm = swap
            flat[where] = flat[where].reshape(-1)[perm].reshape(flat[where].shape)
            t_out = tree.tree_unflatten(treedef, flat)
        return out, t_out

    mutant.defjvp(rule)
    mutant.__name__ = f"{kind}_mutant"
    return mutant


def _random_tangent(rng: Any, args: Any) -> Any:
    """A tangent for `args` (arrays, numbers or shapes-and-dtypes) as JAX's
    `check_grads` draws one (float0 zeros for the leaves without tangents)."""
    import jax
    import numpy as np

    def draw(x: Any) -> Any:
        shape = tuple(getattr(x, "shape", np.shape(x)))
        if not _is_inexact(x):
            return np.zeros(shape, dtype=jax.dtypes.float0)
        dtype = _dtype(x)
        value = np.asarray(rng.randn(*shape), dtype=dtype)
        if np.issubdtype(dtype, np.complexfloating):
            value = value + dtype.type(1j) * np.asarray(rng.randn(*shape), dtype)
        return value.item() if isinstance(x, (int, float, complex)) else value

    return jax.tree_util.tree_map(draw, args)


def planted_error(
    f: Callable[..., Any],
    mutant: Callable[..., Any],
    args: Sequence[Any],
    kind: str = "scale",
    seed: int = 1,
) -> float:
    """The relative error `mutant` plants in `f`'s derivatives at `args`.

    `max |mutant's - f's| / max |f's|` over the finite inexact entries of the JVP
    along a random tangent, for "scale2" of that JVP's derivative along a second
    random tangent, for "scale_vjp" of the VJP of a random cotangent. 0 means
    the mutant is `f` there: a `delta` too small for the dtype, a zero
    derivative, two equal entries swapped. Raises what `jax.jvp` raises for a
    function without a JVP.
    """
    import jax
    import numpy as np

    args = tuple(args)
    rng = np.random.RandomState(seed)
    t1 = _random_tangent(rng, args)
    if kind == "scale2":
        t2 = _random_tangent(rng, args)

        def probe(h: Callable[..., Any]) -> Any:
            return jax.jvp(lambda *p: jax.jvp(h, p, t1)[1], args, t2)[1]

    elif kind == "scale_vjp":
        cotangent = _random_tangent(rng, jax.eval_shape(f, *args))

        def probe(h: Callable[..., Any]) -> Any:
            return jax.vjp(h, *args)[1](cotangent)

    else:

        def probe(h: Callable[..., Any]) -> Any:
            return jax.jvp(h, args, t1)[1]

    reference, mutated = probe(f), probe(mutant)
    diff = scale = 0.0
    for r, m in zip(
        jax.tree_util.tree_leaves(reference),
        jax.tree_util.tree_leaves(mutated),
        strict=True,
    ):
        if not _is_inexact(r) or not np.size(r):
            continue
        r = np.asarray(r).astype(np.complex128)
        m = np.asarray(m).astype(np.complex128)
        finite = np.isfinite(r) & np.isfinite(m)
        if (np.isfinite(r) != np.isfinite(m)).any():
            return float("inf")
        if finite.any():
            diff = max(diff, float(np.abs(m - r)[finite].max()))
            scale = max(scale, float(np.abs(r)[finite].max()))
    if diff == 0.0:
        return 0.0
    return diff / scale if scale else float("inf")


def run_tool(
    check: Callable[..., None],
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: Any = None,
    rtol: Any = None,
    eps: Any = None,
) -> dict[str, Any]:
    """Runs one `check_grads` on `f`: `{"outcome": "pass" | "fail" | "error",
    "time", "message"}`. "fail" is an `AssertionError` (jaxcheck's
    `GradCheckError` is one), the tool's verdict that the derivatives are wrong;
    any other exception is an "error" and no verdict."""
    result: dict[str, Any] = {"outcome": "pass", "message": ""}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            check(f, tuple(args), order, modes, atol, rtol, eps)
        except AssertionError as exc:
            result.update(outcome="fail", message=str(exc).strip()[:_MAX_MESSAGE])
        except Exception as exc:
            result.update(outcome="error", message=first_line(exc)[:_MAX_MESSAGE])
        result["time"] = time.perf_counter() - start
    if caught:
        result["warnings"] = sorted({first_line(w.message) for w in caught})[:3]
    return result


def _run_tools(
    tools: dict[str, Callable[..., None]],
    f: Callable[..., Any],
    args: tuple[Any, ...],
    order: int,
    modes: Sequence[str],
    atol: Any,
    rtol: Any,
    eps: Any,
) -> dict[str, dict[str, Any]]:
    return {
        name: run_tool(check, f, args, order, modes, atol, rtol, eps)
        for name, check in tools.items()
    }


def _baseline_failure(results: dict[str, dict[str, Any]]) -> str | None:
    """Why a wrapper without an error does not pass with every tool, or None."""
    for name, result in results.items():
        if result["outcome"] != "pass":
            first = (result["message"].strip().splitlines() or [""])[0]
            return f"baseline: {result['outcome']} with {name}: {first}"
    return None


def mutate_call(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: Any = None,
    rtol: Any = None,
    eps: Any = None,
    *,
    tools: dict[str, Callable[..., None]],
    deltas: Sequence[float] = DELTAS,
    full_ladder: bool = False,
    kinds: Sequence[str] = MUTANT_KINDS,
) -> dict[str, Any]:
    """Plants errors in `f` and runs each of `tools` (name: `check_grads`) on
    each mutant with this call's arguments, order, modes and tolerances.

    First `f` must have a JVP at `args`, and the baseline (`f` wrapped in the
    mutants' `custom_jvp` without an error) must pass with every tool; otherwise
    the call is skipped, with the reason. Then each kind of `make_mutant` is
    run: the `LADDER_KINDS` once per `delta` of `deltas`, largest first, until
    one plants nothing (`planted_error` 0) or, unless `full_ladder`, until no
    tool catches one; "drop" and "swap" once. "scale2" is run for `order` >= 2
    only; "scale_vjp" where `modes` has "rev", in "rev" mode only, and only if
    its own baseline (the `custom_vjp` wrapper without an error) passes.

    Returns `{"status": "ok" | "skipped", "reason", "dtype", "baseline": {tool:
    result}, "mutants": [...]}`, one mutant entry per kind and delta tried:
    `{"kind", "delta", "status": "run" | "noop" | "n/a" | "error", "planted",
    tool: run_tool's result, ...}` ("modes" too where they are not the call's).
    """
    args = tuple(args)
    record: dict[str, Any] = {
        "status": "ok",
        "dtype": dtype_label(args),
        "baseline": {},
        "mutants": [],
    }
    try:
        planted_error(f, f, args)
    except Exception as exc:
        return dict(record, status="skipped", reason=f"no JVP: {first_line(exc)}")
    baseline = make_mutant(f, args, "scale", 0.0)
    assert baseline is not None
    record["baseline"] = _run_tools(
        tools, baseline, args, order, modes, atol, rtol, eps
    )
    reason = _baseline_failure(record["baseline"])
    if reason:
        return dict(record, status="skipped", reason=reason)
    for kind in kinds:
        kind_modes = list(modes)
        if kind == "scale2" and order < 2:
            continue
        if kind == "scale_vjp":
            kind_modes = [m for m in modes if m == "rev"]
            if not kind_modes:
                continue
            vjp_baseline = make_mutant(f, args, kind, 0.0)
            assert vjp_baseline is not None
            results = _run_tools(
                tools, vjp_baseline, args, order, kind_modes, atol, rtol, eps
            )
            reason = _baseline_failure(results)
            if reason:
                record["mutants"].append(
                    {"kind": kind, "delta": None, "status": "n/a", "message": reason}
                )
                continue
        ladder: Sequence[float | None] = deltas if kind in LADDER_KINDS else (None,)
        for delta in ladder:
            entry: dict[str, Any] = {"kind": kind, "delta": delta}
            if kind_modes != list(modes):
                entry["modes"] = kind_modes
            record["mutants"].append(entry)
            try:
                mutant = make_mutant(f, args, kind, delta or 0.0)
                if mutant is None:
                    entry["status"] = "n/a"
                    break
                entry["planted"] = planted_error(f, mutant, args, kind)
            except Exception as exc:
                entry.update(status="error", message=first_line(exc)[:_MAX_MESSAGE])
                break
            if entry["planted"] == 0.0:
                entry["status"] = "noop"
                break
            entry["status"] = "run"
            entry.update(
                _run_tools(tools, mutant, args, order, kind_modes, atol, rtol, eps)
            )
            if (
                entry.get("jax", {}).get("outcome") == "fail"
                and entry.get("jaxcheck", {}).get("outcome") == "pass"
            ):
                entry["jaxcheck"]["report"] = explain_miss(
                    mutant, args, entry["jax"]["message"], atol, rtol, eps
                )
            caught = any(entry[name]["outcome"] == "fail" for name in tools)
            if not caught and not full_ladder:
                break
    return record


def _tolerance_for(tol: Any, args: tuple[Any, ...]) -> float | None:
    """One number from a `check_grads` tolerance (None, a number, or a dict
    from dtype to number) for the dtype of the first inexact leaf of `args`,
    merged over JAX's per-dtype defaults as `check_grads` merges it."""
    import jax
    import numpy as np
    from jax._src.public_test_util import default_gradient_tolerance

    if tol is not None and not isinstance(tol, dict):
        return float(tol)
    leaves = [x for x in jax.tree_util.tree_leaves(args) if _is_inexact(x)]
    if not leaves:
        return None
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(_dtype(leaves[0])))
    for key, value in (tol or {}).items():
        try:
            if np.dtype(key) == dtype:
                return float(value)
        except TypeError:
            continue
    default = default_gradient_tolerance.get(dtype)
    return None if default is None else float(default)


def explain_miss(
    mutant: Callable[..., Any],
    args: tuple[Any, ...],
    jax_message: str,
    atol: Any,
    rtol: Any,
    eps: Any,
) -> str:
    """What jaxcheck sees where JAX's `check_grads` caught a mutant and
    jaxcheck's passed it: the report of `jaxcheck.check_jvp` or `check_vjp`
    (whichever first-order check JAX's message names) with the call's
    tolerances for the arguments' dtype (JAX's default for it where the call
    gives none). Empty for a failure JAX found at a
    higher order, where no single jaxcheck report corresponds."""
    import jaxcheck

    lines = [x.strip() for x in jax_message.strip().splitlines()]
    first = next((x for x in lines[1:] if x), "")  # after "Not equal to tolerance"
    kwargs = {
        "atol": _tolerance_for(atol, args),
        "rtol": _tolerance_for(rtol, args),
        "eps": None if eps is None else float(eps),
    }
    try:
        if first.startswith("JVP tangent"):
            report = jaxcheck.check_jvp(mutant, args, **kwargs)
        elif first.startswith("VJP cotangent"):
            report = jaxcheck.check_vjp(mutant, args, **kwargs)
        else:
            return ""
        return str(report)[: _MAX_MESSAGE * 3]
    except Exception as exc:
        return f"(no report: {first_line(exc)})"


def function_name(f: Any) -> str:
    """A short name of the function a call checks: `sin`, `partial(reduce_sum,
    axes=(0,))`, `LaxAutodiffTest.testFoo.<locals>.<lambda>`."""
    import functools

    if isinstance(f, functools.partial):
        inner = [function_name(f.func)]
        inner += [repr(a)[:40] for a in f.args]
        inner += [f"{k}={v!r}"[:40] for k, v in f.keywords.items()]
        return f"partial({', '.join(inner)})"
    name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None)
    return str(name) if name else type(f).__name__


def _make_mutation_recorder(
    tools: dict[str, Callable[..., None]], settings: dict[str, Any]
) -> Callable[..., None]:
    """The `check_grads` of the mutation arm: the calls listed in `settings` are
    mutated (`mutate_call`) and recorded; every call returns None unchecked."""
    selected = {(nodeid, index) for nodeid, index in settings["calls"]}
    deltas = tuple(settings.get("deltas") or DELTAS)
    full_ladder = bool(settings.get("full_ladder", False))

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
        key = (state.nodeid, state.index)
        state.index += 1
        if key not in selected:
            return
        record: dict[str, Any] = {
            "kind": "mutant_call",
            "nodeid": key[0],
            "index": key[1],
            "function": function_name(f),
            "order": order,
            "modes": list(modes),
            "args": _describe(args),
        }
        dtypes = {d.split("[")[0] for d in record["args"]}
        for name, tol in (("atol", atol), ("rtol", rtol), ("eps", eps)):
            record[name] = _tolerance(tol, dtypes)
        start = time.perf_counter()
        try:
            record.update(
                mutate_call(
                    f,
                    args,
                    order,
                    modes,
                    atol,
                    rtol,
                    eps,
                    tools=tools,
                    deltas=deltas,
                    full_ladder=full_ladder,
                )
            )
        except Exception as exc:  # a harness bug must not hide the other calls
            record.update(status="skipped", reason=f"harness: {first_line(exc)}")
        record["time"] = time.perf_counter() - start
        state.write(record)

    return check_grads


def pytest_configure(config: pytest.Config) -> None:
    global _state
    arm, out = os.environ.get(ARM_ENV), os.environ.get(OUT_ENV)
    if arm not in ARMS or not out:
        raise pytest.UsageError(
            f"_conformance_plugin needs {ARM_ENV}={'|'.join(ARMS)} and {OUT_ENV}=FILE"
        )
    import importlib

    import jax._src.public_test_util as public_test_util

    original = public_test_util.check_grads
    if arm == "jaxcheck":
        import jaxcheck

        impl = jaxcheck.check_grads
        recorder = _make_recorder(impl)
    elif arm == "mutants":
        import jaxcheck

        settings_file = os.environ.get(MUTANTS_ENV)
        if not settings_file:
            raise pytest.UsageError(f"the mutation arm needs {MUTANTS_ENV}=FILE")
        with open(settings_file, encoding="utf-8") as file:
            settings = json.load(file)
        impl = jaxcheck.check_grads  # what "impl" names; JAX's runs too
        recorder = _make_mutation_recorder(
            {"jax": original, "jaxcheck": jaxcheck.check_grads}, settings
        )
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
