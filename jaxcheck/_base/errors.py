"""The one exception raised when a gradient is wrong, and how it is worded."""

from __future__ import annotations

from typing import Any


class GradCheckError(AssertionError):
    """Raised by the `assert_*` checks (and the `check_grads` drop-in) when an
    analytic derivative disagrees with finite differences.

    It subclasses `AssertionError` so that pytest shows it as a failed assertion.
    The first line is the verdict, naming the failing leaf and its worst entry
    (pytest's one-line summary shows just that); the full report follows.
    """

    __module__ = "jaxcheck"


def failure_message(report: Any, what: str = "") -> str:
    """The message of a failed check: a first line with `what` (e.g. "VJP of
    JVP") and the report's verdict, then the report."""
    head = f"{what} check failed: " if what else ""
    return f"{head}{report.verdict}\n{report}"


def raise_if_failed(report: Any, what: str = "") -> Any:
    """Returns `report` when it is ok; otherwise raises `GradCheckError` with
    its `failure_message`."""
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    if not report.ok:
        raise GradCheckError(failure_message(report, what))
    return report


class BatchingFallbackWarning(UserWarning):
    """`fun` could not be batched with `vmap` (a primitive without a batching
    rule, say), so a check evaluated its perturbed points one at a time.

    The numbers are the same, only slower. Silence it with
    `warnings.simplefilter("ignore", jaxcheck.BatchingFallbackWarning)`.
    """
