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
from typing import Any, Unpack

import jax

from .._base import validate as _validate
from .._base.errors import raise_if_failed
from .._base.options import NO_RESUME, CheckOptions, make_options, tracked
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.numerical_jacobian import of_some_leaves
from .._tree.pytree import is_differentiable_leaf, split
from .._verdict.jacobian_report import JacobianReport
from .argnums import select
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


def check_hessian(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    hvp: bool = False,
    tangents: Any = None,
    autodiff: Sequence[str] | None = None,
    argnums: int | tuple[int, ...] = 0,
    has_aux: bool = False,
    **options: Unpack[CheckOptions],
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
        autodiff: which of "rev" (jax.jacrev) and "fwd" (jax.jacfwd) of the
            gradient to compare; None (default) both where defined.
        argnums: as in `check_grad` and `jax.hessian`: which positional
            arguments are differentiated (the steps apply to them).
        has_aux: as in `check_grad` and `jax.hessian`: whether `fun` returns
            `(value, aux)`.
        **options: the `CheckOptions`, but `resume`, and mode="full" only (for
            one Hessian-vector product pass `hvp=True`); `seed` draws the
            random tangent.

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
    return hessian_check(
        "check_hessian", fun, params, args, hvp=hvp, tangents=tangents,
        autodiff=autodiff, argnums=argnums, has_aux=has_aux, options=options,
    )  # fmt: skip


def hessian_check(
    check: str,
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    *,
    hvp: bool,
    tangents: Any,
    autodiff: Any,
    argnums: Any,
    has_aux: Any,
    options: dict[str, Any],
) -> JacobianReport:
    """`check_hessian`, called by the public function `check` (it names the
    check in errors about options): validation, then the report."""
    _validate.check_fun(fun)
    if not isinstance(hvp, bool):
        raise TypeError(f"`hvp` must be True or False, got {hvp!r}.")
    if tangents is not None and not hvp:
        raise ValueError("`tangents` is the vector of a Hessian-vector product: "
                         "pass it with hvp=True.")  # fmt: skip
    autodiff = check_autodiff(autodiff)
    name = f"Hessian of {fun_name(fun)}"
    fun, params, args, _ = select(fun, params, args, None, argnums, has_aux)
    options = make_options(
        check, options, takes=NO_RESUME, methods=JACOBIAN_METHODS,
        modes=("full",), mode_hint="For one Hessian-vector product pass hvp=True.",
    )  # fmt: skip
    _validate.check_has_entries(split(fun, params, args))
    if hvp:
        t = None if tangents is None else (tangents,)
        return tracked(options, lambda: jvp_report(
            _Bound(Gradient(fun), args), (params,), None, t, options,
            out_name="grad", mode="hvp", name=name,
        ))  # fmt: skip
    return tracked(options, lambda: jacobian_check(
        Gradient(fun), params, args, name=name, out_name="grad", in_name="params",
        options=options, autodiff=autodiff,
    ))  # fmt: skip


def assert_hessian(
    fun: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> JacobianReport:
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
