"""The analytic side of a check: `fun`'s name, J(θ) and the gradient to check,
from `jax.grad` or from what the user gave (validated against `params`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .._base import validate as _validate
from .._runtime.sharding import host_value
from .._tree.pytree import SplitTree, format_path
from .evaluate import evaluate, value_and_grad
from .numerical import Prepared


def fun_name(fun: Callable[..., Any]) -> str:
    """How reports name `fun`: its qualified name, else its name, else its repr."""
    return (
        getattr(fun, "__qualname__", None)
        or getattr(fun, "__name__", None)
        or repr(fun)
    )


def missing_path(params: Any, grad: Any) -> str | None:
    """The first path of `params` that `grad` does not have, if any."""
    for key_path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        node = grad
        for depth, key in enumerate(key_path):
            try:
                if isinstance(key, jax.tree_util.DictKey):
                    node = node[key.key]
                elif isinstance(key, jax.tree_util.SequenceKey):
                    node = node[key.idx]
                elif isinstance(key, jax.tree_util.GetAttrKey):
                    node = getattr(node, key.name)
                else:
                    return None
            except (KeyError, IndexError, TypeError, AttributeError):
                return format_path(jax.tree_util.keystr(key_path[: depth + 1]))
    return None


def given_gradient_leaves(grad: Any, params: Any, tree: SplitTree) -> list[np.ndarray]:
    """The entries of a user-given gradient pytree at the perturbed leaves, checked
    against `params` for structure, shape and dtype."""
    try:
        flat = tree.params_treedef.flatten_up_to(grad)
    except (ValueError, TypeError) as error:
        missing = missing_path(params, grad)
        where = f" `grad` has no {missing};" if missing else ""
        raise ValueError(
            "`grad` must have the tree structure of `params` (None or anything at "
            f"non-floating leaves), but it differs:{where} {error}"
        ) from None
    out = []
    for leaf in tree.leaves:
        value = flat[leaf.tree_index]
        where = format_path(leaf.path)
        if not hasattr(value, "shape") and not isinstance(value, (float, complex, int)):
            raise TypeError(
                f"`grad` at {where} must be an array like the parameter, got "
                f"{type(value).__name__}."
            )
        array = host_value(value)
        if array.shape != leaf.shape:
            raise ValueError(
                f"`grad` at {where} has shape {array.shape}, but the parameter has "
                f"shape {leaf.shape}; return one derivative per parameter entry."
            )
        dtype_ok = (
            np.issubdtype(array.dtype, np.inexact)
            if leaf.weak_type
            else array.dtype == leaf.dtype
        )
        if not dtype_ok:
            raise ValueError(
                f"`grad` at {where} has dtype {array.dtype.name}, but the parameter is "
                f"{leaf.dtype.name}; a gradient has its parameter's dtype (cast with "
                f"`.astype(jnp.{leaf.dtype.name})`)."
            )
        out.append(array)
    return out


def analytic_side(
    grad: Any,
    prepared: Prepared,
    params: Any,
    args: tuple[Any, ...],
    base: bool = True,
) -> tuple[float | None, list[np.ndarray]]:
    """The base value J(θ) and the analytic gradient at the perturbed leaves.

    Without `base`, a given `grad` comes with None for J(θ), which the caller
    takes from the first differences instead (one program fewer to compile)."""
    tree = prepared.tree
    if grad is None:
        positions = tuple(leaf.position for leaf in tree.leaves)
        try:
            value, leaves = value_and_grad(
                tree.problem, positions, tree.dynamic, eager=prepared.eager
            )
        except Exception as error:
            error.add_note("jaxcheck: raised while computing `jax.grad(fun)`.")
            raise
        value = float(value)
        _validate.check_base_value(value, tree)
        return value, [host_value(x) for x in leaves]
    value = base_value_of(prepared) if base else None
    if callable(grad):
        try:
            grad = grad(params, *args)
        except Exception as error:
            error.add_note(
                "jaxcheck: raised by the `grad` callable, grad(params, *args)."
            )
            raise
    return value, given_gradient_leaves(grad, params, tree)


def base_output(prepared: Prepared) -> np.ndarray:
    """J(θ), as float64 (a vector for a `fun` with several outputs)."""
    tree = prepared.tree
    value = evaluate(tree.problem, tree.dynamic, eager=prepared.eager)
    return np.asarray(value, np.float64)


def base_value_of(prepared: Prepared) -> float:
    tree = prepared.tree
    value = evaluate(tree.problem, tree.dynamic, eager=prepared.eager)
    value = float(value)
    _validate.check_base_value(value, tree)
    return value
