"""Split `(params, args)` into perturbed leaves, passed-through arrays and statics.

The split follows Equinox's filters: floating and complex array leaves of `params`
are perturbed; every other array (integers, booleans, PRNG keys, and all arrays in
`args`) is a traced but unperturbed input; everything else (Python ints and bools,
strings, callables, other objects) is static and closed over. A Python float or
complex leaf of `params` is differentiable, exactly as `jax.grad` treats it: it is
perturbed as a weakly typed 0-d array of JAX's default float dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from .device import device_value

# What a leaf is in the split.
DIFF = "diff"  # perturbed
ARRAY = "array"  # traced, passed through unperturbed
STATIC = "static"  # closed over


def is_differentiable_leaf(x: Any) -> bool:
    """Whether a `params` leaf is perturbed: a floating or complex array or scalar."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (float, complex)):
        return True
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def _is_array_leaf(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, complex))


class _Static:
    """A static leaf made hashable, so a compiled function can be reused across calls.

    Hashable values compare by value; unhashable ones (a list inside a custom node,
    an object without `__hash__`) compare by identity.
    """

    __slots__ = ("value", "_key")

    def __init__(self, value: Any):
        self.value = value
        try:
            hash(value)
            self._key = (type(value), value)
        except TypeError:
            self._key = ("id", id(value))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Static):
            return NotImplemented
        if self._key[0] == "id" or other._key[0] == "id":
            return self.value is other.value
        try:
            return bool(self._key == other._key)
        except Exception:  # an __eq__ that returns an array or raises
            return self.value is other.value


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """The static half of a check: `fun`, the tree structure and the static leaves.

    Hashable, so it can be a static argument of `jax.jit`: two checks of the same
    `fun` on pytrees of the same structure share compiled code.
    """

    fun: Callable[..., Any]
    treedef: Any  # of the tuple (params, args)
    kinds: tuple[str, ...]
    statics: tuple[_Static, ...]

    def _key(self):
        return (_Static(self.fun), self.treedef, self.kinds, self.statics)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return self._key() == other._key()

    @property
    def n_args(self) -> int:
        """How many positional arguments `fun` gets after `params`."""
        return len(self.treedef.children()[1].children())

    def rebuild(self, dynamic: Sequence[Any]) -> tuple[Any, tuple[Any, ...]]:
        """Puts the traced leaves back between the static ones: `(params, args)`."""
        dynamic_iter = iter(dynamic)
        static_iter = iter(self.statics)
        leaves = [
            next(static_iter).value if kind == STATIC else next(dynamic_iter)
            for kind in self.kinds
        ]
        params, args = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return params, args

    def evaluate(self, dynamic: Sequence[Any]) -> Any:
        params, args = self.rebuild(dynamic)
        return self.fun(params, *args)


@dataclasses.dataclass(frozen=True)
class LeafInfo:
    """A perturbed leaf: where it is in `params` and in the flat vector θ."""

    path: str  # `jax.tree_util.keystr` of the leaf inside `params`
    shape: tuple[int, ...]
    dtype: np.dtype
    weak_type: bool  # a Python float or complex leaf
    position: int  # index into the dynamic leaves
    tree_index: int  # index among the leaves of `params`
    offset: int  # first index in θ
    # The leaf's `NamedSharding` when it arrives split over several devices.
    sharding: Any = dataclasses.field(default=None, compare=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def locate(self, flat_index: int) -> tuple[int, ...]:
        """The multi-index inside this leaf of θ's entry `flat_index`."""
        if not self.shape:
            return ()
        index = np.unravel_index(flat_index - self.offset, self.shape)
        return tuple(int(i) for i in index)


@dataclasses.dataclass(frozen=True)
class SplitTree:
    """The result of `split`: what to trace, what to perturb, and what was skipped."""

    problem: Problem
    dynamic: tuple[jax.Array, ...]
    leaves: tuple[LeafInfo, ...]  # the perturbed leaves, in `params` order
    skipped: tuple[tuple[str, str], ...]  # (path, why) for leaves of `params` kept
    params_treedef: Any

    @property
    def size(self) -> int:
        return sum(leaf.size for leaf in self.leaves)


def leaf_sharding(x: Any) -> NamedSharding | None:
    """The sharding of a leaf that arrives split over several devices of a mesh;
    None for a leaf on one device or replicated."""
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding) or sharding.mesh.size < 2:
        return None
    if all(axis is None for axis in sharding.spec):
        return None
    return sharding


def format_path(path: str) -> str:
    """The printed form of a leaf path; the root of `params` prints as `params`."""
    return path if path else "params"


def _describe(x: Any) -> str:
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return f"{x.dtype} array"
    return type(x).__name__


def split(fun: Callable[..., Any], params: Any, args: tuple[Any, ...]) -> SplitTree:
    """Splits `params` and `args` into traced and static leaves; see the module doc."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path((params, args))
    params_treedef = jax.tree_util.tree_structure(params)
    kinds: list[str] = []
    statics: list[_Static] = []
    dynamic: list[jax.Array] = []
    leaves: list[LeafInfo] = []
    skipped: list[tuple[str, str]] = []
    offset = 0
    for tree_index, (key_path, leaf) in enumerate(path_leaves):
        in_params = key_path[0].idx == 0
        path = jax.tree_util.keystr(key_path[1:])
        if in_params and is_differentiable_leaf(leaf):
            array = device_value(leaf)
            weak = isinstance(leaf, (float, complex))
            leaves.append(
                LeafInfo(
                    path=path,
                    shape=tuple(array.shape),
                    dtype=np.dtype(array.dtype),
                    weak_type=weak,
                    position=len(dynamic),
                    tree_index=tree_index,
                    offset=offset,
                    sharding=leaf_sharding(array),
                )
            )
            offset += leaves[-1].size
            kinds.append(DIFF)
            dynamic.append(array)
        elif _is_array_leaf(leaf):
            kinds.append(ARRAY)
            dynamic.append(leaf if isinstance(leaf, jax.Array) else device_value(leaf))
            if in_params:
                skipped.append(
                    (path, f"{_describe(leaf)}: not floating, not perturbed")
                )
        else:
            kinds.append(STATIC)
            statics.append(_Static(leaf))
            if in_params:
                skipped.append((path, f"{_describe(leaf)}: static, passed through"))
    # None is an empty subtree, not a leaf; list it so the report shows every path.
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(
        params, is_leaf=lambda x: x is None
    )[0]:
        if leaf is None:
            skipped.append((jax.tree_util.keystr(key_path), "None: no entries"))
    problem = Problem(fun, treedef, tuple(kinds), tuple(statics))
    return SplitTree(
        problem, tuple(dynamic), tuple(leaves), tuple(skipped), params_treedef
    )


def leaf_values_to_params(tree: SplitTree, values: Sequence[Any]) -> Any:
    """A pytree like `params`: `values` at the perturbed leaves, None elsewhere."""
    out: list[Any] = [None] * tree.params_treedef.num_leaves
    for leaf, value in zip(tree.leaves, values, strict=True):
        out[leaf.tree_index] = value
    return jax.tree_util.tree_unflatten(tree.params_treedef, out)
