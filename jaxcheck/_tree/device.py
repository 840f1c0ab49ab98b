"""Host arrays onto the device without a compiled program."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def device_value(x: Any, dtype: Any = None) -> jax.Array:
    """`jnp.asarray(x, dtype)` for a host array, copied to the device as it is
    (cast on the host), so that no program is compiled per shape to make it
    (`jnp.asarray` of a NumPy array compiles one). Device arrays and Python
    scalars (weakly typed) go through `jnp.asarray`."""
    if not isinstance(x, np.ndarray | np.generic):
        return jnp.asarray(x, dtype)
    dtype = jax.dtypes.canonicalize_dtype(x.dtype if dtype is None else dtype)
    return jax.device_put(np.asarray(x).astype(dtype, copy=False))
