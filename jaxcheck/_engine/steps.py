"""Finite-difference steps and the default tolerances, both keyed by dtype.

The step rule lives here and nowhere else: every step a check takes derives
from `default_step_scale`, the dtype's u^p. An entry's step (`step_sizes`), the
length of fast mode's random probes (`probe_length`), the Taylor test's sequence
(`taylor_steps`), the scale a JVP's tangent is brought to (`tangent_scale`) and
the refinement's smaller and larger steps (`smaller_steps`, `larger_steps`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The step exponent that balances truncation against round-off error: with
# machine epsilon u, h ≈ u^(1/3) for a two-sided difference (error O(h²) + u/h)
# and h ≈ u^(1/2) for a one-sided one (error O(h) + u/h).
# The five-point stencil (error O(h⁴) + u/h) balances at h ≈ u^(1/5).
# The complex step Im J(θ + ih) / h subtracts nothing: any tiny h will do, and
# u^(5/4) ≈ 2.5e-20 (float64) keeps its O(h²) error far below round-off.
_STEP_EXPONENT = {
    "central": 1 / 3,
    "forward": 1 / 2,
    "backward": 1 / 2,
    "central4": 1 / 5,
    "complex": 5 / 4,
}


@dataclasses.dataclass(frozen=True)
class Floor:
    """The smallest pass band of an entry of a leaf of one dtype.

    An entry passes when |a − n| ≤ atol·max|n|_leaf + bound + rtol·max(|a|, |n|),
    where `bound` is the entry's own estimate of the finite-difference error. The
    floors cover the rounding error of the analytic gradient itself, which
    no finite difference can see: measured on float32/float16/bfloat16 MLPs
    against float64, it stays below about 2·u·max|g| over a leaf.
    """

    rtol: float
    atol: float  # relative to the largest |numeric| entry of the leaf


# Keyed by the perturbed leaf's real dtype (the dtype of the analytic gradient).
DEFAULT_FLOORS: dict[str, Floor] = {
    "float64": Floor(rtol=1e-6, atol=1e-10),
    "float32": Floor(rtol=1e-4, atol=4e-6),
    "float16": Floor(rtol=1e-2, atol=8e-3),
    "bfloat16": Floor(rtol=5e-2, atol=6e-2),
}

# The round-off term is NOISE_FACTOR · u · max(|J(θ ± h)|) / |step|: the error of
# subtracting two values of J each good to a few units in the last place.
NOISE_FACTOR = 16.0


def roundoff_bound(u: Any, scale: Any, width: Any) -> np.ndarray:
    """NOISE_FACTOR · u · |J| / |step|: the bound on the round-off error of a
    difference of values of magnitude `scale` taken across `width`, with unit
    round-off `u`. The only place the round-off bound is written."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return NOISE_FACTOR * np.asarray(u) * np.asarray(scale) / np.asarray(width)


# The truncation term is SAFETY · |D(h) − D(2h)| / (2^p − 1), the Richardson
# estimate of the error of a difference of order p, times a margin for the
# variation of the higher derivatives between h and 2h.
SAFETY = 4.0


def host_dtype(dtype: np.dtype) -> type:
    """The host dtype that holds a leaf's values exactly: complex128 or float64."""
    return np.complex128 if jnp.issubdtype(dtype, jnp.complexfloating) else np.float64


def common_dtype(dtypes: Sequence[Any]) -> np.dtype:
    """The dtype that holds every one of `dtypes`, by JAX's standard promotion:
    jaxcheck casts to it explicitly, so a user's strict promotion does not
    apply to jaxcheck's own sums and concatenations."""
    with jax.numpy_dtype_promotion("standard"):
        return np.dtype(functools.reduce(jnp.promote_types, dtypes))


def real_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for complex64, float64 for complex128; a real dtype unchanged."""
    return np.dtype(jnp.finfo(dtype).dtype)


def default_floor(dtype: np.dtype) -> Floor:
    return DEFAULT_FLOORS.get(real_dtype(dtype).name, DEFAULT_FLOORS["float16"])


def default_step_scale(dtype: np.dtype, method: str) -> float:
    """u^(1/3) (central) or u^(1/2) (one-sided) for the dtype's machine epsilon u."""
    return float(jnp.finfo(dtype).eps) ** _STEP_EXPONENT[method]


