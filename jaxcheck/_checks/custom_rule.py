"""`check_custom_jvp` and `check_custom_vjp`: a rule checked from every side.

A rule is checked in the order a user would debug it, by one driver for both
kinds: the primal output of the rule against `fun`'s, the structure of what the
rule returns, its values against finite differences (several tangents or
cotangents, element by element; a JVP rule also through its transpose, the VJP
`jax.grad` runs, and with each differentiable argument moved alone while the
others' tangents are symbolic zeros), and its behaviour under `jit` and `vmap`
(a batched JVP or VJP must equal a loop of them). A failed structural step ends
the check.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from .._base.errors import raise_if_failed
from .._base.options import NO_RESUME, CheckOptions, Options, make_options, tracked
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport
from .._verdict.rule_report import RuleReport, RuleStep
from .directions import cotangents_for, tangents_for
from .jvp import jvp_report
from .vjp import check_like_primals, vjp_report

BATCH = 3  # cotangents or tangents in the vmap checks


@dataclasses.dataclass(frozen=True)
class Differentiable:
    """`fun` as a function of its differentiable arguments only; the arguments at
    `nondiff_argnums` are fixed to `nondiff`."""

    fun: Callable[..., Any]
    nondiff_argnums: tuple[int, ...]
    nondiff: tuple[Any, ...]

    def __call__(self, *diff: Any) -> Any:
        return self.fun(*merge(self.nondiff_argnums, self.nondiff, diff))

    def __repr__(self) -> str:
        return getattr(self.fun, "__name__", repr(self.fun))

    __hash__ = object.__hash__  # the fixed arguments may be arrays


def merge(nondiff_argnums, nondiff, diff) -> list[Any]:
    """Every positional argument, in order: `nondiff` at `nondiff_argnums`, `diff`
    at the others."""
    nondiff_iter, diff_iter = iter(nondiff), iter(diff)
    n = len(nondiff) + len(diff)
    return [next(nondiff_iter if i in nondiff_argnums else diff_iter) for i in range(n)]


def check_rule(fun: Any, kind: str) -> None:
    """Raises unless `fun` is a `jax.custom_vjp` or `jax.custom_jvp` function (as
    `kind` says) whose rule is defined."""
    cls = jax.custom_vjp if kind == "vjp" else jax.custom_jvp
    if not isinstance(fun, cls):
        raise TypeError(
            f"`fun` must be a function decorated with @jax.custom_{kind}, got "
            f"{type(fun).__name__}; to check the derivative of any function use "
            f"check_{kind}."
        )
    if (fun.fwd if kind == "vjp" else getattr(fun, "jvp", None)) is None:
        define = "fun.defvjp(fwd, bwd)" if kind == "vjp" else "fun.defjvp(jvp)"
        raise ValueError(f"`fun` has no rule yet: define it with {define}.")


def split_primals(
    fun: Any, primals: tuple[Any, ...]
) -> tuple[tuple, tuple, Differentiable]:
    """The primals at `nondiff_argnums`, the others, and `fun` of the others only."""
    argnums = tuple(fun.nondiff_argnums)
    try:
        signature = inspect.signature(fun.fun)
    except (TypeError, ValueError):  # no signature to read
        signature = None
    try:
        fits = signature is None or bool(signature.bind(*primals))
    except TypeError:
        fits = False
    if not fits or any(i >= len(primals) for i in argnums):
        raise ValueError(
            f"`primals` do not fit `fun`{signature or ''} (nondiff_argnums="
            f"{argnums}); pass every positional argument of `fun`, in order."
        )
    nondiff = tuple(primals[i] for i in argnums)
    diff = tuple(x for i, x in enumerate(primals) if i not in argnums)
    return nondiff, diff, Differentiable(fun, argnums, nondiff)


def _first_difference(actual: Any, expected: Any) -> str | None:
    """Where two pytrees of arrays first differ beyond the dtype's tolerance."""
    a_leaves = jax.tree_util.tree_leaves(actual)
    paths = jax.tree_util.tree_flatten_with_path(expected)[0]
    if len(a_leaves) != len(paths):
        return f"{len(a_leaves)} leaves instead of {len(paths)}"
    for a, (key_path, e) in zip(a_leaves, paths, strict=True):
        where = jax.tree_util.keystr(key_path)
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape or a.dtype != e.dtype:
            return f"{where}: {a.dtype}{list(a.shape)}, not {e.dtype}{list(e.shape)}"
        if a.dtype.kind not in "fc":
            continue
        # Only rounding may differ: XLA fuses and reorders differently under
        # jit and vmap. A few hundred units in the last place of the largest entry.
        u = float(jnp.finfo(e.dtype).eps)
        largest = float(np.max(np.abs(e), initial=0.0))
        tol = 256 * u
        close = np.isclose(a, e, rtol=tol, atol=tol * largest, equal_nan=True)
        if not np.all(close):
            index = tuple(int(i) for i in np.argwhere(~close)[0])
            at = list(index) if index else ""
            return f"{where}{at}: {a[index]} instead of {e[index]}"
    return None


