"""The ops whose NumPy counterparts compute what XLA computes, op by op.

Elementwise arithmetic and transcendentals, comparisons and selects, and the
ops that only move axes (broadcasts, reshapes, transposes, slices, reductions):
each rounds to its output dtype in both, and they differ at most in the last
bits (NumPy's `sinh` is not XLA's). Anything else (a `scan`, a convolution, an
integer division, a random key, a callback) has none here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .op_by_op import _CALLS, _HOST_TWINS, _parts

# The dtypes NumPy computes as XLA does, op by op (each op rounds to its dtype;
# JAX's bfloat16 is a NumPy dtype with NumPy's ufuncs).
_REAL = frozenset(
    np.dtype(d) for d in ("float16", jnp.bfloat16, "float32", "float64", "bool")
)
_DTYPES = _REAL | {np.dtype("complex64"), np.dtype("complex128")}

UNARY: dict[str, Callable[[np.ndarray], Any]] = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "floor": np.floor,
    "ceil": np.ceil, "exp": np.exp, "exp2": np.exp2, "log": np.log,
    "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "cbrt": np.cbrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "square": np.square, "sin": np.sin,
    "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "real": np.real, "imag": np.imag, "conj": np.conj, "is_finite": np.isfinite,
    "not": np.logical_not, "copy": np.asarray, "copy_p": np.asarray,
    "logistic": lambda x: 1 / (1 + np.exp(-x)),
}  # fmt: skip
BINARY: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": np.divide, "rem": np.fmod, "pow": np.power, "atan2": np.arctan2,
    "max": np.maximum, "min": np.minimum, "nextafter": np.nextafter, "eq": np.equal,
    "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "and": np.logical_and, "or": np.logical_or,
    "xor": np.logical_xor, "complex": lambda x, y: x + 1j * y,
    "clamp": lambda low, x, high: np.minimum(np.maximum(x, low), high),  # three
}  # fmt: skip


def _round(params: dict, x: np.ndarray) -> np.ndarray:
    if int(params["rounding_method"]) == 1:  # to nearest even
        return np.rint(x)
    whole = np.trunc(x)  # x - trunc(x) is exact: halves are found exactly
    return np.where(np.abs(x - whole) >= 0.5, whole + np.sign(x), whole)


# Elementwise ops of one operand with parameters: (params, operand) -> output.
WITH_PARAMS: dict[str, Callable[[dict, np.ndarray], Any]] = {
    "integer_pow": lambda params, x: np.power(x, params["y"]),
    "round": _round,
}

# Ops defined by XLA only for real operands, or whose complex meaning differs
# from NumPy's (`max` orders complex numbers lexicographically).
_REAL_ONLY = frozenset(
    {"floor", "ceil", "rem", "atan2", "max", "min", "nextafter", "logistic", "lt",
     "le", "gt", "ge", "cbrt", "is_finite", "round", "clamp", "cumsum", "cumprod",
     "cummax", "cummin"}
)  # fmt: skip


def _reduction(np_fun: Callable[..., Any]) -> Callable[..., Any]:
    def run(params, batched, x):
        return np_fun(x, axis=tuple(a + batched for a in params["axes"]))

    return run


def _broadcast_in_dim(params, batched, x):
    shape = tuple(params["shape"])
    expanded = [1] * len(shape)
    for axis, dim in enumerate(params["broadcast_dimensions"]):
        expanded[dim] = x.shape[axis + batched]
    lead = x.shape[:batched]
    return np.broadcast_to(x.reshape(lead + tuple(expanded)), lead + shape)


def _reshape(params, batched, x):
    if params.get("dimensions") is not None:
        raise Unsupported
    return x.reshape(x.shape[:batched] + tuple(params["new_sizes"]))


def _transpose(params, batched, x):
    lead = tuple(range(batched))
    return x.transpose(lead + tuple(p + batched for p in params["permutation"]))


def _squeeze(params, batched, x):
    return np.squeeze(x, axis=tuple(d + batched for d in params["dimensions"]))


def _convert(params, batched, x):
    new = np.dtype(params["new_dtype"])
    if (
        new not in _DTYPES
        or new.kind == "b"
        or (x.dtype.kind == "c" and new.kind != "c")
    ):
        raise Unsupported  # NumPy's complex-to-real cast warns and differs
    return x.astype(new)


def _slice(params, batched, x):
    strides = params.get("strides") or (1,) * len(params["start_indices"])
    index = tuple(
        slice(start, limit, stride)
        for start, limit, stride in zip(
            params["start_indices"], params["limit_indices"], strides, strict=True
        )
    )
    return x[(slice(None),) * batched + index]


def _cumulative(np_fun: Callable[..., Any]) -> Callable[..., Any]:
    def run(params, batched, x):
        axis = params["axis"] + batched
        if not params["reverse"]:
            return np_fun(x, axis=axis)
        return np.flip(np_fun(np.flip(x, axis), axis=axis), axis)

    return run


def _rev(params, batched, x):
    return np.flip(x, tuple(d + batched for d in params["dimensions"]))


# Ops of one operand whose parameters say how its axes move: (params, 1 when
# the operand carries the rows' leading axis else 0, operand) -> output.
STRUCTURAL: dict[str, Callable[..., Any]] = {
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "transpose": _transpose,
    "squeeze": _squeeze,
    "convert_element_type": _convert,
    "slice": _slice,
    "reduce_sum": _reduction(np.sum),
    "reduce_prod": _reduction(np.prod),
    "reduce_max": _reduction(np.max),
    "reduce_min": _reduction(np.min),
    "cumsum": _cumulative(np.cumsum),
    "cumprod": _cumulative(np.cumprod),
    "cummax": _cumulative(np.maximum.accumulate),
    "cummin": _cumulative(np.minimum.accumulate),
    "rev": _rev,
}


def concatenate(params: dict, rows: int, operands: list[tuple]) -> np.ndarray:
    """`lax.concatenate` of (value, batched) pairs, shared ones repeated per row
    where another operand is batched."""
    if not any(b for _, b in operands):
        return np.concatenate([x for x, _ in operands], axis=params["dimension"])
    values = [x if b else np.broadcast_to(x, (rows, *x.shape)) for x, b in operands]
    return np.concatenate(values, axis=params["dimension"] + 1)


def pad(params: dict, rows: int, operand: tuple, padding: tuple) -> np.ndarray:
    """`lax.pad`: interior padding by a strided write into a filled array,
    negative edges by slicing off."""
    (x, batched), (value, _) = operand, padding
    config = params["padding_config"]
    lead = x.shape[:1] if batched else ()
    sizes = [
        max(low, 0) + max(high, 0) + n + max(n - 1, 0) * interior
        for (low, high, interior), n in zip(config, x.shape[len(lead) :], strict=True)
    ]
    out = np.full(lead + tuple(sizes), value, dtype=x.dtype)
    into = tuple(
        slice(
            max(low, 0), max(low, 0) + max(n - 1, 0) * (interior + 1) + 1, interior + 1
        )
        for (low, _, interior), n in zip(config, x.shape[len(lead) :], strict=True)
    )
    out[(slice(None),) * len(lead) + into] = x
    crop = tuple(
        slice(-min(low, 0), size + min(high, 0))
        for (low, high, _), size in zip(config, sizes, strict=True)
    )
    return out[(slice(None),) * len(lead) + crop]


# Ops of several operands with a rule of their own, given the rows' count.
MANY: dict[str, Callable[..., Any]] = {
    "concatenate": lambda params, rows, *ops: concatenate(params, rows, list(ops)),
    "pad": pad,
}


def dot_general(params: dict, lhs: tuple, rhs: tuple) -> np.ndarray:
    """`lax.dot_general` by `np.einsum`, each operand a (value, batched) pair;
    the rows' axis leads the output where either operand carries it."""
    (lc, rc), (lb, rb) = params["dimension_numbers"]
    (x, xb), (y, yb) = lhs, rhs
    names = iter("abcdefghijklmnopqrstuvwxy")
    x_ndim, y_ndim = x.ndim - xb, y.ndim - yb
    x_axes = [next(names) for _ in range(x_ndim)]
    y_axes = [next(names) for _ in range(y_ndim)]
    for i, j in zip((*lc, *lb), (*rc, *rb), strict=True):
        y_axes[j] = x_axes[i]
    batch = [x_axes[i] for i in lb]
    free = [x_axes[i] for i in range(x_ndim) if i not in (*lc, *lb)]
    free += [y_axes[j] for j in range(y_ndim) if j not in (*rc, *rb)]
    row = "z" if xb or yb else ""
    spec = (
        ("z" if xb else "") + "".join(x_axes) + ","
        + ("z" if yb else "") + "".join(y_axes) + "->"
        + row + "".join(batch + free)
    )  # fmt: skip
    return np.einsum(spec, x, y)


