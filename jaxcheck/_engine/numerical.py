"""Finite differences of `fun` for chosen entries of θ: the engine's core.

`fun` may have any number of outputs (a scalar loss has one): every array here
has a trailing output axis. Each public check reaches finite differences
through `differences` (and `_engine.refine.judge`, which calls it), never another way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._base import validate as _validate
from .._base.options import Options
from .._runtime.fingerprint import fingerprint
from .._runtime.multiprocess import agree, is_multiprocess
from .._runtime.sharding import adopt, host_value
from .._tree.pytree import SplitTree, format_path, split
from .evaluate import trace_base
from .jaxpr import evaluation_way, intermediate_bytes
from .perturb import evaluate_shifts
from .steps import roundoff_bound, step_sizes

_SIGNS = {
    "central": (1.0, -1.0),
    "forward": (1.0,),
    "backward": (-1.0,),
    "central4": (1.0, -1.0, 2.0, -2.0),
    "complex": (1.0,),
}


# Repeated evaluations of J(θ) in a check's first batch, to detect
# nondeterminism (see `_engine.refine.judge`).
FIRST_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated check: the split pytree and what tracing `fun` once told us.

    `n_outputs` is 1 for a scalar `fun`, else the length of its flat output.
    """

    tree: SplitTree
    out_dtype: np.dtype
    fun_bytes: int  # intermediates of one evaluation of `fun`
    n_outputs: int = 1
    # How the points are evaluated (see `_engine.jaxpr.evaluation_way`): op by
    # op or compiled, batched or one point at a time.
    eager: bool = False
    batched: bool = True

    @property
    def way(self) -> str:
        """How the points are evaluated, as reports say it."""
        way = "eager" if self.eager else "compiled"
        return way if self.batched else f"{way}, one point at a time"


def prepare(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    options: Options,
    *,
    scalar: bool = True,
) -> Prepared:
    """Validates `fun` and the point (the options are validated already), splits
    the pytree and traces `fun` once.

    With `scalar`, `fun` must return a real scalar; otherwise a flat vector.
    Under `jax.distributed`, the processes then check that they all prepared
    the same check.
    """
    _validate.check_fun(fun)
    _validate.check_not_traced(params, args)
    tree = split(fun, params, args)
    _validate.check_has_entries(tree)
    sharded = [leaf.sharding for leaf in tree.leaves if leaf.sharding is not None]
    adopt(sharded)
    traced = trace_base(tree.problem, tree.dynamic)
    if scalar:
        _validate.check_output(traced.out_info)
    if is_multiprocess():
        program = traced.lower().as_text()
        agree(fingerprint(program, tree.dynamic, options, 0))
    fun_bytes = intermediate_bytes(traced.jaxpr.jaxpr)
    # Central differences, refined at 2h: about four evaluations per entry.
    # The analytic side goes the same way as the points.
    eager, batched = evaluation_way(
        traced.jaxpr.jaxpr, fun_bytes, 4 * tree.size, sharded=bool(sharded)
    )
    return Prepared(
        tree=tree,
        out_dtype=np.dtype(traced.out_info.dtype),
        fun_bytes=fun_bytes,
        n_outputs=1 if scalar else int(traced.out_info.shape[0]),
        eager=eager,
        batched=batched,
    )


@dataclasses.dataclass(frozen=True)
class Differences:
    """Finite differences of some entries of θ at one step size, on the host.

    Rows are the entries of θ, columns the outputs of `fun` (one for a loss).
    For the central method `forward` and `backward` are the one-sided slopes
    (J(θ+h) − J(θ)) / h and (J(θ) − J(θ−h)) / h along the real axis, from the same
    batch; for the one-sided methods they are NaN.
    """

    entries: np.ndarray  # offsets into θ
    derivative: np.ndarray  # (n, M) float64, or complex128 when a leaf is complex
    noise: np.ndarray  # (n, M) float64 bound on the round-off error of each
    steps: np.ndarray  # (n,) float64 step h of each entry
    forward: np.ndarray  # (n, M)
    backward: np.ndarray  # (n, M)
    spread: float  # largest spread of J(θ) re-evaluated within one batch
    base: np.ndarray | None = None  # (n, M): J(θ) from the batch of each entry


