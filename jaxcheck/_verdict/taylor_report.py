"""`TaylorReport`: the observed order of convergence along each direction.

Along a direction v the Taylor remainder r(h) = |J(θ + h·v) − J(θ) − h·g·v| is
O(h²) when g is the gradient and O(h) when it is not. The order is read where it
means something: at the smallest steps whose remainder stands well above the
round-off level of J, so that neither round-off (order ~0) nor the higher terms
of a large step blur it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap
from typing import Any

import numpy as np

# An order at least this is a pass (2 is expected; 3 when the curvature along v
# vanishes). A wrong gradient gives 1.
PASS_ORDER = 1.8
# The order is fitted to this many of the smallest usable steps: the closest to
# the limit h → 0 that round-off lets us see.
FIT_POINTS = 3


@dataclasses.dataclass(frozen=True)
class TaylorDirection:
    """The remainders along one direction and the order they converge at."""

    name: str  # "all" (every perturbed entry) or a leaf path such as "['w']"
    size: int  # entries that the direction moves
    steps: tuple[float, ...]  # h, from the largest
    remainders: tuple[float, ...]  # |J(θ + h·v) − J(θ) − h·g·v| at each step
    floors: tuple[float, ...]  # the round-off level of each remainder
    orders: tuple[float, ...]  # log2(r_k / r_k+1) between usable neighbours, or nan
    order: float  # least-squares slope of log r against log h; nan when none
    ok: bool
    verdict: str


def _fit_order(steps: np.ndarray, remainders: np.ndarray, run: np.ndarray) -> float:
    window = run[-FIT_POINTS:]
    slope, _ = np.polyfit(np.log2(steps[window]), np.log2(remainders[window]), 1)
    return float(slope)


def _first_run(usable: np.ndarray) -> np.ndarray:
    """Indices of the first run of consecutive usable steps."""
    where = np.flatnonzero(usable)
    if where.size == 0:
        return where
    breaks = np.flatnonzero(np.diff(where) > 1)
    return where[: breaks[0] + 1] if breaks.size else where


def judge_direction(
    name: str,
    size: int,
    steps: np.ndarray,
    remainders: np.ndarray,
    floors: np.ndarray,
    grad_finite: bool,
) -> TaylorDirection:
    """Local orders, the fitted order and the verdict of one direction."""
    usable = np.isfinite(remainders) & (remainders > floors)
    with np.errstate(divide="ignore", invalid="ignore"):
        local = np.log2(remainders[:-1] / remainders[1:]) / np.log2(
            steps[:-1] / steps[1:]
        )
    orders = np.where(usable[:-1] & usable[1:], local, np.nan)
    finite = np.isfinite(remainders)
    first = int(np.argmax(finite)) if finite.any() else len(steps)
    run = _first_run(usable & (np.arange(len(steps)) >= first))
    order = _fit_order(steps, remainders, run) if run.size >= 2 else math.nan
    if not grad_finite:
        ok, verdict = False, "FAILED: the gradient is NaN/Inf"
    elif first == len(steps):
        ok, verdict = False, "INCONCLUSIVE: fun is NaN/Inf at every step"
    elif not finite[first:].all():
        bad = steps[first:][~finite[first:]][0]
        ok, verdict = False, f"INCONCLUSIVE: fun is NaN/Inf at h = {bad:.2e}"
    elif first > 0 and run.size < 3:
        ok = False
        verdict = f"INCONCLUSIVE: fun is NaN/Inf at h ≥ {steps[first - 1]:.2e}"
    elif run.size == 0:
        ok, verdict = True, "exact to round-off"
    elif run.size == 1:
        ok, verdict = True, f"round-off below h = {steps[run[0]]:.2e}"
    elif order >= PASS_ORDER:
        ok, verdict = True, "ok"
    elif 0.7 <= order <= 1.3:
        ok, verdict = False, "FAILED: order ≈ 1 (wrong gradient)"
    else:
        ok, verdict = False, f"FAILED: order {order:.2f}, expected 2"
    if ok and first > 0:
        verdict += f" (NaN/Inf at h ≥ {steps[first - 1]:.2e}, skipped)"
    return TaylorDirection(
        name=name,
        size=size,
        steps=tuple(float(x) for x in steps),
        remainders=tuple(float(x) for x in remainders),
        floors=tuple(float(x) for x in floors),
        orders=tuple(float(x) for x in orders),
        order=order,
        ok=ok,
        verdict=verdict,
    )


def _json_number(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# Remainder columns shown by `str(report)`: the global one and the failing ones.
_COLUMNS_SHOWN = 4


@dataclasses.dataclass(frozen=True)
class TaylorReport:
    """What `taylor_test` found: the order of convergence along each direction.

    `directions[0]` is the global direction ("all"); then one per perturbed leaf,
    in `params` order. `str(report)` is a table ending in a one-line verdict;
    `to_dict()` is the same content as JSON-serializable data.
    """

    fun_name: str
    seed: int
    ok: bool
    directions: tuple[TaylorDirection, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why) of leaves not perturbed

    @property
    def failures(self) -> list[TaylorDirection]:
        """The directions that did not pass, the global one first."""
        return [d for d in self.directions if not d.ok]

    @property
    def verdict(self) -> str:
        """The one-line verdict that ends `str(report)`."""
        if self.ok:
            return (
                f"OK: the remainder converges at order ≥ {PASS_ORDER} or is at "
                f"round-off along all {len(self.directions)} directions."
            )
        bad = self.failures
        leaves = [d for d in bad if d.name != "all"]
        if leaves:
            where = ", ".join(f"{d.name} (order {d.order:.2f})" for d in leaves)
            return f"FAILED: the gradient is wrong along {where}."
        return (
            f"FAILED along the global direction only (order {bad[0].order:.2f}): "
            "no single leaf is located; check the leaves with `check_grad`."
        )

    def __bool__(self) -> bool:
        """`report.ok`, so that `assert jaxcheck.taylor_test(...)` asserts it."""
        return self.ok

    @property
    def rel_diff(self) -> float:
        """NaN: a Taylor test compares orders of convergence, not two gradients,
        so it has no relative difference (kept for the interface every report
        shares; see `order`)."""
        return math.nan

    @property
    def order(self) -> float:
        """The fitted order along the global direction (2 for a right gradient)."""
        return self.directions[0].order

    @property
    def leaves(self) -> tuple[TaylorDirection, ...]:
        """One direction per perturbed leaf, in `params` order."""
        return self.directions[1:]

    def worst(self, k: int = _COLUMNS_SHOWN) -> list[TaylorDirection]:
        """The `k` directions furthest from passing: failed ones first, then by
        ascending order (NaN, no usable step, last)."""
        key = lambda d: (d.ok, d.order if math.isfinite(d.order) else math.inf)  # noqa: E731
        return sorted(self.directions, key=key)[:k]

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict()` as strict JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Draws the remainders against h on log-log axes into a PNG at `path`,
        with the slopes 1 (a wrong gradient) and 2 (a right one) for reference.

        Raises:
            ImportError: matplotlib is not installed (the `plot` extra).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "`TaylorReport.plot` needs matplotlib, which is not installed; "
                'install the plot extra with `pip install "jaxcheck[plot]"`.'
            ) from error
        figure = Figure(figsize=(6.4, 4.8))
        ax = figure.add_subplot()
        for d in self.worst(_COLUMNS_SHOWN):
            r = np.asarray(d.remainders)
            label = f"{d.name} (order {d.order:.2f})"
            ax.loglog(d.steps, np.where(r > 0, r, np.nan), "o-", label=label)
        h = np.asarray(self.directions[0].steps)
        r0 = np.asarray(self.directions[0].remainders)
        top = np.nanmax(np.where(np.isfinite(r0) & (r0 > 0), r0, np.nan), initial=1.0)
        for slope, style in ((1, ":"), (2, "--")):
            ax.loglog(h, top * (h / h[0]) ** slope, "k" + style, lw=0.8,
                      label=f"slope {slope}")  # fmt: skip
        ax.set_xlabel("step h")
        ax.set_ylabel("|J(θ + h·v) − J(θ) − h·g·v|")
        ax.legend(fontsize=7)
        ax.set_title(textwrap.fill(self.verdict, 80), fontsize=8)
        figure.savefig(os.fspath(path), format="png", dpi=100, bbox_inches="tight")

    def __str__(self) -> str:
        first = self.directions[0]
        lines = [
            f"Taylor test of `{self.fun_name}`: |J(θ + h·v) − J(θ) − h·g·v| at "
            f"{len(first.steps)} steps h = {first.steps[0]:.2e} … "
            f"{first.steps[-1]:.2e} (halving), seed {self.seed}"
        ]
        width = max(len(d.name) for d in self.directions + (first,)) + 1
        width = max(width, len("direction"))
        lines.append(f"  {'direction':<{width}} {'entries':>9} {'order':>6}  verdict")
        for d in self.directions:
            order = f"{d.order:>6.2f}" if math.isfinite(d.order) else f"{'–':>6}"
            lines.append(f"  {d.name:<{width}} {d.size:>9} {order}  {d.verdict}")
        if self.skipped:
            kept = "; ".join(f"{p} ({why})" for p, why in self.skipped)
            lines.append(f"  not perturbed: {kept}")
        shown = [first] + [d for d in self.failures if d is not first]
        shown = shown[:_COLUMNS_SHOWN]
        col = max(11, *(len(d.name) + 1 for d in shown))
        lines.append("  remainders:")
        lines.append(f"  {'h':>10}" + "".join(f"{d.name:>{col}}" for d in shown))
        for k, h in enumerate(first.steps):
            cells = "".join(f"{d.remainders[k]:>{col}.2e}" for d in shown)
            lines.append(f"  {h:>10.2e}{cells}")
        lines.append(self.verdict)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serializable data (non-finite numbers as strings)."""

        def direction(d: TaylorDirection) -> dict[str, Any]:
            out = dataclasses.asdict(d)
            return {
                k: [_json_number(x) for x in v]
                if isinstance(v, tuple)
                else _json_number(v)
                for k, v in out.items()
            }

        return {
            "ok": self.ok,
            "fun": self.fun_name,
            "seed": self.seed,
            "verdict": self.verdict,
            "directions": [direction(d) for d in self.directions],
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
        }
