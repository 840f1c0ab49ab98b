"""`RuleReport`: what `check_custom_vjp`/`check_custom_jvp` found, one report
holding each step of the check (the rule's output, its structure, its values
against finite differences, jit and vmap)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from .entries import EntryReport, LeafSummary
from .report import GradCheckReport


@dataclasses.dataclass(frozen=True)
class RuleStep:
    """One step of a rule check: what was checked, whether it held, and the
    report of the finite-difference comparison where the step was one."""

    name: str
    ok: bool
    message: str
    report: GradCheckReport | None = None


class RuleReport:
    """The steps of a `custom_vjp`/`custom_jvp` rule check, in the order run.

    The interface is that of `GradCheckReport`: `.ok` (also its truth value),
    `.verdict`, `.failures` (the failing steps), `.rel_diff`, `.leaves` and
    `.worst(k)` over every value check, `str()`, `to_dict()`/`to_json()` and
    `plot()` (of the first failing value check). `.reports` maps each value
    check to its own report.
    """

    def __init__(self, *, fun_name: str, kind: str, steps: tuple[RuleStep, ...]):
        self.fun_name = fun_name
        self.kind = kind
        self.steps = steps
        self.ok: bool = bool(steps) and all(s.ok for s in steps)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reports(self) -> dict[str, GradCheckReport]:
        """The report of each value check, keyed by what it checked."""
        return {s.name: s.report for s in self.steps if s.report is not None}

    @property
    def failures(self) -> list[RuleStep]:
        """The steps that failed, in the order run."""
        return [s for s in self.steps if not s.ok]

    @property
    def rel_diff(self) -> float:
        """The largest relative difference of any value check."""
        values = [r.rel_diff for r in self.reports.values()]
        return max(values, key=lambda x: (not math.isnan(x), x), default=0.0)

    @property
    def leaves(self) -> tuple[LeafSummary, ...]:
        return tuple(leaf for r in self.reports.values() for leaf in r.leaves)

    def worst(self, k: int = 5) -> list[EntryReport]:
        """The `k` entries furthest outside their pass band, over every value check."""
        entries = [e for r in self.reports.values() for e in r.worst(k)]

        def score(e: EntryReport) -> float:
            if e.status in ("ok", "kink", "nan/inf on both sides"):
                return e.abs_err / e.tolerance if e.tolerance > 0 else 0.0
            return math.inf

        return sorted(entries, key=score, reverse=True)[:k]

    @property
    def verdict(self) -> str:
        if self.ok:
            return (
                f"OK: the {self.kind} rule of `{self.fun_name}` passed all "
                f"{len(self.steps)} steps (rel diff {self.rel_diff:.1e})."
            )
        first = self.failures[0]
        message = first.report.verdict if first.report is not None else first.message
        return f"FAILED: {first.name}: {message.removeprefix('FAILED: ')}"

    def __str__(self) -> str:
        lines = [f"Check of the {self.kind} rule of `{self.fun_name}`:"]
        for step in self.steps:
            status = "ok" if step.ok else "FAILED"
            detail = "" if step.ok or step.report is not None else f": {step.message}"
            lines.append(f"  {status:<7} {step.name}{detail}")
        failed = [s.report for s in self.failures if s.report is not None]
        if failed:
            lines.append(str(failed[0]))
        lines.append(self.verdict)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"RuleReport(ok={self.ok}, steps={len(self.steps)}, "
            f"failed={len(self.failures)})"
        )

    def to_dict(self, worst: int = 20) -> dict[str, Any]:
        """The report as JSON-serializable data."""
        return {
            "fun": self.fun_name,
            "rule": self.kind,
            "ok": self.ok,
            "verdict": self.verdict,
            "steps": [
                {
                    "name": s.name,
                    "ok": s.ok,
                    "message": s.message,
                    "report": None if s.report is None else s.report.to_dict(worst),
                }
                for s in self.steps
            ],
        }

    def to_json(self, worst: int = 20, indent: int | None = 2) -> str:
        """`to_dict(worst)` as JSON text."""
        return json.dumps(self.to_dict(worst), indent=indent)

    def plot(self, path: str | os.PathLike[str], *, max_leaves: int = 12) -> None:
        """Draws the first failing value check (or the first one) into a PNG."""
        reports = [s.report for s in self.failures if s.report is not None]
        reports = reports or list(self.reports.values())
        if not reports:
            raise ValueError(
                "This rule check compared no values (it stopped at a structural "
                "step), so there is nothing to plot; see str(report)."
            )
        reports[0].plot(path, max_leaves=max_leaves)
