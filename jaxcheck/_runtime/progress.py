"""Progress of a check, and the time it spends compiling.

The chunk loop (`_engine.chunks.run_chunks`) announces the rows of each batch it is
about to evaluate (`expect`) and each chunk it finishes (`advance`). Inside
`tracking(progress)` those reach, per thread:

- a callable `progress(done, total)` (perturbed evaluations so far, and those
  announced so far; `total` grows as the phases of a check begin);
- a tqdm bar on stderr (evaluations done of total, evaluations per second), with
  `progress=True`, or by default when stderr is a terminal and the check looks
  like it will take more than about 2 s;
- nothing, with `progress=False`.

`tracking` also adds up the time JAX spends tracing, lowering and compiling in
this thread (JAX's `/jax/core/compile/...` duration events).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

_AUTO_SECONDS = 2.0  # a default bar appears when the check looks longer than this
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_local = threading.local()


@dataclasses.dataclass
class Tracker:
    """What `tracking` measured: wall time, compile time, evaluations."""

    progress: Any  # None (auto), True, False or a callable
    start: float = dataclasses.field(default_factory=time.perf_counter)
    seconds: float = 0.0
    compile_seconds: float = 0.0
    done: int = 0
    total: int = 0
    bar: Any = None

    def expect(self, evaluations: int) -> None:
        self.total += evaluations
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def advance(self, evaluations: int) -> None:
        self.done += evaluations
        if callable(self.progress) and not isinstance(self.progress, bool):
            self.progress(self.done, self.total)
            return
        if self.bar is None and self._wants_bar():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.done - evaluations,
                unit="eval",
                unit_scale=True,
                desc="jaxcheck",
                file=sys.stderr,
                leave=False,
            )
        if self.bar is not None:
            self.bar.update(evaluations)

    def _wants_bar(self) -> bool:
        if self.progress is True:
            return True
        if self.progress is not None or not _stderr_is_terminal() or not has_tqdm():
            return False
        elapsed = time.perf_counter() - self.start
        expected = elapsed * self.total / max(self.done, 1)
        return expected > _AUTO_SECONDS and self.done < self.total

    def close(self) -> None:
        self.seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.close()


def has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _current() -> Tracker | None:
    return getattr(_local, "tracker", None)


def expect(evaluations: int) -> None:
    """Announces a batch of `evaluations` perturbed evaluations."""
    tracker = _current()
    if tracker is not None:
        tracker.expect(evaluations)


def advance(evaluations: int) -> None:
    """Reports `evaluations` more perturbed evaluations done."""
    tracker = _current()
    if tracker is not None:
        tracker.advance(evaluations)


def _on_compile_event(name: str, seconds: float, **_: Any) -> None:
    """JAX's monitoring listener: compile time goes to every tracker open in
    the thread that compiled (nested checks count it in each)."""
    if name in _COMPILE_EVENTS:
        for tracker in getattr(_local, "open", ()):
            tracker.compile_seconds += seconds


_listening = threading.Lock()
_LISTENER: list[Any] = []


def _listen() -> None:
    """Registers `_on_compile_event` once per process (JAX before 0.8 has no
    way to unregister a listener)."""
    with _listening:
        if not _LISTENER:
            jax.monitoring.register_event_duration_secs_listener(_on_compile_event)
            _LISTENER.append(_on_compile_event)


@contextlib.contextmanager
def tracking(progress: bool | Callable[[int, int], Any] | None) -> Iterator[Tracker]:
    """Reports the progress of the chunk loops run inside, in this thread, and
    times them (`Tracker.seconds`, `Tracker.compile_seconds`)."""
    tracker = Tracker(progress)
    _listen()
    outer = _current()
    _local.tracker = tracker
    _local.open = getattr(_local, "open", ()) + (tracker,)
    try:
        yield tracker
    finally:
        _local.open = _local.open[:-1]
        _local.tracker = outer
        tracker.close()
