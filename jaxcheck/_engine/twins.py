"""Twins of `fun` for the numerical side only: float64 and complex.

Finite differences of a float32 (or float16, bfloat16) function are poor: with
u ≈ 1e-7, the best central difference is good to about u^(2/3) ≈ 2e-5 relative,
and worse where J is large. Evaluated in float64, the same function's
differences are good to about 1e-10, so the pass band is set by the rounding of
the analytic (float32) gradient, not by the differences. The analytic side is
untouched: the gradient checked is the one the user's dtype produces.

The twin casts the perturbed leaves and the floating arrays of `args` to 64 bits
and runs `fun` with x64 enabled. It is used only when it is faithful: `fun`
traces in float64, returns float64, computes nothing in a narrower float, and
agrees with the original at θ to within the original's precision. Otherwise the
check falls back to the real dtype's steps and bounds, and says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base.options import Tolerance
from .._tree.device import device_value
from .analytic import base_output
from .compare import Comparison
from .evaluate import evaluate, trace_base
from .jaxpr import intermediate_bytes, sub_jaxprs
from .numerical import Prepared, change
from .refine import Judged, judge

# The original value may differ from the float64 one by its own rounding: allow
# this many units of its machine epsilon before calling the twin unfaithful.
_VALUE_ULPS = 1024


@contextlib.contextmanager
def x64():
    """A context in which JAX computes in 64 bits, with standard dtype
    promotion: there, NumPy integer constants that `fun` closes over become
    int64 while indices JAX computes stay int32, a mix that a user's strict
    promotion (right for `fun` in its own dtype) would refuse in the twin."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # older JAX
        from jax.experimental import enable_x64 as enable
    with enable(True), jax.numpy_dtype_promotion("standard"):
        yield


def _is_narrow(dtype) -> bool:
    dtype = np.dtype(dtype)
    return jnp.issubdtype(dtype, jnp.inexact) and jnp.finfo(dtype).bits < 64


def _wide(dtype) -> np.dtype:
    return np.dtype(
        np.complex128 if jnp.issubdtype(dtype, jnp.complexfloating) else np.float64
    )


def _narrow_outputs(jaxpr) -> list[str]:
    """Names of the narrow float dtypes any equation of a jaxpr computes."""
    found = []
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            dtype = getattr(getattr(var, "aval", None), "dtype", None)
            if dtype is not None and _is_narrow(dtype):
                found.append(np.dtype(dtype).name)
        for inner in sub_jaxprs(eqn):
            found += _narrow_outputs(inner)
    return found


def _widened(x: Any) -> jax.Array:
    """`x` in 64 bits; cast on the host where it lives on one device, so that
    no program is compiled per shape for it."""
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
        return jnp.asarray(x, _wide(x.dtype))  # keeps its sharding
    return device_value(np.asarray(x), _wide(x.dtype))


def needs_float64_twin(prepared: Prepared) -> bool:
    return _is_narrow(prepared.out_dtype) or any(
        _is_narrow(leaf.dtype) for leaf in prepared.tree.leaves
    )


def float64_twin(
    prepared: Prepared, base_value: float | np.ndarray
) -> tuple[Prepared | None, str]:
    """The float64 twin of `prepared`, or None and the reason there is none.

    Must be called, and its result used, inside `x64()`.
    """
    tree = prepared.tree
    dynamic = tuple(
        _widened(x)
        if jnp.issubdtype(x.dtype, jnp.inexact) and _is_narrow(x.dtype)
        else x
        for x in tree.dynamic
    )
    leaves = tuple(dataclasses.replace(x, dtype=_wide(x.dtype)) for x in tree.leaves)
    twin = dataclasses.replace(tree, dynamic=dynamic, leaves=leaves)
    try:
        traced = trace_base(twin.problem, dynamic)
    except Exception as error:  # the twin is optional: any failure means no twin
        message = str(error).strip().splitlines()[0][:120] if str(error) else ""
        return (
            None,
            f"`fun` does not trace in float64 ({type(error).__name__}: {message})",
        )
    out_dtype = np.dtype(traced.out_info.dtype)
    if out_dtype != np.float64:
        return None, f"`fun` returns {out_dtype.name} even from float64 inputs"
    narrow = sorted(set(_narrow_outputs(traced.jaxpr.jaxpr)))
    if narrow:
        return None, f"`fun` computes in {', '.join(narrow)} internally"
    fun_bytes = intermediate_bytes(traced.jaxpr.jaxpr)
    base = np.asarray(base_value, np.float64).reshape(-1)
    u = max(float(jnp.finfo(prepared.out_dtype).eps), float(jnp.finfo(np.float32).eps))
    value = evaluate(twin.problem, dynamic, eager=prepared.eager)
    value = np.asarray(value, np.float64).reshape(-1)
    off = _unfaithful(value, base, u)
    if np.any(off):
        k = int(np.flatnonzero(off)[0])
        where = f" (output {k})" if base.size > 1 else ""
        return None, (
            f"`fun` is {value[k]:.9g} in float64 but {base[k]:.9g} in its own "
            f"dtype{where}"
        )
    twin_prepared = dataclasses.replace(
        prepared, tree=twin, out_dtype=out_dtype, fun_bytes=fun_bytes
    )
    return twin_prepared, ""


