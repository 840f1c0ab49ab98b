"""Every check that applies gives the same verdict on the same function, and they
all judge with the one pass band."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import custom_vjp_sin

import jaxcheck
from jaxcheck import GradCheckError
from jaxcheck._engine import compare as _compare

pytestmark = pytest.mark.core


def _custom_jvp_sin(factor):
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (jnp.sin(p[0]), factor * jnp.cos(p[0]) * t[0]))
    return f


X = jnp.array([0.3, -1.1, 2.0])

# name: (f, x, expected ok, whether the Hessian check applies); a custom_vjp
# function has no forward mode, so no JVP check and the drop-in checks "rev".
CASES = {
    "smooth": (lambda x: jnp.sin(x) * x, X, True, True),
    "abs at its kink": (jnp.abs, jnp.array([0.0, 1.0, -2.0]), True, False),
    "relu at its kink": (jax.nn.relu, jnp.array([0.0, 1.0, -2.0]), True, False),
    "log near its domain edge": (jnp.log, jnp.array([1e-6, 0.5, 3.0]), True, True),
    "float32": (jnp.tanh, X.astype(jnp.float32), True, False),
    "complex input": (lambda z: z * z + 1j * z, X + 0.5j, True, False),
    "vector-valued": (
        lambda x: jnp.stack([jnp.sin(x[0]) * x[1], x[2] ** 3]),
        X,
        True,
        True,
    ),
    "custom_vjp, bug in bwd only": (custom_vjp_sin(1.5), X, False, False),
    "custom_jvp": (_custom_jvp_sin(1.0), X, True, True),
    "bug just outside the pass band": (_custom_jvp_sin(1 + 1e-4), X, False, False),
    "correct, round-off just inside": (lambda x: jnp.exp(x) * 1e8, X, True, True),
}


def _verdicts(f, x, hessian):
    is_complex = jnp.iscomplexobj(x)
    loss = (
        (lambda x: jnp.sum(jnp.abs(f(x)) ** 2))
        if is_complex
        else (lambda x: jnp.sum(f(x)))
    )
    forward = not isinstance(f, jax.custom_vjp)
    out = {
        "check_grad": jaxcheck.check_grad(loss, x).ok,
        "check_vjp": jaxcheck.check_vjp(f, (x,)).ok,
        "check_jacobian": jaxcheck.check_jacobian(f, x).ok,
    }
    if forward:
        out["check_jvp"] = jaxcheck.check_jvp(f, (x,)).ok
    if hessian:
        out["check_hessian"] = jaxcheck.check_hessian(loss, x).ok
    try:
        jaxcheck.check_grads(f, (x,), 1, modes=("fwd", "rev") if forward else ("rev",))
        out["check_grads"] = True
    except GradCheckError:
        out["check_grads"] = False
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_every_check_gives_the_same_verdict(name):
    f, x, expected, hessian = CASES[name]
    verdicts = _verdicts(f, x, hessian)
    assert verdicts == dict.fromkeys(verdicts, expected), verdicts


@pytest.mark.parametrize(
    "name", [n for n, c in CASES.items() if not jnp.iscomplexobj(c[1])]
)
def test_fast_and_sample_modes_never_fail_where_full_passes(name):
    f, x, _, _ = CASES[name]
    loss = lambda x: jnp.sum(f(x))  # noqa: E731
    full = jaxcheck.check_grad(loss, x).ok
    for mode, extra in (("fast", {}), ("sample", {"samples": 2})):
        screened = jaxcheck.check_grad(loss, x, mode=mode, **extra).ok
        assert screened or not full, (mode, name)


def _no_band(dtype, analytic, numeric, bound, largest, tolerance):
    return np.full(np.shape(analytic), -1.0)


ENTRY_POINTS = {
    "check_grad": lambda: jaxcheck.check_grad(lambda x: jnp.sum(jnp.sin(x)), X),
    "check_grad fast": lambda: jaxcheck.check_grad(
        lambda x: jnp.sum(jnp.sin(x)), X, mode="fast"
    ),
    "check_grad sample": lambda: jaxcheck.check_grad(
        lambda x: jnp.sum(jnp.sin(x)), X, mode="sample", samples=2
    ),
    "check_vjp": lambda: jaxcheck.check_vjp(jnp.sin, (X,)),
    "check_jacobian": lambda: jaxcheck.check_jacobian(jnp.sin, X),
    "check_jvp": lambda: jaxcheck.check_jvp(jnp.sin, (X,)),
    "check_hessian": lambda: jaxcheck.check_hessian(lambda x: jnp.sum(jnp.sin(x)), X),
    "check_custom_vjp": lambda: jaxcheck.check_custom_vjp(custom_vjp_sin(1.0), X),
    "check_custom_jvp": lambda: jaxcheck.check_custom_jvp(_custom_jvp_sin(1.0), X),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_one_pass_band_decides_every_check(name, monkeypatch):
    assert ENTRY_POINTS[name]().ok
    # Replace the body of the one function that computes a pass band, wherever
    # it is referenced from: every check must now fail.
    monkeypatch.setattr(_compare.entry_band, "__code__", _no_band.__code__)
    assert not ENTRY_POINTS[name]().ok


def test_one_pass_band_decides_the_drop_in(monkeypatch):
    jaxcheck.check_grads(jnp.sin, (X,), 1)
    monkeypatch.setattr(_compare.entry_band, "__code__", _no_band.__code__)
    with pytest.raises(GradCheckError):
        jaxcheck.check_grads(jnp.sin, (X,), 1)


SHARED = {
    "check_jacobian": lambda **kw: jaxcheck.check_jacobian(jnp.sin, X, **kw),
    "check_vjp": lambda **kw: jaxcheck.check_vjp(jnp.sin, (X,), **kw),
    "check_jvp": lambda **kw: jaxcheck.check_jvp(jnp.sin, (X,), **kw),
    "check_hessian": lambda **kw: jaxcheck.check_hessian(
        lambda x: jnp.sum(jnp.sin(x)), X, **kw
    ),
    "check_grad": lambda **kw: jaxcheck.check_grad(
        lambda x: jnp.sum(jnp.sin(x)), X, **kw
    ),
}


@pytest.mark.parametrize("name", list(SHARED))
def test_every_check_takes_the_shared_options(name):
    calls = []
    report = SHARED[name](
        shadow=False,
        progress=lambda done, total: calls.append((done, total)),
        devices=[jax.devices()[0]],
        method="central4",
        chunk_size=4,
    )
    assert report.ok and calls and calls[-1][0] == calls[-1][1]
    assert report.seconds > 0 and report.compile_seconds >= 0


@pytest.mark.parametrize("name", ["check_jacobian", "check_jvp", "check_hessian"])
@pytest.mark.parametrize("mode", ["fast", "sample"])
def test_checks_of_every_entry_refuse_screening_modes(name, mode):
    with pytest.raises(ValueError, match=r"`mode`=.* takes mode=\"full\" only"):
        SHARED[name](mode=mode)


def test_check_vjp_screens_with_fast_and_sample_modes():
    wrong = lambda c: (jnp.cos(X) * c * jnp.array([1.0, 1.0, 1.5]),)  # noqa: E731
    for mode, extra in (("fast", {}), ("sample", {"samples": 3})):
        assert jaxcheck.check_vjp(jnp.sin, (X,), mode=mode, **extra).ok
        report = jaxcheck.check_vjp(jnp.sin, (X,), vjp_fn=wrong, mode=mode, **extra)
        assert not report.ok and "primals[0][2]" in report.verdict
