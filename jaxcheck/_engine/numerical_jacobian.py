"""Finite-difference Jacobians of pytree-valued functions, batched like gradients.

The function's output pytree is flattened to one real vector per evaluation, so
the batched engine of `_engine.evaluate` evaluates every ±h perturbation of every input
entry exactly as it does for a scalar loss; a chunk then holds `chunk × M` output
values, and the memory estimate (the traced intermediates) includes the output.

Complex numbers are split into real and imaginary parts on both sides (the pytree
node `ReIm`, whose parts print as `.real` and `.imag`), so the Jacobian is the real
Jacobian of the map ℝ²ⁿ → ℝ²ᵐ; this is the matrix `jax.jacfwd`/`jax.jacrev` give
for the same split function, holomorphic or not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.options import Options
from .._runtime.sharding import host_value
from .._tree.pytree import Problem
from .chunks import evaluated_as, noting_fallbacks
from .compare import OutputBlock
from .evaluate import replace_leaves
from .numerical import Prepared, prepare
from .refine import Judged
from .steps import common_dtype
from .traced_fun import replaying_op_by_op
from .twins import judge_twinned

# The complex step needs a real function of real parameters; a Jacobian's
# realified outputs and inputs are not that, so it runs every other method.


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
    """The leaves of a (realified) output pytree as one flat vector, in their
    common dtype (cast explicitly: a user may have made promotion strict)."""
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(out)]
    if not leaves:
        return jnp.zeros((0,))
    dtype = common_dtype([x.dtype for x in leaves])
    # No op where none is needed: op by op, each is compiled per shape.
    flat = [x if x.ndim == 1 else x.reshape(-1) for x in leaves]
    flat = [x if x.dtype == dtype else x.astype(dtype) for x in flat]
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat)


def flat_on_host(out: Any) -> np.ndarray:
    """`ravel_output(realify(out))` on the host, as float64: no device op (and
    no program to compile) for a value only compared there."""
    leaves = [np.asarray(host_value(x))[None] for x in jax.tree_util.tree_leaves(out)]
    return _flat_on_host(*leaves)[0][0].astype(np.float64)


def _flat_on_host(*leaves: np.ndarray) -> list:
    """`_flat_real` on the host, for every row of its flat leaves (each with a
    leading axis of rows)."""
    parts = []
    for x in leaves:
        x = x.reshape(len(x), -1)
        parts += [x.real, x.imag] if _is_complex(x) else [x]
    if not parts:
        return [np.zeros((len(leaves[0]) if leaves else 1, 0))]
    return [np.concatenate(parts, axis=1)]


@jax.jit  # one program per shape: eagerly, one dispatch instead of many
def _flat_real(out: Any) -> jax.Array:
    return ravel_output(realify(out))


@dataclasses.dataclass(frozen=True)
class VectorFun:
    """`fun(params, *args)` on realified `params`, its output realified and flat.

    A frozen dataclass, so it hashes by `fun`: checks of the same function share
    compiled code.
    """

    fun: Callable[..., Any]

    def __call__(self, params: Any, *args: Any) -> jax.Array:
        return _flat_real(self.fun(unrealify(params), *args))

    def __repr__(self) -> str:
        return getattr(self.fun, "__name__", repr(self.fun))


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


def prepare_vector(
    fun: VectorFun, params: Any, args: tuple[Any, ...], options: Options
) -> Prepared:
    """The engine's view of a pytree-valued `fun`: realified `params` split into
    θ, a flat real output, traced once."""
    return prepare(fun, realify(params), args, options, scalar=False)


def judge_jacobian(
    prepared: Prepared,
    outputs: tuple[OutputLeaf, ...],
    analytic: dict[str, np.ndarray],
    options: Options,
) -> tuple[Judged, str, str]:
    """Compares each analytic (M, N) Jacobian in `analytic` (keyed by mode) with
    finite differences of `prepared`, all modes sharing one numerical side: the
    engine's steps, float64 twin, Richardson refinement, kinks and retries, as
    for a gradient. Returns the verdicts, (N, modes·M), a note on the numerical
    side and how the points were evaluated (see `evaluated_as`)."""
    m = prepared.n_outputs
    matrices = list(analytic.values())
    stacked = np.concatenate([np.asarray(a, np.float64).T for a in matrices], axis=1)
    blocks = [
        OutputBlock(k * m + o.offset, o.size, o.dtype)
        for k in range(len(matrices))
        for o in outputs
    ]
    tree = prepared.tree
    with noting_fallbacks() as fallbacks:
        judged, note = judge_twinned(
            prepared,
            None,  # J(θ), for the twin's faithfulness: evaluated where needed
            stacked,
            shadow=options.shadow,
            tolerance=options.tolerance,
            leaves=tree.leaves,
            outputs=blocks,
            columns=np.tile(np.arange(m), len(matrices)),
            adapt_steps=options.adapt_steps,
            **options.evaluation,
        )
    evaluation, fallback = evaluated_as(prepared.way, fallbacks)
    return judged, "; ".join(x for x in (note, fallback) if x), evaluation


def analytic_jacobian(
    mode: str,
    problem: Problem,
    positions: tuple[int, ...],
    dynamic: tuple[jax.Array, ...],
    *,
    eager: bool = False,
) -> jax.Array:
    """`jax.jacrev` ("rev") or `jax.jacfwd` ("fwd") of the flat output with respect
    to the leaves at `positions`, as one (M, N) matrix (with `eager`, op by op)."""
    program = _analytic_jacobian_eager if eager else _analytic_jacobian_jit
    return program(mode, problem, positions, dynamic)


def _analytic_jacobian(
    mode: str,
    problem: Problem,
    positions: tuple[int, ...],
    dynamic: tuple[jax.Array, ...],
) -> jax.Array:
    def of_leaves(leaves):
        return problem.evaluate(replace_leaves(dynamic, positions, leaves))

    leaves = tuple(dynamic[p] for p in positions)
    if mode == "rev":
        blocks = jax.jacrev(of_leaves)(leaves)
    else:
        # Leaf by leaf: `jax.jacfwd` builds one basis for all its inputs, in
        # their promoted dtype, which strict promotion refuses across dtypes.
        blocks = [
            jax.jacfwd(lambda x, i=i: of_leaves(leaves[:i] + (x,) + leaves[i + 1 :]))(
                leaf
            )
            for i, leaf in enumerate(leaves)
        ]
    m = jax.eval_shape(of_leaves, leaves).shape[0]
    dtype = common_dtype([b.dtype for b in blocks])  # blocks per input dtype
    return jnp.concatenate([b.reshape(m, -1).astype(dtype) for b in blocks], axis=1)


_analytic_jacobian_jit = jax.jit(_analytic_jacobian, static_argnums=(0, 1, 2))
_analytic_jacobian_eager = replaying_op_by_op(_analytic_jacobian)
