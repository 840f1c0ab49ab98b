"""JAX's cotangent-projection test, on the drop-in's per-entry VJP numbers.

`jax.test_util.check_grads` checks a VJP through one scalar: the projection
⟨t, cᵀJ⟩ along a random t, against the same projection of the numerical side,
with `atol` and `rtol` as they are (a scalar has size 1). Per entry, the drop-in
takes those tolerances as floors of each entry's band, which is looser than the
projection where the entries are small next to `atol`: a VJP off by a factor of
2 whose entries are all below `atol` passes entry by entry but not in JAX's
projection. So, after the entries pass, the drop-in also applies JAX's test to
its own numbers (more accurate than JAX's single difference): to the size a
random projection of the error typically has, ‖a − n‖₂ against atol + rtol ·
‖n‖₂, which does not depend on a lucky draw, and along random directions.
"""

from __future__ import annotations

import numpy as np

from .._base.options import Tolerance
from .._engine.compare import OK, floor_band
from .._verdict.report import GradCheckReport

_PROJECTIONS = 3  # random directions t, as JAX's one but less left to chance


def _random_directions(a: np.ndarray, n: np.ndarray, rng: np.random.RandomState):
    """`_PROJECTIONS` random directions t, drawn as JAX draws its one."""
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
    # A random projection ⟨t, a − n⟩ is typically ‖a − n‖₂ in size (t of unit
    # variance per entry): the test JAX's draw makes on average, free of luck.
    # The numbers' uncertainty is allowed in full, as along any t.
    typical = float(np.linalg.norm(a - n))
    allowed = atol + rtol * float(np.linalg.norm(n)) + float(np.sum(slack))
    if typical > allowed:
        return (
            f"the VJP's error is {typical:.6g} in size (its L2 norm, the size of "
            "a random cotangent projection of it, as jax.test_util.check_grads "
            f"takes one) against {allowed:.6g} allowed (atol {atol:g} + rtol "
            f"{rtol:g} × the numerical VJP's L2 norm), although every entry is "
            "within its band; the VJP is off by a factor or a term spread over "
            "entries that are small next to `atol`."
        )
    rng = np.random.RandomState(0)
    for k, t in enumerate(_random_directions(a, n, rng)):
        ip = float(np.real(np.vdot(t, a)))
        expected = float(np.real(np.vdot(t, n)))
        allowed = atol + rtol * abs(expected) + float(np.sum(np.abs(t) * slack))
        if abs(ip - expected) > allowed:
            return (
                f"the cotangent projection along random direction {k + 1} differs "
                f"as jax.test_util.check_grads would see it: {ip:.6g} against "
                f"{expected:.6g} (atol {atol:g}, rtol {rtol:g}), although every "
                "entry is within its band; the VJP is off by a factor or a term "
                "spread over entries that are small next to `atol`."
            )
    return None
