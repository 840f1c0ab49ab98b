"""`fun` at θ + s·h for chosen entries of θ and a few shifts s, block by block.

This is the one place that turns "entries and steps" into batched evaluations;
every stencil (central, one-sided, the refinement at 2h, the retries at smaller
steps) is a set of shifts passed here. Each block's batch also re-evaluates J(θ)
a few times: that is the base value of one-sided slopes (computed by the same
compiled program as the shifted values, so they cancel to the last bit) and the
evidence when `fun` is nondeterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._runtime.sharding import devices_in_use, host_value
from .._tree.pytree import SplitTree
from .blocks import bytes_per_evaluation, chunk_length, entries_by_block
from .evaluate import evaluate_block
from .steps import host_dtype, perturbed_values


@dataclasses.dataclass(frozen=True)
class Shifted:
    """J at every shifted point, in the order of `entries`.

    `values[u, k, i, m]` is output m of J(θ + shifts[k]·unit_u·hᵢ·eᵢ) (a scalar
    loss has one output) and `moved[u, k, i]` the displacement actually taken
    along unit_u (after rounding θ + s·h to the leaf's dtype). Units are 1, and i
    for complex leaves; the i-rows of real entries are NaN. `base[i, m]` is J(θ)
    from the batch that evaluated entry i, and `spread` the largest difference
    between repeated evaluations of J(θ) in one batch.
    """

    values: np.ndarray
    moved: np.ndarray
    base: np.ndarray
    spread: float


# The rows of every eager batch (the last one padded): see `_engine.jaxpr`.
EAGER_ROWS = 64


def _bit_ceil(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def evaluate_shifts(
    tree: SplitTree,
    fun_bytes: int,
    entries: np.ndarray,
    steps: np.ndarray,
    shifts: Sequence[float],
    *,
    chunk_size: int | None,
    memory_budget: int,
    repeats: int = 1,
    imaginary: bool = False,
    n_outputs: int = 1,
    eager: bool = False,
    batched: bool = True,
) -> Shifted:
    """Evaluates J at θ + s·hᵢ·eᵢ for every entry i of `entries` (sorted offsets
    into θ) and every shift s, batched per block of leaves. With `imaginary`, the
    shifts are along i for every entry (the complex step) and `values` is Im J."""
    n = len(entries)
    values = np.full((2, len(shifts), n, n_outputs), np.nan)
    moved = np.full((2, len(shifts), n), np.nan)
    base = np.full((n, n_outputs), np.nan)
    spread = 0.0
    for block, leaves, picked, local in entries_by_block(tree.leaves, entries):
        dtype = leaves[0].dtype
        theta = np.concatenate(
            [host_value(tree.dynamic[x.position]).reshape(-1) for x in leaves]
        )
        local = local.astype(np.int32)
        here = theta[local]
        h = steps[picked]
        units = (1.0, 1j) if jnp.issubdtype(dtype, jnp.complexfloating) else (1.0,)
        units = (1j,) if imaginary else units
        moved_to = [
            perturbed_values(here, h, s, unit, dtype) for unit in units for s in shifts
        ]
        index = np.concatenate(
            [np.tile(local, len(moved_to)), np.zeros(repeats, np.int32)]
        )
        new = np.concatenate(moved_to + [np.repeat(theta[:1], repeats)])
        per_eval = bytes_per_evaluation(block, dtype.itemsize, fun_bytes)
        chunk = chunk_length(len(index), per_eval, memory_budget, chunk_size)
        if not batched and chunk_size is None:
            chunk = len(index)  # one point at a time: no batch to bound or pad
        elif eager and chunk_size is None:
            # Op by op, every op is compiled once per shape: batches of one
            # length let every pass of a check, and the next check of the same
            # shapes, reuse them (a shorter pass is padded to it).
            rows = max(len(index), EAGER_ROWS)
            chunk = min(EAGER_ROWS, chunk_length(rows, per_eval, memory_budget, None))
        elif chunk_size is None and len(picked) < block.size:
            # A subset of a block: round the chunk up to a power of two, so that
            # refinements of any size share a handful of compiled programs.
            chunk = min(_bit_ceil(len(index)), max(chunk, 8))
        out = evaluate_block(
            tree.problem, block, leaves, tree.dynamic, index, new, chunk, eager,
            batched=batched,
        )  # fmt: skip
        out = (out.imag if imaginary else out).astype(np.float64)
        out = out.reshape(len(out), n_outputs)
        shifted, again = out[: len(out) - repeats], out[len(out) - repeats :]
        shifted = shifted.reshape(len(units), len(shifts), len(picked), n_outputs)
        values[: len(units), :, picked] = shifted
        here_host = here.astype(host_dtype(dtype))
        for u, unit in enumerate(units):
            for k in range(len(shifts)):
                delta = moved_to[u * len(shifts) + k].astype(host_dtype(dtype))
                delta = delta - here_host
                moved[u, k, picked] = delta.imag if unit == 1j else delta.real
        if repeats:
            base[picked] = np.mean(again, axis=0)
            gap = _gap(again, again[:1])
            if gap > 0:
                # Rows of one batch may round differently by their position in
                # it (vectorized lanes and a scalar tail run different code), so
                # repeats that differ prove nothing yet: run their chunk again,
                # the same rows in the same places, and compare like with like.
                last = _rows_in_last_chunk(len(index), chunk)
                rerun = evaluate_block(
                    tree.problem, block, leaves, tree.dynamic, index[-last:],
                    new[-last:], chunk, eager, recorded=False, batched=batched,
                )  # fmt: skip
                rerun = (rerun.imag if imaginary else rerun).astype(np.float64)
                gap = _gap(rerun.reshape(len(rerun), n_outputs)[-repeats:], again)
            spread = max(spread, gap)
    return Shifted(values, moved, base, spread)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a − b|; equal values (the same infinity included) do not
    differ, and NaN outputs are the function's, not evidence of
    nondeterminism."""
    with np.errstate(invalid="ignore"):
        gaps = np.where(a == b, 0.0, np.abs(a - b))
    return float(np.nanmax(gaps, initial=0.0))


def _rows_in_last_chunk(n: int, chunk: int) -> int:
    """How many of `n` rows the chunk loop puts in its last chunk."""
    devices = devices_in_use()
    chunk = -(-chunk // devices) * devices
    return n - (-(-n // chunk) - 1) * chunk
