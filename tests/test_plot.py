"""`GradCheckReport.to_json` and `GradCheckReport.plot`: what is written, and what
the heatmaps show for planted transposed, row-wise and non-finite bugs."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import matmul_missing_transpose, plant

import jaxcheck
from jaxcheck._verdict import plot as _plot

PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 36).reshape(6, 6),
    "v": jnp.linspace(0.1, 1.0, 50),
    "t": jnp.linspace(0.0, 1.0, 24).reshape(2, 3, 4),
    "c": jnp.array(0.7),
}
X = jnp.linspace(-1.0, 1.0, 30).reshape(5, 6)


def loss(params, x, matmul=jnp.matmul):
    h = jnp.tanh(matmul(x, params["w"]))
    return (
        jnp.sum(h**2)
        + jnp.sum(jnp.sin(params["v"]))
        + jnp.sum(params["t"] ** 3)
        + params["c"] ** 2
    )


def transposed_loss(params, x):
    return loss(params, x, matmul=matmul_missing_transpose)


@pytest.fixture(scope="module")
def transposed():
    return jaxcheck.check_grad(transposed_loss, PARAMS, X)


def _images(figure):
    """{panel title's first line: the heatmap's array} for every heatmap."""
    return {
        ax.get_title().split("  ")[0]: ax.images[0].get_array()
        for ax in figure.axes
        if ax.images
    }


def test_to_json_is_strict_json_of_to_dict(transposed):
    text = transposed.to_json(worst=5)
    assert json.loads(text) == transposed.to_dict(worst=5)
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(transposed.to_json())
    assert data["ok"] is False
    assert data["worst"][0]["location"].startswith("['w'][")


def test_to_json_with_nan_is_strict():
    grad = plant(jax.grad(loss)(PARAMS, X), "['v']", (3,), jnp.nan)
    report = jaxcheck.check_grad(loss, PARAMS, X, grad=grad)
    data = json.loads(report.to_json(indent=None))
    assert data["rel_diff"] == "nan"
    assert data["worst"][0]["location"] == "['v'][3]"


def test_plot_writes_a_png(transposed, tmp_path):
    path = tmp_path / "report.png"
    transposed.plot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_transposed_bug_is_a_red_square_with_a_clean_diagonal(transposed):
    images = _images(_plot.draw(transposed))
    assert set(images) == {"['c']", "['t']", "['v']", "['w']"}
    w = np.ma.filled(images["['w']"], np.nan)
    assert w.shape == (6, 6)
    off_diagonal = ~np.eye(6, dtype=bool)
    # A missing transpose is right on the diagonal and wrong (level > 0) off it.
    assert np.all(w[np.eye(6, dtype=bool)] < 0)
    assert np.mean(w[off_diagonal] > 0) > 0.9
    for name in ("['c']", "['t']", "['v']"):
        assert np.all(np.ma.filled(images[name], -np.inf) < 0), name


def test_row_bug_and_nan_are_marked_where_they_are():
    grad = jax.grad(loss)(PARAMS, X)
    grad["w"] = grad["w"].at[2].multiply(1.5)
    grad["t"] = grad["t"].at[1, :, 0].add(0.1)
    grad["v"] = grad["v"].at[37].set(jnp.inf)
    report = jaxcheck.check_grad(loss, PARAMS, X, grad=grad)
    figure = _plot.draw(report)
    images = _images(figure)
    assert np.array_equal(np.nonzero(np.ma.filled(images["['w']"], -9) > 0)[0], [2] * 6)
    t = np.ma.filled(images["['t']"], -9)
    assert t.shape == (6, 4)  # leading axes flattened
    assert set(zip(*np.nonzero(t > 0), strict=True)) == {(3, 0), (4, 0), (5, 0)}
    v = images["['v']"]
    assert v.shape == (7, 8)  # 50 entries wrapped in rows of 8, padding masked
    assert np.ma.count_masked(v) == 6
    assert np.ma.filled(v, -9)[37 // 8, 37 % 8] == _plot._DECADES
    crosses = {
        ax.get_title().split("  ")[0]: ax.collections[0].get_offsets()
        for ax in figure.axes
        if ax.collections and ax.images
    }
    assert sorted(map(tuple, crosses["['w']"].tolist())) == [(c, 2) for c in range(6)]
    assert crosses["['v']"].tolist() == [[37 % 8, 37 // 8]]


def test_kinks_are_ringed_not_crossed():
    from matplotlib import colors, ticker
    from matplotlib.figure import Figure

    summary = jaxcheck.LeafSummary("['w']", (2, 3), "float64", 6, 0, 0, 0, 1, "ok")
    score = np.array([[0.0, 2.0, 0.1], [0.5, 0.0, 0.0]])
    status = np.array([["ok", "kink", "ok"], ["mismatch", "ok", "ok"]], dtype=object)
    ax = Figure().add_subplot()
    _plot._heatmap(ax, (summary, score, status), colors.Normalize(-4, 4), ticker)
    crossed, ringed = (c.get_offsets().tolist() for c in ax.collections)
    assert crossed == [[0, 1]]
    assert ringed == [[1, 0]]


def test_kinks_of_a_real_report_are_ringed():
    w = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4).at[1, 2].set(0.0)

    def relu_loss(w):
        return jnp.sum(jax.nn.relu(w))

    grad = jax.grad(relu_loss)(w).at[2, 0].add(0.5)
    report = jaxcheck.check_grad(relu_loss, w, grad=grad)
    [ax] = [ax for ax in _plot.draw(report).axes if ax.images]
    crossed, ringed = (c.get_offsets().tolist() for c in ax.collections)
    assert crossed == [[0, 2]]  # entry [2, 0]
    assert ringed == [[2, 1]]  # (column, row) of entry [1, 2]


def test_max_leaves_keeps_the_worst_and_every_bar(transposed):
    figure = _plot.draw(transposed, max_leaves=1)
    assert list(_images(figure)) == ["['w']"]
    [bars] = [ax for ax in figure.axes if ax.get_xscale() == "log"]
    assert len(bars.patches) == 4
    assert "3 more in the bars" in figure.get_suptitle()


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((), (1, 1)),
        ((5,), (1, 5)),
        ((33,), (6, 6)),
        ((4, 7), (4, 7)),
        ((2, 3, 4), (6, 4)),
    ],
)
def test_as_matrix(shape, expected):
    values = np.arange(np.prod(shape, dtype=int), dtype=float).reshape(shape)
    matrix, _ = _plot.as_matrix(values)
    assert matrix.shape == expected
    assert np.array_equal(matrix.ravel()[: values.size], values.ravel())
    assert np.isnan(matrix.ravel()[values.size :]).all()


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_max_leaves_must_be_a_positive_int(transposed, tmp_path, bad):
    with pytest.raises(ValueError, match="`max_leaves` must be a positive int"):
        transposed.plot(tmp_path / "x.png", max_leaves=bad)


def test_missing_matplotlib_names_the_extra(transposed, tmp_path, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "jaxcheck\[plot\]"'):
        transposed.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
