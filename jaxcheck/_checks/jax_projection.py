"""JAX's cotangent-projection test, on the drop-in's per-entry VJP numbers.

`jax.test_util.check_grads` checks a VJP through one scalar: the projection
⟨t, cᵀJ⟩ along one random tangent t, drawn from `np.random.RandomState(0)`,
against the same projection of the numerical side, with `atol` and `rtol` as
they are (a scalar has size 1). Per entry, the drop-in takes those tolerances as
floors of each entry's band, which is looser than the projection where the
entries are small next to `atol`: a VJP off by a factor of 2 whose entries are
all below `atol` passes entry by entry but not in JAX's projection. So, after
the entries pass, the drop-in applies JAX's test itself, once, along the
tangent and cotangent JAX's `check_vjp` draws (`jax_draws`), to its own (more
accurate) numbers. It adds no rule of its own: where every entry is within its
band and JAX's projection passes, the VJP passes; where JAX's projection fails,
so does the drop-in's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.options import Tolerance
from .._engine.compare import OK, floor_band
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport


def jax_draws(args: tuple[Any, ...], out: Any) -> tuple[np.ndarray, Any]:
    """The tangent and cotangent of JAX's `check_vjp`: `rand_like` over every
    leaf of `args`, then over every leaf of `out`, from one `RandomState(0)`.

    Returns the tangent at the floating leaves of `args`, flat in θ's order,
    and the cotangent to hand to the VJP, conjugated as JAX conjugates it.
    """
    rng = np.random.RandomState(0)

    def rand_like(x: Any) -> np.ndarray:
        dtype = np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
        shape = np.shape(x)
        draw = np.asarray(rng.randn(*shape), dtype)
        if dtype.kind == "c":
            draw = draw + dtype.type(1j) * np.asarray(rng.randn(*shape), dtype)
        return draw

    leaves = jax.tree_util.tree_leaves(args)
    tangent = [rand_like(x) for x in leaves]
    flat = [t.reshape(-1) for t, x in zip(tangent, leaves, strict=True)
            if is_differentiable_leaf(x)]  # fmt: skip
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    cotangent = [np.conj(rand_like(x)) for x in out_leaves]
    return np.concatenate(flat), jax.tree_util.tree_unflatten(treedef, cotangent)


def projection_dtypes(args: tuple[Any, ...], out: Any) -> tuple[np.dtype, ...]:
    """The dtypes of JAX's two projections, by which it looks its tolerances up:
    the real dtypes that ⟨t, vjp⟩ (over `args`) and ⟨jvp, c⟩ (over `out`) have
    (a complex64 VJP is projected in float32 and judged by float32's tolerance)."""
    dtypes = []
    for tree in (args, out):
        leaves = [
            x for x in jax.tree_util.tree_leaves(tree) if is_differentiable_leaf(x)
        ]
        kinds = [np.dtype(jnp.finfo(jnp.result_type(x)).dtype) for x in leaves]
        if kinds:  # NumPy's promotion of floats: the widest (no strict mode here)
            dtypes.append(max(kinds, key=lambda d: d.itemsize))
    return tuple(dtypes)


def projection_failure(
    report: GradCheckReport,
    tolerance: Tolerance,
    tangent: np.ndarray,
    dtypes: tuple[np.dtype, ...],
) -> str | None:
    """Why the VJP's projection along `tangent` (over every compared entry, as
    `jax_draws` gives it) fails JAX's test with the tolerances of `dtypes`
    (`projection_dtypes`), or None when it passes.

    Only entries that passed as smooth ones take part: one at a kink passed as
    a valid subgradient, and one not finite on both sides was judged entry by
    entry, as in JAX."""
    c = report.comparison
    a = np.asarray(c.analytic).reshape(-1)
    n = np.asarray(c.numeric).reshape(-1)
    band = np.asarray(c.tolerance).reshape(-1)
    smooth = np.asarray(c.status).reshape(-1) == OK
    t = np.asarray(tangent).reshape(-1)[smooth]
    a, n, band = a[smooth], n[smooth], band[smooth]
    if a.size == 0:
        return None
    entry_floors = [tolerance.floor_of(np.dtype(x.dtype)) for x in report.leaves]
    floors = [tolerance.floor_of(dtype) for dtype in dtypes]
    if None in entry_floors or None in floors or not floors:
        return None
    # Where an entry's band is wider than its dtype's floor, the numbers
    # themselves are uncertain by that much (round-off, truncation): the
    # projection allows the same uncertainty along t, so it judges the rule,
    # not jaxcheck's noise.
    entry_atol = max(f[0] for f in entry_floors)
    entry_rtol = max(f[1] for f in entry_floors)
    slack = np.maximum(band - floor_band(entry_atol, entry_rtol, a, n), 0.0)
    atol = max(f[0] for f in floors)
    rtol = max(f[1] for f in floors)
    # JAX's ⟨t, conj(vjp(conj c))⟩, with the conjugated cotangent given.
    ip = float(np.real(np.sum(t * a)))
    expected = float(np.real(np.sum(t * n)))
    allowed = atol + rtol * abs(expected) + float(np.sum(np.abs(t) * slack))
    if abs(ip - expected) <= allowed:
        return None
    return (
        f"the cotangent projection along a random tangent differs as "
        f"jax.test_util.check_grads sees it: {ip:.6g} against {expected:.6g} "
        f"(atol {atol:g}, rtol {rtol:g}), although every entry is within its "
        "band; the VJP is off by a factor or a term spread over entries that "
        "are small next to `atol`."
    )
