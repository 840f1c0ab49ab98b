"""The steps shared by `check_custom_vjp` and `check_custom_jvp`.

A rule is checked in the order a user would debug it: the primal output of the
rule against `fun`'s, the structure of what the rule returns, its values against
finite differences (several cotangents or tangents, element by element), the
arguments it must treat as symbolic zeros, and its behaviour under `jit` and
`vmap` (a batched VJP or JVP must equal a loop of them). This module holds what
both checks need for that: the rule's validation, the split of the primals at
`nondiff_argnums`, the comparison of two pytrees up to rounding, the jit and vmap
steps, and the final `RuleReport`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.options import Options, make_options
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._verdict.report import GradCheckReport
from .._verdict.rule_report import RuleReport, RuleStep

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


def rule_options(**options: Any) -> Options:
    """The validated options of every value check of a rule."""
    return make_options(**options, methods=JACOBIAN_METHODS)


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


def steps_report(fun: Any, kind: str, steps: list[RuleStep]) -> RuleReport:
    """The `RuleReport` of the steps run, in order."""
    return RuleReport(fun_name=fun_name(fun.fun), kind=kind, steps=tuple(steps))
