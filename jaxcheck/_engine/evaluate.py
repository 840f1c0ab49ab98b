"""Batched evaluation of `fun` at many perturbed points: `vmap` inside `jit`, in chunks.

The perturbed leaves are grouped into blocks, one compiled program each. A leaf
with many entries to evaluate is a block alone; the leaves with few (biases,
norms, or any leaf of which only a sample is checked) share blocks per dtype,
wherever they sit in the pytree, so a model with many small leaves does not pay
one compilation per leaf. Only the block carries the batch axis: everything
`fun` computes before it touches the block is computed once per chunk, not once
per perturbation. That is also why two large leaves of one shape get a program
each: one program for both would batch `fun` from the first of them on, so every
layer of a deep network would run as batched as its first, up to twice the run
time, which is what dominates for large leaves, to save a compilation. A block's
perturbations are evaluated in chunks of a fixed size (the last one padded), so
one compiled program serves every chunk of the block and a second check with the
same shapes compiles nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import re
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from .._base.errors import BatchingFallbackWarning
from .._runtime import progress as _progress
from .._runtime import resume as _resume
from .._runtime import sharding as _sharding
from .._runtime.multiprocess import gather, is_multiprocess
from .._tree.pytree import LeafInfo, Problem, format_path

# On the CPU a chunk runs fastest when its working set stays near the caches:
# measured on a 2-core Xeon (4 MiB L2), MLPs of 2.8e3 and 2.1e4 parameters ran
# 2-3x faster with chunks of about this many bytes than with 1 GiB chunks.
# Accelerators prefer the largest chunk the budget allows.
CPU_CHUNK_BYTES = 32 << 20

# A leaf with fewer entries to evaluate than this shares a block with the other
# such leaves of its dtype; a shared block is closed once it has this many to
# evaluate (each evaluation copies the whole block, so its cost grows with both).
MIN_BLOCK_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class Block:
    """Leaves perturbed by one compiled program (hashable: a static jit argument)."""

    positions: tuple[int, ...]  # indices into the dynamic leaves
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def starts(self) -> tuple[int, ...]:
        """Where each leaf begins in the block's flat vector."""
        return tuple(np.cumsum((0, *self.sizes[:-1])).tolist())


def plan_blocks(
    leaves: Sequence[LeafInfo], counts: Sequence[int] | None = None
) -> list[tuple[Block, list[LeafInfo]]]:
    """The blocks that evaluate `counts[i]` entries of leaf i (default: all).

    A leaf with at least `MIN_BLOCK_SIZE` entries to evaluate is a block alone;
    the others are grouped per dtype in pytree order, wherever they sit, a group
    closing at `MIN_BLOCK_SIZE` entries. Leaves with nothing to evaluate are left
    out.
    """
    counts = [leaf.size for leaf in leaves] if counts is None else counts
    groups: list[list[LeafInfo]] = []
    open_groups: dict[tuple, tuple[list[LeafInfo], list[int]]] = {}
    for leaf, count in zip(leaves, counts, strict=True):
        if leaf.size == 0 or count == 0:
            continue
        if count >= MIN_BLOCK_SIZE:
            groups.append([leaf])
            continue
        kind = (leaf.dtype, leaf.weak_type)
        if kind not in open_groups:
            groups.append([])
            open_groups[kind] = (groups[-1], [0])
        group, filled = open_groups[kind]
        group.append(leaf)
        filled[0] += count
        if filled[0] >= MIN_BLOCK_SIZE:
            del open_groups[kind]
    return [
        (Block(tuple(x.position for x in g), tuple(x.shape for x in g)), g)
        for g in groups
    ]


def entries_by_block(
    leaves: Sequence[LeafInfo], entries: np.ndarray
) -> list[tuple[Block, list[LeafInfo], np.ndarray, np.ndarray]]:
    """The blocks that evaluate `entries` (sorted offsets into θ), each with the
    positions in `entries` it evaluates and their indices in its flat vector."""
    bounds = [np.searchsorted(entries, [x.offset, x.offset + x.size]) for x in leaves]
    plan = plan_blocks(leaves, [int(hi - lo) for lo, hi in bounds])
    where = {leaf.position: bound for leaf, bound in zip(leaves, bounds, strict=True)}
    out = []
    for block, members in plan:
        picked, local = [], []
        for leaf, start in zip(members, block.starts(), strict=True):
            lo, hi = where[leaf.position]
            picked.append(np.arange(lo, hi))
            local.append(entries[lo:hi] - leaf.offset + start)
        out.append((block, members, np.concatenate(picked), np.concatenate(local)))
    return out


