"""Sharding the batch of perturbed evaluations across devices.

Inside `sharded_over(devices)`, the chunk loop (`_evaluate.run_chunks`) rounds its
chunk length up to a multiple of the number of devices and places each chunk's
rows with a `NamedSharding` over a one-axis `Mesh` ("batch"): every device
evaluates its slice of the chunk, and the unperturbed arguments are replicated.
The results are the same as on one device: each row is one independent
evaluation of `fun`, and rows never mix. Under `jax.distributed` the mesh spans
the devices of every process (see `_multiprocess`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_local = threading.local()


def default_devices(devices: Sequence[Any] | None) -> list[Any] | None:
    """The devices to shard over: `devices`, or else every device of the default
    backend (under `jax.distributed`, those of every process: they share the
    work), when there is more than one; None for a single device."""
    if devices is None:
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    chosen = list(devices)
    return chosen if len(chosen) > 1 else None


@contextlib.contextmanager
def sharded_over(devices: Sequence[Any] | None) -> Iterator[None]:
    """Shards the chunk loops run inside, in this thread, over `devices`."""
    outer = getattr(_local, "sharding", None)
    chosen = default_devices(devices)
    _local.sharding = (
        None
        if chosen is None
        else NamedSharding(Mesh(np.array(chosen), ("batch",)), PartitionSpec("batch"))
    )
    try:
        yield
    finally:
        _local.sharding = outer


def devices_in_use() -> int:
    """How many devices share each chunk (1 when not sharding)."""
    sharding = getattr(_local, "sharding", None)
    return 1 if sharding is None else sharding.mesh.size


def place(rows: Sequence[np.ndarray]) -> list[Any]:
    """A chunk's rows, split along their first axis across the devices. Over the
    devices of several processes, each process builds only its own rows' shards
    (every process holds the same rows on the host)."""
    sharding = getattr(_local, "sharding", None)
    if sharding is None:
        return list(rows)
    if not sharding.is_fully_addressable:
        return [
            jax.make_array_from_callback(r.shape, sharding, lambda i, r=r: r[i])
            for r in rows
        ]
    return [jax.device_put(r, sharding) for r in rows]
