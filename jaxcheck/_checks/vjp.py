"""`check_vjp`: one cotangent, checked entry by entry of the input.

A VJP is a gradient: with a cotangent c, the scalar ⟨c, f(θ)⟩ = Σ Re(c · f(θ)) has
the gradient `vjp(c)` in JAX's convention (for a complex θ = x + iy it is
∂/∂x − i·∂/∂y), so `check_vjp` is `check_grad` of that scalar, located by input
entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from .._base import validate as _validate
from .._base.errors import raise_if_failed
from .._base.options import NO_RESUME, CheckOptions, Options, make_options
from .._engine.analytic import fun_name
from .._engine.numerical_jacobian import of_some_leaves
from .._engine.steps import common_dtype
from .._engine.traced_fun import remembering_traces, traced_fun
from .._tree.device import device_value
from .._tree.pytree import is_differentiable_leaf
from .._verdict.report import GradCheckReport
from .directions import check_arguments, cotangents_for, primal_type
from .loss import gradient_report


@dataclasses.dataclass(frozen=True)
class _ArgKey:
    """The pytree key of primal k: prints as `primals[k]`."""

    idx: int

    def __str__(self) -> str:
        return f"primals[{self.idx}]"


class Primals(tuple):
    """The tuple of positional arguments, whose leaf paths start `primals[k]`."""


jax.tree_util.register_pytree_with_keys(
    Primals,
    lambda p: (tuple((_ArgKey(i), x) for i, x in enumerate(p)), None),
    lambda _, children: Primals(children),
    flatten_func=lambda p: (tuple(p), None),
)


@jax.jit  # one program per shape: eagerly, one dispatch instead of many
def _pair(cotangents: list[jax.Array], out: list[jax.Array]) -> jax.Array:
    """Σ Re(c · o) over the leaves, in their common dtype, cast explicitly (a
    user may have made promotion strict); a zero cotangent pairs to 0 even with
    an infinite output entry."""
    terms = []
    for c, o in zip(cotangents, out, strict=True):
        dtype = common_dtype([c.dtype, o.dtype])
        c, o = c.astype(dtype), o.astype(dtype)
        terms.append(jnp.sum(jnp.real(jnp.where(c == 0, jnp.zeros_like(c), c * o))))
    dtype = common_dtype([t.dtype for t in terms])
    return sum((t.astype(dtype) for t in terms[1:]), terms[0].astype(dtype))


@dataclasses.dataclass(frozen=True)
class Pairing:
    """⟨c, fun(*primals)⟩ = Σ Re(c · fun(*primals)), called as (primals, c)."""

    fun: Callable[..., Any]

    def __call__(self, primals: tuple[Any, ...], cotangents: Any) -> jax.Array:
        out = jax.tree_util.tree_leaves(self.fun(*primals))
        return _pair(jax.tree_util.tree_leaves(cotangents), out)

    def __repr__(self) -> str:
        return f"VJP of {fun_name(self.fun)}"


def check_like_primals(result: Any, primals: tuple[Any, ...], what: str) -> tuple:
    """One cotangent per primal, each with its primal's structure, shapes and
    dtypes (None for zero); None is replaced by zeros."""
    if not isinstance(result, (tuple, list)):
        raise TypeError(
            f"{what} must return a tuple with one cotangent per primal, as jax.vjp's "
            f"function does, got {type(result).__name__}."
        )
    if len(result) != len(primals):
        raise ValueError(
            f"{what} returned {len(result)} cotangents for {len(primals)} primals; "
            "return one per primal (None for a primal with no gradient)."
        )
    out = []
    for i, (value, primal) in enumerate(zip(result, primals, strict=True)):
        p_paths, p_def = jax.tree_util.tree_flatten_with_path(primal)
        if value is None:
            value = jax.tree_util.tree_map(lambda _: None, primal)
        try:
            v_leaves = p_def.flatten_up_to(value)
        except (ValueError, TypeError):
            raise ValueError(
                f"{what}[{i}] has the structure "
                f"{jax.tree_util.tree_structure(value)}, but primals[{i}] has "
                f"{p_def}; return a cotangent shaped like the primal."
            ) from None
        fixed = []
        for (key_path, p), v in zip(p_paths, v_leaves, strict=True):
            where = f"[{i}]{jax.tree_util.keystr(key_path)}"
            if not is_differentiable_leaf(p):
                fixed.append(v)
                continue
            weak = isinstance(p, (float, complex))
            shape, dtype = primal_type(p)
            if v is None:
                fixed.append(np.zeros(shape, dtype))
                continue
            if np.shape(v) != shape:
                raise ValueError(
                    f"{what}{where} has shape {np.shape(v)}, but primals{where} has "
                    f"shape {shape}; return one derivative per primal entry."
                )
            v_dtype = np.dtype(getattr(v, "dtype", np.asarray(v).dtype))
            if v_dtype != dtype and not (weak and v_dtype.kind == "f"):
                raise ValueError(
                    f"{what}{where} has dtype {v_dtype.name}, but primals{where} is "
                    f"{dtype.name}; a cotangent has its primal's dtype (cast with "
                    f"`.astype(jnp.{dtype.name})`)."
                )
            fixed.append(v)
        out.append(jax.tree_util.tree_unflatten(p_def, fixed))
    return tuple(out)


def vjp_report(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    vjp_fn: Callable[[Any], tuple[Any, ...]] | None,
    cotangents: Any,
    options: Options,
) -> GradCheckReport:
    """The report of one VJP, without raising."""
    _validate.check_not_traced(primals, ())
    with remembering_traces():  # `fun` traced once, for both uses below
        c = cotangents_for(fun, primals, cotangents, options.seed)
        traced = traced_fun(fun, *primals)
    if vjp_fn is None:
        grad = Primals(linearized(fun, primals)[1](c))
    else:
        grad = Primals(check_like_primals(vjp_fn(c), primals, "`vjp_fn(cotangents)`"))
    # The numerical side evaluates `fun` by the trace that gave its output shape.
    return gradient_report(Pairing(traced), Primals(primals), (c,), grad, options)


def linearized(
    fun: Callable[..., Any], primals: tuple
) -> tuple[Any, Callable[[Any], tuple]]:
    """`fun(*primals)` and its VJP with respect to the floating leaves of
    `primals` (the others come back as they are), from one `jax.vjp`: the
    analytic side of a VJP check. Called directly rather than as the gradient
    of ⟨c, fun⟩, whose pairing ops would be differentiated (and compiled) too."""
    of_floats, floats = of_some_leaves(fun, primals, is_differentiable_leaf)
    floats = [device_value(x) for x in floats]
    note = "jaxcheck: raised while computing `jax.vjp(fun)`."
    try:
        out, pullback = jax.vjp(of_floats, floats)
    except Exception as error:
        error.add_note(note)
        raise
    leaves, treedef = jax.tree_util.tree_flatten(primals)

    def vjp_fn(cotangents: Any) -> tuple:
        try:
            (grads,) = pullback(cotangents)
        except Exception as error:
            error.add_note(note)
            raise
        moved = iter(grads)
        new = [next(moved) if is_differentiable_leaf(x) else x for x in leaves]
        return tuple(jax.tree_util.tree_unflatten(treedef, new))

    return out, vjp_fn


def check_vjp(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    vjp_fn: Callable[[Any], tuple[Any, ...]] | None = None,
    cotangents: Any = None,
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Checks a vector-Jacobian product cᵀJ against finite differences, per input.

    For a cotangent c shaped like `fun`'s output, the scalar ⟨c, fun(*primals)⟩ =
    Σ Re(c · out) is differentiated numerically with respect to every floating
    entry of the primals (batched, as in `check_grad`), and entry i of the
    numeric ⟨c, J eᵢ⟩ is compared with entry i of `vjp_fn(c)`. Complex inputs
    follow JAX's convention, ∂/∂x − i·∂/∂y, which is what `jax.vjp` returns;
    complex outputs pair with the cotangent without conjugation, as in `jax.vjp`.
    Failures are located as `primals[k]<path>[index]`.

    Args:
        fun: a function `fun(*primals)` returning a pytree of floating arrays.
        primals: a tuple of the positional arguments of `fun`.
        vjp_fn: the VJP to check, `vjp_fn(cotangents)` returning one cotangent per
            primal (as the function from `jax.vjp` does); None checks `jax.vjp(fun)`,
            so the `custom_vjp` rules inside `fun` are what is checked.
        cotangents: a pytree like `fun`'s output; None draws one from a normal
            distribution seeded with `seed`.
        **options: the `CheckOptions`, but `resume` (fast and sample modes
            screen the input entries); `seed` draws the random cotangents and
            the modes' directions and entries.

    Returns:
        The `GradCheckReport` of the input entries (`.ok` is also its truth
        value). It never raises on a wrong VJP; `assert_vjp` does.

    Raises:
        TypeError, ValueError: for invalid arguments, or a `vjp_fn` whose result
            does not match the primals in number, structure, shape or dtype.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> f = lambda x, w: jnp.tanh(x @ w)
        >>> x, w = jnp.ones((2, 3)), jnp.full((3, 4), 0.1)
        >>> jaxcheck.check_vjp(f, (x, w)).ok
        True
        >>> wrong = lambda c: (c @ w.T, c.T @ x)  # forgot a transpose and tanh'
        >>> jaxcheck.check_vjp(f, (x, w), vjp_fn=wrong)
        Traceback (most recent call last):
        ...
        ValueError: `vjp_fn(cotangents)`[1] has shape (4, 3), but primals[1] ...
    """
    primals = check_arguments(fun, primals, vjp_fn, "vjp_fn(cotangents)")
    options = make_options("check_vjp", options, takes=NO_RESUME)
    return vjp_report(fun, primals, vjp_fn, cotangents, options)


def assert_vjp(
    fun: Callable[..., Any], primals: tuple[Any, ...], *rest: Any, **options: Any
) -> GradCheckReport:
    """Like `check_vjp`, but raises `GradCheckError` when an entry differs.

    Takes the same arguments as `check_vjp` and returns its report when the
    check passes.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict,
            naming the failing input and its worst entry, followed by the report.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> _ = jaxcheck.assert_vjp(jnp.sin, (jnp.arange(3.0),))
        >>> wrong = lambda c: (2 * c,)
        >>> jaxcheck.assert_vjp(jnp.sin, (jnp.arange(3.0),), vjp_fn=wrong)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: 3 of 3 entries differ, in primals[0]; ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_vjp(fun, primals, *rest, **options))