def _add_context(error: Exception, what: str, problem: Problem | None = None) -> None:
    """Notes where jaxcheck was when `fun` raised, and for the errors a new user
    meets first, what to do; the traceback stays the user's."""
    error.add_note(f"jaxcheck: raised by `fun` while {what}.")
    if isinstance(error, _VALUE_DEPENDENT):
        error.add_note(
            "jaxcheck: `fun` is traced (under `jit` and `vmap`) to evaluate it at "
            "many perturbed points at once, so it must not use the values of its "
            "inputs in Python (`if x > 0:`, `bool(x)`, `float(x)`, `int(x)`). "
            "Branch with `jnp.where(x > 0, a, b)` or `jax.lax.cond`; pass a value "
            "that must stay a Python number through a closure "
            "(`lambda p: fun(p, n=3)`)."
        )
    elif (
        problem is not None
        and isinstance(error, TypeError)
        and _SIGNATURE.search(str(error))
        and _name(problem.fun) in str(error)
    ):
        n = problem.n_args
        error.add_note(
            f"jaxcheck: `fun` is called as `fun(params, *args)`, here with "
            f"{n} argument{'' if n == 1 else 's'} after `params`: pass `fun`'s other "
            "arguments, and only those, after `params` (`check_grad(loss, params, "
            "x, y)`), or bind them first (`functools.partial(loss, x=x)`)."
        )


_VALUE_DEPENDENT = (
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.ConcretizationTypeError,
)
_SIGNATURE = re.compile(
    r"missing \d+ required positional argument|takes \d+ positional arguments? but "
    r"\d+ (?:was|were) given|got an unexpected keyword argument"
)


def _name(fun: Any) -> str:
    """How Python names `fun` in a call's TypeError: `loss()`, `<lambda>()`."""
    return getattr(fun, "__name__", type(fun).__name__) + "()"


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


def _evaluate(problem: Problem, dynamic: tuple[jax.Array, ...]) -> Any:
    return problem.evaluate(dynamic)


_evaluate_jit = jax.jit(_evaluate, static_argnums=0)


def evaluate(
    problem: Problem, dynamic: tuple[jax.Array, ...], *, eager: bool = False
) -> Any:
    """`fun(params, *args)` at the unperturbed point."""
    try:
        return (_evaluate if eager else _evaluate_jit)(problem, dynamic)
    except Exception as error:
        _add_context(error, "being evaluated at the unperturbed `params`", problem)
        raise


def replace_leaves(
    dynamic: Sequence[Any], positions: Sequence[int], new: Sequence[Any]
) -> list[Any]:
    """`dynamic` with the leaves at `positions` replaced by `new`."""
    out = list(dynamic)
    for position, value in zip(positions, new, strict=True):
        out[position] = value
    return out