def step_sizes(
    theta: np.ndarray, dtype: np.dtype, method: str, eps: float | None
) -> np.ndarray:
    """Per-entry steps h, as float64, for the entries `theta` of a leaf of `dtype`.

    With `eps=None`, h = scale · max(1, |θᵢ|) rounded to a power of two, so that
    θᵢ ± h is exact in the leaf's dtype whenever it stays in θᵢ's binade. A float
    `eps` is the same absolute step for every entry.
    """
    if eps is not None:
        return np.full(theta.shape, float(eps))
    magnitude = np.maximum(1.0, np.abs(theta.astype(host_dtype(dtype))))
    return _power_of_two(default_step_scale(dtype, method) * magnitude)


def _power_of_two(x: Any) -> Any:
    """x rounded to the nearest power of two: a step that scales exactly."""
    return np.exp2(np.round(np.log2(x)))


def probe_length(dtype: np.dtype, theta: np.ndarray) -> float:
    """The length of a random probe direction of a leaf (fast mode): the
    dtype's central step (a power of two) times max(1, RMS(θ)), one step's
    length for the whole leaf, as an entry's step is for one entry."""
    theta = np.abs(theta.astype(host_dtype(dtype)))
    scale = max(1.0, float(np.sqrt(np.mean(theta**2)))) if theta.size else 1.0
    return float(_power_of_two(default_step_scale(dtype, "central"))) * scale


def tangent_scale(thetas: Sequence[Any], tangents: Sequence[Any]) -> float:
    """max|θ| / max|t| (at least 1 for θ), rounded to a power of two: a JVP's
    tangent times this moves θ on its own scale when s moves by 1, so the
    steps `step_sizes` picks for s (as for any entry at 0) fit θ. A power of
    two scales t exactly. Non-finite entries are ignored."""

    def largest(x: Any) -> float:
        magnitude = np.abs(np.asarray(x))
        return float(np.max(magnitude[np.isfinite(magnitude)], initial=0.0))

    theta = max([largest(x) for x in thetas] + [1.0])
    t = max([largest(x) for x in tangents] + [0.0])
    return float(_power_of_two(theta / (t if t > 0 else 1.0)))


# The Taylor test's largest default step.
LARGEST_TAYLOR_STEP = 0.25


def taylor_steps(dtype: np.dtype, num_steps: int, h0: float | None) -> np.ndarray:
    """The Taylor test's steps h0·2⁻ᵏ, k = 0 … num_steps − 1, for the coarsest
    `dtype` in play. The default h0 puts the smallest step near 32 times the
    dtype's one-sided step √u (a power of two, h0 at most 1/4): there a correct
    gradient's remainder, O(h²), nears the round-off of J while a wrong one's,
    O(h), still stands above it."""
    if h0 is None:
        smallest = float(_power_of_two(default_step_scale(dtype, "forward"))) * 32
        h0 = min(LARGEST_TAYLOR_STEP, smallest * 2.0 ** (num_steps - 1))
    return h0 * 2.0 ** -np.arange(num_steps)


# The refinement (see `_engine.refine`): where `fun` is not finite within a
# step, or the error is mostly truncation, the step shrinks by SHRINK per level;
# a failure that round-off may explain is retried at steps GROW times larger,
# GROWTHS times.
SHRINK = 8.0
GROW = 4.0
GROWTHS = 3


def smaller_steps(steps: np.ndarray, level: int) -> np.ndarray:
    return steps / SHRINK**level


def larger_steps(steps: np.ndarray, level: int) -> np.ndarray:
    return steps * GROW**level


def perturbed_values(
    theta: np.ndarray, steps: np.ndarray, sign: float, unit: complex, dtype: np.dtype
) -> np.ndarray:
    """θ + sign·unit·h, rounded to the leaf's dtype (the value `fun` will see)."""
    shifted = theta.astype(host_dtype(dtype)) + sign * (unit * steps).astype(
        host_dtype(dtype)
    )
    return shifted.astype(dtype)
