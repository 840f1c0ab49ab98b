"""Sharding the batch of perturbed evaluations across devices.

Inside `sharded_over(devices)`, the chunk loop (`_evaluate.run_chunks`) rounds its
chunk length up to a multiple of the number of devices and places each chunk's
rows with a `NamedSharding` over a one-axis `Mesh` ("batch"): every device
evaluates its slice of the chunk, and the unperturbed arguments are replicated.
The results are the same as on one device: each row is one independent
evaluation of `fun`, and rows never mix.
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
    """The devices to shard over: `devices`, or all local devices of the default
    backend when there is more than one; None for a single device."""
    chosen = list(jax.local_devices()) if devices is None else list(devices)
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
    """A chunk's rows, split along their first axis across the devices."""
    sharding = getattr(_local, "sharding", None)
    if sharding is None:
        return list(rows)
    return [jax.device_put(r, sharding) for r in rows]
