"""`taylor_test`: the order of convergence of the Taylor remainder, a verdict that
needs no choice of ε.

Along a random direction v, r(h) = |J(θ + h·v) − J(θ) − h·g·v| falls like h² when
g is the gradient and like h when it is not. Every step of a direction is
evaluated in one batch (`vmap` inside `jit`, chunked to the memory budget), and
the order is read on the host; see `_verdict.taylor_report`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any, Unpack

import jax.numpy as jnp
import numpy as np

from .._base import validate as _validate
from .._base.errors import GradCheckError
from .._base.options import CheckOptions, make_options
from .._engine.along import random_directions, values_along
from .._engine.analytic import analytic_side, fun_name
from .._engine.blocks import Block, bytes_per_evaluation, chunk_length
from .._engine.numerical import prepare
from .._engine.steps import NOISE_FACTOR, host_dtype, taylor_steps
from .._runtime.sharding import host_value
from .._tree.pytree import format_path
from .._verdict.taylor_report import TaylorDirection, TaylorReport, judge_direction

DEFAULT_NUM_STEPS = 12
_TAKES = ("seed", "chunk_size", "memory_budget")  # of the `CheckOptions`


def _check_arguments(num_steps: Any, h0: Any) -> None:
    if not isinstance(num_steps, numbers.Integral) or isinstance(num_steps, bool):
        raise TypeError(f"`num_steps` must be an int, got {num_steps!r}.")
    if num_steps < 3:
        raise ValueError(
            f"`num_steps` must be at least 3 to fit an order, got {num_steps}; the "
            f"default is {DEFAULT_NUM_STEPS}."
        )
    _validate.check_tolerance("h0", h0)
    if h0 == 0:
        raise ValueError(
            "`h0` must be positive, got 0; it is the largest step, relative to "
            "max(1, |θᵢ|). Pass None for the dtype's default."
        )


def _first_order(leaves, thetas, grads, directions, chosen, steps, u_grad):
    """h·g·v with the step actually taken (θ + h·v rounded to each leaf's dtype),
    and the round-off level of g·(that step), per step."""
    linear = np.zeros(len(steps))
    magnitude = np.zeros(len(steps))
    for i in chosen:
        dtype, theta, g = leaves[i].dtype, thetas[i], grads[i]
        for k, h in enumerate(steps):
            moved = theta + np.asarray(h, dtype) * directions[i]
            delta = moved.astype(host_dtype(dtype)) - theta.astype(host_dtype(dtype))
            linear[k] += float(np.sum(g * delta).real)
            magnitude[k] += float(np.sum(np.abs(g * delta)))
    return linear, u_grad * magnitude


def taylor_test(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    grad: Any = None,
    num_steps: int = DEFAULT_NUM_STEPS,
    h0: float | None = None,
    **options: Unpack[CheckOptions],
) -> TaylorReport:
    """Checks a gradient by the order of convergence of the Taylor remainder.

    Along a random direction v, the remainder r(h) = |J(θ + h·v) − J(θ) − h·g·v|
    is O(h²) when g is the gradient of J and O(h) when it is not. It is evaluated
    at the steps h = h0·2⁻ᵏ, k = 0 … num_steps − 1, all in one batch (`vmap` inside
    `jit`, chunked to `memory_budget`), and the order is the least-squares slope of
    log r against log h at the smallest steps whose remainder stands well above the
    round-off of J. An order of at least 1.8 passes; so does a remainder at
    round-off level at every step (J linear along v). No ε to choose.

    There is one global direction, over every perturbed entry, and one per leaf (the
    global one restricted to that leaf), so a wrong leaf is located: its order is
    ≈ 1 while the others' are ≈ 2. Entry i of v is z·max(1, |θᵢ|) with z standard
    normal drawn from `numpy.random.default_rng(seed)`, so a step moves every entry
    by about h relative to its size. Leaves are treated as in `check_grad`: floating
    and complex leaves are moved, every other leaf passes through unchanged.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters.
        *args: further arguments of `fun`, never perturbed.
        grad: the gradient to test: None (default) for `jax.grad(fun)`, a callable
            `grad(params, *args)`, or a pytree of values matching `params`.
        num_steps: how many steps, each half the previous (default 12).
        h0: the largest step; None picks one from the dtypes: 2⁻¹⁰ for float64,
            1/4 for float32 and narrower.
        **options: of the `CheckOptions`, `seed` (of the random directions,
            default 0), `chunk_size` (steps evaluated per batch) and
            `memory_budget`.

    Returns:
        A `TaylorReport`: `.ok`, `.directions` (steps, remainders, local orders,
        fitted order and verdict of each), `.failures`, `str(report)` and
        `.to_dict()`.

    Raises:
        TypeError, ValueError: for an invalid argument, and for whatever in `fun`,
            `params` or `grad` `check_grad` rejects (a non-scalar output, nothing
            floating to move, a `grad` unlike `params`, J(θ) not finite).

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> loss = lambda p: jnp.sum(jnp.sin(p["w"])) + jnp.sum(p["b"] ** 3)
        >>> params = {"w": jnp.arange(3.0), "b": jnp.ones(2)}
        >>> report = jaxcheck.taylor_test(loss, params)
        >>> report.ok, [round(d.order) for d in report.directions]
        (True, [2, 2, 2])
        >>> wrong = lambda p: {"w": jnp.cos(p["w"]), "b": 2 * p["b"] ** 2}
        >>> report = jaxcheck.taylor_test(loss, params, grad=wrong)
        >>> [(d.name, round(d.order)) for d in report.failures]
        [('all', 1), ("['b']", 1)]
    """
    _check_arguments(num_steps, h0)
    checked = make_options("taylor_test", options, takes=_TAKES)
    seed, chunk_size = checked.seed, checked.chunk_size
    memory_budget = checked.memory_budget
    prepared = prepare(fun, params, args, checked)
    # The steps are evaluated by one compiled kernel, reused by the next test of
    # the same shapes: compile the gradient beside it rather than run it op by op.
    prepared = dataclasses.replace(prepared, eager=False)
    tree = prepared.tree
    _, grads = analytic_side(grad, prepared, params, args)
    leaves = tree.leaves
    grads = [
        np.asarray(g).astype(host_dtype(x.dtype))
        for g, x in zip(grads, leaves, strict=True)
    ]
    thetas = [host_value(tree.dynamic[x.position]) for x in leaves]
    directions = random_directions(leaves, tree.dynamic, seed)
    # The coarsest precision in play sets the round-off of J and of g·v.
    coarsest = max(
        [x.dtype for x in leaves] + [prepared.out_dtype],
        key=lambda d: float(jnp.finfo(d).eps),
    )
    u = float(jnp.finfo(coarsest).eps)
    steps = taylor_steps(coarsest, num_steps, h0)
    itemsize = max(x.dtype.itemsize for x in leaves)
    block = Block(tuple(x.position for x in leaves), tuple(x.shape for x in leaves))
    per_eval = bytes_per_evaluation(block, itemsize, prepared.fun_bytes)
    chunk = chunk_length(num_steps + 1, per_eval, memory_budget, chunk_size)
    device_directions = tuple(jnp.asarray(d) for d in directions)
    named = [("all", range(len(leaves)))] + [
        (format_path(x.path), [i]) for i, x in enumerate(leaves)
    ]
    results: list[TaylorDirection] = []
    for name, chosen in named:
        size = sum(leaves[i].size for i in chosen)
        weights = np.zeros(len(leaves))
        weights[list(chosen)] = 1.0
        grad_finite = all(np.all(np.isfinite(grads[i])) for i in chosen)
        if size == 0:
            results.append(_empty(name, steps))
            continue
        values = values_along(
            prepared, device_directions, jnp.asarray(weights), steps, chunk
        )
        linear, grad_noise = _first_order(
            leaves, thetas, grads, directions, chosen, steps, u
        )
        with np.errstate(invalid="ignore", over="ignore"):
            remainders = np.abs(values[1:] - values[0] - linear)
            scale = np.maximum(np.abs(values[0]), np.abs(values[1:]))
        floors = NOISE_FACTOR * (u * scale + grad_noise)
        results.append(
            judge_direction(name, size, steps, remainders, floors, grad_finite)
        )
    return TaylorReport(
        fun_name=fun_name(fun),
        seed=int(seed),
        ok=all(d.ok for d in results),
        directions=tuple(results),
        skipped=tuple((format_path(p), why) for p, why in tree.skipped),
    )


def _empty(name: str, steps: np.ndarray) -> TaylorDirection:
    zeros = tuple(0.0 for _ in steps)
    return TaylorDirection(
        name=name,
        size=0,
        steps=tuple(float(x) for x in steps),
        remainders=zeros,
        floors=zeros,
        orders=zeros[1:],
        order=math.nan,
        ok=True,
        verdict="empty leaf: nothing to move",
    )


def assert_taylor(
    fun: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> TaylorReport:
    """Like `taylor_test`, but raises `GradCheckError` when a direction fails.

    Takes the same arguments as `taylor_test` and returns its report when every
    direction passes.

    Raises:
        GradCheckError: an `AssertionError` whose message is the report, ending in
            the failing leaves' paths and orders.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> loss = lambda p: jnp.sum(jnp.exp(p["a"])) * p["b"]
        >>> params = {"a": jnp.zeros(3), "b": jnp.array(2.0)}
        >>> _ = jaxcheck.assert_taylor(loss, params)
        >>> wrong = lambda p: {"a": p["b"] * jnp.exp(p["a"]), "b": jnp.array(0.0)}
        >>> jaxcheck.assert_taylor(loss, params, grad=wrong)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: Taylor test of `<lambda>`: ...
        ...
        FAILED: the gradient is wrong along ['b'] (order 1.00).
    """
    report = taylor_test(fun, params, *args, **options)
    if not report.ok:
        raise GradCheckError(str(report))
    return report
