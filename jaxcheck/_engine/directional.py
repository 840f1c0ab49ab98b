"""Fast mode: a few random directional derivatives per leaf, batched.

For a leaf θ_L and a seeded random direction v (standard normal entries, scaled to
the length of one central-difference step h), the probe compares

    ⟨g_L, d⟩  with  J(θ + v) − J(θ − v),   d = fl(θ_L + v) − fl(θ_L − v),

where d is the perturbation `fun` actually saw after rounding to the leaf's dtype,
so rounding the perturbed point costs no accuracy. Both sides are divided by ‖d‖₂,
which makes them derivatives along a unit direction, and the probe passes when

    |a − n| ≤ atol · max|g_L| + round-off + rtol · max(|a|, |n|),

the per-entry rule of `check_grad` applied to the directional derivative, with the
dtype's floors for atol and rtol and round-off 16·u·max|J(θ ± v)| / ‖d‖₂. A leaf
passes when all its probes pass. A leaf with a failing probe is narrowed down (see
`NARROW_GROUPS`) and its suspect entries are checked one by one, which locates the
wrong entries. The probes have no truncation term: a probe that fails from
truncation error alone costs that entry-by-entry check, which estimates the error
(Richardson) and passes. All the probes run in the batched, chunked engine:
2·probes evaluations per leaf, and one compiled program per dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._base.options import Tolerance
from .._runtime.sharding import host_value
from .._tree.pytree import LeafInfo, Problem, format_path
from .blocks import Block, block_of, bytes_per_evaluation, chunk_length
from .chunks import run_chunks
from .compare import entry_band
from .evaluate import replace_leaves
from .numerical import Prepared
from .steps import host_dtype, probe_length, roundoff_bound

DEFAULT_PROBES = 3


@dataclasses.dataclass(frozen=True, eq=False)
class Probes:
    """The directional derivatives of one leaf along its random unit directions."""

    analytic: np.ndarray  # ⟨g, d⟩ / ‖d‖, one per probe
    numeric: np.ndarray  # (J(θ + v) − J(θ − v)) / ‖d‖
    tolerance: np.ndarray  # each probe's pass band for |analytic − numeric|

    @property
    def abs_err(self) -> np.ndarray:
        return np.abs(self.analytic - self.numeric)

    @property
    def ok(self) -> bool:
        finite = np.isfinite(self.analytic) & np.isfinite(self.numeric)
        return bool(np.all(finite & (self.abs_err <= self.tolerance)))


def leaf_rng(seed: int, leaf: LeafInfo, *stream: int) -> np.random.Generator:
    """The random stream of one leaf: NumPy's default generator seeded with
    (seed, offset of the leaf in θ, *stream), so a leaf's draws do not depend on
    the other leaves."""
    return np.random.default_rng((seed, leaf.offset, *stream))


@dataclasses.dataclass(frozen=True)
class Support:
    """The entries of one leaf that a group of probes moves (None: all of them)."""

    leaf: LeafInfo
    local: np.ndarray | None  # indices into the flattened leaf
    stream: tuple[int, ...]  # extra seed words: (round, group)


def _directions(support: Support, theta: np.ndarray, probes: int, seed: int):
    """`probes` random perturbations v of a leaf on `support`: (θ + v, θ − v) in
    the leaf's dtype and the realized difference d, as host arrays (probes, n)."""
    leaf = support.leaf
    rng = leaf_rng(seed, leaf, *support.stream)
    host = host_dtype(leaf.dtype)
    theta = theta.astype(host)
    if support.local is not None:
        theta = theta[support.local]
    r = rng.standard_normal((probes, theta.size))
    if host is np.complex128:
        r = r + 1j * rng.standard_normal((probes, theta.size))
    length = probe_length(leaf.dtype, theta)
    v = length * r / np.linalg.norm(r, axis=1, keepdims=True)
    plus = (theta + v).astype(leaf.dtype)
    minus = (theta - v).astype(leaf.dtype)
    return plus, minus, plus.astype(host) - minus.astype(host)


def _points(
    problem: Problem,
    block: Block,
    dynamic: tuple[jax.Array, ...],
    flat: jax.Array,
    batched: bool = True,
) -> jax.Array:
    """`fun` with the block's leaves set to each row of `flat` (batch, block.size):
    batched with `vmap`, or (not `batched`) one row after another."""
    # A row is θ of the block's dtype group: `ravel_pytree`'s layout of its
    # leaves, which its `unravel` turns back into them.
    _, unravel = ravel_pytree([dynamic[p] for p in block.positions])

    def one(row):
        if block.sharding is not None:  # rows shaped and sharded like the leaf
            leaves = [jax.lax.with_sharding_constraint(row, block.sharding)]
        else:
            leaves = unravel(row)
        return problem.evaluate(replace_leaves(dynamic, block.positions, leaves))

    if not batched:
        return jax.lax.map(one, flat)
    return jax.vmap(one, spmd_axis_name=block.batch_axes or None)(flat)


