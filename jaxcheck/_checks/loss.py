"""The gradient of a scalar function against finite differences: the engine's
check of one loss, shared by `check_grad` and `check_vjp`.

It takes validated `Options` and returns a `GradCheckReport`; it never raises on
a wrong gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._base.options import Options
from .._base.validate import check_base_value
from .._engine.analytic import analytic_side, fun_name
from .._engine.chunks import evaluated_as, noting_fallbacks
from .._engine.compare import nondeterminism_tolerance
from .._engine.directional import DEFAULT_PROBES
from .._engine.evaluate import trace_base
from .._engine.narrowing import probe_leaves
from .._engine.numerical import Prepared, prepare
from .._engine.refine import Judged, judge
from .._engine.sampling import sampled_entries, suspect_entries
from .._engine.twins import is_lazy, judge_twinned, numerical_side
from .._runtime.fingerprint import leaves_digest
from .._runtime.multiprocess import agree, is_multiprocess
from .._runtime.progress import tracking
from .._runtime.resume import recording
from .._runtime.sharding import sharded_over
from .._tree.pytree import LeafInfo
from .._verdict.report import GradCheckReport


def _entries_to_compare(
    leaves: Sequence[LeafInfo],
    probed: Prepared,
    analytic: np.ndarray,
    options: Options,
) -> tuple[np.ndarray | None, list[str] | None, list[Any] | None]:
    """The entries compared one by one (None: all), how each leaf was checked
    and fast mode's probes per leaf, whose differences are taken in `probed`
    (the prepared `fun` or its float64 twin; `leaves` are the original ones)."""
    if options.mode == "sample":
        return (*sampled_entries(leaves, options.samples, options.seed), None)
    if options.mode == "full":
        return None, None, None
    verdicts = probe_leaves(
        probed,
        analytic,
        probes=DEFAULT_PROBES,
        seed=options.seed,
        tolerance=options.tolerance,
        chunk_size=options.chunk_size,
        memory_budget=options.memory_budget,
        analytic_leaves=leaves,
    )
    return (*suspect_entries(leaves, verdicts), [v.probes for v in verdicts])


def _judged(
    prepared: Prepared, base_value: float, analytic: np.ndarray, options: Options
) -> tuple[Judged, str, np.dtype, Any, Any, Any]:
    """The verdicts, the note on the differences, the dtype they were taken in,
    and what `_entries_to_compare` says."""
    leaves, method = prepared.tree.leaves, options.method
    judging = dict(
        tolerance=options.tolerance,
        leaves=leaves,
        adapt_steps=options.adapt_steps,
        **options.evaluation,
    )
    if is_lazy(prepared, options.tolerance, method) and options.mode != "fast":
        # The float64 twin only where it is needed.
        entries, checked, probes = _entries_to_compare(
            leaves, prepared, analytic, options
        )
        judged, note = judge_twinned(
            prepared,
            base_value,
            analytic,
            shadow=options.shadow,
            entries=entries,
            **judging,
        )
        return judged, note, prepared.out_dtype, entries, checked, probes
    with numerical_side(prepared, base_value, options.shadow, method) as (
        numerical,
        note,
    ):
        # Fast mode probes the function the entries are differenced in: the
        # float64 twin when there is one, not the complex-step twin (the
        # probes' steps are real).
        entries, checked, probes = _entries_to_compare(
            leaves, prepared if method == "complex" else numerical, analytic, options
        )
        judged = judge(numerical, analytic, entries=entries, **judging)
    return judged, note, numerical.out_dtype, entries, checked, probes


def gradient_report(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    grad: Any,
    options: Options,
) -> GradCheckReport:
    """Compares the gradient of the scalar `fun(params, *args)` (`jax.grad`, or
    `grad`: a callable or a pytree of values) with finite differences."""
    method = options.method
    with (
        tracking(options.progress) as tracker,
        sharded_over(options.devices),
        contextlib.ExitStack() as stack,
        noting_fallbacks() as fallbacks,
    ):
        prepared = prepare(fun, params, args, options)
        tree = prepared.tree
        if options.resume is not None:
            traced = trace_base(tree.problem, tree.dynamic)
            record = recording(options.resume, traced, tree.dynamic, options)
            record = stack.enter_context(record)
        # A compiled check whose twin waits for the native differences takes
        # J(θ) from their batch: no program of its own to compile for it.
        compiled = not prepared.eager
        later = compiled and options.mode != "fast"
        later &= is_lazy(prepared, options.tolerance, method)
        base_value, analytic_leaves = analytic_side(
            grad, prepared, params, args, base=not later
        )
        is_complex = any(x.dtype.kind == "c" for x in tree.leaves)
        dtype = np.complex128 if is_complex else np.float64
        analytic = np.concatenate(
            [x.reshape(-1).astype(dtype) for x in analytic_leaves]
        )
        # Every process must judge the same analytic gradient, or they refine
        # different entries and wait in different collectives.
        if is_multiprocess():
            agree({"analytic gradient": leaves_digest([analytic])})
        judged, note, out_dtype, entries, checked, probes = _judged(
            prepared, base_value, analytic, options
        )
        if base_value is None:
            base_value = float(np.reshape(judged.base, -1)[0])
            check_base_value(base_value, tree)
        nondet_tol = nondeterminism_tolerance(options.nondet_tol, out_dtype, base_value)
        evaluation, fallback = evaluated_as(prepared.way, fallbacks)
        said = [x for x in (note, fallback) if x]
        if options.resume is not None:
            said.append(
                f"resumed: {record.loaded} chunks from the record in "
                f"{options.resume}, {record.written} evaluated"
            )
        note = "; ".join(said)
        report = GradCheckReport(
            fun_name=fun_name(fun),
            method=method,
            leaves=tree.leaves,
            skipped=tree.skipped,
            comparison=judged.comparison,
            steps=judged.steps,
            spread=judged.spread,
            nondet_tol=nondet_tol,
            note=note,
            mode=options.mode,
            entries=entries,
            checked=checked,
            probes=probes,
            evaluation=evaluation,
        )
    report.seconds = tracker.seconds
    report.compile_seconds = tracker.compile_seconds
    return report
