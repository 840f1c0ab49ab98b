"""`fun` at one point, op by op, from the jaxpr traced once.

A small check evaluates its perturbed points one at a time, op by op (see
`_engine.jaxpr.point_way`). Calling `fun` again for each would re-trace
whatever it transforms (`jax.vjp` linearizes anew at every call); binding the
primitives of its jaxpr instead costs one dispatch per op, and each op is
compiled once per signature (primitive, parameters and input types) for the
whole process. A `jit` inside `fun` (every `jax.numpy` function is one) is bound
as it stands: its program is the one `fun` run op by op compiles, so it is
shared with the analytic side. Custom rules' calls and `checkpoint` are inlined:
only primal values are computed here, and bound whole they would be evaluated
by JAX's own interpreter, whose ops compile apart from `fun`'s. So is the
`jit` in which jaxcheck replays `fun`'s trace (`inlined_program`).

jaxcheck's own wrappers around `fun` (moving θ along a tangent, pairing the
output with a cotangent, flattening it) are programs registered with
`host_twin`: one by one, their NumPy twins run instead, on the host, so they
compile nothing for each new shape of `fun`'s inputs and outputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import numpy as np

try:  # JAX's eager dispatch (see `_fast_call`); binding is the fallback
    from jax._src import dispatch as _dispatch
except ImportError:  # pragma: no cover
    _dispatch = None

# Primitives whose only job is to call a jaxpr, and the parameter holding it.
# Only primal values are computed here, so a custom rule's call is its primal.
_CALLS = {
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
}


# The NumPy twins of jaxcheck's wrapper programs, by the programs' names.
_HOST_TWINS: dict[str, Callable[..., list[np.ndarray]]] = {}


def host_twin(
    twin: Callable[..., list[np.ndarray]],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `jax.jit(fun)`, whose op-by-op evaluation runs `twin` on the
    host instead. `twin(*inputs)` takes and returns the program's flat inputs
    and outputs as NumPy arrays, each with a leading axis of rows (points
    evaluated together, see `host_rows`); they are cast to the program's
    output types."""

    def register(fun: Callable[..., Any]) -> Callable[..., Any]:
        fun.__name__ = f"jaxcheck_{fun.__name__.lstrip('_')}"
        _HOST_TWINS[fun.__name__] = twin
        return jax.jit(fun)

    return register


# jaxcheck's own `jit`s around a part of `fun` (see `inlined_program`), by name.
_INLINED_PROGRAMS: set[str] = set()


def inlined_program(fun: Callable[..., Any]) -> Callable[..., Any]:
    """`jax.jit(fun)`, which op by op is inlined: its ops run one by one, as
    they would were `fun` called without it."""
    fun.__name__ = f"jaxcheck_{fun.__name__.lstrip('_')}"
    _INLINED_PROGRAMS.add(fun.__name__)
    return jax.jit(fun)


def _parts(sub: Any) -> tuple[Any, Sequence[Any]]:
    """(jaxpr, consts) of a closed or open jaxpr parameter."""
    if hasattr(sub, "consts"):
        return sub.jaxpr, sub.consts
    return sub, ()


def count_dispatches(jaxpr: Any) -> int:
    """The ops `run_jaxpr` dispatches for one evaluation: calls are inlined, and
    a `jit` (bound whole) or a registered wrapper (run on the host) is one."""
    total = 0
    for eqn in jaxpr.eqns:
        inlined = _inlined(eqn)
        total += count_dispatches(inlined[0]) if inlined else 1
    return total


