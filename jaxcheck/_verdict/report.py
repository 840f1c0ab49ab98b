"""`GradCheckReport`: the verdict of a check, per leaf and per entry."""

from __future__ import annotations

import dataclasses
import json
import math
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
    meaningful,
    relative_difference,
)
from .._tree.pytree import LeafInfo, format_path
from .diagnose import diagnose_leaf, diagnose_narrowed

_WORST_SHOWN = 5
_UNDEFINED = float("nan")  # a relative figure of values zero to round-off


def _relative(x: float, spec: str = ".1e") -> str:
    """A relative figure, or "—" where it means nothing (see `_summarize`)."""
    return format("—", spec.split(".")[0]) if np.isnan(x) else format(x, spec)


def _count(n: int, one: str, many: str) -> str:
    """ "1 leaf", "2 leaves"."""
    return f"{n} {one if n == 1 else many}"


def _location(path: str, index: tuple[int, ...]) -> str:
    return format_path(path) + (f"[{', '.join(map(str, index))}]" if index else "")


def _number(x: complex | float) -> float | complex:
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
    # every leaf of `params` is floating (see the README's "How it works").
    flat_index: int = -1

    @property
    def location(self) -> str:
        """Path and index together, e.g. `['layers'][1]['w'][3, 5]`."""
        return _location(self.path, self.index)


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


