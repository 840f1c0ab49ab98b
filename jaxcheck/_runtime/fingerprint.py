"""What determines a check's numbers, as a few digests: the program of `fun`, θ
and the args, the options, the devices and the versions.

Two uses: a resume record is keyed by it (`_runtime.resume`), and the processes of a
multi-process check compare theirs before they evaluate anything together
(`_runtime.multiprocess`), so that a difference is named instead of deadlocking.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .sharding import host_value


def digest(*parts: Any) -> str:
    """A hex SHA-256 of `parts` (bytes as they are, anything else by its repr)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def leaves_digest(leaves: Sequence[Any]) -> str:
    """A hex SHA-256 of arrays: their dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for leaf in leaves:
        array = host_value(leaf)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _settings(options: Any) -> list[tuple[str, Any]]:
    """The options that determine the numbers, in a stable order (a callable
    progress bar and the device objects do not; the device count is apart)."""
    if isinstance(options, dict):
        items = options.items()
    else:
        fields = dataclasses.fields(options)
        items = ((f.name, getattr(options, f.name)) for f in fields)
    skip = ("progress", "devices", "resume")
    return sorted((k, v) for k, v in items if k not in skip)


def fingerprint(
    program: str, dynamic: Sequence[Any], options: Any, n_devices: int
) -> dict[str, str]:
    """The digests of a check, keyed by what a reader would call each part.

    `program` is `fun` lowered at θ, as StableHLO text without source locations
    (`traced.lower().as_text()`; a jaxpr's text can hold object addresses);
    `dynamic` the leaves of params and args that are arrays; `options` an
    `Options` or a dict of options."""
    from .._version import __version__

    return {
        "program of `fun`": digest(program),
        "params and args": leaves_digest(dynamic),
        "options": digest(_settings(options)),
        "devices": f"{jax.default_backend()} x{n_devices}",
        "versions": f"jaxcheck {__version__}, jax {jax.__version__}",
    }
