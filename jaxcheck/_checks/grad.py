"""`check_grad` and `assert_grad`: analytic gradient against finite differences."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Unpack

from .._base.errors import raise_if_failed
from .._base.options import CheckOptions, make_options
from .._verdict.report import GradCheckReport
from .argnums import check_order, select
from .hessian import hessian_check
from .loss import gradient_report


def check_grad(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    grad: Any = None,
    argnums: int | tuple[int, ...] = 0,
    has_aux: bool = False,
    order: int = 1,
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Compares the gradient of a scalar `fun` with finite differences, entry by entry.

    Every floating entry of `params` is perturbed by ±h and all the perturbed
    evaluations run batched (`vmap` inside `jit`, in memory-bounded chunks). Entry i
    passes when |aᵢ − nᵢ| ≤ atol + rtol·max(|aᵢ|, |nᵢ|) and both are finite, where
    by default atol is the entry's own error bound; the tolerance is never scaled
    by the size of an array, so a large leaf cannot hide a wrong small one. An
    entry that does not pass at once is re-evaluated at 2h (Richardson), at a
    smaller step where `fun` is not finite, and accepted as a kink where its
    analytic value lies between the one-sided slopes (see the guide "Kinks and the
    other verdicts", docs/guides/verdicts.md).
    Non-floating leaves (integer and bool arrays, PRNG keys, Python ints, strings,
    callables, None) pass through unperturbed and are listed in the report as not
    perturbed. A Python float leaf is differentiable, as in
    `jax.grad`.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters.
        *args: further arguments of `fun` (data, PRNG keys), never perturbed.
        grad: the analytic gradient to check. None (default) uses `jax.grad(fun)`,
            so the `custom_vjp`/`custom_jvp` rules inside `fun` are what is checked;
            a callable `grad(params, *args)` (a hand-derived gradient); or a pytree
            of values. Either must match `params` in structure, shapes and dtypes
            (None or anything at non-floating leaves).
        argnums: which positional arguments of `fun` to differentiate, as in
            `jax.grad`: 0 (`params`, the default), another int, or a tuple (then
            `grad` is a tuple and paths start `[k]`, the k-th selected argument).
        has_aux: `fun` returns `(value, aux)`; aux is ignored, as in `jax.grad`.
        order: 1 (default). `order=2` is a deprecated alias of `check_hessian`
            (mode="fast" as its `hvp=True`).
        **options: the `CheckOptions` (method, eps, atol, rtol, nondet_tol,
            shadow, chunk_size, memory_budget, mode, samples, seed, progress,
            devices, resume), each documented there.

    Returns:
        A `GradCheckReport`: `.ok`, `.rel_diff`, `.leaves` (a summary per leaf,
        whose `.checked` says how the leaf was checked), `.seconds` and
        `.compile_seconds` (time spent tracing and compiling),
        `.worst(k)`, `str(report)` and `.to_dict()`.

    Raises:
        TypeError, ValueError: for invalid arguments, a non-scalar or non-real
            output, no floating entries in `params`, a `grad` that does not match
            `params`, or a non-finite value of `fun` at `params`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> def loss(params, x):
        ...     return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)
        >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
        >>> report = jaxcheck.check_grad(loss, params, jnp.ones((4, 3)))
        >>> report.ok
        True
        >>> bad = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}  # a wrong gradient
        >>> jaxcheck.check_grad(loss, params, jnp.ones((4, 3)), grad=bad).ok
        False
        >>> fast = jaxcheck.check_grad(loss, params, jnp.ones((4, 3)), mode="fast")
        >>> [leaf.checked for leaf in fast.leaves]
        ['3 directions', '3 directions']
    """
    if check_order(order, grad) == 2:
        return _deprecated_order_2(fun, params, args, argnums, has_aux, options)
    fun, params, args, grad = select(fun, params, args, grad, argnums, has_aux)
    return gradient_report(fun, params, args, grad, make_options("check_grad", options))


def _deprecated_order_2(fun, params, args, argnums, has_aux, options) -> Any:
    """`check_grad(..., order=2)`: `check_hessian`, with mode="fast" as `hvp=True`."""
    options = dict(options)
    mode = options.pop("mode", "full")
    hvp = mode == "fast"
    warnings.warn(
        "check_grad(..., order=2) is deprecated: call check_hessian(fun, params, "
        f"*args{', hvp=True' if hvp else ''}), which checks the same Hessian.",
        DeprecationWarning,
        stacklevel=3,
    )
    if "resume" in options:
        raise ValueError(
            "`resume` records the evaluations of a gradient check (order=1); a "
            "Hessian check keeps no record: drop `resume`."
        )
    if mode == "sample":
        raise ValueError(
            'mode="sample" checks sampled entries of a gradient (order=1); for '
            "the Hessian use check_hessian (all of it) or check_hessian(..., "
            "hvp=True) (one Hessian-vector product)."
        )
    return hessian_check(
        "check_grad", fun, params, args, hvp=hvp, tangents=None, autodiff=None,
        argnums=argnums, has_aux=has_aux, options=options,
    )  # fmt: skip


def assert_grad(
    fun: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> GradCheckReport:
    """Like `check_grad`, but raises `GradCheckError` when the gradient is wrong.

    Takes the same arguments as `check_grad` and returns its report when the check
    passes, so it drops into a test as one line.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict
            (the failing leaves and the worst entry by path and index), followed
            by the report: the leaf table, the worst entries and the verdict.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> _ = jaxcheck.assert_grad(loss, {"w": jnp.arange(3.0)})
        >>> wrong = lambda p: {"w": 3 * p["w"]}  # should be 2 * w
        >>> jaxcheck.assert_grad(loss, {"w": jnp.arange(3.0)}, grad=wrong)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: 2 of 3 entries differ, in ['w']; worst ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_grad(fun, params, *args, **options))