def _value_and_grad(
    problem: Problem, positions: tuple[int, ...], dynamic: tuple[jax.Array, ...]
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    def of_leaves(leaves):
        return problem.evaluate(replace_leaves(dynamic, positions, leaves))

    return jax.value_and_grad(of_leaves)(tuple(dynamic[p] for p in positions))


_value_and_grad_jit = jax.jit(_value_and_grad, static_argnums=(0, 1))


def value_and_grad(
    problem: Problem,
    positions: tuple[int, ...],
    dynamic: tuple[jax.Array, ...],
    *,
    eager: bool = False,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """`fun`'s value and its `jax.grad` with respect to the leaves at `positions`."""
    return (_value_and_grad if eager else _value_and_grad_jit)(
        problem, positions, dynamic
    )


def _evaluate_chunk(
    problem: Problem,
    block: Block,
    dynamic: tuple[jax.Array, ...],
    indices: jax.Array,
    values: jax.Array,
    batched: bool = True,
) -> jax.Array:
    """`fun` with entry `indices[k]` of the block set to `values[k]`, for every k:
    batched with `vmap`, or (not `batched`) one after another with `lax.map`.

    Each perturbed leaf is built by a select against an iota, which XLA fuses
    into one pass that writes the batch of copies: measured 1.4x to 1.5x faster
    per evaluation of an MLP's 218x218 weight (float64, CPU) than a scatter into
    a broadcast copy, which writes every copy twice.
    """
    starts = block.starts()

    def one(index, value):
        leaves = [
            jnp.where(
                jnp.arange(size, dtype=index.dtype) == index - start,
                value,
                dynamic[position].reshape(-1),
            ).reshape(shape)
            for position, start, size, shape in zip(
                block.positions, starts, block.sizes, block.shapes, strict=True
            )
        ]
        return problem.evaluate(replace_leaves(dynamic, block.positions, leaves))

    if not batched:
        return jax.lax.map(lambda row: one(*row), (indices, values))
    return jax.vmap(one)(indices, values)


_evaluate_chunk_jit = jax.jit(_evaluate_chunk, static_argnums=(0, 1))
# For a `fun` that cannot be batched: the same rows, one at a time.
_evaluate_rows_jit = jax.jit(
    functools.partial(_evaluate_chunk, batched=False), static_argnums=(0, 1)
)


def trace_base(problem: Problem, dynamic: tuple[jax.Array, ...]):
    """Traces `fun` once (cached by `jit`): its output type and its jaxpr."""
    try:
        return _evaluate_jit.trace(problem, dynamic)
    except Exception as error:
        _add_context(error, "being traced at the unperturbed `params`", problem)
        raise


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


def bytes_per_evaluation(block: Block, itemsize: int, fun_bytes: int) -> int:
    """Memory one batched evaluation needs: the perturbed copies of the block (the
    flat vector and its pieces) plus `fun`'s intermediates."""
    return 2 * block.size * itemsize + fun_bytes + 64


def chunk_length(
    n_evaluations: int, per_evaluation: int, memory_budget: int, chunk_size: int | None
) -> int:
    """Evaluations per chunk: `chunk_size`, or as many as the budget allows (on the
    CPU, as many as keep the chunk near the caches), balanced so that padding the
    last chunk wastes as little as possible."""
    if chunk_size is not None:
        return max(1, min(chunk_size, n_evaluations))
    if per_evaluation > memory_budget:
        raise ValueError(
            f"`memory_budget` of {memory_budget} bytes is too small for a single "
            f"evaluation of `fun`, which needs about {per_evaluation} bytes; raise "
            "`memory_budget` or pass `chunk_size=1`."
        )
    target = memory_budget
    if jax.default_backend() == "cpu":
        target = min(target, max(CPU_CHUNK_BYTES, 16 * per_evaluation))
    largest = max(1, int(target // per_evaluation))
    n_chunks = -(-n_evaluations // largest)
    return -(-n_evaluations // n_chunks)


def run_chunks(
    program: Callable[..., jax.Array],
    batched: Sequence[np.ndarray],
    chunk: int,
    describe: Callable[[int, int], str],
    tag: str | None = None,
    one_at_a_time: Callable[..., jax.Array] | None = None,
) -> np.ndarray:
    """`program(*rows)` over the rows of `batched`, `chunk` rows at a time.

    The last chunk is padded with copies of the first row (their results are
    dropped), so one compiled program serves every chunk. Each chunk is read back
    before the next is dispatched, which is what bounds the memory (keeping two in
    flight measured no faster on the CPU). `describe(k, n_chunks)` says what was
    being evaluated when `fun` raised. Inside `_sharding.sharded_over`, each chunk
    is split across the devices (its length rounded up to a multiple of them).
    With a `tag` naming the program, inside `_resume.recording`, each chunk is
    loaded from the record when it holds it, and written to it when finished.
    When `program` fails and `one_at_a_time` (the same rows, not batched) does
    not, `fun` cannot be batched: the chunks run one at a time from then on,
    with a warning that says why. An error of `fun` itself is raised.
    """
    n = len(batched[0])
    devices = _sharding.devices_in_use()
    chunk = -(-chunk // devices) * devices
    n_chunks = -(-n // chunk)
    _progress.expect(n)
    record = _resume.active() if tag is not None else None
    results = []
    for k in range(n_chunks):
        rows = [a[k * chunk : (k + 1) * chunk] for a in batched]
        pad = chunk - len(rows[0])
        if pad:
            rows = [np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) for a in rows]
        result = record.load(tag, rows) if record else None
        if result is None:
            try:
                result = gather(program(*_sharding.place(rows)))
            except Exception as error:
                # Batching fails while the program is traced, on its first chunk,
                # inside JAX (a batching rule), not while it runs and not in
                # `fun`'s own code: only such errors may fall back.
                batching = (
                    one_at_a_time is not None
                    and not isinstance(error, jax.errors.JaxRuntimeError)
                    and _raised_inside_jax(error)
                )
                result = (
                    _one_at_a_time(one_at_a_time, rows, error) if batching else None
                )
                if result is None:
                    _add_context(error, describe(k, n_chunks))
                    raise
                program = one_at_a_time
            one_at_a_time = None  # the program ran: batching is not the trouble
            if record:
                record.save(tag, rows, result)
        results.append(result)
        _progress.advance(chunk - pad)
    return np.concatenate(results)[:n]


_JAX_PACKAGES = tuple(
    os.path.dirname(module.__file__) + os.sep for module in (jax, jaxlib)
)


def _raised_inside_jax(error: Exception) -> bool:
    """Whether `error` was raised by JAX's own code (its innermost frame, which
    JAX keeps when it filters a traceback), not by `fun` or jaxcheck."""
    frames = list(traceback.walk_tb(error.__traceback__))
    return bool(frames) and frames[-1][0].f_code.co_filename.startswith(_JAX_PACKAGES)


def _one_at_a_time(
    program: Callable[..., jax.Array] | None, rows: Sequence[Any], error: Exception
) -> np.ndarray | None:
    """The rows evaluated one at a time when that works where the batch failed
    (so batching was the trouble: a primitive without a batching rule, say);
    None when it fails too (the error is `fun`'s) or there is no such program."""
    if program is None:
        return None
    try:
        result = gather(program(*_sharding.place(rows)))
    except Exception:
        return None
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
    said = _FALLBACKS.get()
    if said is not None:
        said.append(f"{type(error).__name__}: {cause[:120]}")
    warnings.warn(
        f"jaxcheck: `fun` cannot be batched with `vmap` ({type(error).__name__}: "
        f"{cause[:300]}); its perturbed points are evaluated one at a time "
        "instead (`lax.map`: the same numbers, slower).",
        BatchingFallbackWarning,
        stacklevel=2,
    )
    return result


_FALLBACKS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "jaxcheck_fallbacks", default=None
)


@contextlib.contextmanager
def noting_fallbacks() -> Iterator[list[str]]:
    """Collects why the chunk loops run inside fell back to one at a time."""
    token = _FALLBACKS.set([])
    try:
        yield _FALLBACKS.get()
    finally:
        _FALLBACKS.reset(token)


def evaluate_block(
    problem: Problem,
    block: Block,
    block_leaves: Sequence[LeafInfo],
    dynamic: tuple[jax.Array, ...],
    indices: np.ndarray,
    values: np.ndarray,
    chunk: int,
    eager: bool = False,
    recorded: bool = True,
) -> np.ndarray:
    """`fun` at every perturbation (`indices[k]` set to `values[k]`), chunk by chunk
    (with `eager`, op by op instead of compiled). Unless `recorded` is False, the
    chunks go to (and come from) the resume record, when the check keeps one."""
    paths = ", ".join(format_path(leaf.path) for leaf in block_leaves)
    program = _evaluate_chunk if eager else _evaluate_chunk_jit
    return run_chunks(
        functools.partial(program, problem, block, dynamic),
        (indices, values),
        chunk,
        lambda k, n: f"evaluating chunk {k + 1} of {n} with {paths} perturbed",
        f"block {block} of {values.dtype}, eager={eager}" if recorded else None,
        functools.partial(_evaluate_rows_jit, problem, block, dynamic),
    )
