"""The tolerances of `jax.test_util.check_grads`, as per-entry floors for the drop-in.

JAX's `atol` and `rtol` are each None, a number, or a dict from dtype to number
merged over its `default_gradient_tolerance` and looked up by the dtype of the
values compared. JAX then multiplies both by the size of the compared arrays,
because it compares one random projection of them. The drop-in compares every
entry, so it takes the looked-up values as they are, as the narrowest pass band an
entry gets; jaxcheck's own error bound widens it where the numbers need it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# jax.test_util's default_gradient_tolerance for the floating dtypes.
JAX_GRADIENT_TOLERANCE: dict[str, float] = {
    "bfloat16": 1e-1,
    "float16": 1e-2,
    "float32": 2e-3,
    "float64": 1e-5,
    "complex64": 1e-3,
    "complex128": 1e-5,
}


def _as_dtype(key: Any, name: str) -> np.dtype:
    try:
        return np.dtype(key)
    except TypeError:
        raise TypeError(
            f"`{name}` has the key {key!r}, which is not a dtype; key a tolerance "
            "dict by dtype, e.g. {np.float32: 1e-3}."
        ) from None


def _as_tolerance(value: Any, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be None, a non-negative number, or a dict from dtype to "
            f"number (as in jax.test_util.check_grads), got {value!r}."
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"`{name}` must be non-negative and finite, got {value!r}; pass None for "
            "JAX's default tolerance of each dtype."
        )
    return float(value)


def _resolve(tol: Any, name: str) -> dict[np.dtype, float]:
    """JAX's lookup table for one of `atol`/`rtol`: per floating dtype."""
    table = {np.dtype(k): v for k, v in JAX_GRADIENT_TOLERANCE.items()}
    table[np.dtype(jnp.bfloat16)] = JAX_GRADIENT_TOLERANCE["bfloat16"]
    if tol is None:
        return table
    if isinstance(tol, dict):
        for key, value in tol.items():
            table[_as_dtype(key, name)] = _as_tolerance(value, f"{name}[{key!r}]")
        return table
    value = _as_tolerance(tol, name)
    return {dtype: value for dtype in table}


def jax_tolerances(atol: Any, rtol: Any) -> tuple[tuple[np.dtype, float, float], ...]:
    """`(dtype, atol, rtol)` per floating dtype, as the drop-in's pass-band floors.

    Raises:
        TypeError, ValueError: naming `atol` or `rtol` when either is not a form
            that `jax.test_util.check_grads` accepts.
    """
    absolute, relative = _resolve(atol, "atol"), _resolve(rtol, "rtol")
    # Integer keys are allowed, as in JAX, and never used.
    dtypes = [d for d in {**absolute, **relative} if jnp.issubdtype(d, jnp.inexact)]
    default = JAX_GRADIENT_TOLERANCE["float32"]
    floors = []
    for dtype in dtypes:
        canonical = np.dtype(jax.dtypes.canonicalize_dtype(dtype))
        if canonical != dtype:
            continue  # never the dtype of a value under the current x64 setting
        floors.append(
            (dtype, absolute.get(dtype, default), relative.get(dtype, default))
        )
    return tuple(floors)
