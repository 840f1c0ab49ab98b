"""The cotangent or tangent a VJP or JVP check runs along, and the arguments
`check_vjp` and `check_jvp` validate alike.

A direction is either given, and then checked against `fun`'s output (a
cotangent) or against `primals` (a tangent), or drawn from a normal distribution
seeded with `seed`; a complex leaf gets a complex direction of unit variance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base import validate as _validate
from .._engine.numerical_jacobian import output_leaves
from .._engine.traced_fun import output_shape
from .._tree.device import device_value
from .._tree.pytree import is_differentiable_leaf
from .jacobian import check_primals


def _random_like(infos: list[Any], seed: int) -> list[jax.Array]:
    """Normal draws shaped like `infos`, scaled so that their root mean square
    over every entry is 1: a small first draw (0.126 for seed 0) must not shrink
    a scalar output's VJP against a fixed absolute tolerance."""
    rng = np.random.default_rng(seed)
    draws = []
    for info in infos:
        x = rng.standard_normal(info.shape)
        if jnp.issubdtype(np.dtype(info.dtype), jnp.complexfloating):
            x = (x + 1j * rng.standard_normal(info.shape)) / np.sqrt(2)
        draws.append(x)
    size = sum(x.size for x in draws)
    power = sum(float(np.sum(np.abs(x) ** 2)) for x in draws)
    scale = np.sqrt(size / power) if power > 0 else 1.0
    return [
        device_value(x * scale, np.dtype(info.dtype))
        for x, info in zip(draws, infos, strict=True)
    ]


def check_arguments(fun, primals, rule, usage: str) -> tuple[Any, ...]:
    """Validates the arguments shared by `check_vjp` and `check_jvp`."""
    _validate.check_fun(fun)
    primals = check_primals(primals)
    if rule is not None and not callable(rule):
        name = usage.split("(")[0]
        raise TypeError(
            f"`{name}` must be callable as {usage}, got {type(rule).__name__}; pass "
            f"None to check jax.{name[:3]}(fun)."
        )
    return primals


def cotangents_for(fun: Callable[..., Any], primals, cotangents, seed) -> Any:
    """Given cotangents checked against `fun`'s output, or seeded random ones."""
    out_info = output_shape(fun, *primals)
    output_leaves(out_info, "`fun`")  # floating outputs only
    leaves, treedef = jax.tree_util.tree_flatten(out_info)
    if cotangents is None:
        return jax.tree_util.tree_unflatten(treedef, _random_like(leaves, seed))
    if jax.tree_util.tree_structure(cotangents) != treedef:
        raise ValueError(
            "`cotangents` must have the structure of fun's output, "
            f"{treedef}, got {jax.tree_util.tree_structure(cotangents)}."
        )
    given = []
    for (key_path, info), c in zip(
        jax.tree_util.tree_flatten_with_path(out_info)[0],
        jax.tree_util.tree_leaves(cotangents),
        strict=True,
    ):
        if np.shape(c) != info.shape:
            raise ValueError(
                f"`cotangents` at {jax.tree_util.keystr(key_path) or 'the root'} has "
                f"shape {np.shape(c)}, but fun's output there has shape "
                f"{info.shape}; give one cotangent entry per output entry."
            )
        given.append(jnp.asarray(c, info.dtype))
    return jax.tree_util.tree_unflatten(treedef, given)


def float_leaves(primals: tuple) -> list[jax.Array]:
    """The floating (and complex) leaves of `primals`, as arrays."""
    return [
        device_value(x)
        for x in jax.tree_util.tree_leaves(primals)
        if is_differentiable_leaf(x)
    ]


def tangents_for(primals: tuple, tangents: Any, seed: int) -> list[jax.Array]:
    """The tangents at the floating leaves of `primals`: given, or seeded random."""
    floats = float_leaves(primals)
    if tangents is None:
        return _random_like(floats, seed)
    p_paths, p_def = jax.tree_util.tree_flatten_with_path(primals)
    try:
        t_leaves = p_def.flatten_up_to(tuple(tangents))
    except (ValueError, TypeError):
        raise ValueError(
            f"`tangents` must have the structure of `primals`, {p_def}, got "
            f"{jax.tree_util.tree_structure(tangents)}."
        ) from None
    out = []
    for (key_path, p), t in zip(p_paths, t_leaves, strict=True):
        if not is_differentiable_leaf(p):
            continue
        shape, dtype = primal_type(p)
        if np.shape(t) != shape:
            raise ValueError(
                f"`tangents` at {jax.tree_util.keystr(key_path)} has shape "
                f"{np.shape(t)}, but the primal has shape {shape}."
            )
        out.append(device_value(t, dtype))
    return out


def primal_type(p: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a primal has as a JAX array, without making one:
    `jnp.asarray` of a NumPy array compiles a program per shape."""
    dtype = p.dtype if hasattr(p, "dtype") else np.result_type(p)
    return np.shape(p), np.dtype(jax.dtypes.canonicalize_dtype(dtype))