def _inlined(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """(jaxpr, consts) of the call `eqn` makes, where it is inlined."""
    name = eqn.primitive.name
    key = _CALLS.get(name)
    if name in ("jit", "pjit") and eqn.params.get("name") in _INLINED_PROGRAMS:
        key = "jaxpr"
    sub = eqn.params.get(key) if key else None
    if sub is None or not hasattr(_parts(sub)[0], "eqns"):
        return None
    return _parts(sub)


def _fast_call(eqn: Any) -> Callable[..., Any] | None:
    """The compiled callable that binding `eqn`'s primitive at the top level
    dispatches to (JAX's own, shared with every eager use of the op), called
    directly: 15 µs instead of 20 µs with device inputs, and 15 µs instead of
    57 µs with host ones. None where the primitive is not run that way."""
    impl = getattr(eqn.primitive, "impl", None)
    apply = getattr(_dispatch, "apply_primitive", None)
    if apply is None or getattr(impl, "func", None) is not apply:
        return None
    try:
        return _dispatch.xla_primitive_callable(eqn.primitive, **eqn.params)
    except Exception:  # e.g. a parameter that cannot be hashed: bind instead
        return None


def _on_host(twin: Callable[..., Any], dtypes: Sequence[Any], *inputs: Any) -> list:
    """A registered wrapper's outputs, computed by its NumPy twin and left on the
    host: the next op takes a host input as it is, and the flat output is read
    on the host anyway."""
    outputs = twin(*(np.asarray(x)[None] for x in inputs))
    return [
        np.asarray(out[0]).astype(d) for out, d in zip(outputs, dtypes, strict=True)
    ]


def _listed(fun: Callable[..., Any]) -> Callable[..., list[Any]]:
    return lambda *inputs: [fun(*inputs)]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A jaxpr as the calls that evaluate it: each equation's inputs (variables,
    or literals as `_Literal`), the function computing its outputs, and the
    variables they bind."""

    constvars: tuple[Any, ...]
    invars: tuple[Any, ...]
    steps: tuple[tuple[tuple[Any, ...], Callable[..., list[Any]], tuple[Any, ...]], ...]
    outvars: tuple[Any, ...]

    @classmethod
    def of(cls, jaxpr: Any) -> _Plan:
        steps = []
        for eqn in jaxpr.eqns:
            steps.append((tuple(map(_read_as, eqn.invars)), _step(eqn), eqn.outvars))
        return cls(
            tuple(jaxpr.constvars), tuple(jaxpr.invars), tuple(steps),
            tuple(map(_read_as, jaxpr.outvars)),
        )  # fmt: skip

    def __call__(self, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        env: dict[Any, Any] = dict(zip(self.constvars, consts, strict=True))
        env.update(zip(self.invars, args, strict=True))
        for invars, compute, outvars in self.steps:
            inputs = [v.val if type(v) is _Literal else env[v] for v in invars]
            env.update(zip(outvars, compute(*inputs), strict=True))
        return [v.val if type(v) is _Literal else env[v] for v in self.outvars]


@dataclasses.dataclass(frozen=True)
class _Literal:
    val: Any


def _read_as(var: Any) -> Any:
    if isinstance(var, jax.extend.core.Literal):
        return _Literal(var.val)
    return var


def _step(eqn: Any) -> Callable[..., list[Any]]:
    """The function computing `eqn`'s outputs from its inputs."""
    name = eqn.primitive.name
    if name in ("jit", "pjit") and eqn.params.get("name") in _HOST_TWINS:
        dtypes = [var.aval.dtype for var in eqn.outvars]
        return functools.partial(_on_host, _HOST_TWINS[eqn.params["name"]], dtypes)
    inlined = _inlined(eqn)
    if inlined is not None:
        inner, consts = inlined
        return functools.partial(_run_inlined, _Plan.of(inner), tuple(consts))
    call = _fast_call(eqn) or functools.partial(eqn.primitive.bind, **eqn.params)
    return call if eqn.primitive.multiple_results else _listed(call)


def _run_inlined(plan: _Plan, consts: Sequence[Any], *inputs: Any) -> list[Any]:
    return plan(consts, inputs)


def run_jaxpr(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """The outputs of `jaxpr` at `args`, each equation bound as it stands."""
    return _Plan.of(jaxpr)(consts, args)


@dataclasses.dataclass(frozen=True, eq=False)
class OpByOp:
    """`fun` at one point, op by op from the jaxpr `trace_base` traced."""

    closed: Any  # the ClosedJaxpr of `problem.evaluate(dynamic)`
    out_tree: Any
    plan: _Plan

    @classmethod
    def of(cls, traced: Any) -> OpByOp:
        out_tree = jax.tree_util.tree_structure(traced.out_info)
        return cls(traced.jaxpr, out_tree, _Plan.of(traced.jaxpr.jaxpr))

    def __call__(self, dynamic: Sequence[Any]) -> Any:
        leaves = jax.tree_util.tree_leaves(tuple(dynamic))
        outs = self.plan(self.closed.consts, leaves)
        return jax.tree_util.tree_unflatten(self.out_tree, outs)