_evaluate_points = jax.jit(_points, static_argnums=(0, 1))
# For a `fun` that cannot be batched: the same rows, one at a time.
_evaluate_points_rows = jax.jit(
    functools.partial(_points, batched=False), static_argnums=(0, 1)
)


class _Rows:
    """The batch of perturbed block vectors, built a chunk at a time: row
    2·k·probes + j is θ + v_j on support k, and row (2k + 1)·probes + j is θ − v_j.
    Only the rows of one chunk are ever held, so memory stays within the budget."""

    def __init__(self, flat: np.ndarray, moves: list, probes: int, shape=None):
        self.flat, self.moves, self.probes = flat, moves, probes
        self.shape = shape  # a sharded leaf's: its rows are whole copies of it

    def __len__(self) -> int:
        return 2 * self.probes * len(self.moves)

    def __getitem__(self, rows: slice) -> np.ndarray:
        picked = range(*rows.indices(len(self)))
        out = np.empty((len(picked), self.flat.size), self.flat.dtype)
        out[:] = self.flat
        for i, row in enumerate(picked):
            k, rest = divmod(row, 2 * self.probes)
            sign, j = divmod(rest, self.probes)
            where, plus, minus = self.moves[k]
            out[i, where] = (minus if sign else plus)[j]
        return out if self.shape is None else out.reshape(-1, *self.shape)


def probe_blocks(leaves: Sequence[LeafInfo]) -> list[tuple[Block, list[LeafInfo]]]:
    """All the non-empty leaves of one dtype form one block: probes are a few
    evaluations per leaf, so one compiled program per dtype serves them all."""
    groups: dict[tuple, list[LeafInfo]] = {}
    for leaf in leaves:
        if leaf.size:
            alone = () if leaf.sharding is None else (leaf.position,)
            groups.setdefault((leaf.dtype, leaf.weak_type, *alone), []).append(leaf)
    return [(block_of(g), g) for g in groups.values()]


@dataclasses.dataclass(frozen=True)
class Probing:
    """What every probe of one check shares."""

    prepared: Prepared
    analytic: np.ndarray  # the flat analytic gradient, θ order
    seed: int
    tolerance: Tolerance
    chunk_size: int | None
    memory_budget: int
    floor_dtypes: dict[int, np.dtype]  # per leaf position: the analytic dtype


def run_probes(
    o: Probing,
    block: Block,
    leaves: list[LeafInfo],
    supports: list[Support],
    probes: int,
) -> list[Probes]:
    """Evaluates `probes` probes of every support (all in one block), batched."""
    tree = o.prepared.tree
    flat = np.concatenate(
        [host_value(tree.dynamic[x.position]).reshape(-1) for x in leaves]
    )
    starts = dict(zip(block.positions, np.cumsum((0, *block.sizes))[:-1], strict=True))
    realized, moves = [], []
    for support in supports:
        lo = starts[support.leaf.position]
        theta = flat[lo : lo + support.leaf.size]
        where = slice(lo, lo + support.leaf.size)
        if support.local is not None:
            where = lo + support.local
        plus, minus, d = _directions(support, theta, probes, o.seed)
        moves.append((where, plus, minus))
        realized.append(d)
    values = _Rows(flat, moves, probes, block.shapes[0] if block.sharding else None)
    itemsize = leaves[0].dtype.itemsize
    per_eval = bytes_per_evaluation(block, itemsize, o.prepared.fun_bytes)
    chunk = chunk_length(len(values), per_eval, o.memory_budget, o.chunk_size)
    paths = ", ".join(format_path(leaf.path) for leaf in leaves)
    evals = run_chunks(
        functools.partial(_evaluate_points, tree.problem, block, tree.dynamic),
        (values,),
        chunk,
        lambda k, n: f"evaluating probe chunk {k + 1} of {n} of {paths}",
        f"probes of block {block} of {leaves[0].dtype}",
        functools.partial(_evaluate_points_rows, tree.problem, block, tree.dynamic),
        like=[block.sharding],
    ).astype(np.float64)
    out_eps = float(jnp.finfo(o.prepared.out_dtype).eps)
    results = []
    for support, (upper, lower), d in zip(
        supports, evals.reshape(len(supports), 2, probes), realized, strict=True
    ):
        leaf = support.leaf
        g = o.analytic[leaf.offset : leaf.offset + leaf.size]
        largest = np.max(np.abs(g[np.isfinite(g)]), initial=0.0)
        if support.local is not None:
            g = g[support.local]
        length = np.linalg.norm(d, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.real(d @ g) / length
            n = (upper - lower) / length
            u = max(float(jnp.finfo(leaf.dtype).eps), out_eps)
            noise = roundoff_bound(u, np.maximum(np.abs(upper), np.abs(lower)), length)
        dtype = o.floor_dtypes[leaf.position]
        tolerance = entry_band(dtype, a, n, noise, largest, o.tolerance)
        # A step lost to rounding (d = 0) proves nothing: the probe fails.
        results.append(Probes(a, n, np.where(length > 0, tolerance, -1.0)))
    return results
