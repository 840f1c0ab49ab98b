"""An opt-in persistent compilation cache, so a new process skips compiling.

A check compiles a handful of programs (the gradient, one batched evaluation per
block of leaves, the probes of fast mode), each in a fraction of a second to a
few seconds. JAX can keep compiled programs on disk, but by default only those
that took over a second to compile, which leaves out most of jaxcheck's. This
module turns JAX's persistent cache on with no thresholds, for a test suite or a
script that runs the same checks again and again in new processes.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def default_directory() -> pathlib.Path:
    """`$XDG_CACHE_HOME/jaxcheck`, or `~/.cache/jaxcheck`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return pathlib.Path(root).expanduser() / "jaxcheck"


def _directory(directory: Any) -> pathlib.Path:
    if directory is None:
        return default_directory()
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            "`directory` must be a path (a str or os.PathLike) or None for "
            f"{default_directory()}, got {type(directory).__name__}."
        )
    if not str(directory):
        raise ValueError(
            "`directory` is empty; pass a directory for the compiled programs, or "
            f"None for {default_directory()}."
        )
    return pathlib.Path(directory).expanduser()


@dataclasses.dataclass
class CompilationCache:
    """The persistent cache `enable_compilation_cache` turned on.

    `close()` (or leaving a `with` block) restores JAX's previous settings.
    """

    directory: pathlib.Path
    _previous: dict[str, Any]
    max_bytes: int | None = None

    def close(self) -> None:
        """Stops caching in `directory`; JAX's settings are as they were before.
        With `max_bytes`, the directory is then trimmed to that size."""
        for name, value in self._previous.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()  # the next compilation reads the settings
        if self.max_bytes is not None:
            trim(self.directory, self.max_bytes)

    def __enter__(self) -> CompilationCache:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def trim(directory: pathlib.Path, max_bytes: int) -> int:
    """Deletes the oldest files of `directory` until it holds at most `max_bytes`;
    returns how many were deleted. (JAX's own size limit needs the `filelock`
    package and rescans the directory at every write; this runs once, at close.)"""
    files = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        if path.is_file():
            files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    deleted = 0
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted


def _max_bytes(max_bytes: Any) -> int | None:
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(
            "`max_bytes` must be an int (bytes) or None for no limit, got "
            f"{type(max_bytes).__name__}."
        )
    if max_bytes < 0:
        raise ValueError(
            f"`max_bytes` must be >= 0, got {max_bytes}; pass None for no limit."
        )
    return max_bytes


def enable_compilation_cache(
    directory: str | os.PathLike[str] | None = None,
    *,
    max_bytes: int | None = None,
) -> CompilationCache:
    """Keeps compiled programs on disk, so a new process loads them instead of
    compiling them again.

    Turns on JAX's persistent compilation cache in `directory` with no minimum
    compile time or size (JAX's default keeps only programs that took over 1 s to
    compile, which leaves out most of a check's). A later process that runs the
    same checks on the same shapes, with the same JAX version and backend, loads
    the programs: `report.compile_seconds` then counts tracing and loading only.

    This is JAX's own cache and it is process-wide: while it is on, every program
    the process compiles is kept, not only jaxcheck's. Call it once, at the top of
    a script or in a `conftest.py` (the pytest plugin's `--jaxcheck-cache-dir`
    does that), or use the returned object as a context manager. As JAX's
    documentation warns, the cache is trusted: do not point it at a directory
    that others can write to.

    Args:
        directory: where to keep the programs; created if missing. None (default)
            uses `$XDG_CACHE_HOME/jaxcheck`, or `~/.cache/jaxcheck`.
        max_bytes: a size limit: `close()` deletes the oldest programs until the
            directory holds at most this many bytes. None (default): no limit.

    Returns:
        A `CompilationCache`: its `.directory`, and `.close()` (also called on
        leaving a `with` block) restores JAX's previous cache settings.

    Raises:
        TypeError: `directory` is not a path, or `max_bytes` not an int.
        ValueError: `directory` exists but is not a directory, or cannot be
            created; `max_bytes` is negative.

    Examples:
        >>> import tempfile
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> with jaxcheck.enable_compilation_cache(tempfile.mkdtemp()) as cache:
        ...     report = jaxcheck.check_grad(lambda w: jnp.sum(w**3), jnp.ones(4))
        ...     kept = any(cache.directory.iterdir())
        >>> report.ok, kept
        (True, True)
    """
    path = _directory(directory)
    limit = _max_bytes(max_bytes)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"`directory` {str(path)!r} exists and is not a directory; pass a "
            "directory for the compiled programs."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"`directory` {str(path)!r} cannot be created ({error.strerror}); pass "
            "a directory you can write to."
        ) from None
    previous = {name: getattr(jax.config, name) for name in _SETTINGS}
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()  # a cache already opened elsewhere moves here
    return CompilationCache(path, previous, limit)
