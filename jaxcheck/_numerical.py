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
    bytes_per_evaluation,
    chunk_length,
    evaluate,
    evaluate_block,
    intermediate_bytes,
    plan_blocks,
    trace_base,
)
from ._pytree import LeafInfo, SplitTree, format_path, leaf_values_to_params, split
from ._steps import NOISE_FACTOR, host_dtype, perturbed_values, step_sizes

_SIGNS = {"central": (1.0, -1.0), "forward": (1.0,), "backward": (-1.0,)}


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
    """Numerical derivatives of every entry of θ, in θ's order, on the host."""

    derivative: np.ndarray  # float64, or complex128 when a leaf is complex
    noise: np.ndarray  # float64 bound on the round-off error of each derivative
    steps: np.ndarray  # float64 step h of each entry


def _realized(delta: np.ndarray, unit: complex) -> np.ndarray:
    """The step actually taken along `unit`, after rounding to the leaf dtype."""
    return delta.imag if unit == 1j else delta.real


def _check_steps_resolve(delta: np.ndarray, leaves: list[LeafInfo], eps) -> None:
    zero = np.flatnonzero(delta == 0)
    if zero.size == 0:
        return
    flat = int(zero[0])
    start = leaves[0].offset
    leaf = next(x for x in leaves if x.offset - start + x.size > flat)
    index = leaf.locate(flat + start)
    raise ValueError(
        f"`eps`={eps!r} is below the resolution of {leaf.dtype.name} at "
        f"{format_path(leaf.path)}{list(index) if index else ''}: θ ± eps rounds back "
        "to θ. Use a larger `eps`, or eps=None for a step scaled to each entry."
    )


def finite_differences(
    prepared: Prepared,
    *,
    method: str,
    eps: float | None,
    base_value: float,
    chunk_size: int | None,
    memory_budget: int,
) -> Differences:
    """Evaluates every ±h perturbation, block by block, and forms the differences."""
    tree = prepared.tree
    n = tree.size
    any_complex = any(jnp.issubdtype(x.dtype, jnp.complexfloating) for x in tree.leaves)
    derivative = np.zeros(n, np.complex128 if any_complex else np.float64)
    noise = np.zeros(n)
    steps = np.zeros(n)
    signs = _SIGNS[method]
    for block, leaves in plan_blocks(tree.leaves):
        dtype = leaves[0].dtype
        theta = np.concatenate(
            [np.asarray(tree.dynamic[x.position]).reshape(-1) for x in leaves]
        )
        size = theta.size
        h = step_sizes(theta, dtype, method, eps)
        units = (1.0, 1j) if jnp.issubdtype(dtype, jnp.complexfloating) else (1.0,)
        values = [perturbed_values(theta, h, s, u, dtype) for u in units for s in signs]
        per_eval = bytes_per_evaluation(block, dtype.itemsize, prepared.fun_bytes)
        chunk = chunk_length(len(values) * size, per_eval, memory_budget, chunk_size)
        index = np.tile(np.arange(size, dtype=np.int32), len(values))
        evals = evaluate_block(
            tree.problem,
            block,
            leaves,
            tree.dynamic,
            index,
            np.concatenate(values),
            chunk,
        ).astype(np.float64)
        evals = evals.reshape(len(units), len(signs), size)
        theta_host = theta.astype(host_dtype(dtype))
        u = max(float(jnp.finfo(dtype).eps), float(jnp.finfo(prepared.out_dtype).eps))
        block_derivative = np.zeros(size, derivative.dtype)
        block_noise = np.zeros(size)
        for k, unit in enumerate(units):
            moved = [
                v.astype(host_dtype(dtype))
                for v in values[k * len(signs) :][: len(signs)]
            ]
            if method == "central":
                upper, lower = evals[k, 0], evals[k, 1]
                delta = _realized(moved[0] - moved[1], unit)
            elif method == "forward":
                upper, lower = evals[k, 0], np.full(size, base_value)
                delta = _realized(moved[0] - theta_host, unit)
            else:
                upper, lower = np.full(size, base_value), evals[k, 0]
                delta = _realized(theta_host - moved[0], unit)
            _check_steps_resolve(delta, leaves, eps)
            slope = (upper - lower) / delta
            # JAX's convention for a real function of a complex z = x + iy:
            # grad = ∂J/∂x − i ∂J/∂y.
            block_derivative += slope if unit == 1.0 else -1j * slope
            scale = np.maximum(np.abs(upper), np.abs(lower))
            block_noise = np.maximum(
                block_noise, NOISE_FACTOR * u * scale / np.abs(delta)
            )
        start = leaves[0].offset
        derivative[start : start + size] = block_derivative
        noise[start : start + size] = block_noise
        steps[start : start + size] = h
    return Differences(derivative, noise, steps)


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
            or "backward" (J(θ) − J(θ−h)) / h.
        eps: the absolute step h for every entry; None (default) picks per entry
            h = u^(1/3)·max(1, |θᵢ|) (central) or u^(1/2)·max(1, |θᵢ|) (one-sided)
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
    base_value = base_value_of(prepared)
    diffs = finite_differences(
        prepared,
        method=method,
        eps=eps,
        base_value=base_value,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    )
    tree = prepared.tree
    values = [
        jnp.asarray((x if leaf.dtype.kind == "c" else x.real).astype(leaf.dtype))
        for leaf, x in zip(tree.leaves, to_leaves(tree, diffs.derivative), strict=True)
    ]
    return leaf_values_to_params(tree, values)
