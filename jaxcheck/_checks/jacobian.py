"""`check_jacobian`: the whole Jacobian of a pytree-to-pytree function against
finite differences, entry by entry, through `jax.jacrev` and `jax.jacfwd`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Unpack

import jax
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
from .._engine.numerical import Prepared
from .._engine.numerical_jacobian import (
    OutputLeaf,
    VectorFun,
    analytic_jacobian,
    judge_jacobian,
    output_leaves,
    prepare_vector,
)
from .._engine.traced_fun import output_shape
from .._verdict.jacobian_report import JacobianReport, jacobian_report

AUTODIFF = ("rev", "fwd")
_MODE_NAMES = {"rev": "jacrev", "fwd": "jacfwd", "given": "given jac"}


@dataclasses.dataclass(frozen=True)
class Star:
    """`fun(*primals)` called as `Star(fun)(primals)`; hashable by `fun`."""

    fun: Callable[..., Any]

    def __call__(self, primals: tuple[Any, ...]) -> Any:
        return self.fun(*primals)

    def __repr__(self) -> str:
        return fun_name(self.fun)


def check_primals(primals: Any, name: str = "primals") -> tuple[Any, ...]:
    if not isinstance(primals, (tuple, list)):
        raise TypeError(
            f"`{name}` must be a tuple of the function's positional arguments, got "
            f"{type(primals).__name__}; write `({name[:-1]},)` for a single one."
        )
    if not primals:
        raise ValueError(f"`{name}` is empty: pass at least one argument to check.")
    return tuple(primals)


def check_autodiff(autodiff: Any) -> tuple[str, ...] | None:
    """`autodiff`: None (every direction `fun` supports), or a tuple drawn
    from ("rev", "fwd")."""
    if autodiff is None:
        return None
    if isinstance(autodiff, str) or not isinstance(autodiff, Sequence):
        raise TypeError(
            f"`autodiff` must be None or a tuple drawn from {AUTODIFF}, got "
            f"{autodiff!r}; e.g. autodiff=('rev',) checks jax.jacrev only."
        )
    if not autodiff or any(m not in AUTODIFF for m in autodiff):
        raise ValueError(
            f"`autodiff` must be a non-empty tuple drawn from {AUTODIFF} ('rev' is "
            f"jax.jacrev, 'fwd' jax.jacfwd), got {autodiff!r}."
        )
    return tuple(dict.fromkeys(autodiff))


def _no_forward_mode(error: Exception) -> bool:
    """JAX's refusal to run forward mode through a `custom_vjp` rule."""
    return isinstance(error, TypeError) and "forward-mode" in str(error)


def _given_jacobian(
    jac: Any, prepared: Prepared, outputs: tuple[OutputLeaf, ...], n_primals: int
) -> np.ndarray:
    """A Jacobian in `jax.jacrev(fun, argnums=(0, ..., n-1))` layout, as (M, N)."""
    leaves = jax.tree_util.tree_leaves(jac)
    m, n = prepared.n_outputs, prepared.tree.size
    blocks = [np.asarray(x) for x in leaves]
    if any(np.iscomplexobj(b) for b in blocks):
        raise ValueError(
            "`jac` is complex; give the Jacobian of a real function, or pass jac=None "
            "to compare with jax.jacrev/jax.jacfwd of the real and imaginary parts."
        )
    if sum(b.size for b in blocks) != m * n:
        raise ValueError(
            f"`jac` has {sum(b.size for b in blocks)} entries, but the Jacobian of "
            f"{m} outputs by {n} inputs has {m * n}. Give it in the layout of "
            f"`jax.jacrev(fun, argnums={tuple(range(n_primals))})(*primals)`."
        )
    out = np.zeros((m, n))
    k = 0
    for o in outputs:
        for leaf in prepared.tree.leaves:
            block = blocks[k]
            if block.shape != o.shape + leaf.shape:
                raise ValueError(
                    f"`jac` block of out{o.path} by primals{leaf.path} has shape "
                    f"{block.shape}, expected {o.shape + leaf.shape} (output shape "
                    "followed by input shape, as jax.jacrev gives)."
                )
            out[o.offset : o.offset + o.size, leaf.offset : leaf.offset + leaf.size] = (
                block.reshape(o.size, leaf.size)
            )
            k += 1
    return out