def _unfaithful(value: np.ndarray, base: np.ndarray, u: float) -> np.ndarray:
    """Where the twin's value is not `fun`'s in its own dtype (to `_VALUE_ULPS`
    units `u` of it); NaN on both sides agrees."""
    with np.errstate(invalid="ignore"):
        off = ~(np.abs(change(value, base)) <= _VALUE_ULPS * u * np.abs(base))
    return off & ~(np.isnan(value) & np.isnan(base))


# Primitives that are not complex-analytic: with a complex operand they break
# the complex step (abs, comparisons, max/min, parts, rounding).
_NOT_ANALYTIC = frozenset(
    "abs sign max min lt le gt ge real imag conj floor ceil round "
    "convert_element_type".split()
)


def _non_analytic(jaxpr) -> list[str]:
    found = []
    for eqn in jaxpr.eqns:
        operands = [getattr(v, "aval", None) for v in eqn.invars]
        complex_in = any(
            a is not None
            and hasattr(a, "dtype")
            and jnp.issubdtype(a.dtype, jnp.complexfloating)
            for a in operands
        )
        name = eqn.primitive.name
        if complex_in and name in _NOT_ANALYTIC:
            out = getattr(eqn.outvars[0], "aval", None)
            still_complex = out is not None and jnp.issubdtype(
                out.dtype, jnp.complexfloating
            )
            if not (name == "convert_element_type" and still_complex):
                found.append(name)
        for inner in sub_jaxprs(eqn):
            found += _non_analytic(inner)
    return found


def complex_twin(prepared: Prepared) -> Prepared:
    """`fun` with its perturbed leaves made complex128, for the complex step
    Im J(θ + ih) / h. Must be called, and its result used, inside `x64()`."""
    tree = prepared.tree
    bad = [
        leaf for leaf in tree.leaves if jnp.issubdtype(leaf.dtype, jnp.complexfloating)
    ]
    if bad:
        raise ValueError(
            f"method='complex' needs real parameters, but {bad[0].path or 'params'} is "
            f"{bad[0].dtype.name}; use method='central' for complex parameters."
        )
    positions = {leaf.position for leaf in tree.leaves}
    dynamic = tuple(
        jnp.asarray(x, np.complex128) if i in positions else x
        for i, x in enumerate(tree.dynamic)
    )
    leaves = tuple(
        dataclasses.replace(x, dtype=np.dtype(np.complex128)) for x in tree.leaves
    )
    twin = dataclasses.replace(tree, dynamic=dynamic, leaves=leaves)
    hint = (
        "The complex step needs a complex-analytic `fun` (no abs, max/min, "
        "comparisons, real/imag or casts to real on the path from the parameters "
        "to the loss); use method='central' instead."
    )
    try:
        traced = trace_base(twin.problem, dynamic)
    except Exception as error:
        raise ValueError(
            f"method='complex': `fun` fails on complex parameters "
            f"({type(error).__name__}). {hint}"
        ) from error
    out_dtype = np.dtype(traced.out_info.dtype)
    if not jnp.issubdtype(out_dtype, jnp.complexfloating):
        raise ValueError(
            f"method='complex': `fun` returns {out_dtype.name} for complex "
            f"parameters, dropping the imaginary part that carries the derivative. "
            f"{hint}"
        )
    broken = sorted(set(_non_analytic(traced.jaxpr.jaxpr)))
    if broken:
        raise ValueError(
            f"method='complex': `fun` applies {', '.join(broken)} to complex values. "
            f"{hint}"
        )
    fun_bytes = intermediate_bytes(traced.jaxpr.jaxpr)
    return dataclasses.replace(
        prepared,
        tree=twin,
        out_dtype=np.dtype(np.float64),
        fun_bytes=fun_bytes,
    )


