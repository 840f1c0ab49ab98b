"""`check_jvp`: one tangent, checked entry by entry of the output.

A JVP is a directional derivative: `check_jvp` evaluates f(θ ± h·t) with the
batched engine, as a function of the scalar s along t, and compares every output
entry with the JVP.
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
from .._base.options import (
    NO_RESUME,
    CheckOptions,
    Options,
    make_options,
    tracked,
)
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.evaluate import moved_along
from .._engine.numerical_jacobian import (
    VectorFun,
    flat_on_host,
    judge_jacobian,
    of_some_leaves,
    output_leaves,
    prepare_vector,
)
from .._engine.refine import Judged
from .._engine.steps import tangent_scale
from .._engine.traced_fun import traced_fun
from .._runtime.sharding import host_value
from .._tree.device import device_value
from .._tree.pytree import is_differentiable_leaf
from .._verdict.jacobian_report import JacobianReport, jacobian_report
from .directions import check_arguments, float_leaves, tangents_for


@jax.jit  # one program per shapes: eagerly, one dispatch instead of many
def _moved(xs: list[Any], s: jax.Array, ts: list[jax.Array]) -> list[jax.Array]:
    """x + s·t for each leaf (`moved_along`)."""
    return [moved_along(x, s, t) for x, t in zip(xs, ts, strict=True)]


@dataclasses.dataclass(frozen=True)
class Directional:
    """fun(*(θ + s·t)) as a function of the scalar s, called as (s, primals, t)."""

    fun: Callable[..., Any]

    def __call__(self, s: jax.Array, primals: tuple, tangents: list) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(primals)
        which = [i for i, x in enumerate(leaves) if is_differentiable_leaf(x)]
        moved = _moved([leaves[i] for i in which], s, list(tangents))
        for i, x in zip(which, moved, strict=True):
            leaves[i] = x
        return self.fun(*jax.tree_util.tree_unflatten(treedef, leaves))

    def __repr__(self) -> str:
        return f"JVP of {fun_name(self.fun)}"


def _full_tangents(primals: tuple, floats: list[jax.Array]) -> tuple:
    """Tangents for every leaf of `primals`: float0 zeros at non-floating arrays."""
    moved = iter(floats)

    def one(x):
        if is_differentiable_leaf(x):
            return next(moved)
        if hasattr(x, "shape"):
            return np.zeros(np.shape(x), jax.dtypes.float0)
        return x

    return jax.tree_util.tree_map(one, primals)


def default_jvp(fun: Callable[..., Any], primals: tuple, tangents: list) -> Any:
    """`jax.jvp` with respect to the floating leaves of `primals` only."""
    of_floats, floats = of_some_leaves(fun, primals, is_differentiable_leaf)
    floats = [device_value(x) for x in floats]
    return jax.jvp(of_floats, (floats,), (list(tangents),))[1]


def _unscaled(judged: Judged, scale: float) -> Judged:
    """The verdicts of a JVP along scale·t, in the units of a JVP along t."""
    c = judged.comparison
    comparison = dataclasses.replace(
        c,
        analytic=c.analytic / scale,
        numeric=c.numeric / scale,
        abs_err=c.abs_err / scale,
        tolerance=c.tolerance / scale,
    )
    return dataclasses.replace(
        judged, comparison=comparison, steps=judged.steps * scale
    )


def jvp_report(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    jvp_fn: Callable[..., Any] | None,
    tangents: Any,
    options: Options,
    *,
    out_name: str = "out",
    mode: str = "jvp",
    name: str | None = None,
) -> JacobianReport:
    """The report of one JVP, without raising."""
    _validate.check_not_traced(primals, ())
    method = options.method
    t = tangents_for(primals, tangents, options.seed)
    if not t or not sum(x.size for x in t):
        raise ValueError(
            "`primals` has no floating entries to move along; jaxcheck perturbs "
            "floating and complex arrays (cast with `.astype(float)`)."
        )
    # The numerical side evaluates `fun` by the trace that gave its output shape.
    traced = traced_fun(fun, *primals)
    out_info = traced.out_info
    outputs = output_leaves(out_info, "`fun`")
    if jvp_fn is None:
        analytic = default_jvp(fun, primals, t)
    else:
        result = jvp_fn(primals, _full_tangents(primals, t))
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(
                "`jvp_fn(primals, tangents)` must return a pair (outputs, "
                "output tangents), as jax.jvp does."
            )
        analytic = result[1]
        if jax.tree_util.tree_structure(analytic) != jax.tree_util.tree_structure(
            out_info
        ):
            raise ValueError(
                "`jvp_fn` returned output tangents with the structure "
                f"{jax.tree_util.tree_structure(analytic)}, but fun's output has "
                f"{jax.tree_util.tree_structure(out_info)}."
            )
    column = flat_on_host(analytic)[:, None]
    dtype = max((x.dtype for x in t), key=lambda d: jnp.finfo(d).eps)
    s_dtype = jnp.finfo(dtype).dtype
    # Differences along scale·t, whose steps the engine chooses for the dtype in
    # which it differences (the float64 twin's, where there is one); a given
    # `eps` is a step along t.
    scale = tangent_scale(float_leaves(primals), t)
    scaled = [device_value(host_value(x) * scale, x.dtype) for x in t]  # exact
    eps = None if options.eps is None else options.eps / scale
    along = dataclasses.replace(options, eps=eps)
    args = (primals, scaled)
    prepared = prepare_vector(
        VectorFun(Directional(traced)), jnp.zeros((), s_dtype), args, along
    )
    analytic = {mode: column * scale}
    judged, note, evaluation = judge_jacobian(prepared, outputs, analytic, along)
    judged = _unscaled(judged, scale)
    return jacobian_report(
        fun_name=name or f"JVP of {fun_name(fun)}", method=method, prepared=prepared,
        outputs=outputs, modes=[mode], judged=judged, note=note,
        evaluation=evaluation, out_name=out_name, in_name="",
        nondet_tol=options.nondet_tol,
    )  # fmt: skip


def check_jvp(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    jvp_fn: Callable[..., Any] | None = None,
    tangents: Any = None,
    **options: Unpack[CheckOptions],
) -> JacobianReport:
    """Checks a Jacobian-vector product J·t against finite differences, per output.

    The directional derivative (f(θ + h·t) − f(θ − h·t)) / 2h is evaluated with
    the batched engine and compared with the JVP entry by entry of the output; complex
    outputs are compared by real and imaginary part. The step h is chosen from
    the dtype and the sizes of θ and t, or is `eps`.

    Args:
        fun: a function `fun(*primals)` returning a pytree of floating arrays.
        primals: a tuple of the positional arguments of `fun`.
        jvp_fn: the JVP to check, called as `jvp_fn(primals, tangents)` and
            returning `(outputs, output_tangents)` like `functools.partial(jax.jvp,
            fun)`; None checks `jax.jvp(fun)` (its `custom_jvp` rules).
        tangents: a pytree like `primals` (values at non-floating leaves are
            ignored); None draws one from a normal distribution seeded with `seed`.
        **options: the `CheckOptions`, but `resume`, and mode="full" only: a
            JVP check compares every output entry; `seed` draws the random
            tangents.

    Returns:
        The `JacobianReport` of the output entries (`.ok` is also its truth
        value). It never raises on a wrong JVP; `assert_jvp` does.

    Raises:
        TypeError, ValueError: for invalid arguments.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> f = lambda x: {"y": jnp.sin(x)}
        >>> jaxcheck.check_jvp(f, (jnp.arange(3.0),)).ok
        True
        >>> wrong = lambda p, t: (f(*p), {"y": jnp.cos(p[0]) * t[0] * 1.5})
        >>> report = jaxcheck.check_jvp(f, (jnp.arange(3.0),), jvp_fn=wrong)
        >>> print(report.verdict)  # doctest: +ELLIPSIS
        FAILED: 3 of 3 entries differ, in out['y'] (jvp); worst out['y'][...] (jvp): ...
    """
    primals = check_arguments(fun, primals, jvp_fn, "jvp_fn(primals, tangents)")
    options = make_options(
        "check_jvp", options, takes=NO_RESUME, methods=JACOBIAN_METHODS,
        modes=("full",),
    )  # fmt: skip
    return tracked(options, lambda: jvp_report(fun, primals, jvp_fn, tangents, options))


def assert_jvp(
    fun: Callable[..., Any], primals: tuple[Any, ...], *rest: Any, **options: Any
) -> JacobianReport:
    """Like `check_jvp`, but raises `GradCheckError` when an output entry differs.

    Takes the same arguments as `check_jvp` and returns its report when the
    check passes.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict,
            naming the failing output and its worst entry, followed by the report.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> _ = jaxcheck.assert_jvp(jnp.sin, (jnp.arange(3.0),))
        >>> wrong = lambda p, t: (jnp.sin(p[0]), 2 * t[0])
        >>> jaxcheck.assert_jvp(jnp.sin, (jnp.arange(3.0),), jvp_fn=wrong)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: 3 of 3 entries differ, in out (jvp); ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_jvp(fun, primals, *rest, **options))
