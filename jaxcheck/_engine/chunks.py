"""The chunk loop every batched evaluation runs: padding, devices, the resume
record, and the fallback to one evaluation at a time for a `fun` that cannot be
batched."""

from __future__ import annotations

import contextlib
import contextvars
import os
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jaxlib
import numpy as np

from .._base.errors import BatchingFallbackWarning
from .._runtime import progress as _progress
from .._runtime import resume as _resume
from .._runtime import sharding as _sharding
from .._runtime.multiprocess import gather
from .context import add_context


def run_chunks(
    program: Callable[..., jax.Array],
    batched: Sequence[np.ndarray],
    chunk: int,
    describe: Callable[[int, int], str],
    tag: str | None = None,
    one_at_a_time: Callable[..., jax.Array] | None = None,
    like: Sequence[Any] | None = None,
) -> np.ndarray:
    """`program(*rows)` over the rows of `batched`, `chunk` rows at a time.

    The last chunk is padded with copies of the first row (their results are
    dropped), so one compiled program serves every chunk. Each chunk is read back
    before the next is dispatched, which is what bounds the memory (keeping two in
    flight measured no faster on the CPU). `describe(k, n_chunks)` says what was
    being evaluated when `fun` raised. Inside `_runtime.sharding.sharded_over`,
    each chunk is split across the devices (its length rounded up to a multiple
    of them); a row array whose `like` is a sharded leaf's sharding holds whole
    copies of that leaf and is split like it too. With a `tag` naming the
    program, inside `_runtime.resume.recording`,
    each chunk is loaded from the record when it holds it, and written to it when
    finished.
    When `program` fails and `one_at_a_time` (the same rows, not batched) does
    not, `fun` cannot be batched: the chunks run one at a time from then on,
    with a warning that says why. An error of `fun` itself is raised.
    """
    n = len(batched[0])
    devices = _sharding.devices_in_use()
    chunk = -(-chunk // devices) * devices
    n_chunks = -(-n // chunk)
    _progress.expect(n)
    record = _resume.active() if tag is not None else None
    results = []
    for k in range(n_chunks):
        rows = [a[k * chunk : (k + 1) * chunk] for a in batched]
        pad = chunk - len(rows[0])
        if pad:
            rows = [np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) for a in rows]
        result = record.load(tag, rows) if record else None
        if result is None:
            try:
                result = gather(program(*_sharding.place(rows, like)))
            except Exception as error:
                # Batching fails while the program is traced, on its first chunk,
                # inside JAX (a batching rule), not while it runs and not in
                # `fun`'s own code: only such errors may fall back.
                batching = (
                    one_at_a_time is not None
                    and not isinstance(error, jax.errors.JaxRuntimeError)
                    and _raised_inside_jax(error)
                )
                result = (
                    _one_at_a_time(one_at_a_time, rows, error, like)
                    if batching
                    else None
                )
                if result is None:
                    add_context(error, describe(k, n_chunks))
                    raise
                program = one_at_a_time
            one_at_a_time = None  # the program ran: batching is not the trouble
            if record:
                record.save(tag, rows, result)
        results.append(result)
        _progress.advance(chunk - pad)
    return np.concatenate(results)[:n]


_JAX_PACKAGES = tuple(
    os.path.dirname(module.__file__) + os.sep for module in (jax, jaxlib)
)


def _raised_inside_jax(error: Exception) -> bool:
    """Whether `error` was raised by JAX's own code (its innermost frame, which
    JAX keeps when it filters a traceback), not by `fun` or jaxcheck."""
    frames = list(traceback.walk_tb(error.__traceback__))
    return bool(frames) and frames[-1][0].f_code.co_filename.startswith(_JAX_PACKAGES)


def _one_at_a_time(
    program: Callable[..., jax.Array] | None,
    rows: Sequence[Any],
    error: Exception,
    like: Sequence[Any] | None = None,
) -> np.ndarray | None:
    """The rows evaluated one at a time when that works where the batch failed
    (so batching was the trouble: a primitive without a batching rule, say);
    None when it fails too (the error is `fun`'s) or there is no such program."""
    if program is None:
        return None
    try:
        result = gather(program(*_sharding.place(rows, like)))
    except Exception:
        return None
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
    said = _FALLBACKS.get()
    if said is not None:
        said.append(f"{type(error).__name__}: {cause[:120]}")
    warnings.warn(
        f"jaxcheck: `fun` cannot be batched with `vmap` ({type(error).__name__}: "
        f"{cause[:300]}); its perturbed points are evaluated one at a time "
        "instead (`lax.map`: the same numbers, slower).",
        BatchingFallbackWarning,
        stacklevel=2,
    )
    return result


_FALLBACKS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "jaxcheck_fallbacks", default=None
)


@contextlib.contextmanager
def noting_fallbacks() -> Iterator[list[str]]:
    """Collects why the chunk loops run inside fell back to one at a time."""
    token = _FALLBACKS.set([])
    try:
        yield _FALLBACKS.get()
    finally:
        _FALLBACKS.reset(token)


def evaluated_as(way: str, fallbacks: Sequence[str]) -> tuple[str, str]:
    """What a report says of how its points were evaluated: its `evaluation`
    (`way`, and ", one point at a time" after a fallback) and a note for the
    fallback ("" when none), from what `noting_fallbacks` collected."""
    if not fallbacks:
        return way, ""
    return (
        f"{way}, one point at a time",
        f"evaluated one point at a time: `fun` cannot be batched ({fallbacks[0]})",
    )
