"""Determinism and thread safety: a gradient check runs inside other test suites."""

import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck


def mlp_loss(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.sum((h @ params["w2"]) ** 2)


def make_params(width, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "w1": jax.random.normal(k1, (3, width)),
        "b1": jnp.linspace(-1.0, 1.0, width),
        "w2": jax.random.normal(k2, (width, 2)),
    }


X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


def wrong_grad(params, x):
    grads = jax.grad(mlp_loss)(params, x)
    return {**grads, "b1": grads["b1"].at[1].multiply(1.5)}


def _arrays(report):
    c = report.comparison
    return [c.analytic, c.numeric, c.abs_err, c.tolerance, c.status, report.steps]


@pytest.mark.parametrize("grad", [None, wrong_grad], ids=["correct", "planted_bug"])
def test_same_call_twice_gives_identical_reports(grad):
    first = jaxcheck.check_grad(mlp_loss, make_params(5), X, grad=grad)
    second = jaxcheck.check_grad(mlp_loss, make_params(5), X, grad=grad)
    assert first.to_dict() == second.to_dict()
    assert str(first) == str(second)
    for a, b in zip(_arrays(first), _arrays(second), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.ok is (grad is None)


def test_checks_from_several_threads_agree_with_serial_ones():
    jobs = [(width, grad) for width in (3, 4, 5) for grad in (None, wrong_grad)]

    def run(job):
        width, grad = job
        return jaxcheck.check_grad(
            mlp_loss, make_params(width, seed=width), X, grad=grad
        )

    serial = [run(job) for job in jobs]
    jax.clear_caches()  # make the threads race on compiling, not only on running
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(run, jobs * 2))
    for report, expected in zip(threaded, serial * 2, strict=True):
        assert report.to_dict() == expected.to_dict()
    assert [r.ok for r in serial] == [grad is None for _, grad in jobs]
    assert all("['b1'][1]" in r.verdict for r in serial if not r.ok)


def test_an_adaptive_odeint_is_not_called_nondeterministic():
    """In a batch, rows may round differently by their position; the repeats of
    J(θ) are compared like with like (their chunk run again), so a deterministic
    adaptive solver is judged, not blamed."""
    from jax.experimental.ode import odeint

    def loss(p):
        def rhs(y, t, p):
            return -p["k"] * y + jnp.sin(t) * p["a"]

        ys = odeint(rhs, jnp.array([1.0, 0.5]), jnp.linspace(0.0, 2.0, 5), p)
        return jnp.sum(ys**2)

    params = {"k": jnp.array([0.7, 1.3]), "a": jnp.array(0.4)}
    # odeint's gradient solves an adjoint ODE to the solver's tolerance (1.4e-8),
    # so it matches the forward solution's differences to about that, not 1e-6.
    report = jaxcheck.check_grad(loss, params, rtol=1e-5)
    assert not report.nondeterministic and report.ok, str(report)
    wrong = {"k": jnp.zeros(2), "a": jnp.array(0.0)}
    assert not jaxcheck.check_grad(loss, params, grad=wrong, rtol=1e-5).ok


def _cancelling(x):
    """sin(1.1·x + 3333.3) in float32: the rounding of the large argument is
    invisible in the value, so the round-off bound underestimates the noise of
    the differences at the default step (2⁻⁸ here)."""
    y = x.astype(jnp.float32) * jnp.float32(1.1) + jnp.float32(3333.3)
    return jnp.sum(jnp.sin(y))


def _cancelling_grad(x):
    return jnp.cos(x * 1.1 + jnp.float32(3333.3)) * 1.1


def test_steps_grow_where_round_off_hidden_inside_fun_dominates():
    x = jnp.asarray(np.linspace(0.1, 0.9, 20), jnp.float32)
    adaptive = jaxcheck.check_grad(_cancelling, x, grad=_cancelling_grad)
    fixed = jaxcheck.check_grad(_cancelling, x, grad=_cancelling_grad, eps=2.0**-8)
    assert np.all(fixed.steps <= 2.0**-8)  # a step the caller chose never grows
    grown = adaptive.steps > 2.0**-8
    assert np.any(grown)
    assert adaptive.num_failed < fixed.num_failed
    # Where the step grew, the differences came closer to the true derivative;
    # a wrong gradient still fails.
    error = adaptive.comparison.abs_err[grown]
    assert np.median(error) < np.median(fixed.comparison.abs_err[grown]) / 2
    wrong = jaxcheck.check_grad(
        _cancelling, x, grad=lambda v: _cancelling_grad(v) * 1.01
    )
    assert not wrong.ok and "in params" in wrong.verdict
