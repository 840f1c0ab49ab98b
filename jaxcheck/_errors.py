"""The one exception raised when a gradient is wrong."""


class GradCheckError(AssertionError):
    """Raised by `assert_grad` when analytic and numerical gradients disagree.

    It subclasses `AssertionError` so that pytest shows it as a failed assertion.
    The message is the full report: one row per leaf, the worst entries with their
    leaf path and index, and a one-line verdict.
    """

    __module__ = "jaxcheck"
