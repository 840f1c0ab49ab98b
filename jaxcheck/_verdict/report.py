"""`GradCheckReport`: the verdict of a check, per leaf and per entry."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._engine.compare import (
    ANALYTIC_NONFINITE,
    BOTH_NONFINITE,
    FAILING,
    INCONCLUSIVE,
    KINK,
    STATUS_NAMES,
    Comparison,
    relative_difference,
)
from .._tree.pytree import LeafInfo, format_path
from .entries import (
    WORST_SHOWN,
    EntryReport,
    LeafSummary,
    as_number,
    format_relative,
    json_number,
    plural,
    summarize,
)


class GradCheckReport:
    """What a gradient check found: `ok`, a summary per leaf, and the worst entries.

    `str(report)` is a table ending in a one-line verdict; `to_dict()` and
    `to_json()` are the same content as data; `plot(path)` draws it.
    """

    def __init__(
        self,
        *,
        fun_name: str,
        method: str,
        leaves: tuple[LeafInfo, ...],
        skipped: tuple[tuple[str, str], ...],
        comparison: Comparison,
        steps: np.ndarray,
        spread: float = 0.0,
        nondet_tol: float = float("inf"),
        note: str = "",
        mode: str = "full",
        entries: np.ndarray | None = None,
        checked: Sequence[str] | None = None,
        probes: Sequence[Any] | None = None,
        evaluation: str = "",
    ):
        """`comparison` and `steps` hold one row per compared entry: every entry
        of θ, or the sorted θ indices `entries`. `checked` says per leaf how it
        was checked; `probes` are fast mode's directional probes per leaf;
        `evaluation` how the perturbed points were evaluated ("eager" or
        "compiled", see `_engine.jaxpr.evaluation_way`, and ", one point at a
        time" where `vmap` could not batch `fun`)."""
        self.fun_name = fun_name
        self.evaluation = evaluation
        self.method = method
        self.mode = mode
        self.comparison = comparison
        self.steps = steps
        self._leaves = leaves
        self._entries = entries
        self.skipped: tuple[tuple[str, str], ...] = tuple(
            (format_path(p), why) for p, why in skipped
        )
        checked = checked or ["all entries"] * len(leaves)
        probes = probes or [None] * len(leaves)
        self.leaves: tuple[LeafSummary, ...] = tuple(
            summarize(leaf, comparison, rows, how, p, self._flat(leaf, rows))
            for leaf, how, p in zip(leaves, checked, probes, strict=True)
            for rows in [self._rows(leaf)]
        )
        compared = comparison.status != BOTH_NONFINITE
        analytic = [comparison.analytic[compared]] + [p.analytic for p in probes if p]
        numeric = [comparison.numeric[compared]] + [p.numeric for p in probes if p]
        band = (
            None
            if any(p is not None for p in probes)
            else comparison.tolerance[compared]
        )
        self.rel_diff: float = relative_difference(
            np.concatenate(analytic), np.concatenate(numeric), band
        )
        self.num_params: int = sum(leaf.size for leaf in leaves)
        self.num_entries: int = int(comparison.status.size)
        self.num_probed: int = sum(
            1 for p in probes if p is not None and p.analytic.size
        )
        self.num_failed: int = int(np.count_nonzero(comparison.status >= FAILING))
        self.num_kinks: int = int(np.count_nonzero(comparison.status == KINK))
        # The largest spread of J(θ) between identical evaluations, and the
        # spread above which `fun` counts as nondeterministic.
        # How the numerical side was computed, when that is worth saying.
        self.note = note
        self.spread: float = float(spread)
        self.nondet_tol: float = float(nondet_tol)
        self.nondeterministic: bool = not self.spread <= self.nondet_tol
        self.ok: bool = (
            self.num_entries + self.num_probed > 0
            and self.num_failed == 0
            and not self.nondeterministic
        )

    def _rows(self, leaf: LeafInfo) -> slice:
        """The rows of the comparison that hold entries of `leaf`."""
        bounds = [leaf.offset, leaf.offset + leaf.size]
        if self._entries is None:
            return slice(*bounds)
        return slice(*np.searchsorted(self._entries, bounds).tolist())

    def _flat(self, leaf: LeafInfo, rows: slice) -> np.ndarray | None:
        """The flat indices inside `leaf` of its compared entries (None: all)."""
        return None if self._entries is None else self._entries[rows] - leaf.offset

    def _entry(self, row: int) -> EntryReport:
        flat = row if self._entries is None else int(self._entries[row])
        nonempty = [leaf for leaf in self._leaves if leaf.size]
        starts = [leaf.offset for leaf in nonempty]
        leaf = nonempty[int(np.searchsorted(starts, flat, side="right")) - 1]
        c = self.comparison
        return EntryReport(
            path=format_path(leaf.path),
            index=leaf.locate(flat),
            analytic=as_number(c.analytic[row]),
            numeric=as_number(c.numeric[row]),
            abs_err=float(c.abs_err[row]),
            rel_err=float(c.rel_err[row]),
            tolerance=float(c.tolerance[row]),
            step=float(self.steps[row]),
            status=STATUS_NAMES[int(c.status[row])],
            flat_index=flat,
        )

    def row_of(self, entry: EntryReport) -> int:
        """The comparison row of an entry."""
        leaf = next(x for x in self._leaves if format_path(x.path) == entry.path)
        index = np.ravel_multi_index(entry.index, leaf.shape) if entry.index else 0
        flat = leaf.offset + int(index)
        if self._entries is None:
            return flat
        return int(np.searchsorted(self._entries, flat))

    def worst(self, k: int = WORST_SHOWN) -> list[EntryReport]:
        """The `k` entries furthest outside their pass band (abs_err / tolerance),
        non-finite ones first."""
        score = self.comparison.score
        order = np.argsort(-score, kind="stable")[:k]
        return [self._entry(int(i)) for i in order]

    @property
    def failures(self) -> list[EntryReport]:
        """Every failing entry, worst first."""
        return self.worst(self.num_failed)

    @property
    def kinks(self) -> list[EntryReport]:
        """The entries at a kink of `fun` whose analytic value is a subgradient."""
        flat = np.flatnonzero(self.comparison.status == KINK)
        return [self._entry(int(i)) for i in flat]

    @property
    def verdict(self) -> str:
        """The one-line verdict that ends `str(report)`."""
        return verdict_of(self)

    def __str__(self) -> str:
        return table_of(self)

    def __bool__(self) -> bool:
        """`report.ok`: `assert jaxcheck.check_grad(...)` asserts the verdict."""
        return self.ok

    def __repr__(self) -> str:
        return (
            f"GradCheckReport(ok={self.ok}, rel_diff={self.rel_diff:.3g}, "
            f"failed={self.num_failed}/{self.num_entries})"
        )

    def to_dict(self, worst: int = 20) -> dict[str, Any]:
        """The report as JSON-serializable data (non-finite numbers as strings,
        complex numbers as [real, imag])."""
        return {
            "ok": self.ok,
            "fun": self.fun_name,
            "method": self.method,
            "note": self.note,
            "evaluation": self.evaluation,
            "nondeterministic": self.nondeterministic,
            "spread": json_number(self.spread),
            "num_kinks": self.num_kinks,
            "mode": self.mode,
            "num_params": self.num_params,
            "num_entries": self.num_entries,
            "num_failed": self.num_failed,
            "rel_diff": json_number(self.rel_diff),
            "verdict": self.verdict,
            "leaves": [
                {k: json_number(v) for k, v in dataclasses.asdict(s).items()}
                for s in self.leaves
            ],
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
            "worst": [
                {k: json_number(v) for k, v in dataclasses.asdict(e).items()}
                | {"location": e.location}
                for e in self.worst(worst)
            ],
        }

    def to_json(self, worst: int = 20, indent: int | None = 2) -> str:
        """`to_dict(worst)` as strict JSON text (no bare NaN or Infinity).

        Examples:
            >>> import json
            >>> import jax.numpy as jnp
            >>> import jaxcheck
            >>> report = jaxcheck.check_grad(lambda w: jnp.sum(w**2), jnp.ones(3))
            >>> data = json.loads(report.to_json())
            >>> data["ok"], data["num_entries"], data["leaves"][0]["path"]
            (True, 3, 'params')
        """
        return json.dumps(self.to_dict(worst), indent=indent, allow_nan=False)

    def plot(self, path: str | os.PathLike[str], *, max_leaves: int = 12) -> None:
        """Writes a PNG: a heatmap of per-entry error for each leaf, and a bar
        chart of each leaf's relative difference.

        Each heatmap colours an entry by abs_err / tolerance on a log scale, so an
        entry is red exactly when it is outside its pass band; failing entries are
        crossed and kinks (valid subgradients) ringed. 2-D leaves are drawn as
        matrices, so a transposed or row-wise bug shows as a pattern. Needs
        matplotlib: `pip install "jaxcheck[plot]"`.

        Args:
            path: where to write the PNG.
            max_leaves: leaves drawn as heatmaps, the worst first (all leaves are
                in the bar chart).

        Raises:
            ImportError: when matplotlib is not installed.

        Examples:
            >>> import os, tempfile
            >>> import jax.numpy as jnp
            >>> import jaxcheck
            >>> report = jaxcheck.check_grad(lambda w: jnp.sum(w**2), jnp.ones(3))
            >>> path = os.path.join(tempfile.mkdtemp(), "check.png")
            >>> report.plot(path)
            >>> open(path, "rb").read(4)
            b'\\x89PNG'
        """
        from .plot import plot_report

        plot_report(self, path, max_leaves=max_leaves)

    def leaf_grids(self) -> list[tuple[LeafSummary, np.ndarray, np.ndarray]]:
        """Per leaf: its summary, then abs_err / tolerance and the status names
        of its entries, both in the leaf's shape (NaN and "not checked" for the
        entries that fast or sample mode did not compare one by one)."""
        out = []
        names = np.empty(max(STATUS_NAMES) + 2, dtype=object)
        for code, name in STATUS_NAMES.items():
            names[code] = name
        names[-1] = "not checked"
        score, status = self.comparison.score, self.comparison.status
        if self._entries is not None:
            score = np.full(self.num_params, np.nan)
            score[self._entries] = self.comparison.score
            status = np.full(self.num_params, len(names) - 1)
            status[self._entries] = self.comparison.status
        for leaf, summary in zip(self._leaves, self.leaves, strict=True):
            part = slice(leaf.offset, leaf.offset + leaf.size)
            out.append(
                (
                    summary,
                    score[part].reshape(leaf.shape),
                    names[status[part]].reshape(leaf.shape),
                )
            )
        return out


def verdict_of(report: GradCheckReport) -> str:
    """The one-line verdict that ends `str(report)`."""
    if report.nondeterministic:
        return (
            f"NONDETERMINISTIC: `fun` gave values {report.spread:.3g} apart at the "
            f"same point (nondet_tol {report.nondet_tol:.3g}), so its finite "
            "differences cannot be trusted and the gradient was not judged. Make "
            "`fun` deterministic (fixed PRNG keys, no host callbacks) or raise "
            "`nondet_tol`."
        )
    kinks = (
        f"; {report.num_kinks} at kinks (valid subgradients)"
        if report.num_kinks
        else ""
    )
    n_leaves = plural(len(report.leaves), "leaf", "leaves")
    if report.ok and report.mode == "full":
        entries = plural(report.num_entries, "entry", "entries")
        return f"OK: all {entries} of {n_leaves} agree ({_rel_diff(report)}){kinks}."
    if report.ok and report.mode == "sample":
        return (
            f"OK: {report.num_entries} sampled entries of {report.num_params}, in "
            f"all {n_leaves}, agree (sample mode; {_rel_diff(report)}){kinks}."
        )
    if report.ok:
        one_by_one = plural(report.num_entries, "entry was", "entries were")
        return (
            f"OK: all {n_leaves} ({report.num_params} entries) agree along "
            f"random directions; {one_by_one} checked one by one (fast mode; "
            f"{_rel_diff(report)}){kinks}."
        )
    worst = report.worst(1)[0]
    bad_leaves = [s.path for s in report.leaves if s.status != "ok"]
    times = report.comparison.score[report.row_of(worst)]
    off = f"{times:.3g}× its pass band" if np.isfinite(times) else worst.status
    compared = {
        "full": "entries",
        "sample": "sampled entries",
        "fast": "entries checked one by one",
    }[report.mode]
    verdict = (
        f"FAILED: {report.num_failed} of {report.num_entries} {compared} differ, in "
        f"{', '.join(bad_leaves)}; worst {worst.location}: analytic "
        f"{worst.analytic:.6g}, numeric {worst.numeric:.6g} ({off}); "
        f"{_rel_diff(report)}{kinks}."
    )
    if report.mode == "fast" and report.num_entries < report.num_params:
        verdict += (
            f" Fast mode: directional probes narrowed the {report.num_params:,} "
            f"entries to these {report.num_entries:,}."
        )
    elif report.mode == "fast":
        verdict += " Fast mode: the directional probes failed, then every entry."
    return verdict + _hint(report.comparison.status)


def _rel_diff(report: GradCheckReport) -> str:
    if np.isnan(report.rel_diff) and report.num_failed == 0:
        return "the gradient is zero to round-off"
    return f"rel diff {format_relative(report.rel_diff)}"


def table_of(report: GradCheckReport) -> str:
    """`str(report)`: the table per leaf, the worst entries, then the verdict."""
    mode = "" if report.mode == "full" else f", {report.mode} mode"
    lines = [
        f"Gradient check of `{report.fun_name}` ({report.method} differences{mode}): "
        f"{plural(report.num_params, 'entry', 'entries')} in "
        f"{plural(len(report.leaves), 'leaf', 'leaves')}"
        + (f"; {report.note}" if report.note else "")
    ]
    width = max([len(s.path) for s in report.leaves] + [4])
    header = (
        f"  {'leaf':<{width}}  {'shape':<12} {'dtype':<9} {'max abs err':>11} "
        f"{'max rel err':>11} {'rel diff':>9} {'failed':>7}  status"
    )
    lines.append(header + ("  checked" if mode else ""))
    for s in report.leaves:
        line = (
            f"  {s.path:<{width}}  {str(s.shape):<12} {s.dtype:<9} "
            f"{s.max_abs_err:>11.2e} {format_relative(s.max_rel_err, '>11.2e')} "
            f"{format_relative(s.rel_diff, '>9.2e')} "
            f"{s.failed:>7}  {s.status:<8}" + (f"  {s.checked}" if mode else "")
        )
        lines.append(line.rstrip())
    if any(np.isnan(s.rel_diff) for s in report.leaves if s.status == "ok"):
        lines.append(
            "  —: every entry is zero to within its pass band; a relative figure "
            "would mean nothing there"
        )
    if report.skipped:
        kept = "; ".join(f"{p} ({why})" for p, why in report.skipped)
        lines.append(f"  not perturbed: {kept}")
    for s in report.leaves:
        if s.diagnosis:
            lines.append(f"  {s.path}: {s.diagnosis}")
    worst = [e for e in report.worst() if e.status not in ("ok", "kink")]
    worst = worst or report.worst(3)
    if worst:
        lines.append("  worst entries:" if not report.ok else "  closest to failing:")
        w = max(len(e.location) for e in worst)
        lines.append(
            f"    {'entry':<{w}}  {'analytic':>13} {'numeric':>13} {'abs err':>9} "
            f"{'tolerance':>9}  status"
        )
        for e in worst:
            lines.append(
                f"    {e.location:<{w}}  {e.analytic:>13.6g} {e.numeric:>13.6g} "
                f"{e.abs_err:>9.2e} {e.tolerance:>9.2e}  {e.status}"
            )
    lines.append(verdict_of(report))
    return "\n".join(lines)


def _hint(status: np.ndarray) -> str:
    if np.any(status == ANALYTIC_NONFINITE):
        return (
            " The analytic gradient is NaN/Inf where finite differences are finite:"
            " often `jnp.where(cond, x, f(x))` with f NaN or Inf on the branch not"
            " taken, whose gradient is still computed; apply `jnp.where` to f's"
            " input too (the double-where trick)."
        )
    if np.any(status == INCONCLUSIVE):
        return (
            " Some entries are inconclusive: `fun` is NaN/Inf at every step tried"
            " around them (the edge of its domain); check them with a smaller `eps`"
            " or at another point."
        )
    return ""
