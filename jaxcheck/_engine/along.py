"""`fun` along random directions: the evaluations of the Taylor test, J(θ + h·v)
for a batch of steps h, through the engine's chunk loop."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from .._runtime.sharding import host_value
from .._tree.pytree import LeafInfo, Problem
from .chunks import run_chunks
from .evaluate import moved_along
from .steps import host_dtype


def random_directions(
    leaves: tuple[LeafInfo, ...], dynamic, seed: int
) -> list[np.ndarray]:
    """One random direction per leaf, entry i scaled by max(1, |θᵢ|), in the leaf's
    dtype: a step h moves every entry by about h relative to its size, whatever the
    scale of the parameters. Together they are the global direction."""
    rng = np.random.default_rng(seed)
    out = []
    for leaf in leaves:
        theta = host_value(dynamic[leaf.position]).astype(host_dtype(leaf.dtype))
        z = rng.standard_normal(leaf.shape)
        if leaf.dtype.kind == "c":
            z = (z + 1j * rng.standard_normal(leaf.shape)) / math.sqrt(2)
        out.append((z * np.maximum(1.0, np.abs(theta))).astype(leaf.dtype))
    return out


def _points_along(
    problem: Problem,
    positions: tuple[int, ...],
    dynamic: tuple[jax.Array, ...],
    directions: tuple[jax.Array, ...],
    weights: jax.Array,
    steps: jax.Array,
    batched: bool = True,
) -> jax.Array:
    """`fun` at θ + h·(wₗ·vₗ)ₗ for every h in `steps`: batched with `vmap`, or
    (not `batched`) one after another with `lax.map`."""

    def one(h):
        new = list(dynamic)
        for i, (p, d) in enumerate(zip(positions, directions, strict=True)):
            new[p] = moved_along(dynamic[p], h * weights[i], d)
        return problem.evaluate(new)

    return jax.lax.map(one, steps) if not batched else jax.vmap(one)(steps)


_along = jax.jit(_points_along, static_argnums=(0, 1))
# For a `fun` that cannot be batched: the same steps, one at a time.
_along_rows = jax.jit(
    functools.partial(_points_along, batched=False), static_argnums=(0, 1)
)


def values_along(prepared, directions, weights, steps, chunk) -> np.ndarray:
    """J(θ) and J(θ + h·v) for every h, one direction, through the engine's chunk
    loop (padding, devices, progress, the one-at-a-time fallback)."""
    tree = prepared.tree
    positions = tuple(leaf.position for leaf in tree.leaves)
    program = functools.partial(
        _along, tree.problem, positions, tree.dynamic, directions, weights
    )
    rows = functools.partial(
        _along_rows, tree.problem, positions, tree.dynamic, directions, weights
    )
    values = run_chunks(
        program,
        (np.concatenate([[0.0], steps]),),
        chunk,
        lambda k, n: f"evaluating the Taylor test's steps (chunk {k + 1} of {n})",
        one_at_a_time=rows,
    )
    return np.asarray(values, np.float64)
