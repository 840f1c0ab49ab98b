"""All the points of a small check at once, on the host: `fun`'s jaxpr run by NumPy.

Op by op (see `op_by_op`), a point costs a dispatch per op, 10-60 µs each on a
CPU, and a check of N entries evaluates 2N points or more. Where every op of
`fun`'s traced jaxpr is one whose NumPy counterpart computes the same function
(elementwise arithmetic and transcendentals, broadcasts, reshapes, reductions,
selects: `UNARY`, `BINARY` and `STRUCTURAL`), the points are instead
evaluated together, as rows of one NumPy array per value: a few microseconds an
op for every row at once, and nothing is compiled, however new the shapes or the
dtype (the float64 twin of a float32 check included).

The two differ only in rounding (NumPy's `sinh` is not XLA's to the last bit),
which the per-entry round-off bounds already allow for. All the points a
difference uses come from the same evaluator, and the first row is also
evaluated op by op: unless both agree to within a few dozen units in the last
place, the check evaluates op by op as before. Any other op (a `scan`, a
convolution, a random key, a callback, an integer division) keeps a check op by
op.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from .blocks import Block
from .jaxpr import intermediate_bytes
from .numpy_ops import (
    BINARY,
    MANY,
    STRUCTURAL,
    UNARY,
    WITH_PARAMS,
    Unsupported,
    called_jaxpr,
    dot_general,
    supported,
)
from .op_by_op import _HOST_TWINS, OpByOp


def _batched_rank(value: np.ndarray, aval_rank: int, out_rank: int) -> np.ndarray:
    """A batched operand of an elementwise op, its rank-0 value (which JAX
    broadcasts against the others) given unit axes after the rows' axis."""
    if aval_rank == out_rank:
        return value
    return value.reshape(
        value.shape[:1] + (1,) * (out_rank - aval_rank) + value.shape[1:]
    )


def _run(
    jaxpr: Any, consts: Sequence[Any], args: Sequence[tuple[Any, bool]], rows: int
):
    """`jaxpr`'s outputs as (value, batched) pairs; a batched value has the rows
    as its leading axis."""
    env: dict[Any, tuple[Any, bool]] = {}
    for var, value in zip(jaxpr.constvars, consts, strict=True):
        env[var] = (np.asarray(value), False)
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(var):
        if isinstance(var, jax.extend.core.Literal):
            return np.asarray(var.val), False
        return env[var]

    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        outs = _eqn(eqn, inputs, rows)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _eqn(eqn: Any, inputs: list[tuple[Any, bool]], rows: int) -> list[tuple[Any, bool]]:
    name = eqn.primitive.name
    batched = any(b for _, b in inputs)
    out_avals = [v.aval for v in eqn.outvars]
    if name in ("jit", "pjit") and eqn.params.get("name") in _HOST_TWINS:
        return _twin(_HOST_TWINS[eqn.params["name"]], inputs, out_avals, rows)
    sub = called_jaxpr(eqn)
    if sub is not None:
        inner, consts = sub
        return _run(inner, consts, inputs, rows)
    if name == "split":
        (x, b), *rest = inputs
        if rest:
            raise Unsupported
        cuts = np.cumsum(eqn.params["sizes"])[:-1]
        parts = np.split(x, cuts, axis=eqn.params["axis"] + int(b))
        pairs = zip(parts, out_avals, strict=True)
        return [(np.asarray(part, aval.dtype), b) for part, aval in pairs]
    dtype = np.dtype(out_avals[0].dtype)
    if name in STRUCTURAL:
        (x, b), *rest = inputs
        if rest:
            raise Unsupported  # dynamic shapes
        out = STRUCTURAL[name](eqn.params, int(b), x)
        return [(np.asarray(out, dtype), b)]
    if name in MANY:
        return [(np.asarray(MANY[name](eqn.params, rows, *inputs), dtype), batched)]
    if name == "dot_general":
        return [(np.asarray(dot_general(eqn.params, *inputs), dtype), batched)]
    out_rank = len(out_avals[0].shape)
    values = [
        _batched_rank(x, len(v.aval.shape), out_rank) if b else x
        for (x, b), v in zip(inputs, eqn.invars, strict=True)
    ]
    if name in WITH_PARAMS:
        out = WITH_PARAMS[name](eqn.params, *values)
    elif name == "select_n":
        which, *cases = values
        out = cases[0]
        for k, case in enumerate(cases[1:], start=1):
            out = np.where(which == k if which.dtype.kind != "b" else which, case, out)
    elif name in UNARY:
        out = UNARY[name](*values)
    else:
        out = BINARY[name](*values)
    out = np.asarray(out, dtype)
    if not batched:
        out = out.reshape(out_avals[0].shape)
    return [(out, batched)]


def _twin(
    twin: Callable[..., list[np.ndarray]],
    inputs: list[tuple[Any, bool]],
    out_avals: list[Any],
    rows: int,
) -> list[tuple[Any, bool]]:
    """A jaxcheck wrapper's NumPy twin, for every row at once where an input
    is batched."""
    dtypes = [np.dtype(a.dtype) for a in out_avals]
    batched = any(b for _, b in inputs)
    n = rows if batched else 1
    outs = twin(*(x if b else np.broadcast_to(x, (n, *np.shape(x))) for x, b in inputs))
    return [
        (np.asarray(o if batched else o[0]).astype(d), batched)
        for o, d in zip(outs, dtypes, strict=True)
    ]


@functools.lru_cache(maxsize=256)
def _supported_cached(jaxpr: Any) -> bool:
    return supported(jaxpr)


