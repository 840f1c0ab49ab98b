"""Sharding the batch of perturbed evaluations across devices.

Inside `sharded_over(devices)`, the chunk loop (`_engine.chunks.run_chunks`) rounds its
chunk length up to a multiple of the number of devices and places each chunk's
rows with a `NamedSharding` over a one-axis `Mesh` ("batch"): every device
evaluates its slice of the chunk, and the unperturbed arguments are replicated.
The results are the same as on one device: each row is one independent
evaluation of `fun`, and rows never mix. Under `jax.distributed` the mesh spans
the devices of every process (see `_runtime.multiprocess`).

Parameters that arrive sharded (a leaf placed with a `NamedSharding` that splits
it over a mesh) stay sharded: the check adopts their mesh (`adopt`), the batch of
perturbations is split over the mesh axes that no parameter uses (replicated when
every axis holds a parameter), and each perturbed copy of a sharded leaf is
built and constrained with the leaf's own sharding, so no device ever holds a
whole copy of it. On a mesh ("batch", "model") with weights sharded
P(None, "model"), every device evaluates its half of the rows on its half of
each weight.
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


def _axes(spec: PartitionSpec) -> set[str]:
    out: set[str] = set()
    for entry in spec:
        if entry is not None:
            out |= set(entry) if isinstance(entry, tuple) else {entry}
    return out


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
    outer = (getattr(_local, "sharding", None), getattr(_local, "explicit", None))
    chosen = default_devices(devices)
    _local.sharding = (
        None
        if chosen is None
        else NamedSharding(Mesh(np.array(chosen), ("batch",)), PartitionSpec("batch"))
    )
    _local.explicit = None if devices is None else list(devices)
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.sharding, _local.explicit = outer
        _local.depth -= 1


def adopt(shardings: Sequence[NamedSharding | None]) -> None:
    """Inside `sharded_over`: when some perturbed leaves arrive sharded (their
    `leaf_sharding`s), evaluate on their mesh, the batch split over the axes they
    leave free. Raises the `ValueError` of a check that cannot keep them sharded."""
    shardings = [s for s in shardings if s is not None]
    if not shardings or not getattr(_local, "depth", 0):
        return
    mesh = shardings[0].mesh
    if any(s.mesh != mesh for s in shardings):
        raise ValueError(
            "`params` holds leaves sharded over different meshes; jaxcheck "
            "evaluates a check on one mesh. Place every sharded leaf on the same "
            "`jax.sharding.Mesh`."
        )
    explicit = _local.explicit
    if explicit is not None and set(explicit) != set(mesh.devices.flat):
        raise ValueError(
            f"`devices` names {len(explicit)} device(s), but `params` is sharded "
            f"over a mesh of {mesh.size}; a check of sharded parameters runs on "
            "their mesh. Pass `devices=None`."
        )
    used = set().union(*(_axes(s.spec) for s in shardings))
    free = tuple(a for a in mesh.axis_names if a not in used)
    _local.sharding = NamedSharding(mesh, PartitionSpec(free or None))


def batch_axes() -> tuple[str, ...]:
    """The mesh axes the batch of perturbations is split over (none when not
    sharding, or when the parameters' mesh leaves no axis free)."""
    sharding = getattr(_local, "sharding", None)
    if sharding is None or sharding.spec[0] is None:
        return ()
    first = sharding.spec[0]
    return tuple(first) if isinstance(first, tuple) else (first,)


def devices_in_use() -> int:
    """How many devices share each chunk (1 when not sharding)."""
    sharding = getattr(_local, "sharding", None)
    if sharding is None:
        return 1
    return int(np.prod([sharding.mesh.shape[a] for a in batch_axes()], dtype=int))


def place(
    rows: Sequence[np.ndarray], like: Sequence[NamedSharding | None] | None = None
) -> list[Any]:
    """A chunk's rows, split along their first axis across the devices. A row
    array whose `like` is a leaf's sharding holds whole perturbed copies of that
    leaf, one per row: it is split like the leaf along its other axes too. Over
    the devices of several processes, each process builds only its own shards
    (every process holds the same rows on the host)."""
    sharding = getattr(_local, "sharding", None)
    if sharding is None:
        return list(rows)
    out = []
    for r, leaf in zip(rows, like or [None] * len(rows), strict=True):
        spec = PartitionSpec(sharding.spec[0] if sharding.spec else None)
        if leaf is not None:
            spec = PartitionSpec(*spec, *leaf.spec)
        target = NamedSharding(sharding.mesh, spec)
        if target.is_fully_addressable:
            out.append(jax.device_put(r, target))
        else:
            out.append(
                jax.make_array_from_callback(r.shape, target, lambda i, r=r: r[i])
            )
    return out


def host_value(x: Any) -> np.ndarray:
    """`np.asarray(x)` for any array, read shard by shard: a leaf sharded over
    the devices of several processes is assembled from this process's shards
    where they cover it, and otherwise gathered a slice at a time (about one
    device's share each), so that no device ever holds the whole leaf. Every
    process must call it for the same arrays, in the same order."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    out = np.empty(x.shape, x.dtype)
    for shard in x.addressable_shards:
        out[shard.index] = np.asarray(shard.data)
    if _every_process_covers(x):  # decided from the sharding: the same everywhere
        return out
    from jax.experimental import multihost_utils

    rows = x.shape[0]
    step = max(1, -(-rows // len(x.sharding.device_set)))
    for start in range(0, rows, step):
        part = x[start : start + step]
        out[start : start + step] = np.asarray(
            multihost_utils.process_allgather(part, tiled=True)
        )
    return out


def _every_process_covers(x: jax.Array) -> bool:
    """Whether the devices of each process hold every entry of `x` between them."""
    held: dict[int, np.ndarray] = {}
    for device, index in x.sharding.devices_indices_map(x.shape).items():
        mask = held.setdefault(device.process_index, np.zeros(x.shape, bool))
        mask[index] = True
    return all(mask.all() for mask in held.values())
