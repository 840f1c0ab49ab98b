"""`check_grads`: a drop-in for `jax.test_util.check_grads`, checked entry by entry.

The recursion is JAX's: for each order, "fwd" checks `jax.jvp(f)` and recurses
into the function `(primals, tangents) ↦ jax.jvp(f, primals, tangents)`; "rev"
checks `jax.vjp(f)` and recurses into `args ↦ vjp(f, *args)(f(*args))`. Each check
here is `check_jvp`/`check_vjp`: every entry, not one random direction, with the
tolerances of the entry's dtype, never scaled by the size of an array.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .._base import validate as _validate
from .._base.errors import GradCheckError, raise_if_failed
from .._base.options import Options, make_options
from .._base.validate import JACOBIAN_METHODS
from .._engine.analytic import fun_name
from .._engine.compare import OK
from .._engine.traced_fun import output_shape, remembering_traces
from .._tree.pytree import is_differentiable_leaf
from .jacobian import check_primals
from .jax_projection import jax_draws, projection_failure
from .jax_tolerance import jax_tolerances
from .jvp import jvp_report
from .vjp import linearized, vjp_report

MODES = ("fwd", "rev", "lin")
# Above this many input entries a VJP is checked in fast mode (directional probes
# per leaf, narrowed to entries where one fails): JAX checks one direction, and an
# element-wise VJP costs two evaluations per entry, so that of `pinv` of a 7×1000
# complex64 input took 263 s where JAX's takes 1.8 s (fast: 2.3 s). JVPs need no
# such limit: one directional derivative, compared per output entry.
FULL_VJP_MAX_ENTRIES = 1_000


@dataclasses.dataclass(frozen=True)
class _JvpOf:
    """`(primals, tangents) ↦ jax.jvp(f, primals, tangents)`."""

    f: Callable[..., Any]

    def __call__(self, primals: Any, tangents: Any) -> Any:
        return jax.jvp(self.f, tuple(primals), tuple(tangents))

    def __repr__(self) -> str:
        return f"jvp of {fun_name(self.f)}"


@dataclasses.dataclass(frozen=True)
class _JvpFromLinearize:
    """`(primals, tangents) ↦ (f(primals), f_lin(tangents))` from `jax.linearize`,
    the JVP that JAX's check_grads checks for "lin"."""

    f: Callable[..., Any]

    def __call__(self, primals: Any, tangents: Any) -> Any:
        out, f_lin = jax.linearize(self.f, *primals)
        return out, f_lin(*tangents)

    def __repr__(self) -> str:
        return f"linearized {fun_name(self.f)}"


@dataclasses.dataclass(frozen=True)
class _VjpOf:
    """`args ↦ vjp(f, *args)(f(*args))`, the function JAX's check_grads recurses
    into for "rev"."""

    f: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        out, vjp = jax.vjp(self.f, *args)
        return vjp(out)

    def __repr__(self) -> str:
        return f"vjp of {fun_name(self.f)}"


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float | dict[Any, float] | None = None,
    rtol: float | dict[Any, float] | None = None,
    eps: float | None = None,
) -> None:
    """Checks derivatives up to `order` like `jax.test_util.check_grads`, per entry.

    Same call, same meaning: switch a test suite by changing one import. The
    checks are JAX's — for each order, "fwd" checks the JVP and recurses into
    `jax.jvp(f)`, "rev" checks the VJP and recurses into `vjp(f)(f(args))` — but
    each is element-wise (`check_jvp` per output entry, `check_vjp` per input
    entry) instead of one random direction, and a failure is located:
    "VJP of JVP check failed" and then the report, whose worst entries read
    `primals[1]['w'][3, 5]` (a VJP) or `out[2] (jvp)` (a JVP). Tolerances are per
    entry and dtype, never scaled by the size of an array.

    Args:
        f: the function, called as `f(*args)`; it may return any pytree.
        args: the tuple of arguments at which to check.
        order: derivatives up to this order are checked (1, 2, ...).
        modes: "fwd" (JVPs), "rev" (VJPs) and/or "lin" (the JVP of
            `jax.linearize`), as in JAX.
        atol: as in JAX: None, a number, or a dict from dtype to number,
            merged over JAX's per-dtype defaults (float32 2e-3, float64 1e-5, ...)
            and looked up by the dtype of the values compared. It is the
            narrowest band an entry gets, never scaled by the size of an array;
            the entry's own error bound widens it where needed. As in JAX, NaN
            on both sides agrees and a check with nothing to compare passes.
        rtol: the relative tolerance, in the same forms as `atol` and applied
            the same way.
        eps: the finite-difference step; None picks one per entry from its dtype
            and magnitude (JAX uses 1e-4 for every dtype).

    Above `FULL_VJP_MAX_ENTRIES` (1,000) input entries, a VJP is checked in
    fast mode: per leaf, three directional derivatives along random directions,
    then entry by entry only where they disagree (see `check_grad`'s `mode`).

    Returns:
        None, as JAX's does.

    Raises:
        GradCheckError: an `AssertionError` naming the failed check ("JVP",
            "VJP of JVP", ...) followed by the report of located entries.
        TypeError, ValueError: for invalid arguments.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxcheck import check_grads  # was: from jax.test_util import ...
        >>> f = lambda x, y: {"a": jnp.sin(x) * y, "b": x @ y}
        >>> check_grads(f, (jnp.arange(3.0), jnp.ones(3)), order=2)
        >>> @jax.custom_jvp
        ... def cube(x):
        ...     return x**3
        >>> _ = cube.defjvp(lambda p, t: (p[0] ** 3, 2 * p[0] ** 2 * t[0]))  # 3x²!
        >>> check_grads(cube, (jnp.arange(3.0),), order=1)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: JVP check failed:
        ...
        FAILED: 2 of 3 entries differ, in out (jvp); worst out[2] (jvp): ...
    """
    _validate.check_fun(f)
    args = check_primals(tuple(args) if isinstance(args, list) else args, "args")
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ValueError(f"`order` must be a positive int, got {order!r}.")
    modes = _check_modes(modes)
    options = make_options(
        "check_grads", dict(eps=eps), methods=JACOBIAN_METHODS,
        floors=jax_tolerances(atol, rtol), nan_agrees=True,
    )  # fmt: skip
    # Each check draws its own tangent or cotangent (seeds 0, 1, ...): an error
    # that a close pair of random entries hides from one check (two entries
    # swapped) is then unlikely to hide from every check that sees it.
    seeds = itertools.count()

    def drawn(mode: str = "full") -> Options:
        return dataclasses.replace(options, mode=mode, seed=next(seeds))

    def check(f: Callable[..., Any], args: tuple[Any, ...], order: int, what: str):
        if _nothing_to_compare(f, args):
            return  # as in JAX: no entries, nothing can differ
        if "fwd" in modes:
            msg = f"JVP of {what}" if what else "JVP"
            raise_if_failed(jvp_report(f, args, None, None, drawn()), msg)
            if order > 1:
                check(_JvpOf(f), (args, args), order - 1, msg)
        if "rev" in modes:
            msg = f"VJP of {what}" if what else "VJP"
            inputs = jax.tree_util.tree_leaves(args)
            size = sum(np.size(x) for x in inputs if is_differentiable_leaf(x))
            large = size > FULL_VJP_MAX_ENTRIES
            _check_vjp(f, args, drawn("fast" if large else "full"), msg)
            if order > 1:
                check(_VjpOf(f), args, order - 1, msg)
        if "lin" in modes:
            msg = f"LIN of {what}" if what else "LIN"
            jvp_fn = _JvpFromLinearize(f)
            raise_if_failed(jvp_report(f, args, jvp_fn, None, drawn()), msg)
            if order > 1:
                check(jvp_fn, (args, args), order - 1, msg)

    with remembering_traces():  # each function's is traced once
        check(f, args, order, "")