def host_rows(
    closed: Any, leaves: Sequence[Any], batched: Sequence[bool], rows: int
) -> list[np.ndarray] | None:
    """The outputs of the closed jaxpr at `rows` points at once, each with the
    rows as its leading axis: `leaves[k]` holds a value per row where
    `batched[k]`, else one shared by every row. None where NumPy could not
    evaluate an op (its parameters have no counterpart here)."""
    args = [(np.asarray(x), b) for x, b in zip(leaves, batched, strict=True)]
    try:
        with np.errstate(all="ignore"):
            outs = _run(closed.jaxpr, closed.consts, args, rows)
    except Exception:  # noqa: BLE001 - op by op evaluates, and raises, as before
        return None
    return [x if b else np.broadcast_to(x, (rows, *np.shape(x))) for x, b in outs]


def agree(host: np.ndarray, device: np.ndarray) -> bool:
    """Whether a row computed on the host matches the op-by-op one to within
    rounding: 64 units in the last place (8 in a 16-bit float, whose unit is
    coarse) of the larger of the entry and the output's largest finite entry
    times 2^-10; NaN and infinite entries alike."""
    host, device = np.asarray(host), np.asarray(device)
    if host.shape != device.shape:
        return False
    eps = float(jnp.finfo(device.dtype).eps) if _is_float(device.dtype) else 0.0
    eps *= 8 if eps > 2.0**-20 else 64
    device_wide = _wide(device)
    finite = np.abs(device_wide[np.isfinite(device_wide)])
    scale = float(np.max(finite, initial=0.0)) * 2.0**-10
    with np.errstate(all="ignore"):
        return bool(
            np.allclose(
                _wide(host), _wide(device), rtol=eps, atol=eps * scale, equal_nan=True
            )
        )


# The op-by-op points whose first row NumPy did not reproduce (see `agree`),
# and those whose NumPy evaluation was vouched for otherwise (a float64 twin's,
# by agreeing with `fun` in its own dtype), so that their rows are not also
# evaluated op by op: in float64, that would compile what NumPy spares.
_HOST_DISAGREES: weakref.WeakSet = weakref.WeakSet()
_HOST_TRUSTED: weakref.WeakSet = weakref.WeakSet()


def trust_host(point: OpByOp) -> None:
    _HOST_TRUSTED.add(point)


def distrust_host(point: OpByOp) -> None:
    _HOST_DISAGREES.add(point)


def point_on_host(point: OpByOp, dynamic: Sequence[Any]) -> Any:
    """`point(dynamic)` by NumPy, or None where an op has no NumPy counterpart."""
    if point in _HOST_DISAGREES or not _supported_cached(point.closed.jaxpr):
        return None
    leaves = jax.tree_util.tree_leaves(tuple(dynamic))
    outs = host_rows(point.closed, leaves, [False] * len(leaves), 1)
    if outs is None:
        return None
    return jax.tree_util.tree_unflatten(point.out_tree, [x[0] for x in outs])


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind in "fc" or dtype == jnp.bfloat16


def _wide(x: np.ndarray) -> np.ndarray:
    if not _is_float(x.dtype):
        return x
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


# The memory NumPy's rows may take at once (every intermediate value of `fun`
# for each row): more rows are evaluated in passes of as many as fit.
HOST_ROWS_MAX_BYTES = 64 << 20


def rows_on_host(
    point: OpByOp,
    block: Block,
    dynamic: tuple[jax.Array, ...],
    hosts: list[np.ndarray],
    indices: np.ndarray,
    values: np.ndarray,
) -> np.ndarray | None:
    """`point` with entry `indices[k]` of `block` set to `values[k]`, for every
    k at once by NumPy (`hosts`: the block's leaves, flat, on the host); None
    where an op has no NumPy counterpart or the first row differs from the
    op-by-op one by more than rounding."""
    if point in _HOST_DISAGREES or not _supported_cached(point.closed.jaxpr):
        return None
    if len(jax.tree_util.tree_leaves(tuple(dynamic))) != len(dynamic):
        return None  # not one array per leaf
    indices, values = np.asarray(indices), np.asarray(values)
    row_bytes = _row_bytes(point.closed.jaxpr) + sum(h.nbytes for h in hosts)
    per_pass = max(1, HOST_ROWS_MAX_BYTES // max(row_bytes, 1))
    passes = []
    for start in range(0, len(indices), per_pass):
        rows = slice(start, start + per_pass)
        moved = _moved_leaves(block, hosts, indices[rows], values[rows])
        leaves = [moved.get(p, x) for p, x in enumerate(dynamic)]
        batched = [p in moved for p in range(len(dynamic))]
        outs = host_rows(point.closed, leaves, batched, len(indices[rows]))
        if outs is None or len(outs) != 1:
            return None
        if not passes and point not in _HOST_TRUSTED:
            first = point([x[0] if p in moved else x for p, x in enumerate(leaves)])
            if not agree(outs[0][0], np.asarray(first)):
                _HOST_DISAGREES.add(point)
                return None
        passes.append(outs[0])
    return np.ascontiguousarray(np.concatenate(passes))


@functools.lru_cache(maxsize=256)
def _row_bytes(jaxpr: Any) -> int:
    return intermediate_bytes(jaxpr)


def _moved_leaves(
    block: Block, hosts: list[np.ndarray], indices: np.ndarray, values: np.ndarray
) -> dict[int, np.ndarray]:
    """The block's leaves, by position, each with a leading axis of rows: row k
    has entry `indices[k]` set to `values[k]`."""
    moved = {}
    for position, host, start, size, shape in zip(
        block.positions, hosts, block.starts(), block.sizes, block.shapes,
        strict=True,
    ):  # fmt: skip
        copies = np.repeat(host[None], len(indices), axis=0)
        inside = (indices >= start) & (indices < start + size)
        copies[np.nonzero(inside)[0], indices[inside] - start] = values[inside]
        moved[position] = copies.reshape((len(indices), *shape))
    return moved