class Unsupported(Exception):
    """An op with no NumPy counterpart here: the check stays op by op."""


# Every op with a NumPy counterpart, by the table or rule that computes it.
_TABLES = (
    UNARY,
    BINARY,
    STRUCTURAL,
    WITH_PARAMS,
    MANY,
    {"select_n", "dot_general", "split"},
)


def called_jaxpr(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """(jaxpr, consts) of a call whose primal is its jaxpr (a `jit`, a custom
    rule's call, `checkpoint`), else None."""
    name = eqn.primitive.name
    key = "jaxpr" if name in ("jit", "pjit") else _CALLS.get(name)
    sub = eqn.params.get(key) if key else None
    if sub is None or not hasattr(_parts(sub)[0], "eqns"):
        return None
    return _parts(sub)


def supported(jaxpr: Any) -> bool:
    """Whether every op of `jaxpr` (calls inlined) has its NumPy counterpart."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in ("jit", "pjit") and eqn.params.get("name") in _HOST_TWINS:
            continue
        sub = called_jaxpr(eqn)
        if sub is not None:
            if not supported(sub[0]):
                return False
            continue
        if not any(name in table for table in _TABLES):
            return False
        dtypes = [np.dtype(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)
                  if hasattr(getattr(v, "aval", None), "dtype")]  # fmt: skip
        allowed = _REAL if name in _REAL_ONLY else _DTYPES
        if name == "select_n":  # the selector may be an int32 index
            dtypes = dtypes[1:]
        if any(d not in allowed for d in dtypes):
            return False
    return True
