"""`check_vjp` and `check_jvp`: one cotangent or tangent, checked entry by entry.

A VJP is a gradient: with a cotangent c, the scalar ⟨c, f(θ)⟩ = Σ Re(c · f(θ)) has
the gradient `vjp(c)` in JAX's convention (for a complex θ = x + iy it is
∂/∂x − i·∂/∂y), so `check_vjp` is `check_grad` of that scalar, located by input
entry. A JVP is a directional derivative: `check_jvp` evaluates f(θ ± h·t) with
the batched engine and compares every output entry.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
from .._engine.numerical_jacobian import (
    VectorFun,
    judge_jacobian,
    of_some_leaves,
    output_leaves,
    output_shape,
    prepare_vector,
    ravel_output,
    realify,
)
from .._engine.refine import Judged
from .._tree.pytree import is_differentiable_leaf
from .._verdict.jacobian_report import JacobianReport, jacobian_report
from .._verdict.report import GradCheckReport
from .jacobian import check_primals
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


@jax.jit  # one program per shape: run op by op, its five ops compile apart
def _paired(c: jax.Array, o: jax.Array) -> jax.Array:
    """Σ Re(c · o) in their common dtype, cast explicitly; a zero cotangent
    pairs to 0 even with an infinite output entry."""
    dtype = jnp.promote_types(c.dtype, o.dtype)
    c, o = c.astype(dtype), o.astype(dtype)
    return jnp.sum(jnp.real(jnp.where(c == 0, jnp.zeros_like(c), c * o)))


@dataclasses.dataclass(frozen=True)
class Pairing:
    """⟨c, fun(*primals)⟩ = Σ Re(c · fun(*primals)), called as (primals, c)."""

    fun: Callable[..., Any]

    def __call__(self, primals: tuple[Any, ...], cotangents: Any) -> jax.Array:
        out = jax.tree_util.tree_leaves(self.fun(*primals))
        # A zero cotangent pairs to 0 even with an infinite output entry.
        terms = [
            _paired(c, o)
            for c, o in zip(jax.tree_util.tree_leaves(cotangents), out, strict=True)
        ]
        # Cast explicitly: jaxcheck must not rely on implicit promotion, which a
        # user may have made strict.
        dtype = functools.reduce(jnp.promote_types, [t.dtype for t in terms])
        return sum((t.astype(dtype) for t in terms[1:]), terms[0].astype(dtype))

    def __repr__(self) -> str:
        return f"VJP of {fun_name(self.fun)}"


def _random_like(infos: list[Any], seed: int) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    out = []
    for info in infos:
        dtype = np.dtype(info.dtype)
        x = rng.standard_normal(info.shape)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            x = (x + 1j * rng.standard_normal(info.shape)) / np.sqrt(2)
        out.append(jnp.asarray(x, dtype))
    return out


def _check_arguments(fun, primals, seed, rule, usage: str) -> tuple[Any, ...]:
    """Validates the arguments shared by `check_vjp` and `check_jvp`."""
    _validate.check_fun(fun)
    primals = check_primals(primals)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    if rule is not None and not callable(rule):
        name = usage.split("(")[0]
        raise TypeError(
            f"`{name}` must be callable as {usage}, got {type(rule).__name__}; pass "
            f"None to check jax.{name[:3]}(fun)."
        )
    return primals


def cotangents_for(fun: Callable[..., Any], primals, cotangents, seed) -> Any:
    """Given cotangents checked against `fun`'s output, or seeded random ones."""
    out_info = output_shape(fun, *primals)
    output_leaves(out_info, "`fun`")  # floating outputs only
    leaves, treedef = jax.tree_util.tree_flatten(out_info)
    if cotangents is None:
        return jax.tree_util.tree_unflatten(treedef, _random_like(leaves, seed))
    if jax.tree_util.tree_structure(cotangents) != treedef:
        raise ValueError(
            "`cotangents` must have the structure of fun's output, "
            f"{treedef}, got {jax.tree_util.tree_structure(cotangents)}."
        )
    given = []
    for (key_path, info), c in zip(
        jax.tree_util.tree_flatten_with_path(out_info)[0],
        jax.tree_util.tree_leaves(cotangents),
        strict=True,
    ):
        if np.shape(c) != info.shape:
            raise ValueError(
                f"`cotangents` at {jax.tree_util.keystr(key_path) or 'the root'} has "
                f"shape {np.shape(c)}, but fun's output there has shape "
                f"{info.shape}; give one cotangent entry per output entry."
            )
        given.append(jnp.asarray(c, info.dtype))
    return jax.tree_util.tree_unflatten(treedef, given)


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
            p = jnp.asarray(p)
            if v is None:
                fixed.append(jnp.zeros_like(p))
                continue
            if np.shape(v) != p.shape:
                raise ValueError(
                    f"{what}{where} has shape {np.shape(v)}, but primals{where} has "
                    f"shape {p.shape}; return one derivative per primal entry."
                )
            v_dtype = np.dtype(getattr(v, "dtype", np.asarray(v).dtype))
            if v_dtype != p.dtype and not (weak and v_dtype.kind == "f"):
                raise ValueError(
                    f"{what}{where} has dtype {v_dtype.name}, but primals{where} is "
                    f"{p.dtype.name}; a cotangent has its primal's dtype (cast with "
                    f"`.astype(jnp.{p.dtype.name})`)."
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
    c = cotangents_for(fun, primals, cotangents, options.seed)
    grad = None
    if vjp_fn is not None:
        grad = Primals(check_like_primals(vjp_fn(c), primals, "`vjp_fn(cotangents)`"))
    return gradient_report(Pairing(fun), Primals(primals), (c,), grad, options)


def check_vjp(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    vjp_fn: Callable[[Any], tuple[Any, ...]] | None = None,
    cotangents: Any = None,
    *,
    seed: int = 0,
    method: str = "central",
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    shadow: bool = True,
    nondet_tol: float | None = None,
    mode: str = "full",
    samples: int | None = None,
    progress: bool | Callable[[int, int], Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
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
        seed: the seed of the random cotangents (and of `mode`'s directions
            and entries).
        method, eps, atol, rtol, chunk_size, memory_budget, shadow, nondet_tol,
            mode, samples, progress, devices: as in `check_grad` (fast and
            sample modes screen the input entries).

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
    primals = _check_arguments(fun, primals, seed, vjp_fn, "vjp_fn(cotangents)")
    options = make_options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, nondet_tol=nondet_tol,
        mode=mode, samples=samples, progress=progress, devices=devices,
    )  # fmt: skip
    return vjp_report(fun, primals, vjp_fn, cotangents, options)


def assert_vjp(fun: Callable[..., Any], primals: tuple[Any, ...], *rest, **options):
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


@jax.jit  # one program per shape, for the op-by-op evaluation of small checks
def _moved(x: Any, s: jax.Array, t: jax.Array) -> jax.Array:
    """x + s·t in x's dtype, cast explicitly (a real s and a complex x or t must
    not rely on implicit promotion)."""
    x = jnp.asarray(x)
    return x + s.astype(x.dtype) * t.astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class Directional:
    """fun(*(θ + s·t)) as a function of the scalar s, called as (s, primals, t)."""

    fun: Callable[..., Any]

    def __call__(self, s: jax.Array, primals: tuple, tangents: list) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(primals)
        moved = iter(tangents)
        new = [_moved(x, s, next(moved)) if is_differentiable_leaf(x) else x
               for x in leaves]  # fmt: skip
        return self.fun(*jax.tree_util.tree_unflatten(treedef, new))

    def __repr__(self) -> str:
        return f"JVP of {fun_name(self.fun)}"


def _float_leaves(primals: tuple) -> list[jax.Array]:
    return [
        jnp.asarray(x)
        for x in jax.tree_util.tree_leaves(primals)
        if is_differentiable_leaf(x)
    ]


def tangents_for(primals: tuple, tangents: Any, seed: int) -> list[jax.Array]:
    """The tangents at the floating leaves of `primals`: given, or seeded random."""
    floats = _float_leaves(primals)
    if tangents is None:
        return _random_like(floats, seed)
    p_paths, p_def = jax.tree_util.tree_flatten_with_path(primals)
    try:
        t_leaves = p_def.flatten_up_to(tuple(tangents))
    except (ValueError, TypeError):
        raise ValueError(
            f"`tangents` must have the structure of `primals`, {p_def}, got "
            f"{jax.tree_util.tree_structure(tangents)}."
        ) from None
    out = []
    for (key_path, p), t in zip(p_paths, t_leaves, strict=True):
        if not is_differentiable_leaf(p):
            continue
        p = jnp.asarray(p)
        if np.shape(t) != p.shape:
            raise ValueError(
                f"`tangents` at {jax.tree_util.keystr(key_path)} has shape "
                f"{np.shape(t)}, but the primal has shape {p.shape}."
            )
        out.append(jnp.asarray(t, p.dtype))
    return out


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
    floats = [jnp.asarray(x) for x in floats]
    return jax.jvp(of_floats, (floats,), (list(tangents),))[1]


def _largest_finite(x: jax.Array) -> float:
    """The largest finite |entry| of `x` (0 when it has none): a NaN or Inf input
    must not make the step NaN."""
    magnitude = np.abs(np.asarray(x))
    return float(np.max(magnitude[np.isfinite(magnitude)], initial=0.0))


def _direction_scale(primals: tuple, tangents: list[jax.Array]) -> float:
    """max|θ| / max|t| (at least 1 for θ), rounded to a power of two: the tangent
    times this moves θ on its own scale when s moves by 1, so the engine's steps
    for s (chosen per dtype, as for any entry at 0) fit θ. A power of two scales
    t exactly."""
    theta = max([_largest_finite(x) for x in _float_leaves(primals)] + [1.0])
    t = max([_largest_finite(x) for x in tangents] + [0.0])
    return float(np.exp2(np.round(np.log2(theta / (t if t > 0 else 1.0)))))


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
    out_info = output_shape(fun, *primals)
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
    column = np.asarray(ravel_output(realify(analytic)), np.float64)[:, None]
    dtype = max((x.dtype for x in t), key=lambda d: jnp.finfo(d).eps)
    s_dtype = jnp.finfo(dtype).dtype
    # Differences along scale·t, whose steps the engine chooses for the dtype in
    # which it differences (the float64 twin's, where there is one); a given
    # `eps` is a step along t.
    scale = _direction_scale(primals, t)
    scaled = [x * jnp.asarray(scale, x.dtype) for x in t]
    eps = None if options.eps is None else options.eps / scale
    along = dataclasses.replace(options, eps=eps)
    args = (primals, scaled)
    prepared = prepare_vector(
        VectorFun(Directional(fun)), jnp.zeros((), s_dtype), args, along
    )
    judged, note = judge_jacobian(prepared, outputs, {mode: column * scale}, along)
    judged = _unscaled(judged, scale)
    return jacobian_report(
        fun_name=name or f"JVP of {fun_name(fun)}", method=method, prepared=prepared,
        outputs=outputs, modes=[mode], judged=judged, note=note, out_name=out_name,
        in_name="",
    )  # fmt: skip


def check_jvp(
    fun: Callable[..., Any],
    primals: tuple[Any, ...],
    jvp_fn: Callable[..., Any] | None = None,
    tangents: Any = None,
    *,
    seed: int = 0,
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
        seed: the seed of the random tangents.
        method, eps, atol, rtol, chunk_size, memory_budget, shadow, progress,
            devices: as in `check_grad`.
        mode: "full" only: a JVP check compares every output entry.

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
    primals = _check_arguments(fun, primals, seed, jvp_fn, "jvp_fn(primals, tangents)")
    options = make_options(
        method=method, eps=eps, atol=atol, rtol=rtol, chunk_size=chunk_size,
        memory_budget=memory_budget, seed=seed, shadow=shadow, mode=mode,
        progress=progress, devices=devices, methods=JACOBIAN_METHODS,
    )  # fmt: skip
    full_mode_only(options, "check_jvp")
    return tracked(options, lambda: jvp_report(fun, primals, jvp_fn, tangents, options))


def assert_jvp(fun: Callable[..., Any], primals: tuple[Any, ...], *rest, **options):
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
