"""`check_custom_vjp`: a `jax.custom_vjp` rule checked from every side.

In the order of `_checks.rule_steps`: the fwd rule's primal output, the
structure of what the bwd rule returns, its values against finite differences
for several cotangents (`check_vjp`), and the VJP under `jit` and `vmap`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .._base.errors import raise_if_failed
from .._base.options import DEFAULT_MEMORY_BUDGET
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf
from .._verdict.rule_report import RuleReport, RuleStep
from .directions import cotangents_for
from .rule_steps import (
    BATCH,
    check_count,
    check_rule,
    nondiff_note,
    primal_output_step,
    rule_options,
    seeded,
    split_primals,
    steps_report,
    transformation_steps,
    value_step,
)
from .vjp import check_like_primals, vjp_report


def check_custom_vjp(
    fun: Any,
    *primals: Any,
    num_cotangents: int = 3,
    seed: int = 0,
    method: str = "central",
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    shadow: bool = True,
    progress: bool | Callable[[int, int], Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> RuleReport:
    """Checks a `jax.custom_vjp` rule: output, structure, values, jit and vmap.

    In order: (a) the fwd rule's primal output equals `fun`'s output; (b) bwd
    returns one cotangent per differentiable primal with its structure, shape and
    dtype (None means zero); (c) for `num_cotangents` seeded random cotangents the
    VJP through the rule equals finite differences of `fun`, entry by entry
    (`check_vjp`); (d) the arguments at `nondiff_argnums` are passed to the rule
    and never differentiated; (e) the VJP is the same under `jit`, and under
    `vmap` (over cotangents, and over primals and cotangents) equals a loop.

    Args:
        fun: a function decorated with `jax.custom_vjp`, its rule defined.
        *primals: every positional argument of `fun`, `nondiff_argnums` included.
        num_cotangents: how many random cotangents check the values.
        seed: the seed of the first random cotangent.
        method, eps, atol, rtol, chunk_size, memory_budget, shadow, progress,
            devices: as in `check_grad`, for every value check.

    Returns:
        A `RuleReport` holding each step in the order run (`.steps`; a failed
        structural step ends the check), `.ok` (also its truth value) and the
        value checks' reports (`.reports`). It never raises on a wrong rule;
        `assert_custom_vjp` does.

    Raises:
        TypeError, ValueError: for invalid arguments.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> @jax.custom_vjp
        ... def square(x):
        ...     return x**2
        >>> square.defvjp(lambda x: (x**2, x), lambda x, g: (3 * x * g,))  # 2x!
        >>> report = jaxcheck.check_custom_vjp(square, jnp.arange(3.0))
        >>> report.ok
        False
        >>> print(report.verdict)  # doctest: +ELLIPSIS
        FAILED: bwd rule with cotangent 0 (seed 0): 2 of 3 entries differ, ...
    """
    check_rule(fun, "vjp")
    primals = tuple(primals)
    check_count("num_cotangents", num_cotangents)
    options = rule_options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, progress=progress,
        devices=devices,
    )  # fmt: skip
    nondiff, diff, f = split_primals(fun, primals)
    note = nondiff_note(fun)
    steps: list[RuleStep] = []
    if not fun.symbolic_zeros:  # with symbolic zeros fwd takes wrapped primals
        out, residuals = fun.fwd(*primals)
        steps.append(primal_output_step(out, fun.fun(*primals), "fwd"))
        c = cotangents_for(f, diff, None, seed)
        what = "the bwd rule returns a cotangent like each differentiable primal"
        try:
            check_like_primals(fun.bwd(*nondiff, residuals, c), diff, "the bwd rule")
            steps.append(RuleStep(what, True, ""))
        except (TypeError, ValueError) as error:
            steps.append(RuleStep(what, False, f"{error}{note}"))
        if not all(step.ok for step in steps):
            return steps_report(fun, "custom_vjp", steps)
    for k in range(num_cotangents):
        what = f"bwd rule with cotangent {k} (seed {seed + k}){note}"
        report = vjp_report(f, diff, None, None, seeded(options, k))
        steps.append(value_step(what, report))
    of_floats, floats = of_some_leaves(f, diff, is_differentiable_leaf)
    floats = [jnp.asarray(x) for x in floats]

    def vjp(floats, c):
        return jax.vjp(of_floats, floats)[1](c)[0]

    cotangents = [cotangents_for(f, diff, None, seed + k) for k in range(BATCH)]
    steps.extend(transformation_steps(vjp, floats, cotangents, "VJP"))
    return steps_report(fun, "custom_vjp", steps)


def assert_custom_vjp(fun: Any, *primals: Any, **options: Any) -> RuleReport:
    """Like `check_custom_vjp`, but raises `GradCheckError` when a step fails.

    Raises:
        GradCheckError: an `AssertionError` whose first line names the first
            failing step and its verdict, followed by the whole report.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> @jax.custom_vjp
        ... def square(x):
        ...     return x**2
        >>> square.defvjp(lambda x: (x**2, x), lambda x, g: (3 * x * g,))  # 2x!
        >>> jaxcheck.assert_custom_vjp(square, jnp.arange(3.0))
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: bwd rule with cotangent 0 (seed 0): ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_custom_vjp(fun, *primals, **options))
