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
JAX's projection test on its own numbers and, where those fail it, runs JAX's
own `jax.test_util.check_vjp` (two more evaluations of `f`): it fails only where
JAX's projection fails too, and adds no rule of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.test_util as jax_test_util
import numpy as np

from .._base.options import Tolerance
from .._engine.compare import floor_band
from .._engine.traced_fun import traced_fun
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport


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


def _jax_check_vjp(f, args, vjp_fn, eps, tolerance) -> str | None:
    """JAX's own `jax.test_util.check_vjp` of the VJP `vjp_fn`, by the trace the
    check made (`f`'s Python runs once per check): its failure message, or None
    when it passes."""
    atol = {dtype: a for dtype, a, _ in tolerance.floors}
    rtol = {dtype: r for dtype, _, r in tolerance.floors}
    step = {} if eps is None else {"eps": eps}
    traced = traced_fun(f, *args)
    # The primal is `f`'s value by the same evaluation JAX's check compares it
    # with: the VJP was checked entry by entry, its primal is not in question.
    structure = jax.tree_util.tree_structure(traced.out_info)

    def f_vjp(*primals: Any) -> tuple[Any, Callable[[Any], Any]]:
        def pullback(c: Any) -> Any:  # `vjp_fn` takes c in `f`'s own structure
            return vjp_fn(structure.unflatten(jax.tree_util.tree_leaves(c)))

        return traced(*primals), pullback

    try:
        jax_test_util.check_vjp(traced, f_vjp, args, atol=atol, rtol=rtol, **step)
    except AssertionError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else "failed"
    return None


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
    entry smooth), `vjp_fn` the VJP it checked, `tangent` and `cotangent`
    `jax_draws`', `eps` the drop-in's (None: JAX's) and
    `tolerance` holds JAX's tolerances by dtype. The projection ⟨t, cᵀJ⟩ is made
    twice: on the report's numbers (the float64 twin's differences; an entry's
    band beyond its floor is its numbers' uncertainty, allowed along t too) and
    by JAX's own `jax.test_util.check_vjp`, which draws the same t and c. The
    VJP fails only when both fail: where JAX's passes there is no false
    alarm, where JAX's numbers alone fail (a step across a domain edge, float32
    round-off in its differences) the drop-in's more accurate ones decide.
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
    jax_says = _jax_check_vjp(f, args, vjp_fn, eps, tolerance)
    if jax_says is None:
        return None
    return (
        f"the cotangent projection differs: {ip:.6g} against {expected:.6g} on the "
        f"drop-in's numbers (atol {atol:g}, rtol {rtol:g}), and in "
        f"jax.test_util.check_vjp ({jax_says}), although every entry is within its "
        "band; the VJP is off by a factor or a term spread over entries that are "
        "small next to `atol`."
    )
