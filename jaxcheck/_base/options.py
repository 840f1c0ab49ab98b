"""The options every check shares, validated in one place before anything is traced.

A public check takes its options as keyword arguments, turns them into one frozen
`Options` with `make_options` (which raises the `TypeError`/`ValueError` naming
the argument), and hands that object to the engine. Nothing below the front doors
reads an option from anywhere else.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .._runtime.progress import tracking
from .._runtime.resume import check_directory
from .._runtime.sharding import sharded_over
from . import validate as _validate

DEFAULT_SAMPLES = 16  # entries per leaf with mode="sample"
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of live intermediates per chunk


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How wide the pass band of an entry is: the one rule every check applies.

    `atol` and `rtol` replace the absolute and relative parts of the default
    band (None keeps them). `floors` (used by the `check_grads` drop-in) maps a
    dtype to an `(atol, rtol)` pair whose band an entry's band is never narrower
    than. With `nan_agrees`, an entry that is NaN on both sides, or the same
    infinity on both sides, agrees, as in `numpy.testing.assert_allclose`.
    """

    atol: float | None = None
    rtol: float | None = None
    floors: tuple[tuple[np.dtype, float, float], ...] = ()
    nan_agrees: bool = False

    def floor_of(self, dtype: np.dtype) -> tuple[float, float] | None:
        for key, atol, rtol in self.floors:
            if key == dtype:
                return atol, rtol
        return None


@dataclasses.dataclass(frozen=True)
class Options:
    """How a check computes and judges its finite differences.

    The fields are those of the public checks' keyword arguments (see
    `check_grad`); `tolerance` gathers `atol`, `rtol` and, for the `check_grads`
    drop-in, JAX's per-dtype tolerances and NaN semantics.
    """

    method: str = "central"
    eps: float | None = None
    tolerance: Tolerance = Tolerance()
    chunk_size: int | None = None
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    nondet_tol: float | None = None
    shadow: bool = True
    mode: str = "full"
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    progress: bool | Callable[[int, int], Any] | None = None
    devices: tuple[jax.Device, ...] | None = None
    # Whether the steps are jaxcheck's to choose (no `eps` given): then an entry
    # whose error is mostly truncation is retried at smaller steps.
    adapt_steps: bool = True
    resume: pathlib.Path | None = None  # where finished chunks are recorded

    @property
    def evaluation(self) -> dict[str, Any]:
        """The options of the finite differences themselves."""
        return dict(
            method=self.method,
            eps=self.eps,
            chunk_size=self.chunk_size,
            memory_budget=self.memory_budget,
        )


def make_options(
    *,
    method: Any = "central",
    eps: Any = None,
    atol: Any = None,
    rtol: Any = None,
    chunk_size: Any = None,
    memory_budget: Any = DEFAULT_MEMORY_BUDGET,
    nondet_tol: Any = None,
    shadow: Any = True,
    mode: Any = "full",
    samples: Any = None,
    seed: Any = 0,
    progress: Any = None,
    devices: Any = None,
    resume: Any = None,
    methods: Sequence[str] | None = None,
    floors: tuple[tuple[Any, float, float], ...] = (),
    nan_agrees: bool = False,
) -> Options:
    """Validates every option and returns them as one `Options`.

    `methods` restricts the allowed methods (None: all of them).
    """
    if methods is None:
        _validate.check_method(method)
    else:
        _validate.check_method(method, tuple(methods))
    _validate.check_eps(eps)
    _validate.check_tolerance("atol", atol)
    _validate.check_tolerance("rtol", rtol)
    _validate.check_tolerance("nondet_tol", nondet_tol)
    _validate.check_flag("shadow", shadow)
    _validate.check_chunking(chunk_size, memory_budget)
    _validate.check_mode(mode, samples, seed)
    _validate.check_progress(progress)
    _validate.check_devices(devices)
    resume = check_directory(resume)
    return Options(
        method=method,
        eps=None if eps is None else float(eps),
        tolerance=Tolerance(
            atol=None if atol is None else float(atol),
            rtol=None if rtol is None else float(rtol),
            floors=floors,
            nan_agrees=nan_agrees,
        ),
        chunk_size=None if chunk_size is None else int(chunk_size),
        memory_budget=memory_budget,
        nondet_tol=None if nondet_tol is None else float(nondet_tol),
        shadow=bool(shadow),
        mode=mode,
        samples=DEFAULT_SAMPLES if samples is None else int(samples),
        seed=int(seed),
        progress=progress,
        devices=None if devices is None else tuple(devices),
        adapt_steps=eps is None,
        resume=resume,
    )


def tracked(options: Options, check: Callable[[], Any]) -> Any:
    """Runs `check()` with the options' progress bar and devices, and records on
    its report how long it took and how much of that was compilation."""
    with tracking(options.progress) as tracker, sharded_over(options.devices):
        report = check()
    report.seconds = tracker.seconds
    report.compile_seconds = tracker.compile_seconds
    return report


def full_mode_only(options: Options, check: str) -> None:
    """Refuses fast and sample modes in a check that compares every entry."""
    if options.mode != "full":
        raise ValueError(
            f"`mode`={options.mode!r} screens the entries of a gradient; {check} "
            'compares every entry, so it takes mode="full" only. For a large '
            'model use check_grad or check_vjp with mode="fast" or "sample".'
        )