def change(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """upper − lower, with equal values (the same infinity included) differing by
    0: an output stuck at −Inf does not move (as in JAX's check_grads)."""
    with np.errstate(invalid="ignore"):
        return np.where(upper == lower, 0.0, upper - lower)


def _magnitude(*values: np.ndarray) -> np.ndarray:
    """max |value|, the scale of a difference's round-off; 0 where the values
    are one and the same infinity (nothing was subtracted)."""
    scale = np.abs(values[0])
    for v in values[1:]:
        scale = np.maximum(scale, np.abs(v))
    same = np.ones(scale.shape, bool)
    for v in values[1:]:
        same &= v == values[0]
    return np.where(np.isinf(scale) & same, 0.0, scale)


def _check_steps_resolve(moved: np.ndarray, tree: SplitTree, entries, eps) -> None:
    zero = np.flatnonzero(np.any(moved[0] == 0, axis=0))
    if zero.size == 0:
        return
    flat = int(entries[zero[0]])
    leaf = next(x for x in tree.leaves if x.offset + x.size > flat)
    index = leaf.locate(flat)
    raise ValueError(
        f"`eps`={eps!r} is below the resolution of {leaf.dtype.name} at "
        f"{format_path(leaf.path)}{list(index) if index else ''}: θ ± eps rounds back "
        "to θ. Use a larger `eps`, or eps=None for a step scaled to each entry."
    )


def entry_steps(tree: SplitTree, method: str, eps: float | None) -> np.ndarray:
    """The default step h of every entry of θ (see `step_sizes`)."""
    steps = np.zeros(tree.size)
    for leaf in tree.leaves:
        theta = host_value(tree.dynamic[leaf.position]).reshape(-1)
        steps[leaf.offset : leaf.offset + leaf.size] = step_sizes(
            theta, leaf.dtype, method, eps
        )
    return steps


def roundoff_unit(prepared: Prepared, entries: np.ndarray) -> np.ndarray:
    """Per entry, the larger machine epsilon of its leaf's and of the output dtype."""
    out_eps = float(jnp.finfo(prepared.out_dtype).eps)
    u = np.empty(len(entries))
    for leaf in prepared.tree.leaves:
        lo, hi = np.searchsorted(entries, [leaf.offset, leaf.offset + leaf.size])
        u[lo:hi] = max(float(jnp.finfo(leaf.dtype).eps), out_eps)
    return u


def differences(
    prepared: Prepared,
    entries: np.ndarray,
    steps: np.ndarray,
    *,
    method: str,
    eps: float | None,
    chunk_size: int | None,
    memory_budget: int,
    repeats: int = 1,
    strict: bool = True,
) -> Differences:
    """Finite differences at `entries` (sorted offsets into θ) with steps `steps`.

    With `strict`, a step that rounds back to θ is an error naming the entry;
    otherwise that entry's difference is NaN.
    """
    signs = _SIGNS[method]
    shifted = evaluate_shifts(
        prepared.tree,
        prepared.fun_bytes,
        entries,
        steps,
        signs,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        repeats=repeats,
        imaginary=method == "complex",
        n_outputs=prepared.n_outputs,
        eager=prepared.eager,
        batched=prepared.batched,
    )
    if strict:
        _check_steps_resolve(shifted.moved, prepared.tree, entries, eps)
    values, moved, base = shifted.values, shifted.moved, shifted.base
    is_complex = np.isfinite(moved[1, 0])[:, None]  # real entries: no second row
    moved = np.where(moved == 0, np.nan, moved)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        if method in ("central", "central4"):
            slopes = change(values[:, 0], values[:, 1]) / (moved[:, 0] - moved[:, 1])
            scale = _magnitude(values[:, 0], values[:, 1])
            width = np.abs(moved[:, 0] - moved[:, 1])
            if method == "central4":
                # Richardson on the central differences at h and 2h: the
                # five-point stencil (8(J₁ − J₋₁) − (J₂ − J₋₂)) / 12h. Its
                # round-off is that of 4/3·D(h) + 1/3·D(2h), bounded via a width
                # of 3/4 of 2h.
                wide = change(values[:, 2], values[:, 3]) / (moved[:, 2] - moved[:, 3])
                slopes = (4 * slopes - wide) / 3
                scale = np.maximum(scale, _magnitude(values[:, 2], values[:, 3]))
                width = 0.75 * width
            forward = change(values[0, 0], base) / moved[0, 0]
            backward = change(base, values[0, 1]) / -moved[0, 1]
        elif method == "complex":
            slopes = values[:, 0] / moved[:, 0]
            # No subtraction: the error is a few units of the derivative itself.
            scale = np.abs(values[:, 0])
            width = np.abs(moved[:, 0])
            forward = backward = np.full(base.shape, np.nan)
        else:
            slopes = change(values[:, 0], base) / moved[:, 0]
            scale = _magnitude(values[:, 0], base)
            width = np.abs(moved[:, 0])
            forward = backward = np.full(base.shape, np.nan)
    # JAX's convention for a real function of a complex z = x + iy:
    # grad = ∂J/∂x − i ∂J/∂y. Real entries have NaN in the second row.
    derivative = slopes[0]
    if np.any(is_complex):
        derivative = np.where(is_complex, slopes[0] - 1j * slopes[1], slopes[0])
    u = roundoff_unit(prepared, entries)[:, None]
    # A complex entry's bound is the larger of its real and imaginary steps'.
    noise = np.fmax.reduce(roundoff_bound(u, scale, width), axis=0)
    return Differences(
        entries, derivative, noise, steps, forward, backward, shifted.spread, base
    )


def finite_differences(
    prepared: Prepared,
    *,
    method: str,
    eps: float | None,
    chunk_size: int | None,
    memory_budget: int,
    repeats: int = 1,
    entries: np.ndarray | None = None,
) -> Differences:
    """Finite differences of every entry of θ (or of `entries`, sorted offsets
    into θ) at its default (or `eps`) step."""
    steps = entry_steps(prepared.tree, method, eps)
    if entries is None:
        entries = np.arange(prepared.tree.size)
    return differences(
        prepared,
        entries,
        steps[entries],
        method=method,
        eps=eps,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        repeats=repeats,
    )
