"""From the first differences to a verdict per entry, refining only where needed.

Every entry is first differenced at its step h. An entry whose analytic value
agrees with that difference to within the round-off bound and the dtype's floor
passes at once: its full pass band (which also holds a truncation term) could
only be wider. Only the others, usually none, are evaluated again:

- at 2h, in the same stencil. Richardson's estimate |D(h) − D(2h)| / (2^p − 1)
  bounds the truncation error of a difference of order p, and the extrapolation
  D(h) + (D(h) − D(2h)) / (2^p − 1) is the numerical value compared;
- a kink shows as one-sided slopes whose jump does not shrink with the step:
  with d(h) = F(h) − B(h) = c + h·J'' for a jump c, the estimate 2·d(h) − d(2h)
  removes the smooth part, and d(2h) stays within half of d(h). There the
  analytic value passes as a kink when it lies between the two one-sided
  slopes (a valid subgradient, as for relu or abs at 0);
- where a difference is NaN or Inf (a step across the edge of `fun`'s domain,
  as for log near 0) the step is shrunk by 8, up to four times; an entry still
  not finite is inconclusive. So is the step of an entry that passes only
  thanks to a large truncation term, or fails with a bound that is mostly
  truncation (a step too large for the scale on which `fun` varies), as long as
  that tightens its bound;
- an entry that still fails is tried at larger steps, 4h, 16h and 64h, kept
  where they tighten its bound: round-off that `fun`'s value cannot show (a
  large offset added and removed inside `fun`) shrinks as the step grows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .._base.options import Tolerance
from .._tree.pytree import LeafInfo
from .compare import BOTH_NONFINITE, OK, Comparison, OutputBlock, compare, pass_band
from .numerical import (
    FIRST_REPEATS,
    Differences,
    Prepared,
    differences,
    finite_differences,
)
from .steps import GROW, GROWTHS, SAFETY, larger_steps, smaller_steps

_ORDER = {"central": 2, "forward": 1, "backward": 1, "central4": 4, "complex": 2}
_RETRIES = 4


@dataclasses.dataclass(frozen=True)
class Judged:
    comparison: Comparison
    steps: np.ndarray  # the step of each compared value, shaped like it
    spread: float  # largest spread of J(θ) re-evaluated within one batch
    # Values whose verdict no better numerical side could change: a pass that
    # holds anywhere within the numerical value's error bound, under the band
    # without that bound, or NaN on both sides where that agrees.
    settled: np.ndarray | None = None
    base: np.ndarray | None = None  # J(θ), from the first batch (as float64)


def _take(d: Differences, keep: np.ndarray) -> Differences:
    return dataclasses.replace(
        d,
        entries=d.entries[keep],
        derivative=d.derivative[keep],
        noise=d.noise[keep],
        steps=d.steps[keep],
        forward=d.forward[keep],
        backward=d.backward[keep],
    )


class _Refinement:
    """The numerical side of every compared value, updated in place as entries
    are refined. Rows are entries of θ; column c holds output `columns[c]`."""

    def __init__(
        self,
        first: Differences,
        analytic: np.ndarray,
        method: str,
        columns: np.ndarray,
    ):
        self.entries = first.entries  # the θ offset of each row, sorted
        self.columns = columns
        self.numeric = first.derivative[:, columns].copy()
        self.bound = first.noise[:, columns].copy()
        self.trunc = np.zeros(self.bound.shape)  # the truncation part of `bound`
        self.steps = np.repeat(first.steps[:, None], columns.size, axis=1)
        self.kink = np.zeros(self.bound.shape, bool)
        self.analytic = analytic
        self.method = method

    def apply(
        self,
        d1: Differences,
        d2: Differences,
        first_band: np.ndarray,
        only_if_tighter: bool,
    ) -> None:
        """Richardson at the entries of `d1` (step h) and `d2` (step 2h), for
        the values both of them resolve."""
        c = self.columns
        r = 2.0 ** _ORDER[self.method] - 1
        at_h, at_2h = d1.derivative[:, c], d2.derivative[:, c]
        noise = d1.noise[:, c]
        with np.errstate(invalid="ignore"):
            trunc = SAFETY * np.abs(at_h - at_2h) / r
            numeric = at_h + (at_h - at_2h) / r
            bound = ((r + 1) * noise + d2.noise[:, c]) / r + trunc
        kinked = np.zeros(numeric.shape, bool)
        between = np.zeros(numeric.shape, bool)
        rows = self.rows(d1.entries)
        if self.method in ("central", "central4"):
            forward, backward = d1.forward[:, c], d1.backward[:, c]
            with np.errstate(invalid="ignore"):
                gap_h = forward - backward
                gap_2h = (d2.forward - d2.backward)[:, c]
                jump = 2 * gap_h - gap_2h
                # A jump stays as the step doubles; one-sided slopes that part
                # because `fun` curves strongly on the step's scale (log near 0)
                # move apart with it, and are no kink.
                steady = np.abs(gap_2h - gap_h) <= 0.5 * np.abs(gap_h)
                kinked = (np.abs(jump) > 10 * noise + trunc) & steady
                low = np.minimum(forward, backward) - first_band
                high = np.maximum(forward, backward) + first_band
                a = self.analytic[rows].real
                between = (low <= a) & (a <= high)
            kinked &= np.isfinite(jump)
            # At a kink the central difference is what the evaluations say; the
            # extrapolation assumes a smoothness that is not there.
            numeric = np.where(kinked, at_h, numeric)
            bound = np.where(kinked, noise, bound)
            trunc = np.where(kinked, 0.0, trunc)
        take = np.isfinite(at_h) & np.isfinite(at_2h)
        if only_if_tighter:
            with np.errstate(invalid="ignore"):
                take &= ~(bound >= self.bound[rows])
        for mine, new in (
            (self.numeric, numeric),
            (self.bound, bound),
            (self.trunc, trunc),
            (self.steps, np.broadcast_to(d1.steps[:, None], take.shape)),
            (self.kink, kinked & between),
        ):
            mine[rows] = np.where(take, new, mine[rows])

    def rows(self, entries: np.ndarray) -> np.ndarray:
        """The rows of the θ offsets `entries`."""
        return np.searchsorted(self.entries, entries)

    def unsettled(self, band_of, fixed_step: bool) -> np.ndarray:
        """Rows worth a smaller step: a numerical value that is not finite, a
        verdict that only the truncation term of the bound makes a pass, or a
        failure whose bound is mostly truncation (the step is too large for the
        scale on which `fun` varies, e.g. it reaches past a domain edge)."""
        with np.errstate(invalid="ignore"):
            err = np.abs(self.analytic - self.numeric)
            passes = err <= band_of(self.bound)
            passes_tightly = err <= band_of(self.bound - self.trunc)
            # A step the caller chose (`eps`) is kept: its error is the answer.
            truncated = ~passes & (2 * self.trunc > self.bound) & ~fixed_step
        weak = passes & ~passes_tightly & ~self.kink
        bad = np.isfinite(self.analytic) & (
            ~np.isfinite(self.numeric) | weak | truncated
        )
        return np.flatnonzero(np.any(bad, axis=1))

    def failures(self, band_of, fixed_step: bool) -> np.ndarray:
        """Rows worth a larger step: failures still, after the smaller steps.
        The bound estimates the round-off from `fun`'s value, which cannot see
        a cancellation inside `fun` (a large offset added, then removed; its
        noise then passes for truncation, and smaller steps only make it
        worse); a larger step divides every round-off error by its growth."""
        if fixed_step:
            return np.zeros(0, int)
        with np.errstate(invalid="ignore"):
            err = np.abs(self.analytic - self.numeric)
            band = band_of(self.bound)
            # Beyond this, no growth of the step could bring the error inside.
            fails = (err > band) & (err <= GROW**GROWTHS * band)
        fails &= np.isfinite(self.numeric) & ~self.kink & np.isfinite(self.analytic)
        return np.flatnonzero(np.any(fails, axis=1))


def rows_as_leaves(leaves: Sequence[LeafInfo], entries: np.ndarray) -> list[LeafInfo]:
    """Each leaf as the run of rows that its compared entries occupy, so that
    per-leaf work written for all of θ applies to a subset `entries` of it."""
    out = []
    for leaf in leaves:
        lo, hi = np.searchsorted(entries, [leaf.offset, leaf.offset + leaf.size])
        out.append(dataclasses.replace(leaf, offset=int(lo), shape=(int(hi - lo),)))
    return out


def judge(
    prepared: Prepared,
    analytic: np.ndarray,
    *,
    method: str,
    eps: float | None,
    tolerance: Tolerance,
    chunk_size: int | None,
    memory_budget: int,
    leaves=None,
    entries: np.ndarray | None = None,
    outputs: Sequence[OutputBlock] | None = None,
    columns: np.ndarray | None = None,
    adapt_steps: bool = True,
) -> Judged:
    """Compares `analytic` with finite differences, entry by entry: every entry
    of θ, or the sorted θ offsets `entries`.

    `analytic` is θ-ordered: a vector for a scalar `fun`, or a matrix whose
    column c is compared with output `columns[c]` of `fun` (default: output c),
    so that several analytic Jacobians (jacrev, jacfwd) share one numerical
    side. The result has one row per compared entry and `analytic`'s columns.

    `leaves` (default: those of `prepared`) are the leaves whose dtypes set the
    floors of the pass band: the analytic side's, when `prepared` is a float64
    twin. `outputs` are the column blocks of the pass band (see `pass_band`).
    Without `adapt_steps` (a step the caller chose), an entry is only retried
    at smaller steps where `fun` is not finite there.
    """
    leaves = prepared.tree.leaves if leaves is None else leaves
    is_vector = analytic.ndim == 1
    if is_vector:
        analytic = analytic[:, None]
    if columns is None:
        columns = np.arange(analytic.shape[1])
    if entries is not None:
        analytic = analytic[entries]
        leaves = rows_as_leaves(leaves, entries)
    options = dict(
        method=method, eps=eps, chunk_size=chunk_size, memory_budget=memory_budget
    )

    def band_of(bound: np.ndarray) -> np.ndarray:
        return pass_band(leaves, analytic, state.numeric, bound, tolerance, outputs)

    def refine(rows: np.ndarray, steps: np.ndarray, first_band, tighter: bool):
        at = first.entries[rows]
        d1 = differences(prepared, at, steps, strict=False, **options)
        d2 = differences(prepared, at, 2 * steps, strict=False, **options)
        state.apply(d1, d2, first_band, tighter)

    first = finite_differences(
        prepared, repeats=FIRST_REPEATS, entries=entries, **options
    )
    state = _Refinement(first, analytic, method, columns)
    band = band_of(state.bound)
    with np.errstate(invalid="ignore"):
        settled = np.abs(analytic - state.numeric) <= band
    todo = np.flatnonzero(np.any(~settled & np.isfinite(analytic), axis=1))
    if todo.size:
        finite = np.isfinite(first.derivative[todo][:, columns])
        resolved = todo[np.any(finite, axis=1)]
        if resolved.size:
            # The differences at h are at hand; only 2h is evaluated.
            d1 = _take(first, resolved)
            d2 = differences(
                prepared, d1.entries, 2 * d1.steps, strict=False, **options
            )
            state.apply(d1, d2, band[resolved], False)
        for level in range(1, _RETRIES + 1):
            steps = smaller_steps(first.steps, level)
            retry = state.unsettled(band_of, fixed_step=not adapt_steps)
            retry = retry[np.any(state.steps[retry] > steps[retry, None], axis=1)]
            if not retry.size:
                break
            refine(retry, steps[retry], band[retry], True)
        growing = state.failures(band_of, fixed_step=not adapt_steps)
        for level in range(1, GROWTHS + 1):
            steps = larger_steps(first.steps, level)
            retry = np.intersect1d(growing, state.failures(band_of, False))
            retry = retry[np.any(state.steps[retry] < steps[retry, None], axis=1)]
            if not retry.size:
                break
            before = state.bound[retry].copy()
            refine(retry, steps[retry], band[retry], True)
            # Until the bound stops improving, as in numdifftools' step choice.
            growing = retry[np.any(state.bound[retry] < before, axis=1)]
    band = band_of(state.bound)
    comparison = compare(
        analytic, state.numeric, band, state.kink, tolerance.nan_agrees
    )
    with np.errstate(invalid="ignore"):
        robust = comparison.abs_err + state.bound <= band_of(np.zeros(band.shape))
    agree = comparison.status == BOTH_NONFINITE
    settled = ((comparison.status == OK) & robust) | agree
    steps = state.steps
    if is_vector:
        comparison = comparison.column(0)
        steps, settled = steps[:, 0], settled[:, 0]
    base = None if first.base is None or not len(first.base) else first.base[0]
    return Judged(comparison, steps, first.spread, settled, base)
