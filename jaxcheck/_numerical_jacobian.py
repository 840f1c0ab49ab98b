"""Finite-difference Jacobians of pytree-valued functions, batched like gradients.

The function's output pytree is flattened to one real vector per evaluation, so
the batched engine of `_evaluate` evaluates every ±h perturbation of every input
entry exactly as it does for a scalar loss; a chunk then holds `chunk × M` output
values, and the memory estimate (the traced intermediates) includes the output.

Complex numbers are split into real and imaginary parts on both sides (the pytree
node `ReIm`, whose parts print as `.real` and `.imag`), so the Jacobian is the real
Jacobian of the map ℝ²ⁿ → ℝ²ᵐ; this is the matrix `jax.jacfwd`/`jax.jacrev` give
for the same split function, holomorphic or not.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
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
    replace_leaves,
    trace_base,
)
from ._pytree import Problem, SplitTree, _is_array_leaf, format_path, split
from ._steps import NOISE_FACTOR, perturbed_values, step_sizes

_SIGNS = {"central": (1.0, -1.0), "forward": (1.0,), "backward": (-1.0,)}


@jax.tree_util.register_pytree_with_keys_class
class ReIm:
    """A complex leaf split into its real and imaginary parts (a pytree node)."""

    def __init__(self, real: Any, imag: Any):
        self.real = real
        self.imag = imag

    def tree_flatten_with_keys(self):
        keys = (jax.tree_util.GetAttrKey("real"), jax.tree_util.GetAttrKey("imag"))
        return tuple(zip(keys, (self.real, self.imag), strict=True)), None

    def tree_flatten(self):
        return (self.real, self.imag), None

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> ReIm:
        return cls(*children)


def _is_complex(x: Any) -> bool:
    if isinstance(x, complex):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating)


def realify(tree: Any) -> Any:
    """Replaces every complex leaf by `ReIm(real, imag)`."""
    return jax.tree_util.tree_map(
        lambda x: ReIm(jnp.real(x), jnp.imag(x)) if _is_complex(x) else x, tree
    )


def unrealify(tree: Any) -> Any:
    """The inverse of `realify`."""
    return jax.tree_util.tree_map(
        lambda x: jax.lax.complex(x.real, x.imag) if isinstance(x, ReIm) else x,
        tree,
        is_leaf=lambda x: isinstance(x, ReIm),
    )


def ravel_output(out: Any) -> jax.Array:
    """The leaves of a (realified) output pytree as one flat vector."""
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves:
        return jnp.zeros((0,))
    return jnp.concatenate([jnp.ravel(x) for x in leaves])


@dataclasses.dataclass(frozen=True)
class VectorFun:
    """`fun(params, *args)` on realified `params`, its output realified and flat.

    A frozen dataclass, so it hashes by `fun`: checks of the same function share
    compiled code.
    """

    fun: Callable[..., Any]

    def __call__(self, params: Any, *args: Any) -> jax.Array:
        return ravel_output(realify(self.fun(unrealify(params), *args)))

    def __repr__(self) -> str:
        return getattr(self.fun, "__name__", repr(self.fun))


def check_options(
    method: Any = "central",
    eps: Any = None,
    atol: Any = None,
    rtol: Any = None,
    chunk_size: Any = None,
    memory_budget: Any = DEFAULT_MEMORY_BUDGET,
    *,
    methods: tuple[str, ...] | None = tuple(_SIGNS),
    **_: Any,
) -> None:
    """Validates the options shared with `check_grad`, before anything is traced;
    `methods` are those allowed (None: all of `check_grad`'s)."""
    if methods is None:
        _validate.check_method(method)
    else:
        _validate.check_method(method, methods)
    _validate.check_eps(eps)
    _validate.check_tolerance("atol", atol)
    _validate.check_tolerance("rtol", rtol)
    _validate.check_chunking(chunk_size, memory_budget)


def of_some_leaves(
    fun: Callable[..., Any], args: tuple[Any, ...], keep: Callable[[Any], bool]
) -> tuple[Callable[[list[Any]], Any], list[Any]]:
    """`fun(*args)` as a function of the list of leaves of `args` that `keep`
    selects (the others are closed over), and that list."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    where = [i for i, x in enumerate(leaves) if keep(x)]

    def of_kept(kept: list[Any]) -> Any:
        new = list(leaves)
        for i, value in zip(where, kept, strict=True):
            new[i] = value
        return fun(*jax.tree_util.tree_unflatten(treedef, new))

    return of_kept, [leaves[i] for i in where]


def output_shape(fun: Callable[..., Any], *args: Any) -> Any:
    """`jax.eval_shape(fun, *args)` with non-array leaves (strings, ints) static."""
    try:
        return jax.eval_shape(*of_some_leaves(fun, args, _is_array_leaf))
    except Exception as error:
        error.add_note("jaxcheck: raised by `fun` while its output shape was traced.")
        raise


@dataclasses.dataclass(frozen=True)
class OutputLeaf:
    """A leaf of the (realified) output: where its entries are in the flat vector."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def output_leaves(out_info: Any, what: str) -> tuple[OutputLeaf, ...]:
    """The leaves of an output shape pytree; each must be floating or complex."""
    out = []
    offset = 0
    path_leaves = jax.tree_util.tree_flatten_with_path(realify_info(out_info))[0]
    for key_path, leaf in path_leaves:
        path = jax.tree_util.keystr(key_path)
        dtype = np.dtype(getattr(leaf, "dtype", np.dtype(type(leaf))))
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{what} at output{path} is {dtype.name}, which has no derivative; "
                "return only floating or complex arrays (cast with `.astype(float)`) "
                "or drop that output."
            )
        out.append(OutputLeaf(path, tuple(np.shape(leaf)), dtype, offset))
        offset += out[-1].size
    return tuple(out)


