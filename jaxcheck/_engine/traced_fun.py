"""`fun` traced once per function and argument types: its output shape, and a
stand-in that replays that trace wherever the numerical side calls `fun` again.

A check needs `fun`'s output shape before anything else, and its numerical side
traces `fun` again inside each program it builds (one for the JVP, one for the
VJP, in the drop-in once per order). Tracing is most of what a small check
costs beyond its analytic side: a function that is itself a `jax.vjp` takes
about 15 ms to trace under `jax_enable_checks`. So `fun` is traced once, as a
`jit` whose trace JAX caches; the stand-in calls that `jit` with the array
leaves of its arguments, which binds the cached trace as one call, and calls
`fun` itself for arguments of other types (the float64 twin's). Evaluated
eagerly (concrete arguments, or within `replaying_op_by_op`), the trace is
replayed op by op instead, as `fun` itself would run, compiling no program of
its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.extend
import numpy as np

from .._tree.pytree import _is_array_leaf

_RAISED_WHILE_TRACED = "jaxcheck: raised by `fun` while its output shape was traced."


class TracedFun:
    """`fun` at arguments like those it was traced at, by replaying the trace.

    Called like `fun`. Arguments of the same structure, the same non-array
    leaves and array leaves of the same shapes and dtypes (concrete arrays or
    tracers) go to the traced program; any others go to `fun`. Two stand-ins of
    one function traced at the same argument types compare equal, so compiled
    programs built on them are shared as they are for `fun`.
    """

    def __init__(self, fun: Callable[..., Any], args: tuple[Any, ...], key: Any):
        functools.update_wrapper(self, fun, updated=())
        self.fun = fun
        self._key = key
        self._others: dict[Any, TracedFun] = {}
        leaves, self._treedef = jax.tree_util.tree_flatten(args)
        self._arrays = tuple(i for i, x in enumerate(leaves) if _is_array_leaf(x))
        self._types = tuple(_type(leaves[i]) for i in self._arrays)
        self._static = tuple(
            (i, x) for i, x in enumerate(leaves) if not _is_array_leaf(x)
        )

        def replay(*arrays: Any) -> Any:
            new = list(leaves)
            for i, x in zip(self._arrays, arrays, strict=True):
                new[i] = x
            return fun(*jax.tree_util.tree_unflatten(self._treedef, new))

        replay.__name__ = f"jaxcheck_replay_{getattr(fun, '__name__', 'fun')}"
        self._program = jax.jit(replay)
        try:  # JAX's self-checks apply where `fun`'s derivatives are taken
            with jax.enable_checks(False):
                traced = self._program.trace(*(leaves[i] for i in self._arrays))
        except Exception as error:
            error.add_note(_RAISED_WHILE_TRACED)
            raise
        self.out_info = traced.out_info
        self._out_tree = jax.tree_util.tree_structure(traced.out_info)
        self._by_ops = jax.extend.core.jaxpr_as_fun(traced.jaxpr)

    def __call__(self, *args: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        if treedef != self._treedef or not self._like(leaves):
            return self._at_other_types(args, leaves)(*args)
        arrays = [leaves[i] for i in self._arrays]
        if _OP_BY_OP.get() or not any(isinstance(x, jax.core.Tracer) for x in arrays):
            return jax.tree_util.tree_unflatten(self._out_tree, self._by_ops(*arrays))
        return self._program(*arrays)

    def _at_other_types(self, args: tuple[Any, ...], leaves: list[Any]) -> Any:
        """What evaluates `fun` at arguments unlike those it was traced at (the
        float64 twin's): a stand-in traced once at them where they are concrete
        (evaluated point by point, `fun` would re-trace whatever it transforms
        at every point), `fun` itself where they are traced."""
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self.fun
        key = _trace_key(self.fun, args)
        if key is None:
            return self.fun
        if key not in self._others:
            self._others[key] = TracedFun(self.fun, args, key)
        return self._others[key]

    def _like(self, leaves: list[Any]) -> bool:
        for i, x in self._static:
            if leaves[i] is not x:
                try:
                    if not bool(leaves[i] == x):
                        return False
                except Exception:
                    return False
        return all(
            _is_array_leaf(leaves[i]) and _type(leaves[i]) == t
            for i, t in zip(self._arrays, self._types, strict=True)
        )

    def __eq__(self, other: object) -> bool:
        if self._key is None or not isinstance(other, TracedFun):
            return self is other
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key) if self._key is not None else id(self)

    def __repr__(self) -> str:
        return repr(self.fun)


def _type(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype JAX sees for an array leaf (a concrete array or a
    tracer): a NumPy float64 array is float32 while x64 is off, float64 in the
    float64 twin, where the trace made with x64 off must not be replayed."""
    dtype = getattr(x, "dtype", None)
    dtype = np.asarray(x).dtype if dtype is None else dtype
    return np.shape(x), np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def traced_fun(fun: Callable[..., Any], *args: Any) -> TracedFun:
    """`fun` traced at `args` (non-array leaves such as strings and ints static),
    remembered per function and argument types within `remembering_traces`."""
    remembered, key = _REMEMBERED.get(), _trace_key(fun, args)
    if remembered is not None and key is not None and key in remembered:
        return remembered[key]
    traced = TracedFun(fun, args, key)
    if remembered is not None and key is not None:
        remembered[key] = traced
    return traced


def output_shape(fun: Callable[..., Any], *args: Any) -> Any:
    """`jax.eval_shape(fun, *args)` with non-array leaves (strings, ints) static,
    from `traced_fun`."""
    return traced_fun(fun, *args).out_info


_REMEMBERED: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "jaxcheck_traces", default=None
)


@contextlib.contextmanager
def remembering_traces() -> Iterator[None]:
    """Within, `traced_fun` traces a function once per argument types (a check
    asks for the same ones several times). Nested, the outermost one counts."""
    if _REMEMBERED.get() is not None:
        yield
        return
    token = _REMEMBERED.set({})
    try:
        yield
    finally:
        _REMEMBERED.reset(token)


_OP_BY_OP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jaxcheck_replay_op_by_op", default=False
)


def replaying_op_by_op(eager: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: within `eager`, stand-ins replay their traces op by op even
    under `vmap` or `grad`, so that an eager transformation of `fun` runs (and
    compiles) its ops one by one, as it would for `fun` itself, rather than one
    program of the whole."""

    @functools.wraps(eager)
    def replaying(*args: Any, **kwargs: Any) -> Any:
        token = _OP_BY_OP.set(True)
        try:
            return eager(*args, **kwargs)
        finally:
            _OP_BY_OP.reset(token)

    return replaying


def _trace_key(fun: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """What `fun`'s trace depends on: `fun`, the structure of `args`, the types
    of its array leaves and the values of the others; None when that is not
    hashable."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    types = tuple(
        (_type(x), bool(getattr(x, "weak_type", False)))
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
