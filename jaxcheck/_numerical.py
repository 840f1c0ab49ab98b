"""Finite-difference gradients of every floating entry of a parameter pytree."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from . import _validate
from ._evaluate import (
    DEFAULT_MEMORY_BUDGET,
    evaluate,
    intermediate_bytes,
    trace_base,
)
from ._perturb import evaluate_shifts
from ._pytree import SplitTree, format_path, leaf_values_to_params, split
from ._steps import NOISE_FACTOR, step_sizes

_SIGNS = {
    "central": (1.0, -1.0),
    "forward": (1.0,),
    "backward": (-1.0,),
    "central4": (1.0, -1.0, 2.0, -2.0),
    "complex": (1.0,),
}


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated check: the split pytree and what tracing `fun` once told us."""

    tree: SplitTree
    out_dtype: np.dtype
    fun_bytes: int  # intermediates of one evaluation of `fun`


def prepare(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    *,
    method: str,
    eps: float | None,
    chunk_size: int | None,
    memory_budget: int,
) -> Prepared:
    """Validates the arguments, splits the pytree and traces `fun` once."""
    _validate.check_fun(fun)
    _validate.check_method(method)
    _validate.check_eps(eps)
    _validate.check_chunking(chunk_size, memory_budget)
    _validate.check_not_traced(params, args)
    tree = split(fun, params, args)
    _validate.check_has_entries(tree)
    traced = trace_base(tree.problem, tree.dynamic)
    _validate.check_output(traced.out_info)
    return Prepared(
        tree=tree,
        out_dtype=np.dtype(traced.out_info.dtype),
        fun_bytes=intermediate_bytes(traced.jaxpr.jaxpr),
    )


