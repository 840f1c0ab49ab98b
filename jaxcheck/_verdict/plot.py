"""`GradCheckReport.plot`: a PNG with a heatmap of per-entry error for each leaf
and a bar chart of each leaf's relative difference.

An entry's colour is log10(abs_err / tolerance): blue inside its pass band, red
outside it, on one scale for every leaf. 2-D leaves are drawn as matrices, so a
wrong transpose (a correct diagonal in a red square) or a wrong row is visible at
a glance. matplotlib is imported here only, and drawn without pyplot, so a plot
never touches the user's interactive backend.
"""

from __future__ import annotations

import math
import os
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .entries import LeafSummary

_DECADES = 4  # the colour scale runs from 1e-4 to 1e4 times the pass band
_WRAP_1D = 32  # 1-D leaves longer than this are wrapped into rows
_MARKED = 100  # at most this many entries per panel get a marker
_OK = ("ok", "kink")  # statuses that are not failures


def _import_matplotlib() -> Any:
    try:
        from matplotlib import colors, ticker
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "`GradCheckReport.plot` needs matplotlib, which is not installed; "
            'install the plot extra with `pip install "jaxcheck[plot]"`.'
        ) from error
    return Figure, colors, ticker


def as_matrix(values: np.ndarray) -> tuple[np.ndarray, str]:
    """`values` as a 2-D array for a heatmap, and how it was laid out.

    0-d is 1×1, 1-D is one row (wrapped into rows of ⌈√n⌉ when long, padded with
    NaN), 2-D is itself, and higher ranks keep their last axis as columns.
    """
    if values.ndim == 0:
        return values.reshape(1, 1), ""
    if values.ndim == 1:
        n = values.size
        if n <= _WRAP_1D:
            return values.reshape(1, n), ""
        width = math.ceil(math.sqrt(n))
        padded = np.full(width * math.ceil(n / width), np.nan, dtype=values.dtype)
        padded[:n] = values
        return padded.reshape(-1, width), f"wrapped, {width} per row"
    if values.ndim == 2:
        return values, ""
    return values.reshape(-1, values.shape[-1]), "leading axes flattened"


def _shown(
    entries: list[tuple[LeafSummary, np.ndarray, np.ndarray]], max_leaves: int
) -> list[tuple[LeafSummary, np.ndarray, np.ndarray]]:
    """The non-empty leaves to draw, in `params` order: the worst `max_leaves`."""
    nonempty = [e for e in entries if e[0].size]
    if len(nonempty) <= max_leaves:
        return nonempty
    worst = sorted(
        range(len(nonempty)),
        key=lambda i: (-nonempty[i][0].failed, -float(np.max(nonempty[i][1]))),
    )[:max_leaves]
    return [nonempty[i] for i in sorted(worst)]


def _heatmap(
    ax: Any, entry: tuple[Any, np.ndarray, np.ndarray], norm: Any, ticker: Any
) -> Any:
    summary, score, status = entry
    with np.errstate(divide="ignore"):
        level = np.log10(score.astype(np.float64))
    level = np.clip(np.nan_to_num(level, posinf=_DECADES), -_DECADES, _DECADES)
    matrix, layout = as_matrix(level)
    failed, _ = as_matrix((~np.isin(status, _OK)).astype(np.float64))
    kink, _ = as_matrix((status == "kink").astype(np.float64))
    image = ax.imshow(
        np.ma.masked_invalid(matrix),
        cmap="RdBu_r",
        norm=norm,
        aspect="equal" if max(matrix.shape) <= 16 * min(matrix.shape) else "auto",
        interpolation="nearest",
    )
    size = max(6.0, min(60.0, 900.0 / max(matrix.shape)))
    for where, marker, colours in [
        (failed, "x", {"c": "black"}),
        (kink, "o", {"facecolors": "none", "edgecolors": "#1a9850"}),
    ]:
        rows, cols = np.nonzero(where == 1)
        if 0 < rows.size <= _MARKED:
            ax.scatter(cols, rows, marker=marker, s=size, linewidths=1.2, **colours)
    title = (
        f"{summary.path}  {summary.shape}\n{summary.failed} of {summary.size} failed"
    )
    if layout:
        title += f" ({layout})"
    ax.set_title(title, fontsize=8, color="#b2182b" if summary.failed else "black")
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True))
    ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True))
    if matrix.shape[0] == 1:
        ax.set_yticks([])
    return image


def _bars(ax: Any, report: Any) -> None:
    leaves = report.leaves
    floor = 1e-17
    values = [
        max(s.rel_diff, floor) if math.isfinite(s.rel_diff) else 1.0 for s in leaves
    ]
    colours = ["#b2182b" if s.failed else "#2166ac" for s in leaves]
    y = np.arange(len(leaves))
    ax.barh(y, values, color=colours, left=floor)
    ax.set_xscale("log")
    ax.set_yticks(y, [s.path for s in leaves], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(floor, max(1.0, max(values, default=1.0)))
    ax.set_xlabel(
        "relative difference ‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂) per leaf "
        "(red: leaf has failing entries)",
        fontsize=8,
    )
    ax.tick_params(axis="x", labelsize=7)


def plot_report(
    report: Any, path: str | os.PathLike[str], *, max_leaves: int = 12
) -> None:
    """Draws `report` into a PNG at `path`; see `GradCheckReport.plot`."""
    figure = draw(report, max_leaves=max_leaves)
    figure.savefig(os.fspath(path), format="png", dpi=100, bbox_inches="tight")


def draw(report: Any, *, max_leaves: int = 12) -> Any:
    """The `matplotlib.figure.Figure` that `plot_report` saves."""
    if not isinstance(max_leaves, int) or max_leaves < 1:
        raise ValueError(
            f"`max_leaves` must be a positive int, got {max_leaves!r}; it is how "
            "many leaves get a heatmap."
        )
    Figure, colors, ticker = _import_matplotlib()
    shown = _shown(report.leaf_grids(), max_leaves)
    columns = max(1, min(3, len(shown)))
    rows = math.ceil(len(shown) / columns)
    bar_height = 0.6 + 0.22 * len(report.leaves)
    height = 3.4 * rows + bar_height + 1.6
    figure = Figure(figsize=(4.2 * columns + 1.2, height))
    grid = figure.add_gridspec(
        rows + 1,
        columns,
        top=1 - 1.1 / height,
        height_ratios=[3.4] * rows + [bar_height],
        hspace=0.55,
        wspace=0.35,
    )
    norm = colors.Normalize(vmin=-_DECADES, vmax=_DECADES)
    image = None
    for i, entry in enumerate(shown):
        ax = figure.add_subplot(grid[i // columns, i % columns])
        image = _heatmap(ax, entry, norm, ticker)
    _bars(figure.add_subplot(grid[rows, :]), report)
    if image is not None:
        colourbar = figure.colorbar(
            image, ax=figure.axes[: len(shown)], shrink=0.8, extend="both"
        )
        colourbar.set_label(
            "log10(abs err / tolerance): > 0 fails\n"
            "× failing entry   ○ kink (valid subgradient)",
            fontsize=8,
        )
        colourbar.ax.tick_params(labelsize=7)
    hidden = len([s for s in report.leaves if s.size]) - len(shown)
    title = report.verdict + (
        f" Heatmaps of the {len(shown)} worst leaves; {hidden} more in the bars."
        if hidden
        else ""
    )
    figure.suptitle(
        f"Gradient check of `{report.fun_name}` ({report.method})\n"
        + textwrap.fill(title, 110),
        fontsize=9,
    )
    return figure
