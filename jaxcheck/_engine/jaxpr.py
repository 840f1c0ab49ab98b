"""What `fun`'s jaxpr tells before anything runs: its ops, the memory of one
evaluation, and so which of the two ways evaluates a check's points."""

from __future__ import annotations

import math
from typing import Any

from .._runtime.multiprocess import is_multiprocess

# See `evaluation_way`.
EAGER_MAX_EQUATIONS = 512  # equations of `fun`'s jaxpr, sub-jaxprs included
EAGER_MAX_BYTES = 32 << 20  # intermediates of all the evaluations of one check
ONE_BY_ONE_MAX_DISPATCHES = 8192  # evaluations × equations


def evaluation_way(
    jaxpr: Any, fun_bytes: int, evaluations: int, sharded: bool = False
) -> tuple[bool, bool]:
    """How a check's perturbed points are evaluated: (eager, batched). This is
    the only place that decides it.

    There are two ways, and both run the user's own program on the user's
    device. **Compiled**: the points run in chunks of one `jit(vmap(fun))`
    program per block of leaves, 0.05-0.5 s to compile a whole program (nothing
    when the persistent compilation cache holds it) and then as fast as XLA
    makes it. **Eager**: no `jit`; JAX dispatches `fun`'s ops one by one and
    compiles each op once per signature (primitive, input types, parameters)
    for the whole process, about 30 ms per new op on a CPU and nothing for an op
    seen before. Eagerly, the points are batched with `vmap` (each op compiled
    once more at the batch's shape) or, when so few that dispatching every op
    at every point costs less than compiling the batched ops (an op costs about
    30 ms to compile and 50-100 µs to dispatch), evaluated one at a time at
    `fun`'s own shapes, whose ops the analytic side and J(θ) have compiled
    already.

    The rule reads only the call, never what ran earlier in the process:
    `evaluations` (about four per entry of θ: central differences and a
    refinement at 2h) and `fun`'s jaxpr (its equations, sub-jaxprs included,
    and `fun_bytes` of intermediates per evaluation). A check is eager when
    `fun` has at most `EAGER_MAX_EQUATIONS` equations and all its evaluations
    need at most `EAGER_MAX_BYTES`; then one point at a time when evaluations ×
    equations is at most `ONE_BY_ONE_MAX_DISPATCHES` (on JAX's
    lax_autodiff_test.py a bound of 512 evaluations alone, whatever the
    equations, was 11 % slower per call). Everything else, and
    always sharded leaves and checks under `jax.distributed` (where every
    process must run the same programs), is compiled and batched. Where `vmap`
    cannot batch `fun`, either way goes on one point at a time (see
    `_engine.chunks.run_chunks`).
    """
    if sharded or is_multiprocess():
        return False, True
    evaluations = max(evaluations, 1)
    equations = count_equations(jaxpr)
    if equations > EAGER_MAX_EQUATIONS or fun_bytes * evaluations > EAGER_MAX_BYTES:
        return False, True
    return True, evaluations * equations > ONE_BY_ONE_MAX_DISPATCHES


def sub_jaxprs(eqn: Any):
    """The jaxprs nested in an equation (of `jit`, `scan`, `cond`, custom rules)."""
    for param in eqn.params.values():
        for sub in param if isinstance(param, (tuple, list)) else (param,):
            inner = getattr(sub, "jaxpr", sub)
            if hasattr(inner, "eqns"):
                yield inner


def count_equations(jaxpr: Any) -> int:
    """Equations of a jaxpr, sub-jaxprs included: the ops one evaluation runs."""
    return sum(1 + sum(map(count_equations, sub_jaxprs(eqn))) for eqn in jaxpr.eqns)


def intermediate_bytes(jaxpr: Any) -> int:
    """Bytes of every value a jaxpr computes, sub-jaxprs included: an upper bound
    on the live memory of one evaluation."""
    total = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = var.aval
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                # PRNG key dtypes have no NumPy itemsize; count them as 8 bytes.
                itemsize = getattr(aval.dtype, "itemsize", 8)
                total += math.prod(aval.shape) * itemsize
        for inner in sub_jaxprs(eqn):
            total += intermediate_bytes(inner)
    return total
