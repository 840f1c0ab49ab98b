"""JAX's cotangent-projection test of a VJP, as `jax.test_util.check_vjp` makes it.

JAX checks a VJP through one scalar: ⟨t, conj(vjp(conj c))⟩ against
⟨numerical JVP along t, c⟩, for a tangent t and a cotangent c drawn by
`rand_like` from one `np.random.RandomState(0)`, the JVP a central difference
with JAX's step (1e-4) in the arguments' own dtypes, and `atol`/`rtol` looked up
by the dtypes of the two scalars. Per entry, the drop-in takes those tolerances
as floors of each entry's band, which is looser than the projection where the
entries are small next to `atol`: a VJP off by a factor of 2 whose entries are
all below `atol` passes entry by entry but not in JAX's projection. So the
drop-in checks its VJP along JAX's cotangent, entry by entry, and then makes
JAX's projection test, on its own numbers and, where those fail it, on JAX's,
computed by JAX's arithmetic (two more evaluations of `f`): it fails only where
JAX's projection fails too, and adds no rule of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .._base.options import Tolerance
from .._engine.compare import floor_band
from .._engine.traced_fun import traced_fun
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport

JAX_EPS = 1e-4  # `jax.test_util`'s step for the numerical JVP


def _dtype(x: Any) -> np.dtype:
    """The dtype JAX's test utilities compute `x` in: its own, not canonicalized."""
    if hasattr(x, "dtype"):
        return np.dtype(x.dtype)
    if isinstance(x, (bool, int, float, complex)):
        return np.dtype(type(x))
    return np.asarray(x).dtype


def jax_draws(args: tuple[Any, ...], out: Any) -> tuple[list[np.ndarray], Any]:
    """The tangent and cotangent of JAX's `check_vjp`: `rand_like` over every
    leaf of `args`, then over every leaf of `out`, from one `RandomState(0)`.

    Returns the tangent, one array per leaf of `args`, and the cotangent to hand
    to the VJP (JAX's conjugated, as JAX hands it to `vjpfun`), shaped like `out`.
    """
    rng = np.random.RandomState(0)

    def rand_like(x: Any) -> np.ndarray:
        dtype, shape = _dtype(x), np.shape(x)
        draw = np.asarray(rng.randn(*shape), dtype)
        if dtype.kind == "c":
            draw = draw + dtype.type(1j) * np.asarray(rng.randn(*shape), dtype)
        return draw

    tangent = [rand_like(x) for x in jax.tree_util.tree_leaves(args)]
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    cotangent = [np.conj(rand_like(x)) for x in out_leaves]
    return tangent, jax.tree_util.tree_unflatten(treedef, cotangent)


