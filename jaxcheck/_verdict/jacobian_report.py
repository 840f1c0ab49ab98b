"""`JacobianReport`: a `GradCheckReport` whose entries are (output, input) pairs.

Each block of the Jacobian, one output leaf against one input leaf, is a leaf of
the report with shape `output shape + input shape`; an entry's location names
both sides, `out['y'][1] × primals[0]['w'][3, 5]`, and the derivative that was
checked (`jacrev`, `jacfwd`, `jvp`, or a given Jacobian).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._engine.compare import (
    Comparison,
    lower_precision,
    nondeterminism_tolerance,
)
from .._engine.numerical import Prepared
from .._engine.numerical_jacobian import OutputLeaf
from .._engine.refine import Judged
from .._tree.pytree import LeafInfo
from .entries import EntryReport, entry_location
from .report import GradCheckReport


@dataclasses.dataclass(frozen=True)
class PairLeaf(LeafInfo):
    """One output leaf against one input leaf, in one mode."""

    out_location: str = ""  # e.g. "out['y']"
    out_ndim: int = 0
    in_location: str = ""  # e.g. "primals[0]['w']"; "" when there is one input
    mode: str = ""


@dataclasses.dataclass(frozen=True)
class PairEntry(EntryReport):
    """An entry of a Jacobian check, located on both the output and input side."""

    output: str = ""  # e.g. "out['y'][1]"
    input: str = ""  # e.g. "primals[0]['w'][3, 5]"
    mode: str = ""

    @property
    def location(self) -> str:
        pair = f"{self.output} × {self.input}" if self.input else self.output
        return f"{pair} ({self.mode})" if self.mode else pair


class JacobianReport(GradCheckReport):
    """The report of a Jacobian, JVP or Hessian check: `ok`, a row per (output
    leaf, input leaf) block, and the worst entries by output and input location."""

    def _entry(self, flat: int) -> PairEntry:
        entry = super()._entry(flat)
        nonempty = [leaf for leaf in self._leaves if leaf.size]
        starts = [leaf.offset for leaf in nonempty]
        leaf = nonempty[int(np.searchsorted(starts, flat, side="right")) - 1]
        index = leaf.locate(flat)
        k = leaf.out_ndim
        return PairEntry(
            **{f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)},
            output=entry_location(leaf.out_location, index[:k]),
            input=entry_location(leaf.in_location, index[k:])
            if leaf.in_location
            else "",
            mode=leaf.mode,
        )


def _prefixed(name: str, path: str) -> str:
    return name + path if name else (path or "")


def jacobian_report(
    *,
    fun_name: str,
    method: str,
    prepared: Prepared,
    outputs: tuple[OutputLeaf, ...],
    modes: list[str],
    judged: Judged,
    note: str,
    out_name: str,
    in_name: str,
    evaluation: str = "",
    nondet_tol: float | None = None,
) -> JacobianReport:
    """Lays out the engine's verdicts, (N, modes·M), as blocks of one output
    leaf against one input leaf per mode, each flattened output-major (the
    layout of `jax.jacrev`)."""
    leaves: list[PairLeaf] = []
    parts: list[tuple[slice, slice]] = []  # (rows, columns) of each block
    offset = 0
    m = prepared.n_outputs
    for k, mode in enumerate(modes):
        for out in outputs:
            for leaf in prepared.tree.leaves:
                pair = PairLeaf(
                    path=f"{_prefixed(out_name, out.path)}"
                    + (f" × {_prefixed(in_name, leaf.path)}" if in_name else "")
                    + f" ({mode})",
                    shape=out.shape + leaf.shape,
                    dtype=lower_precision(leaf.dtype, out.dtype),
                    weak_type=False,
                    position=-1,
                    tree_index=-1,
                    offset=offset,
                    out_location=_prefixed(out_name, out.path),
                    out_ndim=len(out.shape),
                    in_location=_prefixed(in_name, leaf.path) if in_name else "",
                    mode=mode,
                )
                leaves.append(pair)
                offset += pair.size
                rows = slice(leaf.offset, leaf.offset + leaf.size)
                cols = slice(k * m + out.offset, k * m + out.offset + out.size)
                parts.append((rows, cols))

    def laid_out(values: np.ndarray) -> np.ndarray:
        blocks = [values[rows, cols].T.reshape(-1) for rows, cols in parts]
        return np.concatenate(blocks) if blocks else np.zeros(0, values.dtype)

    c = judged.comparison
    comparison = Comparison(
        *(laid_out(getattr(c, f.name)) for f in dataclasses.fields(Comparison))
    )
    return JacobianReport(
        fun_name=fun_name,
        method=method,
        leaves=tuple(leaves),
        skipped=prepared.tree.skipped,
        comparison=comparison,
        steps=laid_out(judged.steps),
        spread=judged.spread,
        nondet_tol=nondeterminism_tolerance(
            nondet_tol, prepared.out_dtype, judged.base
        ),
        note=note,
        evaluation=evaluation,
    )