def same_step(actual: Any, expected: Any, what: str, hint: str) -> RuleStep:
    """A step that holds when two pytrees agree up to rounding."""
    where = _first_difference(actual, expected)
    if where is None:
        return RuleStep(what, True, "")
    return RuleStep(what, False, f"differs at {where}. {hint}")


def primal_output_step(out: Any, fun_out: Any, rule: str) -> RuleStep:
    """The step that holds when the rule's primal output is `fun`'s output."""
    return same_step(
        out,
        fun_out,
        f"the {rule} rule's primal output equals `fun`'s output",
        f"The {rule} rule must return exactly what `fun` returns as its primal.",
    )


def value_step(what: str, report: GradCheckReport) -> RuleStep:
    """The step of one value check: its report's verdict."""
    return RuleStep(what, report.ok, report.verdict, report)


def _batched(floats: list[jax.Array]) -> list[jax.Array]:
    """`BATCH` nearby points: θ, θ + 0.1, θ + 0.2 for every floating leaf."""
    return [jnp.stack([x + 0.1 * k for k in range(BATCH)]) for x in floats]


def _stacked(trees: list[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def transformation_steps(linear: Callable, floats, directions, kind: str):
    """`linear(floats, direction)` (a VJP or JVP) under jit and vmap, against eager
    calls and a loop: one step each."""
    hint = (
        f"The {kind} rule is not a pure function of its inputs: check for Python "
        "side effects, host callbacks and shapes read from the data."
    )
    jitted = jax.jit(linear)
    eager = linear(floats, directions[0])
    yield same_step(
        jitted(floats, directions[0]), eager, f"the {kind} is the same under jit", hint
    )
    batch_hint = (
        f"The {kind} rule mishandles a batch dimension: check host callbacks "
        "(`vmap_method`), `custom_vmap` rules and axes taken from `.shape`."
    )
    what = f"the {kind} under vmap over {BATCH} directions equals a loop"
    loop = _stacked([jitted(floats, d) for d in directions])
    batched = jax.jit(jax.vmap(linear, in_axes=(None, 0)))(floats, _stacked(directions))
    yield same_step(batched, loop, what, batch_hint)
    what = f"the {kind} under vmap over {BATCH} primals and directions equals a loop"
    points = _batched(floats)
    loop = _stacked(
        [jitted([x[k] for x in points], d) for k, d in enumerate(directions)]
    )
    batched = jax.jit(jax.vmap(linear))(points, _stacked(directions))
    yield same_step(batched, loop, what, batch_hint)


def seeded(options: Options, k: int) -> Options:
    """The options of the k-th of several value checks: its own seed."""
    return dataclasses.replace(options, seed=options.seed + k)


def check_count(name: str, value: Any) -> None:
    """Raises unless `value` (`num_cotangents` or `num_tangents`) is a positive int."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def nondiff_note(fun: Any) -> str:
    """How the steps number the primals when `fun` has `nondiff_argnums`."""
    if not fun.nondiff_argnums:
        return ""
    return f" (primals are numbered without the nondiff_argnums {fun.nondiff_argnums})"


def _structure_steps(kind, fun, primals, nondiff, diff, f, seed, note):
    """(a) and (b): the rule's primal output, and the structure of what it
    returns."""
    if kind == "jvp":
        leaves, treedef = jax.tree_util.tree_flatten(diff)
        if not all(is_differentiable_leaf(x) for x in leaves):
            return  # a tangent is not an array: nothing to call the rule with
        t = jax.tree_util.tree_unflatten(treedef, tangents_for(diff, None, seed))
        out, t_out = fun.jvp(*nondiff, diff, t)
        fun_out = fun.fun(*primals)
        yield primal_output_step(out, fun_out, "jvp")
        zeros = lambda x: np.zeros(np.shape(x), x.dtype)  # noqa: E731
        yield same_step(
            jax.tree_util.tree_map(zeros, t_out),
            jax.tree_util.tree_map(zeros, fun_out),
            "the jvp rule's output tangent is shaped like `fun`'s output",
            "It must have the structure, shapes and dtypes of `fun`'s output.",
        )
    elif not fun.symbolic_zeros:  # with symbolic zeros fwd takes wrapped primals
        out, residuals = fun.fwd(*primals)
        yield primal_output_step(out, fun.fun(*primals), "fwd")
        c = cotangents_for(f, diff, None, seed)
        what = "the bwd rule returns a cotangent like each differentiable primal"
        try:
            check_like_primals(fun.bwd(*nondiff, residuals, c), diff, "the bwd rule")
            yield RuleStep(what, True, "")
        except (TypeError, ValueError) as error:
            yield RuleStep(what, False, f"{error}{note}")


def _value_steps(kind, f, diff, count, options, note) -> Iterator[RuleStep]:
    """(c) and (d): the rule's values against finite differences."""
    seed = options.seed
    for k in range(count):
        if kind == "jvp":
            what = f"jvp rule with tangent {k} (seed {seed + k}){note}"
            report = jvp_report(f, diff, None, None, seeded(options, k))
        else:
            what = f"bwd rule with cotangent {k} (seed {seed + k}){note}"
            report = vjp_report(f, diff, None, None, seeded(options, k))
        yield value_step(what, report)
    if kind == "vjp":
        return
    what = f"transposed jvp rule (the VJP jax.grad runs){note}"
    yield value_step(what, vjp_report(f, diff, None, None, options))
    if len(diff) > 1:
        for i in range(len(diff)):
            others = tuple(j for j in range(len(diff)) if j != i)
            alone = Differentiable(f, others, tuple(diff[j] for j in others))
            what = (
                f"jvp rule with a tangent for primals[{i}] only, symbolic zeros "
                f"for the others{note}"
            )
            yield value_step(what, jvp_report(alone, (diff[i],), None, None, options))


def _rule_check(
    kind: str, fun: Any, primals: tuple[Any, ...], count: int, options: Options
) -> RuleReport:
    """Every step of `check_custom_{kind}`, in order."""
    nondiff, diff, f = split_primals(fun, primals)
    note = nondiff_note(fun)
    seed = options.seed
    steps = list(_structure_steps(kind, fun, primals, nondiff, diff, f, seed, note))
    if all(step.ok for step in steps):
        steps.extend(_value_steps(kind, f, diff, count, options, note))
        of_floats, floats = of_some_leaves(f, diff, is_differentiable_leaf)
        floats = [jnp.asarray(x) for x in floats]
        if kind == "jvp":

            def linear(floats, t):
                return jax.jvp(of_floats, (floats,), (t,))[1]

            directions = [tangents_for(diff, None, seed + k) for k in range(BATCH)]
        else:

            def linear(floats, c):
                return jax.vjp(of_floats, floats)[1](c)[0]

            directions = [cotangents_for(f, diff, None, seed + k) for k in range(BATCH)]
        steps.extend(transformation_steps(linear, floats, directions, kind.upper()))
    return RuleReport(
        fun_name=fun_name(fun.fun), kind=f"custom_{kind}", steps=tuple(steps)
    )


def _rule_options(check: str, options: dict[str, Any]) -> Options:
    return make_options(
        check, options, takes=NO_RESUME, methods=JACOBIAN_METHODS, modes=("full",)
    )


def check_custom_jvp(
    fun: Any, *primals: Any, num_tangents: int = 3, **options: Unpack[CheckOptions]
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
        **options: the `CheckOptions` of every value check, but `resume`, and
            mode="full" only; `seed` draws the first random tangent.

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
    check_count("num_tangents", num_tangents)
    checked = _rule_options("check_custom_jvp", options)
    primals = tuple(primals)
    return tracked(
        checked, lambda: _rule_check("jvp", fun, primals, num_tangents, checked)
    )


def check_custom_vjp(
    fun: Any, *primals: Any, num_cotangents: int = 3, **options: Unpack[CheckOptions]
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
        **options: the `CheckOptions` of every value check, but `resume`, and
            mode="full" only; `seed` draws the first random cotangent.

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
    check_count("num_cotangents", num_cotangents)
    checked = _rule_options("check_custom_vjp", options)
    return tracked(
        checked,
        lambda: _rule_check("vjp", fun, tuple(primals), num_cotangents, checked),
    )


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
