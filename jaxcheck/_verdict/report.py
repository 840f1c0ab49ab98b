"""`GradCheckReport`: the verdict of a check, per leaf and per entry."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._engine.compare import (
    BOTH_NONFINITE,
    FAILING,
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
    json_number,
    summarize,
)
from .report_text import table_of, verdict_of


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
    ):
        """`comparison` and `steps` hold one row per compared entry: every entry
        of θ, or the sorted θ indices `entries`. `checked` says per leaf how it
        was checked; `probes` are fast mode's directional probes per leaf."""
        self.fun_name = fun_name
        self.method = method
        self.mode = mode
        self.comparison = comparison
        self.steps = steps
        self._leaves = leaves
        self._entries = entries
        self.skipped = tuple((format_path(p), why) for p, why in skipped)
        checked = checked or ["all entries"] * len(leaves)
        probes = probes or [None] * len(leaves)
        self.leaves = tuple(
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
        self.rel_diff = relative_difference(
            np.concatenate(analytic), np.concatenate(numeric), band
        )
        self.num_params = sum(leaf.size for leaf in leaves)
        self.num_entries = int(comparison.status.size)
        self.num_probed = sum(1 for p in probes if p is not None and p.analytic.size)
        self.num_failed = int(np.count_nonzero(comparison.status >= FAILING))
        self.num_kinks = int(np.count_nonzero(comparison.status == KINK))
        # The largest spread of J(θ) between identical evaluations, and the
        # spread above which `fun` counts as nondeterministic.
        # How the numerical side was computed, when that is worth saying.
        self.note = note
        self.spread = float(spread)
        self.nondet_tol = float(nondet_tol)
        self.nondeterministic = not self.spread <= self.nondet_tol
        self.ok = (
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

    def _leaf_entries(self) -> list[tuple[LeafSummary, np.ndarray, np.ndarray]]:
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
