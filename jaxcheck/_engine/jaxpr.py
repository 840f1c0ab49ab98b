"""What `fun`'s jaxpr tells before anything runs: its ops, the memory of one
evaluation, and so which of the two ways evaluates a check's points."""

from __future__ import annotations

import math
from typing import Any

from .._runtime.multiprocess import is_multiprocess

# See `runs_eagerly`.
EAGER_MAX_EQUATIONS = 512  # equations of `fun`'s jaxpr, sub-jaxprs included
EAGER_MAX_BYTES = 32 << 20  # intermediates of all the evaluations of one check


def runs_eagerly(
    jaxpr: Any, fun_bytes: int, evaluations: int, sharded: bool = False
) -> bool:
    """Which of the two ways evaluates a check's perturbed points: eager (True)
    or compiled (False). This is the only place that decides it.

    Both ways batch the points with `vmap` and run the user's own program on
    the user's device. Eager, `vmap` runs without `jit`: JAX dispatches `fun`'s
    ops one by one and compiles each op once per signature (primitive, input
    types, parameters) for the whole process, about 10-30 ms per new op on a
    CPU and nothing for an op seen before. Compiled, the points run in chunks
    of one `jit(vmap(fun))` program per block of leaves, 0.05-0.5 s to compile
    a whole program (nothing when the persistent compilation cache holds it)
    and then as fast as XLA makes it.

    A check runs eagerly when `fun` is small and all its evaluations fit in
    memory at once: at most `EAGER_MAX_EQUATIONS` equations in its jaxpr
    (sub-jaxprs included) and at most `EAGER_MAX_BYTES` of intermediates for
    `evaluations` points (about four per entry: central differences and a
    refinement at 2h). Otherwise, and always for sharded leaves and under
    `jax.distributed` (where every process must run the same programs), it is
    compiled. The rule reads only the call (the size of θ and of `fun`), never
    what ran earlier in the process. Where `vmap` cannot batch `fun`, either
    way goes on one point at a time (see `_engine.chunks.run_chunks`).
    """
    if sharded or is_multiprocess():
        return False
    return (
        count_equations(jaxpr) <= EAGER_MAX_EQUATIONS
        and fun_bytes * max(evaluations, 1) <= EAGER_MAX_BYTES
    )


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
