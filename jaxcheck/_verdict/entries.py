"""What a report says of one entry and of one leaf, and the small formatting
rules every report shares."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._engine.compare import (
    ANALYTIC_NONFINITE,
    BOTH_NONFINITE,
    FAILING,
    INCONCLUSIVE,
    KINK,
    Comparison,
    meaningful,
    relative_difference,
)
from .._tree.pytree import LeafInfo, format_path
from .diagnose import diagnose_leaf, diagnose_narrowed

WORST_SHOWN = 5


UNDEFINED = float("nan")  # a relative figure of values zero to round-off


def format_relative(x: float, spec: str = ".1e") -> str:
    """A relative figure, or "—" where it means nothing (see `summarize`)."""
    return format("—", spec.split(".")[0]) if np.isnan(x) else format(x, spec)


def plural(n: int, one: str, many: str) -> str:
    """ "1 leaf", "2 leaves"."""
    return f"{n} {one if n == 1 else many}"


def entry_location(path: str, index: tuple[int, ...]) -> str:
    return format_path(path) + (f"[{', '.join(map(str, index))}]" if index else "")


def as_number(x: complex | float) -> float | complex:
    x = complex(x)
    return x.real if x.imag == 0 else x


@dataclasses.dataclass(frozen=True)
class EntryReport:
    """One entry of one leaf: both gradients and how far apart they are."""

    path: str  # the leaf's pytree path, e.g. "['layers'][1]['w']"
    index: tuple[int, ...]  # the entry's multi-index inside the leaf; () for a scalar
    analytic: float | complex
    numeric: float | complex
    abs_err: float
    rel_err: float
    tolerance: float  # the entry's pass band for abs_err
    step: float  # the finite-difference step h
    status: str  # "ok", "kink", "mismatch", "analytic nan/inf" or "inconclusive"
    # Its index in θ, the perturbed entries in pytree order, each leaf flattened
    # in C order: `jax.flatten_util.ravel_pytree(params)[0][flat_index]` when
    # every leaf of `params` is floating (see "How a verdict is reached",
    # docs/guides/verdict.md).
    flat_index: int = -1

    @property
    def location(self) -> str:
        """Path and index together, e.g. `['layers'][1]['w'][3, 5]`."""
        return entry_location(self.path, self.index)


@dataclasses.dataclass(frozen=True)
class LeafSummary:
    """The comparison of one perturbed leaf."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    size: int
    max_abs_err: float
    max_rel_err: float
    rel_diff: float  # ‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂) over this leaf
    failed: int  # entries outside their pass band or not finite
    status: str  # "ok", "mismatch", "nan/inf" or "inconclusive"
    kinks: int = 0  # entries at a kink whose analytic value is a subgradient
    diagnosis: str = ""  # what a failing leaf's error looks like, when recognised
    checked: str = "all entries"  # or "16 sampled entries", "3 directions", ...


def summarize(
    leaf: LeafInfo,
    c: Comparison,
    part: slice,
    checked: str,
    probes: Any,
    flat: np.ndarray | None,
) -> LeafSummary:
    """The leaf's entry rows `part` of `c` (the leaf's entries `flat`, or all);
    its directional probes when it has no entry rows (a leaf that passed fast
    mode's probes)."""
    status = c.status[part]
    failed = int(np.count_nonzero(status >= FAILING))
    if np.any(status == ANALYTIC_NONFINITE):
        verdict = "nan/inf"
    elif np.any(status == INCONCLUSIVE) and failed == np.count_nonzero(
        status == INCONCLUSIVE
    ):
        verdict = "inconclusive"
    else:
        verdict = "mismatch" if failed else "ok"
    diagnosis = ""
    whole = part.stop - part.start == leaf.size  # every entry compared
    if failed and leaf.dtype.kind != "c" and whole:
        diagnosis = diagnose_leaf(
            *(x[part].real.reshape(leaf.shape) for x in (c.analytic, c.numeric)),
            (status >= FAILING).reshape(leaf.shape),
            c.tolerance[part].reshape(leaf.shape),
        )
    elif failed and leaf.dtype.kind != "c" and probes is not None:
        # Fast mode: the entries outside `flat` passed the probes.
        diagnosis = diagnose_narrowed(
            leaf.shape,
            flat,
            c.analytic[part].real,
            c.numeric[part].real,
            status >= FAILING,
            c.tolerance[part],
        )
    # Entries NaN or Inf on both sides agree (the drop-in): no error to show.
    agree = status != BOTH_NONFINITE
    analytic, numeric = c.analytic[part][agree], c.numeric[part][agree]
    abs_err, band = c.abs_err[part][agree], c.tolerance[part][agree]
    # Relative errors only of entries above round-off: 0 against 1e-11 is no
    # 100 % error. NaN (shown as "—") where no entry has one.
    rel_err = c.rel_err[part][agree][meaningful(c)[part][agree]]
    if analytic.size == 0 and probes is not None and probes.analytic.size:
        analytic, numeric, abs_err = probes.analytic, probes.numeric, probes.abs_err
        band = None
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
        rel_err = np.where(scale > 0, abs_err / np.where(scale > 0, scale, 1), 0.0)
    return LeafSummary(
        path=format_path(leaf.path),
        shape=leaf.shape,
        dtype=leaf.dtype.name,
        size=leaf.size,
        max_abs_err=float(np.max(abs_err)) if abs_err.size else 0.0,
        max_rel_err=float(np.max(rel_err)) if rel_err.size else UNDEFINED,
        rel_diff=relative_difference(analytic, numeric, band),
        failed=failed,
        kinks=int(np.count_nonzero(status == KINK)),
        status=verdict,
        diagnosis=diagnosis,
        checked=checked,
    )


def json_number(x: Any) -> Any:
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, complex):
        return [json_number(x.real), json_number(x.imag)]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
