"""How the perturbed entries are grouped into blocks (one compiled program each)
and how many evaluations go into one chunk."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .._runtime.sharding import batch_axes
from .._tree.pytree import LeafInfo

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
    # A leaf that arrives sharded is a block alone: its `NamedSharding`, and the
    # mesh axes the batch is split over (see `_runtime.sharding`).
    sharding: Any = None
    batch_axes: tuple[str, ...] = ()

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

    A leaf with at least `MIN_BLOCK_SIZE` entries to evaluate, or one that
    arrives sharded, is a block alone;
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
        if count >= MIN_BLOCK_SIZE or leaf.sharding is not None:
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
    return [(block_of(g), g) for g in groups]


def block_of(leaves: Sequence[LeafInfo]) -> Block:
    """The block that perturbs `leaves` (a sharded leaf is always alone)."""
    sharding = leaves[0].sharding
    return Block(
        tuple(x.position for x in leaves),
        tuple(x.shape for x in leaves),
        sharding,
        batch_axes() if sharding is not None else (),
    )


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
