"""`check_custom_vjp` and `check_custom_jvp`: a rule checked from every side.

A rule is checked in the order a user would debug it: the primal output of the
rule against `fun`'s, the structure of what the rule returns, its values against
finite differences (several cotangents or tangents, element by element), the
arguments it must treat as symbolic zeros, and its behaviour under `jit` and
`vmap` (a batched VJP or JVP must equal a loop of them).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.errors import raise_if_failed
from .._base.options import DEFAULT_MEMORY_BUDGET, Options, make_options
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport
from .._verdict.rule_report import RuleReport, RuleStep
from .vjp_jvp import (
    check_like_primals,
    cotangents_for,
    jvp_report,
    tangents_for,
    vjp_report,
)

_BATCH = 3  # cotangents or tangents in the vmap checks


@dataclasses.dataclass(frozen=True)
class _Differentiable:
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
    nondiff_iter, diff_iter = iter(nondiff), iter(diff)
    n = len(nondiff) + len(diff)
    return [next(nondiff_iter if i in nondiff_argnums else diff_iter) for i in range(n)]


def _rule(fun: Any, kind: str) -> None:
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


def _split(fun: Any, primals: tuple[Any, ...]) -> tuple[tuple, tuple, _Differentiable]:
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
    return nondiff, diff, _Differentiable(fun, argnums, nondiff)


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


def _same_step(actual: Any, expected: Any, what: str, hint: str) -> RuleStep:
    """A step that holds when two pytrees agree up to rounding."""
    where = _first_difference(actual, expected)
    if where is None:
        return RuleStep(what, True, "")
    return RuleStep(what, False, f"differs at {where}. {hint}")


def _primal_output_step(out: Any, fun_out: Any, rule: str) -> RuleStep:
    return _same_step(
        out,
        fun_out,
        f"the {rule} rule's primal output equals `fun`'s output",
        f"The {rule} rule must return exactly what `fun` returns as its primal.",
    )


def _value_step(what: str, report: GradCheckReport) -> RuleStep:
    return RuleStep(what, report.ok, report.verdict, report)


def _batched(floats: list[jax.Array]) -> list[jax.Array]:
    """`_BATCH` nearby points: θ, θ + 0.1, θ + 0.2 for every floating leaf."""
    return [jnp.stack([x + 0.1 * k for k in range(_BATCH)]) for x in floats]


def _stacked(trees: list[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _transformation_steps(linear: Callable, floats, directions, kind: str):
    """`linear(floats, direction)` (a VJP or JVP) under jit and vmap, against eager
    calls and a loop: one step each."""
    hint = (
        f"The {kind} rule is not a pure function of its inputs: check for Python "
        "side effects, host callbacks and shapes read from the data."
    )
    jitted = jax.jit(linear)
    eager = linear(floats, directions[0])
    yield _same_step(
        jitted(floats, directions[0]), eager, f"the {kind} is the same under jit", hint
    )
    batch_hint = (
        f"The {kind} rule mishandles a batch dimension: check host callbacks "
        "(`vmap_method`), `custom_vmap` rules and axes taken from `.shape`."
    )
    what = f"the {kind} under vmap over {_BATCH} directions equals a loop"
    loop = _stacked([jitted(floats, d) for d in directions])
    batched = jax.jit(jax.vmap(linear, in_axes=(None, 0)))(floats, _stacked(directions))
    yield _same_step(batched, loop, what, batch_hint)
    what = f"the {kind} under vmap over {_BATCH} primals and directions equals a loop"
    points = _batched(floats)
    loop = _stacked(
        [jitted([x[k] for x in points], d) for k, d in enumerate(directions)]
    )
    batched = jax.jit(jax.vmap(linear))(points, _stacked(directions))
    yield _same_step(batched, loop, what, batch_hint)


def _options(**options: Any) -> Options:
    return make_options(**options, methods=JACOBIAN_METHODS)


def _seeded(options: Options, k: int) -> Options:
    """The options of the k-th of several value checks: its own seed."""
    return dataclasses.replace(options, seed=options.seed + k)


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def _nondiff_note(fun: Any) -> str:
    if not fun.nondiff_argnums:
        return ""
    return f" (primals are numbered without the nondiff_argnums {fun.nondiff_argnums})"


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
    _rule(fun, "vjp")
    primals = tuple(primals)
    _check_count("num_cotangents", num_cotangents)
    options = _options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, progress=progress,
        devices=devices,
    )  # fmt: skip
    nondiff, diff, f = _split(fun, primals)
    note = _nondiff_note(fun)
    steps: list[RuleStep] = []
    if not fun.symbolic_zeros:  # with symbolic zeros fwd takes wrapped primals
        out, residuals = fun.fwd(*primals)
        steps.append(_primal_output_step(out, fun.fun(*primals), "fwd"))
        c = cotangents_for(f, diff, None, seed)
        what = "the bwd rule returns a cotangent like each differentiable primal"
        try:
            check_like_primals(fun.bwd(*nondiff, residuals, c), diff, "the bwd rule")
            steps.append(RuleStep(what, True, ""))
        except (TypeError, ValueError) as error:
            steps.append(RuleStep(what, False, f"{error}{note}"))
        if not all(step.ok for step in steps):
            return _report(fun, "custom_vjp", steps)
    for k in range(num_cotangents):
        what = f"bwd rule with cotangent {k} (seed {seed + k}){note}"
        report = vjp_report(f, diff, None, None, _seeded(options, k))
        steps.append(_value_step(what, report))
    of_floats, floats = of_some_leaves(f, diff, is_differentiable_leaf)
    floats = [jnp.asarray(x) for x in floats]

    def vjp(floats, c):
        return jax.vjp(of_floats, floats)[1](c)[0]

    cotangents = [cotangents_for(f, diff, None, seed + k) for k in range(_BATCH)]
    steps.extend(_transformation_steps(vjp, floats, cotangents, "VJP"))
    return _report(fun, "custom_vjp", steps)


def _report(fun: Any, kind: str, steps: list[RuleStep]) -> RuleReport:
    return RuleReport(fun_name=fun_name(fun.fun), kind=kind, steps=tuple(steps))


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
    _rule(fun, "jvp")
    primals = tuple(primals)
    _check_count("num_tangents", num_tangents)
    options = _options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, progress=progress,
        devices=devices,
    )  # fmt: skip
    nondiff, diff, f = _split(fun, primals)
    note = _nondiff_note(fun)
    steps: list[RuleStep] = []
    leaves, treedef = jax.tree_util.tree_flatten(diff)
    if all(is_differentiable_leaf(x) for x in leaves):  # all tangents are arrays
        t = jax.tree_util.tree_unflatten(treedef, tangents_for(diff, None, seed))
        out, t_out = fun.jvp(*nondiff, diff, t)
        fun_out = fun.fun(*primals)
        steps.append(_primal_output_step(out, fun_out, "jvp"))
        zeros = lambda x: np.zeros(np.shape(x), x.dtype)  # noqa: E731
        steps.append(
            _same_step(
                jax.tree_util.tree_map(zeros, t_out),
                jax.tree_util.tree_map(zeros, fun_out),
                "the jvp rule's output tangent is shaped like `fun`'s output",
                "It must have the structure, shapes and dtypes of `fun`'s output.",
            )
        )
        if not all(step.ok for step in steps):
            return _report(fun, "custom_jvp", steps)
    for k in range(num_tangents):
        what = f"jvp rule with tangent {k} (seed {seed + k}){note}"
        report = jvp_report(f, diff, None, None, _seeded(options, k))
        steps.append(_value_step(what, report))
    what = f"transposed jvp rule (the VJP jax.grad runs){note}"
    steps.append(_value_step(what, vjp_report(f, diff, None, None, options)))
    if len(diff) > 1:
        for i in range(len(diff)):
            others = tuple(j for j in range(len(diff)) if j != i)
            alone = _Differentiable(f, others, tuple(diff[j] for j in others))
            what = (
                f"jvp rule with a tangent for primals[{i}] only, symbolic zeros "
                f"for the others{note}"
            )
            report = jvp_report(alone, (diff[i],), None, None, options)
            steps.append(_value_step(what, report))
    of_floats, floats = of_some_leaves(f, diff, is_differentiable_leaf)
    floats = [jnp.asarray(x) for x in floats]

    def jvp(floats, t):
        return jax.jvp(of_floats, (floats,), (t,))[1]

    tangents = [tangents_for(diff, None, seed + k) for k in range(_BATCH)]
    steps.extend(_transformation_steps(jvp, floats, tangents, "JVP"))
    return _report(fun, "custom_jvp", steps)


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