def _summarize(
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
        max_rel_err=float(np.max(rel_err)) if rel_err.size else _UNDEFINED,
        rel_diff=relative_difference(analytic, numeric, band),
        failed=failed,
        kinks=int(np.count_nonzero(status == KINK)),
        status=verdict,
        diagnosis=diagnosis,
        checked=checked,
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
            _summarize(leaf, comparison, rows, how, p, self._flat(leaf, rows))
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
            analytic=_number(c.analytic[row]),
            numeric=_number(c.numeric[row]),
            abs_err=float(c.abs_err[row]),
            rel_err=float(c.rel_err[row]),
            tolerance=float(c.tolerance[row]),
            step=float(self.steps[row]),
            status=STATUS_NAMES[int(c.status[row])],
            flat_index=flat,
        )

    def _row(self, entry: EntryReport) -> int:
        """The comparison row of an entry."""
        leaf = next(x for x in self._leaves if format_path(x.path) == entry.path)
        index = np.ravel_multi_index(entry.index, leaf.shape) if entry.index else 0
        flat = leaf.offset + int(index)
        if self._entries is None:
            return flat
        return int(np.searchsorted(self._entries, flat))

    def worst(self, k: int = _WORST_SHOWN) -> list[EntryReport]:
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
        if self.nondeterministic:
            return (
                f"NONDETERMINISTIC: `fun` gave values {self.spread:.3g} apart at the "
                f"same point (nondet_tol {self.nondet_tol:.3g}), so its finite "
                "differences cannot be trusted and the gradient was not judged. Make "
                "`fun` deterministic (fixed PRNG keys, no host callbacks) or raise "
                "`nondet_tol`."
            )
        kinks = (
            f"; {self.num_kinks} at kinks (valid subgradients)"
            if self.num_kinks
            else ""
        )
        n_leaves = _count(len(self.leaves), "leaf", "leaves")
        if self.ok and self.mode == "full":
            entries = _count(self.num_entries, "entry", "entries")
            return f"OK: all {entries} of {n_leaves} agree ({self._rel_diff}){kinks}."
        if self.ok and self.mode == "sample":
            return (
                f"OK: {self.num_entries} sampled entries of {self.num_params}, in "
                f"all {n_leaves}, agree (sample mode; {self._rel_diff}){kinks}."
            )
        if self.ok:
            one_by_one = _count(self.num_entries, "entry was", "entries were")
            return (
                f"OK: all {n_leaves} ({self.num_params} entries) agree along "
                f"random directions; {one_by_one} checked one by one (fast mode; "
                f"{self._rel_diff}){kinks}."
            )
        worst = self.worst(1)[0]
        bad_leaves = [s.path for s in self.leaves if s.status != "ok"]
        times = self.comparison.score[self._row(worst)]
        off = f"{times:.3g}× its pass band" if np.isfinite(times) else worst.status
        compared = {
            "full": "entries",
            "sample": "sampled entries",
            "fast": "entries checked one by one",
        }[self.mode]
        verdict = (
            f"FAILED: {self.num_failed} of {self.num_entries} {compared} differ, in "
            f"{', '.join(bad_leaves)}; worst {worst.location}: analytic "
            f"{worst.analytic:.6g}, numeric {worst.numeric:.6g} ({off}); "
            f"{self._rel_diff}{kinks}."
        )
        if self.mode == "fast" and self.num_entries < self.num_params:
            verdict += (
                f" Fast mode: directional probes narrowed the {self.num_params:,} "
                f"entries to these {self.num_entries:,}."
            )
        elif self.mode == "fast":
            verdict += " Fast mode: the directional probes failed, then every entry."
        return verdict + _hint(self.comparison.status)

    @property
    def _rel_diff(self) -> str:
        if np.isnan(self.rel_diff) and self.num_failed == 0:
            return "the gradient is zero to round-off"
        return f"rel diff {_relative(self.rel_diff)}"

    def __str__(self) -> str:
        mode = "" if self.mode == "full" else f", {self.mode} mode"
        lines = [
            f"Gradient check of `{self.fun_name}` ({self.method} differences{mode}): "
            f"{_count(self.num_params, 'entry', 'entries')} in "
            f"{_count(len(self.leaves), 'leaf', 'leaves')}"
            + (f"; {self.note}" if self.note else "")
        ]
        width = max([len(s.path) for s in self.leaves] + [4])
        header = (
            f"  {'leaf':<{width}}  {'shape':<12} {'dtype':<9} {'max abs err':>11} "
            f"{'max rel err':>11} {'rel diff':>9} {'failed':>7}  status"
        )
        lines.append(header + ("  checked" if mode else ""))
        for s in self.leaves:
            line = (
                f"  {s.path:<{width}}  {str(s.shape):<12} {s.dtype:<9} "
                f"{s.max_abs_err:>11.2e} {_relative(s.max_rel_err, '>11.2e')} "
                f"{_relative(s.rel_diff, '>9.2e')} "
                f"{s.failed:>7}  {s.status:<8}" + (f"  {s.checked}" if mode else "")
            )
            lines.append(line.rstrip())
        if any(np.isnan(s.rel_diff) for s in self.leaves if s.status == "ok"):
            lines.append(
                "  —: every entry is zero to within its pass band; a relative figure "
                "would mean nothing there"
            )
        if self.skipped:
            kept = "; ".join(f"{p} ({why})" for p, why in self.skipped)
            lines.append(f"  not perturbed: {kept}")
        for s in self.leaves:
            if s.diagnosis:
                lines.append(f"  {s.path}: {s.diagnosis}")
        worst = [e for e in self.worst() if e.status not in ("ok", "kink")]
        worst = worst or self.worst(3)
        if worst:
            lines.append("  worst entries:" if not self.ok else "  closest to failing:")
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
        lines.append(self.verdict)
        return "\n".join(lines)

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
            "spread": _json_number(self.spread),
            "num_kinks": self.num_kinks,
            "mode": self.mode,
            "num_params": self.num_params,
            "num_entries": self.num_entries,
            "num_failed": self.num_failed,
            "rel_diff": _json_number(self.rel_diff),
            "verdict": self.verdict,
            "leaves": [
                {k: _json_number(v) for k, v in dataclasses.asdict(s).items()}
                for s in self.leaves
            ],
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
            "worst": [
                {k: _json_number(v) for k, v in dataclasses.asdict(e).items()}
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


def _json_number(x: Any) -> Any:
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, complex):
        return [_json_number(x.real), _json_number(x.imag)]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
