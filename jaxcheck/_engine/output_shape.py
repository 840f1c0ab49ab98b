"""`fun`'s output shape, traced once per function and argument types while a
check asks for it several times."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from .._tree.pytree import _is_array_leaf
from .numerical_jacobian import of_some_leaves


def output_shape(fun: Callable[..., Any], *args: Any) -> Any:
    """`jax.eval_shape(fun, *args)` with non-array leaves (strings, ints) static
    (remembered per function and argument types within
    `remembering_output_shapes`)."""
    remembered, key = _REMEMBERED.get(), None
    if remembered is not None:
        key = _shape_key(fun, args)
        if key is not None and key in remembered:
            return remembered[key]
    try:
        out = jax.eval_shape(*of_some_leaves(fun, args, _is_array_leaf))
    except Exception as error:
        error.add_note("jaxcheck: raised by `fun` while its output shape was traced.")
        raise
    if key is not None:
        remembered[key] = out
    return out


_REMEMBERED: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "jaxcheck_output_shapes", default=None
)


@contextlib.contextmanager
def remembering_output_shapes() -> Iterator[None]:
    """Within, `output_shape` traces a function once per argument types (the
    drop-in asks for the same ones several times per order)."""
    token = _REMEMBERED.set({})
    try:
        yield
    finally:
        _REMEMBERED.reset(token)


def _shape_key(fun: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """What `fun`'s output shape depends on: `fun`, the structure of `args`, the
    types of its array leaves and the values of the others; None when that is
    not hashable."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    types = tuple(
        (np.shape(x), np.dtype(x.dtype).str, bool(getattr(x, "weak_type", False)))
        if hasattr(x, "dtype") and hasattr(x, "shape")
        else (type(x), x if not _is_array_leaf(x) else None)
        for x in leaves
    )
    key = (fun, treedef, types)
    try:
        hash(key)
    except TypeError:
        return None
    return key
