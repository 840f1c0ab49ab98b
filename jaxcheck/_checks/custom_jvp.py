"""`check_custom_jvp`: a `jax.custom_jvp` rule checked from every side.

In the order of `_checks.rule_steps`: the rule's primal output, the structure of its
output tangent, its values against finite differences for several tangents
(`check_jvp`) and those of its transpose (`check_vjp`), each differentiable
argument moved alone while the others' tangents are symbolic zeros, and the JVP
under `jit` and `vmap`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.errors import raise_if_failed
from .._base.options import DEFAULT_MEMORY_BUDGET
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf
from .._verdict.rule_report import RuleReport, RuleStep
from .directions import tangents_for
from .jvp import jvp_report
from .rule_steps import (
    BATCH,
    Differentiable,
    check_count,
    check_rule,
    nondiff_note,
    primal_output_step,
    rule_options,
    same_step,
    seeded,
    split_primals,
    steps_report,
    transformation_steps,
    value_step,
)
from .vjp import vjp_report


def check_custom_jvp(
    fun: Any,
    *primals: Any,
    num_tangents: int = 3,
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
    """Checks a `jax.custom_jvp` rule: output, structure, values, zeros, jit, vmap.

    In order: (a) the rule's primal output equals `fun`'s output; (b) its output
    tangent has the structure, shapes and dtypes of the output; (c) for
    `num_tangents` seeded random tangents the JVP equals finite differences of
    `fun` entry by entry of the output (`check_jvp`), and its transpose (the VJP,
    what `jax.grad` runs) equals them entry by entry of the input (`check_vjp`);
    (d) with several differentiable arguments, each is moved alone while the
    others' tangents are symbolic zeros; the `nondiff_argnums` are never moved;
    (e) the JVP is the same under `jit`, and under `vmap` equals a loop. Second
    derivatives are checked by `check_hessian`.

    Args:
        fun: a function decorated with `jax.custom_jvp`, its rule defined.
        *primals: every positional argument of `fun`, `nondiff_argnums` included.
        num_tangents: how many random tangents check the values.
        seed: the seed of the first random tangent.
        method, eps, atol, rtol, chunk_size, memory_budget, shadow, progress,
            devices: as in `check_grad`, for every value check.

    Returns:
        A `RuleReport` holding each step in the order run (`.steps`; a failed
        structural step ends the check), `.ok` (also its truth value) and the
        value checks' reports (`.reports`). It never raises on a wrong rule;
        `assert_custom_jvp` does.

    Raises:
        TypeError, ValueError: for invalid arguments.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> @jax.custom_jvp
        ... def f(x):
        ...     return jnp.sin(x)
        >>> f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
        <function <lambda> at ...>
        >>> report = jaxcheck.check_custom_jvp(f, jnp.arange(3.0))
        >>> report.ok, len(report.reports)
        (True, 4)
    """
    check_rule(fun, "jvp")
    primals = tuple(primals)
    check_count("num_tangents", num_tangents)
    options = rule_options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, progress=progress,
        devices=devices,
    )  # fmt: skip
    nondiff, diff, f = split_primals(fun, primals)
    note = nondiff_note(fun)
    steps: list[RuleStep] = []
    leaves, treedef = jax.tree_util.tree_flatten(diff)
    if all(is_differentiable_leaf(x) for x in leaves):  # all tangents are arrays
        t = jax.tree_util.tree_unflatten(treedef, tangents_for(diff, None, seed))
        out, t_out = fun.jvp(*nondiff, diff, t)
        fun_out = fun.fun(*primals)
        steps.append(primal_output_step(out, fun_out, "jvp"))
        zeros = lambda x: np.zeros(np.shape(x), x.dtype)  # noqa: E731
        steps.append(
            same_step(
                jax.tree_util.tree_map(zeros, t_out),
                jax.tree_util.tree_map(zeros, fun_out),
                "the jvp rule's output tangent is shaped like `fun`'s output",
                "It must have the structure, shapes and dtypes of `fun`'s output.",
            )
        )
        if not all(step.ok for step in steps):
            return steps_report(fun, "custom_jvp", steps)
    for k in range(num_tangents):
        what = f"jvp rule with tangent {k} (seed {seed + k}){note}"
        report = jvp_report(f, diff, None, None, seeded(options, k))
        steps.append(value_step(what, report))
    what = f"transposed jvp rule (the VJP jax.grad runs){note}"
    steps.append(value_step(what, vjp_report(f, diff, None, None, options)))
    if len(diff) > 1:
        for i in range(len(diff)):
            others = tuple(j for j in range(len(diff)) if j != i)
            alone = Differentiable(f, others, tuple(diff[j] for j in others))
            what = (
                f"jvp rule with a tangent for primals[{i}] only, symbolic zeros "
                f"for the others{note}"
            )
            report = jvp_report(alone, (diff[i],), None, None, options)
            steps.append(value_step(what, report))
    of_floats, floats = of_some_leaves(f, diff, is_differentiable_leaf)
    floats = [jnp.asarray(x) for x in floats]

    def jvp(floats, t):
        return jax.jvp(of_floats, (floats,), (t,))[1]

    tangents = [tangents_for(diff, None, seed + k) for k in range(BATCH)]
    steps.extend(transformation_steps(jvp, floats, tangents, "JVP"))
    return steps_report(fun, "custom_jvp", steps)


def assert_custom_jvp(fun: Any, *primals: Any, **options: Any) -> RuleReport:
    """Like `check_custom_jvp`, but raises `GradCheckError` when a step fails.

    Raises:
        GradCheckError: an `AssertionError` whose first line names the first
            failing step and its verdict, followed by the whole report.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> @jax.custom_jvp
        ... def f(x):
        ...     return jnp.sin(x)
        >>> _ = f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
        >>> _ = jaxcheck.assert_custom_jvp(f, jnp.arange(3.0))
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_custom_jvp(fun, *primals, **options))