def _inner(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """JAX's `inner_prod`: Σ Re(conj(x) · y), in the leaves' own dtypes."""
    total = None
    for x, y in zip(xs, ys, strict=True):
        part = np.real(np.dot(np.conj(x).reshape(-1), np.asarray(y).reshape(-1)))
        total = part if total is None else np.add(total, part)
    return np.asarray(0.0 if total is None else total)


def _moved(x: Any, t: np.ndarray, step: float) -> Any:
    """x + step·t in x's dtype, as JAX's `add(primals, scalar_mul(t, eps))`."""
    dtype = _dtype(x)
    return np.asarray(np.asarray(x) + np.multiply(t, np.array(step, t.dtype)), dtype)


def _jax_projection(f, args, vjp_fn, cotangent, tangent, eps, tolerance):
    """JAX's two scalars, by JAX's arithmetic, its tolerances, and whether it
    passes."""
    step = JAX_EPS if eps is None else eps
    leaves, treedef = jax.tree_util.tree_flatten(args)
    moving = [is_differentiable_leaf(x) for x in leaves]

    def at(sign: float) -> list[np.ndarray]:
        new = [
            _moved(x, t, sign * step) if m else x
            for x, t, m in zip(leaves, tangent, moving, strict=True)
        ]
        # By the trace the check made: `f`'s Python runs once per check.
        moved = jax.tree_util.tree_unflatten(treedef, new)
        out = traced_fun(f, *args)(*moved)
        return [np.asarray(y) for y in jax.tree_util.tree_leaves(out)]

    plus, minus = at(1.0), at(-1.0)
    jvp = []
    for p, m in zip(plus, minus, strict=True):
        with np.errstate(invalid="ignore"):  # inf − inf counts as 0, as in JAX
            d = np.where(
                p == m, np.zeros((), p.dtype), np.subtract(p, m, dtype=p.dtype)
            )
        jvp.append(np.multiply(d, np.array(0.5 / step, p.dtype), dtype=p.dtype))
    c = [np.conj(x) for x in jax.tree_util.tree_leaves(cotangent)]
    vjp = [np.conj(np.asarray(x)) for x in jax.tree_util.tree_leaves(vjp_fn(cotangent))]
    ts = [t for t, m in zip(tangent, moving, strict=True) if m]
    ip, expected = _inner(ts, vjp), _inner(jvp, c)
    atol, rtol = _tolerances(tolerance, (ip.dtype, expected.dtype))
    a, b = float(ip), float(expected)
    # np.testing.assert_allclose, as JAX calls it (a zero rtol is its 1e-7).
    ok = bool(np.isclose(a, b, rtol=rtol or 1e-7, atol=atol, equal_nan=True))
    return a, b, atol, rtol, ok


def _tolerances(tolerance: Tolerance, dtypes) -> tuple[float, float]:
    """JAX's `atol` and `rtol` for scalars of `dtypes`: the largest of each."""
    atol, rtol = 0.0, 0.0
    for dtype in dtypes:
        floor = tolerance.floor_of(np.dtype(jax.dtypes.canonicalize_dtype(dtype)))
        if floor is not None:
            atol, rtol = max(atol, floor[0]), max(rtol, floor[1])
    return atol, rtol


def projection_failure(
    report: GradCheckReport,
    f: Callable[..., Any],
    args: tuple[Any, ...],
    vjp_fn: Callable[[Any], Any],
    cotangent: Any,
    tangent: list[np.ndarray],
    eps: float | None,
    tolerance: Tolerance,
) -> str | None:
    """Why the VJP fails JAX's projection test, or None when it passes.

    `report` is the VJP's passed entry-by-entry check along `cotangent` (every
    entry smooth), `tangent` and `cotangent` are `jax_draws`', `eps` the
    drop-in's (None: JAX's 1e-4) and `tolerance` holds JAX's tolerances by dtype.
    The projection ⟨t, cᵀJ⟩ is made twice: on the report's numbers (the float64
    twin's differences; an entry's band beyond its floor is its numbers'
    uncertainty, allowed along t too) and as JAX makes it. The VJP fails only
    when both fail: where JAX's passes there is no false alarm, where JAX's
    numbers alone fail (a step across a domain edge, float32 round-off in its
    differences) the drop-in's more accurate ones decide.
    """
    comparison = report.comparison
    a = np.asarray(comparison.analytic).reshape(-1)
    n = np.asarray(comparison.numeric).reshape(-1)
    band = np.asarray(comparison.tolerance).reshape(-1)
    all_leaves = jax.tree_util.tree_leaves(args)
    moving = [is_differentiable_leaf(x) for x in all_leaves]
    leaves = [x for x, m in zip(all_leaves, moving, strict=True) if m]
    ts = [np.reshape(t, -1) for t, m in zip(tangent, moving, strict=True) if m]
    t = np.concatenate(ts) if ts else np.zeros(0)
    if t.size != a.size:
        return None  # not laid out as θ: nothing to project
    entry = _tolerances(tolerance, [_dtype(x) for x in leaves])
    slack = np.maximum(band - floor_band(entry[0], entry[1], a, n), 0.0)
    out = jax.tree_util.tree_leaves(cotangent)
    atol, rtol = _tolerances(tolerance, [np.real(np.zeros((), _dtype(x))).dtype
                                         for x in leaves + out])  # fmt: skip
    ip, expected = float(np.real(np.sum(t * a))), float(np.real(np.sum(t * n)))
    allowed = atol + rtol * abs(expected) + float(np.sum(np.abs(t) * slack))
    if abs(ip - expected) <= allowed:
        return None
    jax_ip, jax_expected, jax_atol, jax_rtol, ok = _jax_projection(
        f, args, vjp_fn, cotangent, tangent, eps, tolerance
    )
    if ok:
        return None
    return (
        f"the cotangent projection differs: {jax_ip:.6g} against {jax_expected:.6g} "
        f"as jax.test_util.check_grads computes it (atol {jax_atol:g}, rtol "
        f"{jax_rtol:g}), and {ip:.6g} against {expected:.6g} on the drop-in's own "
        "numbers, although every entry is within its band; the VJP is off by a "
        "factor or a term spread over entries that are small next to `atol`."
    )
