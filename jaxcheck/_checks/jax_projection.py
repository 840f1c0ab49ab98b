"""JAX's cotangent-projection test, on the drop-in's per-entry VJP numbers.

`jax.test_util.check_grads` checks a VJP through one scalar: the projection
⟨t, cᵀJ⟩ along a random t, against the same projection of the numerical side,
with `atol` and `rtol` as they are (a scalar has size 1). Per entry, the drop-in
takes those tolerances as floors of each entry's band, which is looser than the
projection where the entries are small next to `atol`: a VJP off by a factor of
2 whose entries are all below `atol` passes entry by entry but not in JAX's
projection. So, after the entries pass, the drop-in also applies JAX's test to
its own numbers (more accurate than JAX's single difference), along the
direction in which the error shows most and along random ones: a projection
JAX's random draw happens to fail, the error's own direction fails too.
"""

from __future__ import annotations

import numpy as np

from .._base.options import Tolerance
from .._engine.compare import OK, floor_band
from .._verdict.report import GradCheckReport

_PROJECTIONS = 3  # random directions t, as JAX's one but less left to chance


def _directions(a: np.ndarray, n: np.ndarray, rng: np.random.RandomState):
    """The directions t of the projections: first the one along which the
    error shows most for entries of unit weight, t = (a − n)/|a − n| (so
    ⟨t, a − n⟩ is the error's L1 norm, which no random t of unit-size entries
    exceeds), then `_PROJECTIONS` random ones, as JAX draws them."""
    error = a - n
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(np.abs(error) > 0, error / np.abs(error), 0.0)
    yield np.where(np.isfinite(unit), unit, 0.0)
    for _ in range(_PROJECTIONS):
        t = rng.standard_normal(a.shape)
        if np.iscomplexobj(a) or np.iscomplexobj(n):
            t = t + 1j * rng.standard_normal(a.shape)
        yield t


def projection_failure(report: GradCheckReport, tolerance: Tolerance) -> str | None:
    """Why the VJP's projections fail JAX's test, or None when they pass.

    Only entries that passed as smooth ones take part: one at a kink passed as
    a valid subgradient, and one not finite on both sides was judged entry by
    entry, as in JAX."""
    c = report.comparison
    a = np.asarray(c.analytic).reshape(-1)
    n = np.asarray(c.numeric).reshape(-1)
    band = np.asarray(c.tolerance).reshape(-1)
    smooth = np.asarray(c.status).reshape(-1) == OK
    a, n, band = a[smooth], n[smooth], band[smooth]
    if a.size == 0:
        return None
    floors = [tolerance.floor_of(np.dtype(leaf.dtype)) for leaf in report.leaves]
    floors = [f for f in floors if f is not None]
    if not floors:
        return None
    atol = max(f[0] for f in floors)
    rtol = max(f[1] for f in floors)
    # Where an entry's band is wider than the floors, the numbers themselves are
    # uncertain by that much (round-off, truncation): the projection allows the
    # same uncertainty along t, so it judges the rule, not jaxcheck's noise.
    slack = np.maximum(band - floor_band(atol, rtol, a, n), 0.0)
    rng = np.random.RandomState(0)
    for k, t in enumerate(_directions(a, n, rng)):
        ip = float(np.real(np.vdot(t, a)))
        expected = float(np.real(np.vdot(t, n)))
        allowed = atol + rtol * abs(expected) + float(np.sum(np.abs(t) * slack))
        if abs(ip - expected) > allowed:
            which = "the error" if k == 0 else f"random direction {k}"
            return (
                f"the cotangent projection along {which} differs "
                f"as jax.test_util.check_grads would see it: {ip:.6g} against "
                f"{expected:.6g} (atol {atol:g}, rtol {rtol:g}), although every "
                "entry is within its band; the VJP is off by a factor or a term "
                "spread over entries that are small next to `atol`."
            )
    return None
