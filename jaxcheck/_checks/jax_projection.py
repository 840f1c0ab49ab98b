"""JAX's cotangent-projection test, on the drop-in's per-entry VJP numbers.

`jax.test_util.check_grads` checks a VJP through one scalar: the projection
⟨t, cᵀJ⟩ along a random t, against the same projection of the numerical side,
with `atol` and `rtol` as they are (a scalar has size 1). Per entry, the drop-in
takes those tolerances as floors of each entry's band, which is looser than the
projection where the entries are small next to `atol`: a VJP off by a factor of
2 whose entries are all below `atol` passes entry by entry but not in JAX's
projection. So, after the entries pass, the drop-in also applies JAX's test to
its own numbers (more accurate than JAX's single difference): it catches every
error JAX's projection catches, and locates it no worse.
"""

from __future__ import annotations

import numpy as np

from .._base.options import Tolerance
from .._engine.compare import OK
from .._verdict.report import GradCheckReport

_PROJECTIONS = 3  # random directions t, as JAX's one but less left to chance


def projection_failure(report: GradCheckReport, tolerance: Tolerance) -> str | None:
    """Why the VJP's projections fail JAX's test, or None when they pass.

    Only entries that passed as smooth ones take part: one at a kink passed as
    a valid subgradient, and one not finite on both sides was judged entry by
    entry, as in JAX."""
    a = np.asarray(report.comparison.analytic).reshape(-1)
    n = np.asarray(report.comparison.numeric).reshape(-1)
    smooth = np.asarray(report.comparison.status).reshape(-1) == OK
    a, n = a[smooth], n[smooth]
    if a.size == 0:
        return None
    floors = [tolerance.floor_of(np.dtype(leaf.dtype)) for leaf in report.leaves]
    floors = [f for f in floors if f is not None]
    if not floors:
        return None
    atol = max(f[0] for f in floors)
    rtol = max(f[1] for f in floors)
    rng = np.random.RandomState(0)
    for k in range(_PROJECTIONS):
        t = rng.standard_normal(a.shape)
        if np.iscomplexobj(a) or np.iscomplexobj(n):
            t = t + 1j * rng.standard_normal(a.shape)
        ip = float(np.real(np.vdot(t, a)))
        expected = float(np.real(np.vdot(t, n)))
        if abs(ip - expected) > atol + rtol * abs(expected):
            return (
                f"the cotangent projection along random direction {k + 1} differs "
                f"as jax.test_util.check_grads would see it: {ip:.6g} against "
                f"{expected:.6g} (atol {atol:g}, rtol {rtol:g}), although every "
                "entry is within its band; the VJP is off by a factor or a term "
                "spread over entries that are small next to `atol`."
            )
    return None
