"""The float64 twin only where the native differences do not settle a verdict.

When a check evaluates its points eagerly (`runs_eagerly`), its native
differences cost dispatches of ops the analytic side has compiled already, while
the twin compiles every op of `fun` once more, in float64: for a small function
that is most of a check's time. Under the drop-in's floors (JAX's tolerances,
far wider than a float32 difference's error), a compiled check's native
differences settle nearly every verdict too, and the twin's program is never
compiled. So there the native differences are judged first, and only the
values they do not settle are judged again in the twin, whose verdicts replace
theirs. A value is settled by a pass that holds wherever
within its error bound the exact derivative lies, under the band without that
bound: the twin, nearer the exact derivative, would pass it too. Failures,
narrow passes and inconclusive values all go to the twin.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._base.options import Tolerance
from .analytic import base_output
from .compare import Comparison
from .numerical import Prepared
from .refine import Judged, judge
from .twins import float64_twin, needs_float64_twin, numerical_side, x64


def is_lazy(prepared: Prepared, tolerance: Tolerance, method: str) -> bool:
    """Whether the twin waits for the native differences: where the points run
    eagerly, or where the tolerance has floors (the drop-in's, as wide as
    JAX's), which native differences nearly always settle."""
    return method != "complex" and (prepared.eager or bool(tolerance.floors))


def judge_twinned(
    prepared: Prepared,
    base_value: float | np.ndarray | None,
    analytic: np.ndarray,
    *,
    shadow: bool,
    method: str,
    **judging,
) -> tuple[Judged, str]:
    """`judge` on the numerical side `numerical_side` picks (the float64 twin
    where `fun` is narrow and the twin faithful), lazily where the points run
    eagerly. Returns the verdicts and the note on the differences.

    `base_value` is J(θ), which the twin must reproduce to be faithful; None
    evaluates it where it is needed (lazily, it comes from the native batch).
    """
    if not (
        is_lazy(prepared, judging["tolerance"], method)
        and shadow
        and needs_float64_twin(prepared)
    ):
        twin = shadow and method != "complex" and needs_float64_twin(prepared)
        if base_value is None and twin:
            base_value = base_output(prepared)
        with numerical_side(prepared, base_value, shadow, method) as (numerical, note):
            return judge(numerical, analytic, method=method, **judging), note
    judged = judge(prepared, analytic, method=method, **judging)
    settled = judged.settled
    rows = np.flatnonzero(~(settled if settled.ndim == 1 else np.all(settled, 1)))
    if not rows.size:
        return judged, ""
    entries = judging.pop("entries", None)
    again_at = rows if entries is None else np.asarray(entries)[rows]
    with x64():
        if base_value is None:
            base_value = judged.base
        # Central differences at h and 2h for each entry left open.
        twin, why = float64_twin(prepared, base_value)
        if twin is None:
            return judged, f"differences in the native dtype: {why}"
        again = judge(twin, analytic, method=method, entries=again_at, **judging)
    note = (
        f"differences in a float64 twin of `fun` for the {rows.size} of "
        f"{len(settled)} entries the native ones did not settle"
    )
    return _merged(judged, rows, again), note


def _merged(judged: Judged, rows: np.ndarray, again: Judged) -> Judged:
    """`judged` with its `rows` replaced by those of `again`."""

    def put(mine: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = mine.copy()
        out[rows] = new
        return out

    comparison = Comparison(
        *(
            put(getattr(judged.comparison, f.name), getattr(again.comparison, f.name))
            for f in dataclasses.fields(Comparison)
        )
    )
    return Judged(
        comparison,
        put(judged.steps, again.steps),
        max(judged.spread, again.spread),
        put(judged.settled, again.settled),
        judged.base,
    )
