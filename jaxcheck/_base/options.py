"""The options every check shares, validated in one place before anything is traced.

A public check takes its options as keyword arguments typed by one `TypedDict`,
`CheckOptions` (`**options: Unpack[CheckOptions]`), where each option is
documented once. `make_options` validates them once (raising the
`TypeError`/`ValueError` that names the argument) into one frozen `Options`, which
the check hands to the engine. Nothing below the front doors reads an option from
anywhere else.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypedDict

import numpy as np

from .._runtime.progress import tracking
from .._runtime.resume import check_directory
from .._runtime.sharding import sharded_over
from . import validate as _validate

DEFAULT_SAMPLES = 16  # entries per leaf with mode="sample"
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of live intermediates per chunk

# A `jax.Device`. JAX binds that name at run time to a class of jaxlib's compiled
# extension, which ships no stub, so to a type checker it is an unknown type; the
# options name it through this alias, which a type checker reads as `Any`.
Device: TypeAlias = Any


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

    The fields are those of `CheckOptions`; `tolerance` gathers `atol`, `rtol`
    and, for the `check_grads` drop-in, JAX's per-dtype tolerances and NaN
    semantics.
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
    devices: tuple[Device, ...] | None = None
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


class StepOptions(TypedDict, total=False):
    """How the finite differences are taken: the options of `numerical_grad`,
    which every check takes too (see `CheckOptions`).

    Attributes:
        method: "central" (default), (J(θ+h) − J(θ−h)) / 2h; "forward"
            (J(θ+h) − J(θ)) / h; "backward" (J(θ) − J(θ−h)) / h; "central4"
            (the five-point stencil (8(J(θ+h) − J(θ−h)) − (J(θ+2h) − J(θ−2h)))
            / 12h, i.e. Richardson's
            extrapolation of the central differences at h and 2h; error O(h⁴)),
            or "complex" (the complex step Im J(θ + ih) / h, exact to round-off
            for a complex-analytic `fun`, one evaluation per entry; `fun` runs on
            complex128 parameters, and a `fun` that is not complex-safe, e.g.
            uses abs, max or comparisons, is an error; for a real-valued
            `fun` only: `check_grad` and `numerical_grad`).
        eps: the absolute step h for every entry; None (default) picks per entry
            h = u^(1/3)·max(1, |θᵢ|) (central), u^(1/2) (one-sided), u^(1/5)
            (central4) or u^(5/4) (complex) times max(1, |θᵢ|),
            for the leaf dtype's machine epsilon u, rounded to a power of two.
        chunk_size: perturbed evaluations per batch; None derives it from
            `memory_budget`.
        memory_budget: bytes that one batch of evaluations may use (default 1 GiB).
    """

    method: str
    eps: float | None
    chunk_size: int | None
    memory_budget: int


class CheckOptions(StepOptions, total=False):
    """The options of the checks: keyword arguments of every `check_*` and
    `assert_*` function, validated once before anything is traced.

    A check that cannot use an option refuses it with a `TypeError` (only
    `check_grad` takes `resume`; only `check_grad` and `check_vjp` take
    mode="fast"/"sample" and `samples`; `numerical_grad` takes the
    `StepOptions`). Besides those of `StepOptions`:

    Attributes:
        atol: absolute tolerance; None uses the entry's error bound (round-off,
            plus the Richardson truncation estimate for an entry refined at 2h)
            plus the dtype's floor times the leaf's largest |numeric| entry.
        rtol: relative tolerance; None uses the dtype's floor (float64 1e-6,
            float32 1e-4, float16 1e-2, bfloat16 5e-2).
        nondet_tol: the largest spread of `fun`'s value between identical
            evaluations that is still deterministic; None uses 16·u·|value|.
            Beyond it the report says `fun` is nondeterministic and the check
            fails.
        shadow: for a float32, float16 or bfloat16 `fun`, take the finite
            differences in a float64 twin of it (leaves and floating arguments
            cast up, x64 enabled for the check), which makes them accurate to
            ~1e-10; the analytic side stays in the original dtype. When `fun`
            does not allow it (it fails in float64, or casts down inside), the
            check falls back to the native dtype and the report says why.
            Default True.
        mode: "full" (default) compares every entry. "fast" first compares, per
            leaf, 3 directional derivatives along seeded random directions (six
            evaluations of `fun` per leaf), then checks entry by entry only the
            leaves whose probes disagree, which locates the wrong entries.
            "sample" compares `samples` seeded random entries of every leaf.
        samples: entries per leaf with mode="sample" (None: 16; all entries of a
            smaller leaf).
        seed: seeds the random directions, entries, tangents and cotangents
            (default 0); leaf L draws from `numpy.random.default_rng((seed,
            offset of L in θ))`.
        progress: None (default) shows a tqdm bar on stderr when stderr is a
            terminal, tqdm is installed and the check looks longer than about
            2 s; True always shows it (needs tqdm); False never; a callable is
            called as progress(done, total) after each chunk, with the perturbed
            evaluations done and announced so far.
        devices: the devices that share each batch of perturbed evaluations (a
            `Mesh` over them, the batch split with a `NamedSharding`). None
            (default) uses all local devices when there is more than one; pass
            `[jax.devices()[0]]` to stay on one device.
        resume: a directory in which to record each chunk of evaluations as it
            finishes, so that a long check that was stopped (killed, Ctrl-C)
            resumes where it was when run again with the same directory, and
            gives the same report. A record of a different check (another `fun`,
            θ, args, options, device count or version) is refused with a
            ValueError. None (default): no record.

    Examples:
        One set of options, for several checks:

        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> options: jaxcheck.CheckOptions = {"rtol": 1e-5, "seed": 3}
        >>> loss = lambda x: jnp.sum(jnp.sin(x))
        >>> jaxcheck.check_grad(loss, jnp.arange(3.0), **options).ok
        True
        >>> jaxcheck.check_jacobian(jnp.sin, jnp.arange(3.0), **options).ok
        True
    """

    atol: float | None
    rtol: float | None
    nondet_tol: float | None
    shadow: bool
    mode: str
    samples: int | None
    seed: int
    progress: bool | Callable[[int, int], Any] | None
    devices: Sequence[Device] | None
    resume: str | os.PathLike[str] | None


OPTION_NAMES = tuple(CheckOptions.__annotations__)
STEP_OPTION_NAMES = tuple(StepOptions.__annotations__)
NO_RESUME = tuple(name for name in OPTION_NAMES if name != "resume")
MODES = ("full", "fast", "sample")


def _check_names(check: str, given: Mapping[str, Any], takes: Sequence[str]) -> None:
    """Refuses an option that is not one, or that `check` does not take."""
    for name in given:
        if name in takes:
            continue
        if name in OPTION_NAMES:
            raise TypeError(
                f"{check}() does not take the option `{name}`; it takes "
                f"{', '.join(takes)}."
            )
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise TypeError(
            f"{check}() got an unexpected keyword argument {name!r}.{hint} Its "
            f"options are {', '.join(takes)}."
        )


def make_options(
    check: str,
    given: Mapping[str, Any],
    *,
    takes: Sequence[str] = OPTION_NAMES,
    methods: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    mode_hint: str = 'For a large model use check_grad or check_vjp with mode="fast" '
    'or "sample".',
    floors: tuple[tuple[Any, float, float], ...] = (),
    nan_agrees: bool = False,
) -> Options:
    """Validates the options `given` to the public function `check` and returns
    them as one `Options`.

    `takes` names the options `check` accepts, `methods` and `modes` the values of
    `method` and `mode` it allows (None: every method), `mode_hint` what to do
    instead of a mode it refuses.
    """
    _check_names(check, given, takes)
    options = dict(given)
    method = options.get("method", "central")
    eps = options.get("eps")
    mode = options.get("mode", "full")
    samples = options.get("samples")
    seed = options.get("seed", 0)
    atol, rtol = options.get("atol"), options.get("rtol")
    nondet_tol = options.get("nondet_tol")
    shadow = options.get("shadow", True)
    chunk_size = options.get("chunk_size")
    memory_budget = options.get("memory_budget", DEFAULT_MEMORY_BUDGET)
    progress, devices = options.get("progress"), options.get("devices")
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
    if mode not in modes:
        raise ValueError(
            f"`mode`={mode!r} screens the entries of a gradient; {check} compares "
            f'every entry, so it takes mode="full" only. {mode_hint}'
        )
    _validate.check_progress(progress)
    _validate.check_devices(devices)
    resume = check_directory(options.get("resume"))
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
