"""The benchmark's model: the tanh MLP [16, h, h, h, 4] and its data, built in
NumPy so that every library checks bit-identical weights."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

MEMORY_BUDGET = 1 << 30
_IN, _OUT = 16, 4
BATCH = 32  # rows of data


def child_env() -> dict[str, str]:
    """The environment of a child process of the benchmark: this directory and the
    jaxcheck this process imported come first on its PYTHONPATH."""
    import jaxcheck

    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(os.path.dirname(os.path.abspath(jaxcheck.__file__)))
    env = dict(os.environ)
    paths = [here, package, env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def n_params(h: int) -> int:
    """Parameter count of the MLP [16, h, h, h, 4]: 2h² + 23h + 4."""
    return 2 * h * h + 23 * h + 4


def width_for(target: float) -> int:
    """The hidden width h whose parameter count is closest to `target`."""
    root = (-23 + math.sqrt(529 + 8 * max(target - 4, 0))) / 4
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda h: (abs(n_params(h) - target), h))


def build_model(
    h: int, seed: int = 0, batch: int = BATCH
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The weights and data as float64 NumPy arrays, so JAX and torch check
    bit-identical models.

    Returns:
        `(params, x, y)`: a list of {"w": (a, b), "b": (b,)} layers, inputs (32, 16)
        and targets (32, 4).
    """
    rng = np.random.default_rng(seed)
    sizes = [_IN, h, h, h, _OUT]
    params = [
        {"w": rng.normal(size=(a, b)) / math.sqrt(a), "b": 0.1 * rng.normal(size=b)}
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    return params, rng.normal(size=(batch, _IN)), rng.normal(size=(batch, _OUT))


def mlp_loss(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    """Half the mean squared error of the tanh MLP (its last layer is linear)."""
    hidden = x
    for layer in params[:-1]:
        hidden = jnp.tanh(hidden @ layer["w"] + layer["b"])
    out = hidden @ params[-1]["w"] + params[-1]["b"]
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))
