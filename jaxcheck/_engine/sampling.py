"""Which entries a check compares entry by entry, in each mode.

- "full": every entry.
- "sample": `samples` seeded random entries of every leaf (all of a smaller leaf),
  so every leaf is covered however large the model.
- "fast": the entries of the leaves whose random directional probes failed.

Each leaf also gets a line saying how it was checked, shown in the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._tree.pytree import LeafInfo
from .directional import leaf_rng
from .narrowing import LeafProbes


def sampled_entries(
    leaves: Sequence[LeafInfo], samples: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """`samples` distinct random entries per leaf (sorted flat indices into θ),
    drawn from the leaf's own stream (`leaf_rng`), and how each leaf was checked."""
    picked, how = [], []
    for leaf in leaves:
        if leaf.size <= samples:
            picked.append(np.arange(leaf.size))
            how.append("all entries")
            continue
        chosen = leaf_rng(seed, leaf).choice(leaf.size, samples, replace=False)
        picked.append(np.sort(chosen))
        how.append(f"{samples} sampled entries")
    offsets = [leaf.offset + p for leaf, p in zip(leaves, picked, strict=True)]
    return np.concatenate(offsets).astype(np.int64), how


def suspect_entries(
    leaves: Sequence[LeafInfo], verdicts: Sequence[LeafProbes]
) -> tuple[np.ndarray, list[str]]:
    """The entries fast mode's probes left suspect, and how each leaf was checked."""
    picked, how = [np.zeros(0, np.int64)], []
    for leaf, verdict in zip(leaves, verdicts, strict=True):
        how.append("no entries" if leaf.size == 0 else verdict.checked)
        if verdict.suspects is not None:
            picked.append(leaf.offset + verdict.suspects)
    return np.concatenate(picked).astype(np.int64), how
