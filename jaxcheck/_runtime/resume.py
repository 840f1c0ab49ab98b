"""A record of finished chunks, so that a long check that was stopped resumes.

With `check_grad(..., resume=directory)`, every chunk of perturbed evaluations is
written to `directory` as soon as it is back on the host (to a temporary file,
then renamed, so a kill leaves either the whole chunk or nothing). Running the
same check again with the same directory loads the chunks already there instead
of evaluating them, and gives the same report as an uninterrupted run: the
chunks are the same rows in the same order, so their numbers are the same.

The record is keyed by everything that determines the numbers: the lowered
program of `fun` (JAX's StableHLO, without source locations), θ and the args
(their bytes, dtypes and shapes), the options, the backend and device count, and
the versions of jaxcheck and JAX. A directory that holds the record of another
check is refused, naming what differs; it is never mixed in. Within a record,
each chunk file is named by a hash of the rows it evaluated and the program that
evaluated them, so a refinement or retry (other rows) never reads another's
results. Re-evaluations that test whether `fun` is deterministic are never
recorded: loading them would prove nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from . import sharding as _sharding
from .fingerprint import digest, fingerprint, leaves_digest

_MANIFEST = "manifest.json"
_ACTIVE: contextvars.ContextVar[Record | None] = contextvars.ContextVar(
    "jaxcheck_resume", default=None
)


def check_directory(resume: Any) -> pathlib.Path | None:
    """Validates `resume`: None, or a path that is (or can become) a directory."""
    if resume is None:
        return None
    if not isinstance(resume, (str, os.PathLike)) or not str(resume):
        raise TypeError(
            "`resume` must be a directory path (a non-empty str or os.PathLike) "
            f"in which to record finished chunks, or None, got {resume!r}."
        )
    path = pathlib.Path(resume).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"`resume` {str(path)!r} exists and is not a directory; pass a "
            "directory for the record of the check."
        )
    return path


@dataclasses.dataclass
class Record:
    """The chunks of one check in `directory`; counts what it loaded and wrote."""

    directory: pathlib.Path
    loaded: int = 0
    written: int = 0

    def _path(self, tag: str, rows: Sequence[np.ndarray]) -> pathlib.Path:
        return self.directory / f"{digest(tag, leaves_digest(rows))}.npy"

    def load(self, tag: str, rows: Sequence[np.ndarray]) -> np.ndarray | None:
        """The recorded result of evaluating `rows` with program `tag`, if any."""
        path = self._path(tag, rows)
        if not path.exists():
            return None
        self.loaded += 1
        return np.load(path, allow_pickle=False)

    def save(self, tag: str, rows: Sequence[np.ndarray], result: np.ndarray) -> None:
        """Writes a finished chunk atomically."""
        _write_atomically(
            self._path(tag, rows), lambda f: np.save(f, result, allow_pickle=False)
        )
        self.written += 1


def _write_atomically(path: pathlib.Path, write: Any) -> None:
    """`write(file)` to a temporary file beside `path`, then renamed to it: a
    reader sees the whole file or none."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def active() -> Record | None:
    """The record of the check running in this context, if it keeps one."""
    return _ACTIVE.get()


@contextlib.contextmanager
def recording(
    directory: pathlib.Path | None, traced: Any, dynamic: Sequence[Any], options: Any
) -> Iterator[Record | None]:
    """Keeps the record of this check in `directory` (nothing when None).

    Raises:
        ValueError: `directory` holds the record of a different check.
    """
    if directory is None:
        yield None
        return
    if jax.process_count() > 1:
        raise ValueError(
            "`resume` is not supported under jax.distributed yet: each process "
            "would decide from its own record which chunks to skip, and the "
            "others would wait for it in a collective. Drop `resume`."
        )
    lowered = traced.lower().as_text()
    if "callback" in lowered:
        raise ValueError(
            "`resume` cannot tell host callbacks apart (`jax.pure_callback`, "
            "`io_callback`): their code is not in the program that keys the "
            "record, so a record of another function could be mixed in. Drop "
            "`resume` for a `fun` that calls back to Python."
        )
    n_devices = len(options.devices or _sharding.default_devices(None) or [0])
    identity = fingerprint(lowered, dynamic, options, n_devices)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"`resume` directory {str(directory)!r} cannot be created "
            f"({error.strerror}); pass a directory you can write to."
        ) from None
    manifest = directory / _MANIFEST
    if manifest.exists():
        recorded = json.loads(manifest.read_text())
        differ = [k for k in identity if recorded.get(k) != identity[k]]
        if differ:
            raise ValueError(
                f"`resume` directory {str(directory)!r} holds the record of a "
                f"different check (its {', '.join(differ)} differ), which cannot "
                "be mixed into this one; pass a new directory, or delete that one "
                "to start over."
            )
    else:
        text = json.dumps(identity, indent=1) + "\n"
        _write_atomically(manifest, lambda f: f.write(text.encode()))
    record = Record(directory)
    token = _ACTIVE.set(record)
    try:
        yield record
    finally:
        _ACTIVE.reset(token)
