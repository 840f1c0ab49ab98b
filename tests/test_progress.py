"""`progress=`: a callable, a tqdm bar on stderr, or nothing; and the time a check
spends compiling, reported apart from the rest."""

import jax
import jax.numpy as jnp
import pytest

import jaxcheck
from jaxcheck._runtime import progress as _progress

pytestmark = pytest.mark.core

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 30).reshape(5, 6), "b": jnp.ones(6)}


def loss(params):
    return jnp.sum(jnp.tanh(params["w"] * 2.0 + params["b"]) ** 2)


def test_a_callable_sees_every_evaluation():
    calls = []
    report = jaxcheck.check_grad(
        loss, PARAMS, chunk_size=8, progress=lambda d, t: calls.append((d, t))
    )
    assert report.ok and len(calls) > 1
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1]
    assert calls[-1][1] >= 2 * 36  # ±h for each of the 36 entries, at least


def test_fast_mode_reports_its_probes_too():
    calls = []
    jaxcheck.check_grad(
        loss, PARAMS, mode="fast", progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1][0] == calls[-1][1]
    assert calls[-1][1] < 2 * 36  # far fewer evaluations than a full check


def test_no_output_without_a_terminal_or_with_false(capsys):
    jaxcheck.check_grad(loss, PARAMS)  # stderr is captured: not a terminal
    jaxcheck.check_grad(loss, PARAMS, progress=False)
    assert capsys.readouterr().err == ""


def test_true_shows_a_tqdm_bar_on_stderr(capsys):
    pytest.importorskip("tqdm")
    jaxcheck.check_grad(loss, PARAMS, chunk_size=8, progress=True)
    assert "eval" in capsys.readouterr().err


def test_true_without_tqdm_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    with pytest.raises(ImportError, match=r"`progress=True` needs tqdm"):
        jaxcheck.check_grad(loss, PARAMS, progress=True)


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_progress_must_be_a_bool_none_or_callable(bad):
    with pytest.raises(TypeError, match="`progress` must be None"):
        jaxcheck.check_grad(loss, PARAMS, progress=bad)


def test_compile_time_is_reported_apart():
    jax.clear_caches()
    first = jaxcheck.check_grad(loss, PARAMS)
    again = jaxcheck.check_grad(loss, PARAMS)
    assert 0 < first.compile_seconds <= first.seconds
    assert again.compile_seconds < first.compile_seconds
