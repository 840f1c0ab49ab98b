"""Entry-by-entry comparison of an analytic gradient with a numerical one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._base.options import Tolerance
from .._tree.pytree import LeafInfo
from .steps import NOISE_FACTOR, default_floor

# Per-entry verdicts, stored as small ints in `Comparison.status`. Entries with a
# status of FAILING or above fail the check.
OK, KINK, BOTH_NONFINITE, MISMATCH, ANALYTIC_NONFINITE, INCONCLUSIVE = range(6)
FAILING = MISMATCH
STATUS_NAMES = {
    OK: "ok",
    KINK: "kink",
    BOTH_NONFINITE: "nan/inf on both sides",
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

    def column(self, k: int) -> Comparison:
        """The comparison of column k alone (of a two-dimensional comparison)."""
        return Comparison(
            *(getattr(self, f.name)[:, k] for f in dataclasses.fields(self))
        )

    @property
    def failed(self) -> np.ndarray:
        return self.status >= FAILING

    @property
    def score(self) -> np.ndarray:
        """abs_err / tolerance: how many times its pass band an entry is off."""
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(self.abs_err > 0, self.abs_err / self.tolerance, 0.0)
        score = np.where(np.isnan(score), np.inf, score)
        agrees = (self.status == KINK) | (self.status == BOTH_NONFINITE)
        score = np.where(agrees, 0.0, score)
        return np.where(self.status >= ANALYTIC_NONFINITE, np.inf, score)


def relative_difference(
    analytic: np.ndarray, numeric: np.ndarray, band: np.ndarray | None = None
) -> float:
    """‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂), the lecture's figure; 0 when both are zero.

    NaN where it means nothing: values not finite, or (given the entries' pass
    bands `band`) a gradient that is zero to within them, where any round-off
    (0 against 1e-11) reads as a 100 % difference."""
    norms = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if not np.isfinite(norms):
        return float("nan")
    if band is not None:
        with np.errstate(invalid="ignore"):
            scale = np.maximum(np.abs(analytic), np.abs(numeric))
        if not np.any(scale > band):  # every entry zero to within its band
            return float("nan")
    return float(np.linalg.norm(analytic - numeric) / norms) if norms > 0 else 0.0


def meaningful(c: Comparison) -> np.ndarray:
    """The entries whose relative error means something: at least one side is
    larger than the entry's pass band (the others are zero to round-off)."""
    with np.errstate(invalid="ignore"):
        return np.maximum(np.abs(c.analytic), np.abs(c.numeric)) > c.tolerance


def entry_band(
    dtype: np.dtype,
    analytic: np.ndarray,
    numeric: np.ndarray,
    bound: np.ndarray,
    largest: float,
    tolerance: Tolerance,
) -> np.ndarray:
    """The pass band of entries of one dtype: atol + rtol·max(|a|, |n|).

    By default atol is the entry's error `bound` plus the dtype's floor times
    `largest` (the largest |numeric| value among the entries compared together,
    e.g. a leaf), and rtol the dtype's floor. This is the only place a pass band
    is computed.
    """
    floor = default_floor(dtype)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
    if tolerance.atol is None:
        tiny = float(np.finfo(np.float64).tiny)
        absolute = floor.atol * largest + bound + tiny
    else:
        absolute = tolerance.atol
    relative = floor.rtol if tolerance.rtol is None else tolerance.rtol
    band = absolute + relative * scale
    given = tolerance.floor_of(np.dtype(dtype))
    if given is not None:
        band = np.fmax(band, floor_band(*given, analytic, numeric))
    return band


def floor_band(
    atol: float, rtol: float, analytic: np.ndarray, numeric: np.ndarray
) -> np.ndarray:
    """A given floor's band, atol + rtol·max(|a|, |n|): the narrowest band an
    entry gets under `Tolerance.floors` (the `check_grads` drop-in's)."""
    with np.errstate(invalid="ignore"):
        return atol + rtol * np.maximum(np.abs(analytic), np.abs(numeric))


@dataclasses.dataclass(frozen=True)
class OutputBlock:
    """Columns of a comparison that share a pass band's floor: one output leaf
    of `fun` (in one mode of a Jacobian check)."""

    offset: int
    size: int
    dtype: np.dtype


def lower_precision(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if jnp.finfo(a).eps >= jnp.finfo(b).eps else b


def pass_band(
    leaves: Sequence[LeafInfo],
    analytic: np.ndarray,
    numeric: np.ndarray,
    bound: np.ndarray,
    tolerance: Tolerance,
    outputs: Sequence[OutputBlock] | None = None,
) -> np.ndarray:
    """Per-value pass band (see `entry_band`), block by block.

    Rows are entries of θ and belong to `leaves`; for a function with several
    outputs, columns belong to `outputs`. A block's floors are those of the
    lower precision of its leaf's and its output's dtype (the leaf's alone for a
    scalar loss), scaled by the block's largest |numeric| value.
    """
    if analytic.ndim == 1:
        return pass_band(
            leaves, analytic[:, None], numeric[:, None], bound[:, None], tolerance
        )[:, 0]
    band = np.empty(analytic.shape)
    finite = np.where(np.isfinite(numeric), np.abs(numeric), 0.0)
    if outputs is None:
        outputs = [OutputBlock(0, analytic.shape[1], None)]
    for leaf in leaves:
        rows = slice(leaf.offset, leaf.offset + leaf.size)
        for out in outputs:
            cols = slice(out.offset, out.offset + out.size)
            if leaf.size == 0 or out.size == 0:
                continue
            dtype = leaf.dtype
            if out.dtype is not None:
                dtype = lower_precision(leaf.dtype, out.dtype)
            largest = float(np.max(finite[rows, cols]))
            band[rows, cols] = entry_band(
                dtype,
                analytic[rows, cols],
                numeric[rows, cols],
                bound[rows, cols],
                largest,
                tolerance,
            )
    return band


def compare(
    analytic: np.ndarray,
    numeric: np.ndarray,
    tolerance: np.ndarray,
    kink: np.ndarray | None = None,
    nan_agrees: bool = False,
) -> Comparison:
    """Entry i passes when |a − n| ≤ tolerance, both sides finite; an entry marked
    as a kink passes as such (its analytic value is a valid subgradient). With
    `nan_agrees` (the `check_grads` drop-in, as JAX), NaN on both sides or the
    same infinity on both sides agree."""
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
    if nan_agrees:
        with np.errstate(invalid="ignore"):
            same = (np.isnan(analytic) & np.isnan(numeric)) | (
                np.isinf(analytic) & (analytic == numeric)
            )
        status[same] = BOTH_NONFINITE
    return Comparison(analytic, numeric, abs_err, rel_err, tolerance, status)


def nondeterminism_tolerance(
    nondet_tol: float | None, out_dtype: np.dtype, base: np.ndarray | float
) -> float:
    """The spread of J(θ) between identical evaluations above which `fun` is
    nondeterministic, for every report: `nondet_tol` when given, else
    NOISE_FACTOR units of the output dtype's epsilon times max |J(θ)|."""
    if nondet_tol is not None:
        return float(nondet_tol)
    with np.errstate(invalid="ignore"):
        scale = float(np.nanmax(np.abs(np.asarray(base, np.float64)), initial=0.0))
    return NOISE_FACTOR * float(jnp.finfo(out_dtype).eps) * scale
