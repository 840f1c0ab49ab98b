"""What `fun`'s jaxpr tells before anything runs: its ops, the memory of one
evaluation, and so whether a check is cheaper op by op than compiled."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._runtime.multiprocess import is_multiprocess
from .._tree.pytree import Problem
from .op_by_op import count_dispatches

# A small problem runs without `jit` when that is cheaper: `vmap` dispatched op
# by op. Op by op, JAX compiles each op once per signature (primitive, input
# types, parameters) and keeps it for the process: about 10-30 ms per new op on a
# CPU, against 0.05-0.2 s to compile a whole program, and a program compiled
# once is free the next time. So op by op wins where the ops recur in new
# functions (many small functions of the same shapes: measured 0.0074 s per new
# function against 0.085 s with `jit`) and loses where they are new (an MLP at a
# new width: 1.0 s against 0.22 s, 32 ops compiled) or where the same problem
# was compiled before. The ledger keeps the signatures seen in earlier checks and
# those already run op by op: a check runs op by op when its problem was not
# compiled before, at most `EAGER_MAX_FRESH_OPS` of its ops were never seen, and
# at most `EAGER_MAX_NEW_OPS` are not compiled yet (ops seen before are likely
# to come again: compiling them once pays off over the next checks). The
# perturbations stay batched either way. Above `EAGER_MAX_EQUATIONS` or
# `EAGER_MAX_BYTES` (a problem evaluated chunk after chunk), one compiled program
# serves every chunk.
EAGER_MAX_EQUATIONS = 512  # equations of `fun`'s jaxpr, sub-jaxprs included


EAGER_MAX_BYTES = 32 << 20  # intermediates of all the evaluations of one check


EAGER_MAX_FRESH_OPS = 4


EAGER_MAX_NEW_OPS = 12


# Fewer op calls than this (evaluations × ops dispatched per evaluation) and a
# check runs one point at a time, op by op, from the jaxpr traced once (see
# `point_way`). The equations inside what is dispatched whole (a `jit`) are
# bounded too, by `ONE_BY_ONE_MAX_WORK` times as many: they are computed per point.
ONE_BY_ONE_MAX_OPS = 2048
ONE_BY_ONE_MAX_WORK = 8


# A check too large to run op by op calls `fun`'s own compiled program once per
# point instead of batching when its points would take at most
# `ONE_POINT_MAX_SECONDS` that way: about 40 µs a call on a CPU plus 2.5 ns per
# byte of `fun`'s intermediates (measured on a small MLP: 150 µs a point at
# 44 KB). Beyond, batching pays for its compilation within one call, and a
# repeated check of the same shapes costs a fraction of that.
ONE_POINT_MAX_EVALUATIONS = 4096
ONE_POINT_MAX_SECONDS = 0.1
_POINT_CALL_SECONDS = 40e-6
_POINT_SECONDS_PER_BYTE = 2.5e-9


_MAX_REMEMBERED = 4096  # problems compiled, remembered (oldest forgotten first)


class _OpLedger:
    """What this process has seen, run op by op and compiled (thread-safe)."""

    def __init__(self) -> None:
        self.seen: set = set()
        self.compiled: set = set()
        self.jitted: dict = {}  # problems with compiled programs, oldest first
        self.lock = threading.Lock()

    def decide(self, problem_key: Any, signatures: set) -> bool:
        """Whether a check of these ops runs op by op; records the choice."""
        with self.lock:
            new = signatures - self.compiled
            eager = (
                problem_key not in self.jitted
                and len(new - self.seen) <= EAGER_MAX_FRESH_OPS
                and len(new) <= EAGER_MAX_NEW_OPS
            )
            if len(self.seen) > _MAX_REMEMBERED * 16:  # forget, a little slower
                self.seen.clear()
                self.compiled.clear()
            self.seen |= signatures
            if eager:
                self.compiled |= signatures
            else:
                self.jitted[problem_key] = None
                if len(self.jitted) > _MAX_REMEMBERED:
                    del self.jitted[next(iter(self.jitted))]
            return eager


_LEDGER = _OpLedger()


def op_signatures(jaxpr: Any, batch: int) -> set:
    """What JAX compiles an op by: its primitive, input types and parameters (at
    `batch` rows), for every equation, sub-jaxprs included."""
    out = set()
    for eqn in jaxpr.eqns:
        types = tuple(str(getattr(v, "aval", v)) for v in eqn.invars)
        out.add((batch, eqn.primitive.name, types, str(eqn.params)))
        for inner in sub_jaxprs(eqn):
            out |= op_signatures(inner, batch)
    return out


def runs_eagerly(
    problem: Problem,
    dynamic: Sequence[Any],
    jaxpr: Any,
    fun_bytes: int,
    evaluations: int,
) -> bool:
    """Whether a check of `fun` (its `jaxpr`) is cheaper op by op than compiled."""
    if is_multiprocess():
        return False  # every process must run the same programs: compiled ones
    evaluations = max(evaluations, 1)
    fits = (
        count_equations(jaxpr) <= EAGER_MAX_EQUATIONS
        and fun_bytes * evaluations <= EAGER_MAX_BYTES
    )
    if not fits:
        return False
    batch = 1 << (evaluations - 1).bit_length()  # eager chunks are powers of two
    types = tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in dynamic)
    return _LEDGER.decide((problem, types, batch), op_signatures(jaxpr, batch))


def point_way(jaxpr: Any, evaluations: int, fun_bytes: int) -> str | None:
    """How a check evaluates its points: one at a time, "op by op" or
    "compiled", or None for batched programs.

    One at a time, `fun` has its own shapes at every point. Op by op, its ops
    are the ones the analytic side compiled already, so a point costs
    dispatches (15–60 µs an op on a CPU), not compilations (about 40 ms a new
    op, batched, or a whole program). The ops come from the jaxpr traced once,
    not from calling `fun` again: op by op, a `jax.vjp` inside `fun` would
    linearize anew at every point (a VJP of a VJP of sin: 6.8 ms a point,
    against 0.7 ms). With more points than that pays for, the program of `fun`
    alone is compiled once and called per point: every pass of the check (the
    first, the refinements at other steps) shares that compilation, where a
    batched program compiles anew for each batch size. Many points of a large
    `fun` are batched: there the arithmetic, not the dispatch, is the cost.
    """
    if is_multiprocess():
        return None  # every process must run the same programs: batched ones
    evaluations = max(evaluations, 1)
    equations = count_equations(jaxpr)
    if (
        equations <= EAGER_MAX_EQUATIONS
        and evaluations * count_dispatches(jaxpr) <= ONE_BY_ONE_MAX_OPS
        and evaluations * equations <= ONE_BY_ONE_MAX_WORK * ONE_BY_ONE_MAX_OPS
    ):
        return "op by op"
    per_point = _POINT_CALL_SECONDS + _POINT_SECONDS_PER_BYTE * fun_bytes
    if (
        evaluations <= ONE_POINT_MAX_EVALUATIONS
        and evaluations * per_point <= ONE_POINT_MAX_SECONDS
    ):
        return "compiled"
    return None


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
