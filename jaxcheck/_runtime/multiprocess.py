"""Checks run by every process of a `jax.distributed` job.

Under `jax.distributed` (multi-controller SPMD: one Python process per host,
each driving its local devices), every process calls the same check with the
same arguments. By default the chunks of perturbed evaluations are then sharded
over all global devices (`jax.devices()`): each process builds and evaluates
only the rows on its own devices, the small per-row results are gathered, and
every process judges the same numbers, so it takes the same refinement
decisions, runs the same collectives in the same order and ends with the same
report. Before anything is evaluated together, the processes compare the
fingerprints of their checks (`_runtime.fingerprint`): a process that passed other
shapes, values or options fails at once, naming the difference, instead of
waiting forever in a collective that its peers never join.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from .fingerprint import digest


def is_multiprocess() -> bool:
    """Whether this is one process of several (`jax.distributed` initialized)."""
    return jax.process_count() > 1


def agree(parts: dict[str, str]) -> None:
    """Raises on every process unless all processes have the same `parts`.

    Raises:
        ValueError: naming the parts that differ between the processes.
    """
    if not is_multiprocess():
        return
    from jax.experimental import multihost_utils

    # 28 bits of each digest, in int32 (the type every JAX mode gathers as is).
    codes = np.array([int(digest(v)[:7], 16) for v in parts.values()], np.int32)
    everyone = np.asarray(multihost_utils.process_allgather(codes))
    everyone = everyone.reshape(jax.process_count(), len(parts))
    differ = [
        name for k, name in enumerate(parts) if np.any(everyone[:, k] != everyone[0, k])
    ]
    if differ:
        raise ValueError(
            f"The {jax.process_count()} processes of this check disagree on its "
            f"{', '.join(differ)} (this is process {jax.process_index()}): every "
            "process must call the check with the same `fun`, params, args and "
            "options, so that they evaluate and judge the same numbers."
        )


def gather(result: Any) -> np.ndarray:
    """A chunk's results on the host, in full: gathered from every process when
    they span devices of other processes."""
    if isinstance(result, jax.Array) and not result.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(result, tiled=True))
    return np.asarray(result)