@dataclasses.dataclass(frozen=True)
class Differences:
    """Finite differences of some entries of θ at one step size, on the host.

    For the central method `forward` and `backward` are the one-sided slopes
    (J(θ+h) − J(θ)) / h and (J(θ) − J(θ−h)) / h along the real axis, from the same
    batch; for the one-sided methods they are NaN.
    """

    entries: np.ndarray  # offsets into θ
    derivative: np.ndarray  # float64, or complex128 when a leaf is complex
    noise: np.ndarray  # float64 bound on the round-off error of each derivative
    steps: np.ndarray  # float64 step h of each entry
    forward: np.ndarray
    backward: np.ndarray
    spread: float  # largest spread of J(θ) re-evaluated within one batch


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
        theta = np.asarray(tree.dynamic[leaf.position]).reshape(-1)
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
    )
    if strict:
        _check_steps_resolve(shifted.moved, prepared.tree, entries, eps)
    values, moved, base = shifted.values, shifted.moved, shifted.base
    is_complex = np.isfinite(moved[1, 0])  # real entries have no second row
    moved = np.where(moved == 0, np.nan, moved)
    if method in ("central", "central4"):
        with np.errstate(invalid="ignore"):
            slopes = (values[:, 0] - values[:, 1]) / (moved[:, 0] - moved[:, 1])
        scale = np.maximum(np.abs(values[:, 0]), np.abs(values[:, 1]))
        width = np.abs(moved[:, 0] - moved[:, 1])
        if method == "central4":
            # Richardson on the central differences at h and 2h: the five-point
            # stencil (8(J₁ − J₋₁) − (J₂ − J₋₂)) / 12h. Its round-off is that of
            # 4/3·D(h) + 1/3·D(2h), bounded via a width of 3/4 of 2h.
            with np.errstate(invalid="ignore"):
                wide = (values[:, 2] - values[:, 3]) / (moved[:, 2] - moved[:, 3])
            slopes = (4 * slopes - wide) / 3
            scale = np.maximum(scale, np.abs(values[:, 2:]).max(axis=1))
            width = 0.75 * width
        with np.errstate(invalid="ignore", divide="ignore"):
            forward = (values[0, 0] - base) / moved[0, 0]
            backward = (base - values[0, 1]) / -moved[0, 1]
    elif method == "complex":
        with np.errstate(invalid="ignore"):
            slopes = values[:, 0] / moved[:, 0]
        # No subtraction: the error is a few units of the derivative itself.
        scale = np.abs(values[:, 0])
        width = np.abs(moved[:, 0])
        forward = backward = np.full(len(entries), np.nan)
    else:
        with np.errstate(invalid="ignore"):
            slopes = (values[:, 0] - base) / moved[:, 0]
        scale = np.maximum(np.abs(values[:, 0]), np.abs(base))
        width = np.abs(moved[:, 0])
        forward = backward = np.full(len(entries), np.nan)
    # JAX's convention for a real function of a complex z = x + iy:
    # grad = ∂J/∂x − i ∂J/∂y. Real entries have NaN in the second row.
    derivative = slopes[0]
    if np.any(is_complex):
        derivative = np.where(is_complex, slopes[0] - 1j * slopes[1], slopes[0])
    u = roundoff_unit(prepared, entries)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise = np.fmax.reduce(NOISE_FACTOR * u * scale / width, axis=0)
    return Differences(
        entries, derivative, noise, steps, forward, backward, shifted.spread
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


def base_value_of(prepared: Prepared) -> float:
    tree = prepared.tree
    value = float(evaluate(tree.problem, tree.dynamic))
    _validate.check_base_value(value, tree)
    return value


def to_leaves(tree: SplitTree, flat: np.ndarray) -> list[np.ndarray]:
    """Cuts a flat θ-ordered vector into arrays shaped like the perturbed leaves."""
    return [
        flat[leaf.offset : leaf.offset + leaf.size].reshape(leaf.shape)
        for leaf in tree.leaves
    ]


def numerical_grad(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    method: str = "central",
    eps: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Any:
    """The finite-difference gradient of a scalar `fun` with respect to `params`.

    Every floating (and complex) entry of `params` is perturbed by ±h, and all the
    perturbed evaluations run batched (`vmap` inside `jit`), in chunks whose memory
    stays within `memory_budget`. Integer, boolean and PRNG-key arrays, Python ints,
    strings, callables and other static leaves pass through unperturbed; a Python
    float leaf is differentiable, as in `jax.grad`. `args` (data, keys) are shared
    by every evaluation and never perturbed.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters.
        *args: further arguments of `fun`, passed through unchanged.
        method: "central" (J(θ+h) − J(θ−h)) / 2h, "forward" (J(θ+h) − J(θ)) / h,
            "backward" (J(θ) − J(θ−h)) / h, "central4" (the five-point stencil
            (8(J(θ+h) − J(θ−h)) − (J(θ+2h) − J(θ−2h))) / 12h, i.e. Richardson's
            extrapolation of the central differences at h and 2h; error O(h⁴)),
            or "complex" (the complex step Im J(θ + ih) / h, exact to round-off
            for a complex-analytic `fun`, one evaluation per entry; `fun` runs on
            complex128 parameters, and a `fun` that is not complex-safe, e.g.
            uses abs, max or comparisons, is an error).
        eps: the absolute step h for every entry; None (default) picks per entry
            h = u^(1/3)·max(1, |θᵢ|) (central), u^(1/2) (one-sided), u^(1/5)
            (central4) or u^(5/4) (complex) times max(1, |θᵢ|),
            for the leaf dtype's machine epsilon u, rounded to a power of two.
        chunk_size: perturbed evaluations per batch; None derives it from
            `memory_budget`.
        memory_budget: bytes that one batch of evaluations may use (default 1 GiB).

    Returns:
        A pytree like `params` holding the numerical gradient at the perturbed leaves,
        in each leaf's dtype, and None at every other leaf. For a complex leaf it
        follows JAX's convention for real functions: ∂J/∂x − i·∂J/∂y.

    Raises:
        TypeError, ValueError: for invalid arguments, a non-scalar or non-real
            output, a `params` with no floating entries, or a non-finite value of
            `fun` at `params`.

    Examples:
        The lecture's example, θ³ at θ = 1 with a step of 0.01:

        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> cube = lambda theta: theta**3
        >>> theta = jnp.array(1.0)
        >>> round(float(jaxcheck.numerical_grad(cube, theta, eps=0.01)), 8)
        3.0001
        >>> forward = jaxcheck.numerical_grad(cube, theta, eps=0.01, method="forward")
        >>> round(float(forward), 8)
        3.0301
    """
    prepared = prepare(
        fun,
        params,
        args,
        method=method,
        eps=eps,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    )
    from ._twins import numerical_side  # a twin is a Prepared: import late

    base_value = base_value_of(prepared)
    with numerical_side(prepared, base_value, False, method) as (numerical, _):
        diffs = finite_differences(
            numerical,
            method=method,
            eps=eps,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )
    tree = prepared.tree
    values = [
        jnp.asarray((x if leaf.dtype.kind == "c" else x.real).astype(leaf.dtype))
        for leaf, x in zip(tree.leaves, to_leaves(tree, diffs.derivative), strict=True)
    ]
    return leaf_values_to_params(tree, values)