@contextlib.contextmanager
def numerical_side(
    prepared: Prepared, base_value: float, enabled: bool, method: str = "central"
):
    """Yields (the Prepared to difference, a note for the report)."""
    if method == "complex":
        with x64():
            yield complex_twin(prepared), "complex-step derivatives Im J(θ + ih) / h"
        return
    if not (enabled and needs_float64_twin(prepared)):
        yield prepared, ""
        return
    with x64():
        twin, why = float64_twin(prepared, base_value)
        if twin is not None:
            yield twin, "differences in a float64 twin of `fun`"
            return
    yield prepared, f"differences in the native dtype: {why}"


# The float64 twin only where the native differences do not settle a verdict.
#
# When a check evaluates its points eagerly (`evaluation_way`), its native
# differences cost dispatches of ops the analytic side has compiled already, while
# the twin compiles every op of `fun` once more, in float64: for a small function
# that is most of a check's time. Under the drop-in's floors (JAX's tolerances,
# far wider than a float32 difference's error), a compiled check's native
# differences settle nearly every verdict too, and the twin's program is never
# compiled. So there the native differences are judged first, and only the
# values they do not settle are judged again in the twin, whose verdicts replace
# theirs. A value is settled by a pass that holds wherever
# within its error bound the exact derivative lies, under the band without that
# bound: the twin, nearer the exact derivative, would pass it too. Failures,
# narrow passes and inconclusive values all go to the twin.


def is_lazy(prepared: Prepared, tolerance: Tolerance, method: str) -> bool:
    """Whether the twin waits for the native differences: where the points run
    eagerly, or where the tolerance has floors (the drop-in's, as wide as
    JAX's), which native differences nearly always settle."""
    return method != "complex" and (prepared.eager or bool(tolerance.floors))


def judge_twinned(
    prepared: Prepared,
    base_value: float | np.ndarray | None,
    analytic: np.ndarray,
    *,
    shadow: bool,
    method: str,
    **judging,
) -> tuple[Judged, str]:
    """`judge` on the numerical side `numerical_side` picks (the float64 twin
    where `fun` is narrow and the twin faithful), lazily where the points run
    eagerly. Returns the verdicts and the note on the differences.

    `base_value` is J(θ), which the twin must reproduce to be faithful; None
    evaluates it where it is needed (lazily, it comes from the native batch).
    """
    if not (
        is_lazy(prepared, judging["tolerance"], method)
        and shadow
        and needs_float64_twin(prepared)
    ):
        twin = shadow and method != "complex" and needs_float64_twin(prepared)
        if base_value is None and twin:
            base_value = base_output(prepared)
        with numerical_side(prepared, base_value, shadow, method) as (numerical, note):
            return judge(numerical, analytic, method=method, **judging), note
    judged = judge(prepared, analytic, method=method, **judging)
    settled = judged.settled
    rows = np.flatnonzero(~(settled if settled.ndim == 1 else np.all(settled, 1)))
    if not rows.size:
        return judged, ""
    entries = judging.pop("entries", None)
    again_at = rows if entries is None else np.asarray(entries)[rows]
    with x64():
        if base_value is None:
            base_value = judged.base
        # Central differences at h and 2h for each entry left open.
        twin, why = float64_twin(prepared, base_value)
        if twin is None:
            return judged, f"differences in the native dtype: {why}"
        again = judge(twin, analytic, method=method, entries=again_at, **judging)
    note = (
        f"differences in a float64 twin of `fun` for the {rows.size} of "
        f"{len(settled)} entries the native ones did not settle"
    )
    return _merged(judged, rows, again), note


def _merged(judged: Judged, rows: np.ndarray, again: Judged) -> Judged:
    """`judged` with its `rows` replaced by those of `again`."""

    def put(mine: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = mine.copy()
        out[rows] = new
        return out

    comparison = Comparison(
        *(
            put(getattr(judged.comparison, f.name), getattr(again.comparison, f.name))
            for f in dataclasses.fields(Comparison)
        )
    )
    return Judged(
        comparison,
        put(judged.steps, again.steps),
        max(judged.spread, again.spread),
        put(judged.settled, again.settled),
        judged.base,
    )
