"""`JacobianReport`: a `GradCheckReport` whose entries are (output, input) pairs.

Each block of the Jacobian, one output leaf against one input leaf, is a leaf of
the report with shape `output shape + input shape`; an entry's location names
both sides, `out['y'][1] × primals[0]['w'][3, 5]`, and the derivative that was
checked (`jacrev`, `jacfwd`, `jvp`, or a given Jacobian).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ._compare import compare, pass_band
from ._numerical_jacobian import NumericJacobian
from ._pytree import LeafInfo
from ._report import EntryReport, GradCheckReport, _location


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
            output=_location(leaf.out_location, index[:k]),
            input=_location(leaf.in_location, index[k:]) if leaf.in_location else "",
            mode=leaf.mode,
        )


def _prefixed(name: str, path: str) -> str:
    return name + path if name else (path or "")


def _lower_precision(a: np.dtype, b: np.dtype) -> np.dtype:
    return a if jnp.finfo(a).eps >= jnp.finfo(b).eps else b


def jacobian_report(
    *,
    fun_name: str,
    method: str,
    numeric: NumericJacobian,
    analytic: dict[str, np.ndarray],
    out_name: str,
    in_name: str,
    atol: float | None,
    rtol: float | None,
) -> JacobianReport:
    """Compares the numeric Jacobian with each analytic (M, N) matrix in `analytic`
    (keyed by mode), block by block."""
    leaves: list[PairLeaf] = []
    flat_analytic, flat_numeric, flat_noise, flat_steps = [], [], [], []
    offset = 0
    for mode, matrix in analytic.items():
        for out in numeric.outputs:
            rows = slice(out.offset, out.offset + out.size)
            for leaf in numeric.tree.leaves:
                cols = slice(leaf.offset, leaf.offset + leaf.size)
                pair = PairLeaf(
                    path=f"{_prefixed(out_name, out.path)}"
                    + (f" × {_prefixed(in_name, leaf.path)}" if in_name else "")
                    + f" ({mode})",
                    shape=out.shape + leaf.shape,
                    dtype=_lower_precision(leaf.dtype, out.dtype),
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
                flat_analytic.append(np.asarray(matrix)[rows, cols].reshape(-1))
                flat_numeric.append(numeric.jacobian[rows, cols].reshape(-1))
                flat_noise.append(numeric.noise[rows, cols].reshape(-1))
                flat_steps.append(
                    np.broadcast_to(numeric.steps[cols], (out.size, leaf.size)).reshape(
                        -1
                    )
                )
    a = np.concatenate(flat_analytic).astype(np.float64)
    n = np.concatenate(flat_numeric)
    tolerance = pass_band(leaves, a, n, np.concatenate(flat_noise), atol, rtol)
    return JacobianReport(
        fun_name=fun_name,
        method=method,
        leaves=tuple(leaves),
        skipped=numeric.tree.skipped,
        comparison=compare(a, n, tolerance),
        steps=np.concatenate(flat_steps),
    )
