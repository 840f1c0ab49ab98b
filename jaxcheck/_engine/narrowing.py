"""Fast mode's verdict on each leaf: probes along random directions that move the
whole leaf, and when one fails, rounds of narrowing down to the entries to check
one by one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .._base.options import Tolerance
from .._tree.pytree import LeafInfo
from .blocks import Block
from .directional import Probes, Probing, Support, probe_blocks, run_probes
from .numerical import Prepared

# A leaf whose probes fail is narrowed down before it is checked entry by entry:
# its suspect entries are split into NARROW_GROUPS groups, each group is probed
# along its own random directions, and only the failing groups stay suspect, until
# at most NARROW_TARGET entries remain. A single wrong entry among 5e5 is found in
# 5 rounds of 2·NARROW_PROBES·8 evaluations. When no group fails, or more than half do,
# the error is spread over the leaf and every suspect is checked entry by entry.
NARROW_GROUPS = 8
NARROW_TARGET = 64
NARROW_PROBES = 2


@dataclasses.dataclass(frozen=True, eq=False)
class LeafProbes:
    """Fast mode's verdict on one leaf."""

    probes: Probes  # along directions that move the whole leaf
    suspects: np.ndarray | None  # flat indices into the leaf to check one by one
    rounds: int  # rounds of narrowing that chose `suspects`

    @property
    def checked(self) -> str:
        """How the leaf was checked, for the report."""
        directions = f"{self.probes.analytic.size} directions"
        if self.suspects is None:
            return directions
        if self.rounds == 0:
            return f"{directions} (failed), then all entries"
        return (
            f"{directions} (failed), narrowed in {self.rounds} rounds to "
            f"{self.suspects.size} entries, checked one by one"
        )


def _narrow(
    o: Probing, block: Block, leaves: list[LeafInfo], suspects: dict[int, np.ndarray]
) -> dict[int, int]:
    """Shrinks the suspect entries of each leaf in place; returns the rounds."""
    rounds = {position: 0 for position in suspects}
    active = {p for p, s in suspects.items() if s.size > NARROW_TARGET}
    by_position = {leaf.position: leaf for leaf in leaves}
    while active:
        supports = [
            Support(by_position[p], group, (rounds[p] + 1, k))
            for p in sorted(active)
            for k, group in enumerate(np.array_split(suspects[p], NARROW_GROUPS))
        ]
        results = run_probes(o, block, leaves, supports, NARROW_PROBES)
        for p in sorted(active):
            mine = zip(supports, results, strict=True)
            failed = [s.local for s, r in mine if s.leaf.position == p and not r.ok]
            if not failed or len(failed) > NARROW_GROUPS // 2:
                active.discard(p)  # spread out: check every suspect
                continue
            suspects[p] = np.concatenate(failed)
            rounds[p] += 1
            if suspects[p].size <= NARROW_TARGET:
                active.discard(p)
    return rounds


def probe_leaves(
    prepared: Prepared,
    analytic: np.ndarray,
    *,
    probes: int,
    seed: int,
    tolerance: Tolerance,
    chunk_size: int | None,
    memory_budget: int,
    analytic_leaves: Sequence[LeafInfo] | None = None,
) -> list[LeafProbes]:
    """Fast mode's verdict on every perturbed leaf, in `tree.leaves` order, for
    the flat analytic gradient `analytic` (a zero-size leaf passes, unprobed).

    `prepared` may be a float64 twin of `fun`; `analytic_leaves` (default: the
    leaves of `prepared`) are then the original leaves, whose dtypes set the
    floors of the pass band as in the entry-wise check."""
    tree = prepared.tree
    floors = {x.position: x.dtype for x in analytic_leaves or tree.leaves}
    o = Probing(prepared, analytic, seed, tolerance, chunk_size, memory_budget, floors)
    out: dict[int, LeafProbes] = {}
    for block, leaves in probe_blocks(tree.leaves):
        supports = [Support(x, None, ()) for x in leaves]
        whole = run_probes(o, block, leaves, supports, probes)
        suspects = {
            leaf.position: np.arange(leaf.size)
            for leaf, p in zip(leaves, whole, strict=True)
            if not p.ok
        }
        rounds = _narrow(o, block, leaves, suspects)
        for leaf, p in zip(leaves, whole, strict=True):
            out[leaf.position] = LeafProbes(
                p, suspects.get(leaf.position), rounds.get(leaf.position, 0)
            )
    empty = Probes(np.zeros(0), np.zeros(0), np.zeros(0))
    return [out.get(x.position, LeafProbes(empty, None, 0)) for x in tree.leaves]
