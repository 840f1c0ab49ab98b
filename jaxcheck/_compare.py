"""Entry-by-entry comparison of an analytic gradient with a numerical one."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._pytree import LeafInfo
from ._steps import default_floor

# Per-entry verdicts, stored as small ints in `Comparison.status`. Entries with a
# status of FAILING or above fail the check.
OK, KINK, MISMATCH, ANALYTIC_NONFINITE, INCONCLUSIVE = 0, 1, 2, 3, 4
FAILING = MISMATCH
STATUS_NAMES = {
    OK: "ok",
    KINK: "kink",
    MISMATCH: "mismatch",
    ANALYTIC_NONFINITE: "analytic nan/inf",
    INCONCLUSIVE: "inconclusive",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """Flat, θ-ordered arrays: one value per perturbed entry."""

    analytic: np.ndarray
    numeric: np.ndarray
    abs_err: np.ndarray
    rel_err: np.ndarray
    tolerance: np.ndarray  # the entry's pass band for abs_err
    status: np.ndarray  # int8 codes, see STATUS_NAMES

    @property
    def failed(self) -> np.ndarray:
        return self.status >= FAILING

    @property
    def score(self) -> np.ndarray:
        """abs_err / tolerance: how many times its pass band an entry is off."""
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(self.abs_err > 0, self.abs_err / self.tolerance, 0.0)
        score = np.where(np.isnan(score), np.inf, score)
        score = np.where(self.status == KINK, 0.0, score)
        return np.where(self.status >= ANALYTIC_NONFINITE, np.inf, score)


def relative_difference(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂), the lecture's figure; 0 when both are zero."""
    norms = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if not np.isfinite(norms):
        return float("nan")
    return float(np.linalg.norm(analytic - numeric) / norms) if norms > 0 else 0.0


def pass_band(
    leaves: tuple[LeafInfo, ...] | list[LeafInfo],
    analytic: np.ndarray,
    numeric: np.ndarray,
    bound: np.ndarray,
    atol: float | None,
    rtol: float | None,
) -> np.ndarray:
    """Per-entry tolerance for |a − n|: atol + rtol·max(|a|, |n|).

    By default atol is the entry's error bound plus the dtype's floor, scaled by
    the largest |numeric| entry of the leaf, and rtol the dtype's floor; an
    explicit `atol` or `rtol` replaces the corresponding part.
    """
    band = np.empty(analytic.size)
    finite = np.where(np.isfinite(numeric), np.abs(numeric), 0.0)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
    for leaf in leaves:
        part = slice(leaf.offset, leaf.offset + leaf.size)
        if leaf.size == 0:
            continue
        floor = default_floor(leaf.dtype)
        if atol is None:
            largest = float(np.max(finite[part]))
            tiny = float(np.finfo(np.float64).tiny)
            absolute = floor.atol * largest + bound[part] + tiny
        else:
            absolute = atol
        relative = floor.rtol if rtol is None else rtol
        band[part] = absolute + relative * scale[part]
    return band


def compare(
    analytic: np.ndarray,
    numeric: np.ndarray,
    tolerance: np.ndarray,
    kink: np.ndarray | None = None,
) -> Comparison:
    """Entry i passes when |a − n| ≤ tolerance, both sides finite; an entry marked
    as a kink passes as such (its analytic value is a valid subgradient)."""
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.abs(analytic - numeric)
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
        rel_err = np.where(scale > 0, abs_err / np.where(scale > 0, scale, 1), 0.0)
        status = np.where(abs_err <= tolerance, OK, MISMATCH).astype(np.int8)
    if kink is not None:
        status[kink] = KINK
    rel_err[~np.isfinite(scale)] = np.nan
    status[~np.isfinite(numeric)] = INCONCLUSIVE
    status[~np.isfinite(analytic)] = ANALYTIC_NONFINITE
    return Comparison(analytic, numeric, abs_err, rel_err, tolerance, status)
