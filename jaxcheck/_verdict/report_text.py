"""How a `GradCheckReport` reads: its one-line verdict and its table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._engine.compare import ANALYTIC_NONFINITE, INCONCLUSIVE
from .entries import format_relative, plural

if TYPE_CHECKING:
    from .report import GradCheckReport


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