def realify_info(out_info: Any) -> Any:
    """`realify` for `jax.ShapeDtypeStruct` leaves."""
    return jax.tree_util.tree_map(
        lambda x: (
            ReIm(*(jax.ShapeDtypeStruct(x.shape, jnp.finfo(x.dtype).dtype),) * 2)
            if _is_complex(x)
            else x
        ),
        out_info,
    )


@dataclasses.dataclass(frozen=True)
class NumericJacobian:
    """The finite-difference Jacobian of a `VectorFun`, on the host, in float64."""

    tree: SplitTree  # the split of the realified `params`
    outputs: tuple[OutputLeaf, ...]
    jacobian: np.ndarray  # (M, N): row = output entry, column = θ entry
    noise: np.ndarray  # (M, N) round-off bound of each derivative
    steps: np.ndarray  # (N,) step of each θ entry
    out_dtype: np.dtype


def numeric_jacobian(
    fun: VectorFun,
    params: Any,
    args: tuple[Any, ...],
    *,
    outputs: tuple[OutputLeaf, ...],
    method: str = "central",
    eps: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> NumericJacobian:
    """Evaluates every ±h perturbation of every entry of `params`, block by block,
    and forms the differences of the flat output."""
    check_options(method, eps, None, None, chunk_size, memory_budget)
    _validate.check_not_traced(params, args)
    tree = split(fun, realify(params), args)
    _validate.check_has_entries(tree)
    traced = trace_base(tree.problem, tree.dynamic)
    out_dtype = np.dtype(traced.out_info.dtype)
    fun_bytes = intermediate_bytes(traced.jaxpr.jaxpr)
    m, n = traced.out_info.shape[0], tree.size
    jacobian = np.zeros((m, n))
    noise = np.zeros((m, n))
    steps = np.zeros(n)
    base = None
    if method != "central":
        base = np.asarray(evaluate(tree.problem, tree.dynamic), np.float64)
    signs = _SIGNS[method]
    for block, leaves in plan_blocks(tree.leaves):
        dtype = leaves[0].dtype
        theta = np.concatenate(
            [np.asarray(tree.dynamic[x.position]).reshape(-1) for x in leaves]
        ).astype(np.float64)
        size = theta.size
        h = step_sizes(theta, dtype, method, eps)
        values = [perturbed_values(theta, h, s, 1.0, dtype) for s in signs]
        per_eval = bytes_per_evaluation(block, dtype.itemsize, fun_bytes)
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
        evals = evals.reshape(len(signs), size, m)
        moved = [v.astype(np.float64) for v in values]
        if method == "central":
            upper, lower, delta = evals[0], evals[1], moved[0] - moved[1]
        elif method == "forward":
            upper, lower, delta = evals[0], base[None, :], moved[0] - theta
        else:
            upper, lower, delta = base[None, :], evals[0], theta - moved[0]
        if np.any(delta == 0):
            leaf = leaves[0]
            raise ValueError(
                f"`eps`={eps!r} is below the resolution of {leaf.dtype.name} in "
                f"{format_path(leaf.path)}: θ ± eps rounds back to θ. Use a larger "
                "`eps`, or eps=None for a step scaled to each entry."
            )
        u = max(float(jnp.finfo(dtype).eps), float(jnp.finfo(out_dtype).eps))
        part = np.concatenate([np.arange(x.offset, x.offset + x.size) for x in leaves])
        jacobian[:, part] = ((upper - lower) / delta[:, None]).T
        scale = np.maximum(np.abs(upper), np.abs(lower))
        noise[:, part] = (NOISE_FACTOR * u * scale / np.abs(delta)[:, None]).T
        steps[part] = h
    return NumericJacobian(tree, outputs, jacobian, noise, steps, out_dtype)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def analytic_jacobian(
    mode: str,
    problem: Problem,
    positions: tuple[int, ...],
    dynamic: tuple[jax.Array, ...],
) -> jax.Array:
    """`jax.jacrev` ("rev") or `jax.jacfwd` ("fwd") of the flat output with respect
    to the leaves at `positions`, as one (M, N) matrix."""

    def of_leaves(leaves):
        return problem.evaluate(replace_leaves(dynamic, positions, leaves))

    transform = jax.jacrev if mode == "rev" else jax.jacfwd
    blocks = transform(of_leaves)(tuple(dynamic[p] for p in positions))
    m = jax.eval_shape(of_leaves, tuple(dynamic[p] for p in positions)).shape[0]
    return jnp.concatenate([b.reshape(m, -1) for b in blocks], axis=1)