def jacobian_check(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    *,
    name: str,
    out_name: str,
    in_name: str,
    options: Options,
    autodiff: tuple[str, ...] | None = None,
    jac: Callable[[], Any] | None = None,
) -> JacobianReport:
    """The report of the Jacobian of `fun(params, *args)` with respect to the
    floating leaves of `params`; `jac()` gives a Jacobian to check instead.

    `autodiff=None` checks jax.jacrev, and jax.jacfwd unless `fun` has no
    forward mode (a `custom_vjp` rule), which the report's note then says."""
    _validate.check_not_traced(params, args)
    out_info = output_shape(fun, params, *args)
    outputs = output_leaves(out_info, f"`{name}`")
    if not outputs or sum(o.size for o in outputs) == 0:
        raise ValueError(f"`{name}` returns no entries: there is no Jacobian to check.")
    prepared = prepare_vector(VectorFun(fun), params, args, options)
    tree = prepared.tree
    skipped = ""
    if jac is not None:
        given = _given_jacobian(jac(), prepared, outputs, len(tree.leaves))
        analytic = {"given": given}
    else:
        positions = tuple(leaf.position for leaf in tree.leaves)
        analytic = {}
        for mode in autodiff or AUTODIFF:
            try:
                matrix = analytic_jacobian(
                    mode, tree.problem, positions, tree.dynamic, eager=prepared.eager
                )
            except Exception as error:
                if autodiff is None and mode == "fwd" and _no_forward_mode(error):
                    skipped = (
                        "jax.jacfwd not checked: forward mode is not defined for "
                        "`fun` (a custom_vjp rule)"
                    )
                    continue
                hint = (
                    "; a function with a custom_vjp rule has no forward mode: pass "
                    "autodiff=('rev',)"
                    if mode == "fwd" and _no_forward_mode(error)
                    else ""
                )
                error.add_note(
                    f"jaxcheck: raised while computing jax.{_MODE_NAMES[mode]}{hint}."
                )
                raise
            analytic[mode] = np.asarray(matrix, np.float64)
    judged, note, evaluation = judge_jacobian(prepared, outputs, analytic, options)
    note = "; ".join(x for x in (note, skipped) if x)
    return jacobian_report(
        fun_name=name,
        method=options.method,
        prepared=prepared,
        outputs=outputs,
        modes=[_MODE_NAMES[k] for k in analytic],
        judged=judged,
        note=note,
        evaluation=evaluation,
        nondet_tol=options.nondet_tol,
        out_name=out_name,
        in_name=in_name,
    )


def check_jacobian(
    fun: Callable[..., Any],
    *primals: Any,
    jac: Any = None,
    autodiff: Sequence[str] | None = None,
    **options: Unpack[CheckOptions],
) -> JacobianReport:
    """Checks the Jacobian of a pytree-to-pytree `fun` entry by entry.

    Every floating entry of every primal is perturbed by ±h, batched (`vmap`
    inside `jit`, memory-bounded chunks), and each perturbation evaluates the
    whole output, giving the numeric Jacobian column by column. It is compared with
    `jax.jacrev` (which runs `custom_vjp` rules and transposed `custom_jvp` rules)
    and `jax.jacfwd` (which runs `custom_jvp` rules), or with a given `jac`.
    Non-floating leaves of the primals pass through unperturbed. Complex inputs
    and outputs are split into real and imaginary parts (`.real`, `.imag` in the
    locations), so holomorphic and non-holomorphic functions are both checked as
    real maps; a given `jac` must then be real.

    Args:
        fun: a function `fun(*primals)` returning a pytree of floating arrays.
        *primals: the point at which to check, one value per positional argument.
        jac: the Jacobian to check instead of jax.jacrev/jax.jacfwd: a callable
            `jac(*primals)` or its value, laid out as
            `jax.jacrev(fun, argnums=(0, ..., n-1))(*primals)` gives it.
        autodiff: which of "rev" (jax.jacrev) and "fwd" (jax.jacfwd) to check;
            None (default) checks both, or only "rev" for a function with a
            `custom_vjp` rule, which has no forward mode (the report says so).
        **options: the `CheckOptions`, but `resume`, and mode="full" only: a
            Jacobian check compares every entry.

    Returns:
        A `JacobianReport`: `.ok` (also its truth value), one row per (output
        leaf, input leaf) block and mode, failing entries located as
        `out<path>[i] × primals<path>[j] (jacrev)`. It never raises on a wrong
        Jacobian; `assert_jacobian` does.

    Raises:
        TypeError, ValueError: for invalid arguments or non-floating outputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> def f(x, y):
        ...     return {"sum": x + y, "prod": x * y}
        >>> report = jaxcheck.check_jacobian(f, jnp.arange(3.0), jnp.ones(3))
        >>> report.num_entries  # 2 outputs x 2 inputs x 3 x 3 entries x 2 modes
        72
        >>> wrong = lambda x, y: {"prod": (jnp.diag(y), jnp.diag(y)),
        ...                       "sum": (jnp.eye(3), jnp.eye(3))}
        >>> report = jaxcheck.check_jacobian(f, jnp.arange(3.0), jnp.ones(3), jac=wrong)
        >>> report.ok
        False
        >>> print(report.verdict)  # doctest: +ELLIPSIS
        FAILED: 2 of 36 entries differ, ... worst out['prod'][0] × primals[1][0] ...
    """
    _validate.check_fun(fun)
    primals = check_primals(primals)
    autodiff = check_autodiff(autodiff)
    if jac is not None and not callable(jac):
        value = jac
        jac_thunk = lambda: value  # noqa: E731
    elif jac is not None:
        jac_thunk = lambda: jac(*primals)  # noqa: E731
    else:
        jac_thunk = None
    options = make_options(
        "check_jacobian", options, takes=NO_RESUME, methods=JACOBIAN_METHODS,
        modes=("full",),
    )  # fmt: skip
    return tracked(options, lambda: jacobian_check(
        Star(fun), primals, (), name=fun_name(fun), out_name="out",
        in_name="primals", options=options, autodiff=autodiff, jac=jac_thunk,
    ))  # fmt: skip


def assert_jacobian(
    fun: Callable[..., Any], *primals: Any, **options: Any
) -> JacobianReport:
    """Like `check_jacobian`, but raises `GradCheckError` when an entry differs.

    Takes the same arguments as `check_jacobian` and returns its report when
    the check passes.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict,
            naming the failing block and its worst entry, followed by the report.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> _ = jaxcheck.assert_jacobian(jnp.sin, jnp.arange(3.0))
        >>> jaxcheck.assert_jacobian(jnp.sin, jnp.arange(3.0), jac=jnp.eye(3))
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: 2 of 9 entries differ, in out × primals[0] ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_jacobian(fun, *primals, **options))
