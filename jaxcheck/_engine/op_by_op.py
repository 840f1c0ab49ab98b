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
by JAX's own interpreter, whose ops compile apart from `fun`'s.

jaxcheck's own wrappers around `fun` (moving θ along a tangent, pairing the
output with a cotangent, flattening it) are programs registered with
`host_twin`: one by one, their NumPy twins run instead, on the host, so they
compile nothing for each new shape of `fun`'s inputs and outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import numpy as np

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
    and outputs as NumPy arrays; they are cast to the program's output types."""

    def register(fun: Callable[..., Any]) -> Callable[..., Any]:
        fun.__name__ = f"jaxcheck_{fun.__name__.lstrip('_')}"
        _HOST_TWINS[fun.__name__] = twin
        return jax.jit(fun)

    return register


def _on_host(eqn: Any, inputs: list[Any]) -> list[Any] | None:
    """The outputs of a registered wrapper program, computed by its twin."""
    if eqn.primitive.name not in ("jit", "pjit"):
        return None
    twin = _HOST_TWINS.get(eqn.params.get("name"))
    if twin is None:
        return None
    outputs = twin(*(np.asarray(x) for x in inputs))
    # Left on the host: the next op takes a NumPy input as it is (cheaper than
    # a `device_put` first), and the flat output is read on the host anyway.
    return [
        np.asarray(out).astype(var.aval.dtype)
        for out, var in zip(outputs, eqn.outvars, strict=True)
    ]


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
        key = _CALLS.get(eqn.primitive.name)
        sub = eqn.params.get(key) if key else None
        inlined = sub is not None and hasattr(_parts(sub)[0], "eqns")
        total += count_dispatches(_parts(sub)[0]) if inlined else 1
    return total


def run_jaxpr(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """The outputs of `jaxpr` at `args`, each equation bound as it stands."""
    env: dict[Any, Any] = {}

    def read(var: Any) -> Any:
        if isinstance(var, jax.extend.core.Literal):
            return var.val
        return env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        hosted = _on_host(eqn, inputs)
        if hosted is not None:
            env.update(zip(eqn.outvars, hosted, strict=True))
            continue
        key = _CALLS.get(eqn.primitive.name)
        sub = eqn.params.get(key) if key else None
        if sub is not None and hasattr(_parts(sub)[0], "eqns"):
            outputs = run_jaxpr(*_parts(sub), inputs)
        else:
            outputs = eqn.primitive.bind(*inputs, **eqn.params)
            if not eqn.primitive.multiple_results:
                outputs = [outputs]
        env.update(zip(eqn.outvars, outputs, strict=True))
    return [read(v) for v in jaxpr.outvars]


@dataclasses.dataclass(frozen=True, eq=False)
class OpByOp:
    """`fun` at one point, op by op from the jaxpr `trace_base` traced."""

    closed: Any  # the ClosedJaxpr of `problem.evaluate(dynamic)`
    out_tree: Any

    @classmethod
    def of(cls, traced: Any) -> OpByOp:
        return cls(traced.jaxpr, jax.tree_util.tree_structure(traced.out_info))

    def __call__(self, dynamic: Sequence[Any]) -> Any:
        leaves = jax.tree_util.tree_leaves(tuple(dynamic))
        outs = run_jaxpr(self.closed.jaxpr, self.closed.consts, leaves)
        return jax.tree_util.tree_unflatten(self.out_tree, outs)