def _check_modes(modes: Any) -> tuple[str, ...]:
    """JAX's `modes`: a sequence drawn from "fwd", "rev" and "lin"."""
    if isinstance(modes, str) or not isinstance(modes, Sequence):
        raise TypeError(f"`modes` must be a tuple drawn from {MODES}, got {modes!r}.")
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(
            f"`modes` must be a non-empty tuple drawn from {MODES}, got {modes!r}."
        )
    return tuple(dict.fromkeys(modes))


def _nothing_to_compare(f: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """No floating entry in `args`, or none in `f`'s output: every derivative
    of any order is empty."""
    inputs = [x for x in jax.tree_util.tree_leaves(args) if is_differentiable_leaf(x)]
    if sum(np.size(x) for x in inputs) == 0:
        return True
    out = jax.tree_util.tree_leaves(output_shape(f, *args))
    return sum(math.prod(x.shape) for x in out) == 0


def _check_vjp(
    f: Callable[..., Any], args: tuple[Any, ...], options: Options, what: str
) -> None:
    """The VJP check along JAX's cotangent, entry by entry, then JAX's own
    projection test, with JAX's verdicts where `f(*args)` has NaN or Inf entries.

    There ⟨c, f⟩ is not finite, so its gradient cannot be differenced. JAX
    compares one projection of each side: an output stuck at ±Inf does not move
    (`inf - inf` counts as 0), and NaN on both sides agrees. So here: ±Inf
    outputs get a zero cotangent and the rest is checked entry by entry; with a
    NaN output, a VJP that is NaN too agrees (with a warning), a finite one fails.
    """
    out, vjp_fn = linearized(f, args)  # one `jax.vjp`: the output and the VJP
    tangent, c = jax_draws(args, out)
    leaves = jax.tree_util.tree_leaves(out)
    if not any(np.any(np.isnan(np.asarray(x))) for x in leaves):
        masked = c
        if not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
            treedef = jax.tree_util.tree_structure(c)
            zeroed = [
                np.where(np.isinf(np.asarray(o)), np.zeros_like(x), x)
                for x, o in zip(jax.tree_util.tree_leaves(c), leaves, strict=True)
            ]
            masked = jax.tree_util.tree_unflatten(treedef, zeroed)
        report = vjp_report(f, args, vjp_fn, masked, options)
        raise_if_failed(report, what)
        if options.mode != "full" or not np.all(report.comparison.status == OK):
            # Fast mode compares probes, not every entry; an entry at a kink
            # passed as a subgradient and one not finite on both sides as JAX
            # judges it, where a projection through them says nothing more.
            return
        why = projection_failure(
            report, f, args, vjp_fn, c, tangent, options.eps, options.tolerance
        )
        if why is not None:
            raise GradCheckError(f"{what} check failed: {why}")
        return
    vjp = jax.tree_util.tree_leaves(vjp_fn(c))
    if all(np.all(np.isfinite(np.asarray(x))) for x in vjp if _is_numeric(x)):
        raise GradCheckError(
            f"{what} check failed: `f` is NaN at `args`, so are its finite "
            "differences, but its VJP is finite."
        )
    warnings.warn(
        f"{what}: `f` is NaN at `args` and so is its VJP; as in "
        "jax.test_util.check_grads, NaN on both sides counts as agreement (the VJP "
        "was not checked entry by entry).",
        stacklevel=5,
    )


def _is_numeric(x: Any) -> bool:
    dtype = np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
    return dtype.kind in "fc"
