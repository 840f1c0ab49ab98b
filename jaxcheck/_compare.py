"""Entry-by-entry comparison of an analytic gradient with a numerical one."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._pytree import LeafInfo
from ._steps import default_tolerance

# Per-entry verdicts, stored as small ints in `Comparison.status`.
OK, MISMATCH, ANALYTIC_NONFINITE, NUMERIC_NONFINITE = 0, 1, 2, 3
STATUS_NAMES = {
    OK: "ok",
    MISMATCH: "mismatch",
    ANALYTIC_NONFINITE: "analytic nan/inf",
    NUMERIC_NONFINITE: "numeric nan/inf",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """Flat, θ-ordered arrays: one value per perturbed entry."""

    analytic: np.ndarray
    numeric: np.ndarray
    abs_err: np.ndarray
    rel_err: np.ndarray
    tolerance: np.ndarray
    status: np.ndarray  # int8 codes, see STATUS_NAMES

    @property
    def score(self) -> np.ndarray:
        """abs_err / tolerance: how many times its pass band an entry is off."""
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(self.abs_err > 0, self.abs_err / self.tolerance, 0.0)
        return np.where(self.status >= ANALYTIC_NONFINITE, np.inf, score)


def relative_difference(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂), the lecture's figure; 0 when both are zero."""
    norms = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if not np.isfinite(norms):
        return float("nan")
    return float(np.linalg.norm(analytic - numeric) / norms) if norms > 0 else 0.0


def tolerances(
    leaves: list[LeafInfo] | tuple[LeafInfo, ...],
    noise: np.ndarray,
    atol: float | None,
    rtol: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry (atol, rtol). A default atol adds the entry's round-off term."""
    n = noise.size
    atols, rtols = np.empty(n), np.empty(n)
    for leaf in leaves:
        part = slice(leaf.offset, leaf.offset + leaf.size)
        default = default_tolerance(leaf.dtype)
        rtols[part] = default.rtol if rtol is None else rtol
        atols[part] = default.atol + noise[part] if atol is None else atol
    return atols, rtols


def compare(
    analytic: np.ndarray, numeric: np.ndarray, atols: np.ndarray, rtols: np.ndarray
) -> Comparison:
    """Entry i passes when |a − n| ≤ atol + rtol·max(|a|, |n|), both sides finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.abs(analytic - numeric)
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
        rel_err = np.where(scale > 0, abs_err / np.where(scale > 0, scale, 1), 0.0)
        tolerance = atols + rtols * scale
        status = np.where(abs_err <= tolerance, OK, MISMATCH).astype(np.int8)
    rel_err[~np.isfinite(scale)] = np.nan
    status[~np.isfinite(numeric)] = NUMERIC_NONFINITE
    status[~np.isfinite(analytic)] = ANALYTIC_NONFINITE
    return Comparison(analytic, numeric, abs_err, rel_err, tolerance, status)
