"""`check_hessian`: second derivatives against finite differences of the gradient.

The Hessian is the Jacobian of the gradient: every floating entry of `params` is
perturbed (batched), `jax.grad(fun)` is evaluated at each perturbation, and the
differences are compared with `jax.jacrev` and `jax.jacfwd` of `jax.grad(fun)`
(reverse-over-reverse and forward-over-reverse). For a model too large for an
N×N matrix, `hvp=True` checks Hessian-vector products instead: the directional
difference of the gradient along a tangent v against `jax.jvp(jax.grad(fun))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax

from .._base import validate as _validate
from .._base.errors import raise_if_failed
from .._base.options import (
    DEFAULT_MEMORY_BUDGET,
    Options,
    full_mode_only,
    make_options,
    tracked,
)
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf, split
from .._verdict.jacobian_report import JacobianReport
from .jacobian import check_autodiff, jacobian_check
from .jvp import jvp_report


@dataclasses.dataclass(frozen=True)
class Gradient:
    """`jax.grad(fun)` at the floating leaves of `params`, None at the others,
    called as `Gradient(fun)(params, *args)`."""

    fun: Callable[..., Any]

    def __call__(self, params: Any, *args: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        of_floats, floats = of_some_leaves(
            lambda p: self.fun(p, *args), (params,), is_differentiable_leaf
        )
        grads = iter(jax.grad(of_floats)(floats))
        out = [next(grads) if is_differentiable_leaf(x) else None for x in leaves]
        return jax.tree_util.tree_unflatten(treedef, out)

    def __repr__(self) -> str:
        return f"gradient of {fun_name(self.fun)}"


@dataclasses.dataclass(frozen=True)
class _Bound:
    """`fun(params, *args)` as a function of `params` alone."""

    fun: Callable[..., Any]
    args: tuple[Any, ...]

    def __call__(self, params: Any) -> Any:
        return self.fun(params, *self.args)

    __hash__ = object.__hash__  # `args` may hold arrays


def hessian_report(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    *,
    hvp: bool = False,
    tangents: Any = None,
    autodiff: Sequence[str] | None = None,
    options: Options,
) -> JacobianReport:
    """The report of the Hessian (or one Hessian-vector product), without raising."""
    _validate.check_fun(fun)
    _validate.check_method(options.method, JACOBIAN_METHODS)
    # The Hessian is that of the floating entries of `params`: say so early if
    # there are none, rather than finding an empty gradient later.
    _validate.check_has_entries(split(fun, params, args))
    name = f"Hessian of {fun_name(fun)}"
    if hvp:
        return jvp_report(
            _Bound(Gradient(fun), args), (params,), None,
            None if tangents is None else (tangents,), options, out_name="grad",
            mode="hvp", name=name,
        )  # fmt: skip
    return jacobian_check(
        Gradient(fun), params, args, name=name, out_name="grad", in_name="params",
        options=options, autodiff=check_autodiff(autodiff),
    )  # fmt: skip


def check_hessian(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    hvp: bool = False,
    tangents: Any = None,
    seed: int = 0,
    autodiff: Sequence[str] | None = None,
    method: str = "central",
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    shadow: bool = True,
    mode: str = "full",
    progress: bool | Callable[[int, int], Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> JacobianReport:
    """Checks the Hessian of a scalar `fun` against finite differences of its gradient.

    Entry (i, j) of `jax.jacrev(jax.grad(fun))` and `jax.jacfwd(jax.grad(fun))` is
    compared with (∇J(θ + h·eⱼ) − ∇J(θ − h·eⱼ))ᵢ / 2h, all perturbations batched.
    So a `custom_jvp` or `custom_vjp` rule whose first derivative is right but
    whose own derivative is wrong (a `stop_gradient` in the rule, a residual saved
    without its dependence on θ) is caught, located as
    `grad<path>[i] × params<path>[j]`. With `hvp=True` only H·v is checked, for a
    tangent v (seeded random or `tangents`), against `jax.jvp` of the gradient:
    two evaluations of the gradient instead of 2N, for large models.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters; its floating leaves are differentiated.
        *args: further arguments of `fun`, never perturbed.
        hvp: check one Hessian-vector product instead of the whole Hessian.
        tangents: with `hvp=True`, the vector v, a pytree like `params`.
        seed: the seed of the random tangent.
        autodiff: which of "rev" (jax.jacrev) and "fwd" (jax.jacfwd) of the
            gradient to compare; None (default) both where defined.
        method, eps, atol, rtol, chunk_size, memory_budget, shadow, progress,
            devices: as in `check_grad`; the steps apply to `params`.
        mode: "full" only (for one Hessian-vector product pass `hvp=True`).

    Returns:
        A `JacobianReport` (`.ok` is also its truth value). It never raises on a
        wrong Hessian; `assert_hessian` does.

    Raises:
        TypeError, ValueError: for invalid arguments.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> @jax.custom_jvp
        ... def sin(x):
        ...     return jnp.sin(x)
        >>> @sin.defjvp
        ... def sin_jvp(p, t):  # right first derivative, its derivative lost
        ...     return jnp.sin(p[0]), jnp.cos(jax.lax.stop_gradient(p[0])) * t[0]
        >>> loss = lambda x: jnp.sum(sin(x))
        >>> jaxcheck.check_grad(loss, jnp.array([0.5, 1.0])).ok
        True
        >>> report = jaxcheck.check_hessian(loss, jnp.array([0.5, 1.0]))
        >>> print(report.verdict)  # doctest: +ELLIPSIS
        FAILED: 4 of 8 entries differ, ... worst grad[1] × params[1] (jacrev): ...
    """
    _validate.check_fun(fun)
    if not isinstance(hvp, bool):
        raise TypeError(f"`hvp` must be True or False, got {hvp!r}.")
    if tangents is not None and not hvp:
        raise ValueError("`tangents` is the vector of a Hessian-vector product: "
                         "pass it with hvp=True.")  # fmt: skip
    options = make_options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, mode=mode,
        progress=progress, devices=devices, methods=JACOBIAN_METHODS,
    )  # fmt: skip
    full_mode_only(options, "check_hessian")
    return tracked(options, lambda: hessian_report(
        fun, params, args, hvp=hvp, tangents=tangents, autodiff=autodiff,
        options=options,
    ))  # fmt: skip


def assert_hessian(fun: Callable[..., Any], params: Any, *args: Any, **options):
    """Like `check_hessian`, but raises `GradCheckError` when an entry differs.

    Takes the same arguments as `check_hessian` and returns its report when
    the check passes.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict,
            naming the failing block and its worst entry, followed by the report.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> _ = jaxcheck.assert_hessian(lambda x: jnp.sum(x**3), jnp.arange(3.0))
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_hessian(fun, params, *args, **options))
