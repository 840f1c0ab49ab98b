"""The default verdicts on hard cases: per-entry bounds, kinks, domain edges,
analytic NaN, nondeterminism. `jax.test_util.check_grads` gets each of these
wrong (a miss or a false alarm) with its defaults; jaxcheck must not."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import enable_x64

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core


def at(path, index=()):
    inner = f"[{', '.join(map(str, index))}]" if index else ""
    return re.escape(path + inner)


def _mlp_loss(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.sum((h @ params["w2"]) ** 2)


def _mlp_params(dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {
        "w1": jax.random.normal(k1, (4, 6), dtype) / 2,
        "b1": jnp.zeros(6, dtype),
        "w2": jax.random.normal(k2, (6, 3), dtype) / 2,
    }


X = jax.random.normal(jax.random.PRNGKey(1), (5, 4))


def _scaled(grad, path, factor, index=None):
    grad = dict(grad)
    leaf = grad[path]
    grad[path] = leaf * factor if index is None else leaf.at[index].multiply(factor)
    return grad


# --------------------------------------------------------------------------
# Tight where the differences are accurate


def test_a_relative_error_of_1e_5_in_float64_is_caught():
    params = _mlp_params()
    grad = jax.grad(_mlp_loss)(params, X)
    assert jaxcheck.check_grad(_mlp_loss, params, X, grad=grad).ok
    bad = _scaled(grad, "w2", 1 + 1e-5, (2, 1))
    with pytest.raises(GradCheckError, match=at("['w2']", (2, 1))):
        jaxcheck.assert_grad(_mlp_loss, params, X, grad=bad)


def test_a_wrong_small_leaf_beside_a_large_one_is_caught():
    def loss(p):
        return 1e3 * jnp.sum(jnp.sin(p["big"])) + jnp.sum(p["small"] ** 2)

    params = {"big": jnp.linspace(0.0, 1.0, 50), "small": jnp.array([1e-3, 2e-3])}
    grad = jax.grad(loss)(params)
    assert jaxcheck.check_grad(loss, params, grad=grad).ok
    bad = dict(grad, small=grad["small"] * 1.01)
    with pytest.raises(GradCheckError, match=at("['small']")):
        jaxcheck.assert_grad(loss, params, grad=bad)


def test_failing_entries_are_reported_against_their_bound():
    params = _mlp_params()
    grad = jax.grad(_mlp_loss)(params, X)
    report = jaxcheck.check_grad(
        _mlp_loss, params, X, grad=_scaled(grad, "b1", 1.001, 3)
    )
    [entry] = report.failures
    assert entry.location == "['b1'][3]"
    assert entry.abs_err > 10 * entry.tolerance
    assert "× its pass band" in report.verdict


def test_large_parameters_and_steep_functions_pass():
    # The Richardson term widens the band where truncation is large: exp(3θ) at
    # θ up to 8 (J ≈ 3e10) and θ = 1e4 scaled steps.
    loss = lambda p: jnp.sum(jnp.exp(3 * p["a"])) + jnp.sum(jnp.cos(p["b"]))  # noqa: E731
    params = {"a": jnp.linspace(-8.0, 8.0, 9), "b": jnp.array([1e4, -3e4, 1e-6])}
    assert jaxcheck.check_grad(loss, params).ok


# --------------------------------------------------------------------------
# Kinks


@pytest.mark.parametrize(
    "fun",
    [jax.nn.relu, jnp.abs, lambda x: jnp.where(x > 0, x, 0.1 * x)],
    ids=["relu", "abs", "leaky_relu"],
)
def test_a_valid_subgradient_at_a_kink_is_not_a_failure(fun):
    loss = lambda w: jnp.sum(fun(w))  # noqa: E731
    w = jnp.array([0.0, 1.0, -2.0])
    report = jaxcheck.check_grad(loss, w)
    assert report.ok, report
    assert [e.location for e in report.kinks] == ["params[0]"]
    assert report.leaves[0].kinks == 1
    assert "kink" in report.verdict


def test_a_value_outside_the_one_sided_slopes_at_a_kink_fails():
    loss = lambda w: jnp.sum(jax.nn.relu(w))  # noqa: E731
    w = jnp.array([0.0, 1.0])
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(loss, w, grad=jnp.array([1.5, 1.0]))


def test_a_kink_just_off_the_point_is_recognised():
    # abs at θ = h/3: the stencil straddles the kink.
    h = 2.0**-17
    loss = lambda w: jnp.sum(jnp.abs(w))  # noqa: E731
    report = jaxcheck.check_grad(loss, jnp.array([h / 3, 1.0]))
    assert report.ok, report


# --------------------------------------------------------------------------
# Non-finite values


def test_analytic_nan_is_a_failure_with_the_where_hint():
    def unsafe(x):
        # The gradient of the branch not taken is NaN at x = 0.
        return jnp.sum(jnp.where(x > 0, jnp.sqrt(jnp.abs(x)), 0.0))

    report = jaxcheck.check_grad(unsafe, jnp.array([0.0, 4.0]))
    assert not report.ok
    assert report.worst(1)[0].status == "analytic nan/inf"
    assert "double-where" in report.verdict
    with pytest.raises(GradCheckError, match=at("params", (0,))):
        jaxcheck.assert_grad(unsafe, jnp.array([0.0, 4.0]))


# --------------------------------------------------------------------------
# Nondeterminism


def _noisy(x):
    # A host callback that draws fresh noise on every call (it takes x so that
    # it is called once per evaluation in a batch).
    noise = jax.pure_callback(
        lambda x: np.random.default_rng().normal(size=()),
        jax.ShapeDtypeStruct((), jnp.float64),
        jax.lax.stop_gradient(x),
        vmap_method="sequential",
    )
    return jnp.sum(x**2) + 1e-6 * noise


def test_a_nondeterministic_function_is_reported_as_such():
    report = jaxcheck.check_grad(_noisy, jnp.arange(3.0))
    assert report.nondeterministic
    assert not report.ok
    assert report.spread > 0
    assert report.verdict.startswith("NONDETERMINISTIC")
    with pytest.raises(GradCheckError, match="nondet_tol"):
        jaxcheck.assert_grad(_noisy, jnp.arange(3.0))


def _noisy_vector(x):
    # The case: fresh 1e-9 host noise at every call, several outputs.
    noise = jax.pure_callback(
        lambda x: np.random.default_rng().normal(size=x.shape),
        jax.ShapeDtypeStruct((3,), jnp.float64),
        jax.lax.stop_gradient(x),
        vmap_method="sequential",
    )
    return x**2 + 1e-9 * noise


@pytest.mark.parametrize("check", ["check_grad", "check_jacobian", "check_jvp"])
def test_every_check_judges_nondeterminism_by_one_rule(check):
    x = jnp.arange(1.0, 4.0)
    if check == "check_grad":
        report = jaxcheck.check_grad(lambda x: jnp.sum(_noisy_vector(x)), x)
    elif check == "check_jacobian":
        report = jaxcheck.check_jacobian(_noisy_vector, x)
    else:
        report = jaxcheck.check_jvp(_noisy_vector, (x,))
    assert report.nondeterministic and not report.ok, str(report)
    assert report.verdict.startswith("NONDETERMINISTIC")


def test_a_deterministic_jacobian_is_not_called_nondeterministic():
    report = jaxcheck.check_jacobian(lambda x: x**2, jnp.arange(1.0, 4.0))
    assert report.ok and report.spread == 0.0 and not report.nondeterministic


def test_nondet_tol_accepts_a_known_spread():
    report = jaxcheck.check_grad(_noisy, jnp.arange(3.0), nondet_tol=1.0, eps=1e-1)
    assert not report.nondeterministic
    assert report.spread <= 1.0


def test_a_deterministic_function_has_no_spread():
    report = jaxcheck.check_grad(_mlp_loss, _mlp_params(), X)
    assert report.spread == 0.0 and not report.nondeterministic


# --------------------------------------------------------------------------
# Stochastic functions: a fixed key is never perturbed


def test_dropout_with_a_fixed_key_checks_cleanly():
    def loss(params, x, key):
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        keep = jax.random.bernoulli(key, 0.7, h.shape)
        h = jnp.where(keep, h / 0.7, 0.0)
        return jnp.sum((h @ params["w2"]) ** 2)

    params = _mlp_params()
    for key in (jax.random.key(3), jax.random.PRNGKey(3)):  # typed and raw uint32
        report = jaxcheck.check_grad(loss, params, X, key)
        assert report.ok, report
    grad = jax.grad(loss)(params, X, jax.random.key(3))
    with pytest.raises(GradCheckError, match=at("['w1']")):
        jaxcheck.assert_grad(
            loss, params, X, jax.random.key(3), grad=_scaled(grad, "w1", 1.01)
        )


# --------------------------------------------------------------------------
# Low precision: differences in a float64 twin


def _f32_mlp(h=90):
    # [16, h, h, 4]: 10,084 parameters for h = 90.
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    sizes = [16, h, h, 4]
    return [
        {
            "w": (jax.random.normal(keys[2 * i], (a, b)) / np.sqrt(a)).astype(
                jnp.float32
            ),
            "b": (0.1 * jax.random.normal(keys[2 * i + 1], (b,))).astype(jnp.float32),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    ]


def _f32_loss(params, x, y):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return jnp.mean((x @ params[-1]["w"] + params[-1]["b"] - y) ** 2)


XF = jax.random.normal(jax.random.PRNGKey(1), (32, 16), jnp.float32)
YF = jnp.ones((32, 4), jnp.float32)


def test_a_correct_float32_network_of_10k_parameters_passes_without_x64():
    with enable_x64(False):
        params = _f32_mlp()
        report = jaxcheck.check_grad(_f32_loss, params, XF, YF)
        assert sum(s.size for s in report.leaves) > 10_000
        assert report.ok, report
        assert "float64 twin" in report.note
        grad = jax.grad(_f32_loss)(params, XF, YF)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(grad))
        layer = [dict(x) for x in grad]
        layer[1]["w"] = layer[1]["w"] * 1.01
        with pytest.raises(GradCheckError, match=at("[1]['w']")):
            jaxcheck.assert_grad(_f32_loss, params, XF, YF, grad=layer)
        entry = [dict(x) for x in grad]
        entry[2]["b"] = entry[2]["b"].at[1].multiply(1.1)
        report = jaxcheck.check_grad(_f32_loss, params, XF, YF, grad=entry)
        assert [e.location for e in report.failures] == ["[2]['b'][1]"]


def test_a_function_that_casts_down_falls_back_to_native_bounds():
    def loss(w, x):
        return jnp.sum(jnp.tanh(x.astype(jnp.float32) @ w.astype(jnp.float32)))

    w = jax.random.normal(jax.random.PRNGKey(2), (4, 3), jnp.float32)
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 4), jnp.float32)
    report = jaxcheck.check_grad(loss, w, x)
    assert "native dtype" in report.note and "float32" in report.note
    assert report.ok, report
    assert str(report).splitlines()[0].endswith(report.note)
    wrong = jax.grad(loss)(w, x).at[2, 1].multiply(1.1)
    with pytest.raises(GradCheckError, match=at("params", (2, 1))):
        jaxcheck.assert_grad(loss, w, x, grad=wrong)


def test_shadow_can_be_turned_off():
    w = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)
    report = jaxcheck.check_grad(lambda w: jnp.sum(jnp.sin(w)), w, shadow=False)
    assert report.ok and report.note == ""
    with pytest.raises(TypeError, match="`shadow`"):
        jaxcheck.check_grad(lambda w: jnp.sum(w), w, shadow="yes")


# --------------------------------------------------------------------------
# The five-point stencil


def test_central4_is_more_accurate_and_still_catches_bugs():
    def f(w):
        return jnp.sum(jnp.exp(jnp.sin(w)) * w**3)

    w = jnp.linspace(-2.0, 2.0, 9)
    exact = jax.grad(f)(w)
    err2 = np.abs(jaxcheck.numerical_grad(f, w) - exact).max()
    err4 = np.abs(jaxcheck.numerical_grad(f, w, method="central4") - exact).max()
    assert err4 < err2 / 10
    assert jaxcheck.check_grad(f, w, method="central4").ok
    with pytest.raises(GradCheckError, match=at("params", (4,))):
        jaxcheck.assert_grad(f, w, method="central4", grad=exact.at[4].add(1e-4))


def test_the_lecture_cube_with_five_points_is_exact_to_round_off():
    # θ³ has a zero fifth derivative: the five-point stencil has no truncation.
    cube = lambda theta: theta**3  # noqa: E731
    value = jaxcheck.numerical_grad(cube, jnp.array(1.0), eps=0.01, method="central4")
    assert float(value) == pytest.approx(3.0, abs=1e-12)


# --------------------------------------------------------------------------
# The complex step


def _analytic_loss(w, x):
    return jnp.sum(jnp.exp(jnp.sin(3 * w))) * jnp.sum(jnp.tanh(x @ w))


def test_the_complex_step_is_exact_to_round_off():
    w = jnp.linspace(-2.0, 2.0, 4)
    x = jnp.ones((3, 4))
    exact = jax.grad(_analytic_loss)(w, x)
    numeric = jaxcheck.numerical_grad(_analytic_loss, w, x, method="complex")
    np.testing.assert_allclose(numeric, exact, rtol=1e-14)
    report = jaxcheck.check_grad(_analytic_loss, w, x, method="complex")
    assert report.ok and "complex-step" in report.note
    with pytest.raises(GradCheckError, match=at("params", (1,))):
        jaxcheck.assert_grad(
            _analytic_loss, w, x, method="complex", grad=exact.at[1].multiply(1.0001)
        )


@pytest.mark.parametrize(
    "fun, what",
    [
        (lambda w: jnp.sum(jnp.abs(w)), "returns float64"),
        (lambda w: jnp.sum(jax.nn.relu(w)), "applies max"),
        (lambda w: jnp.sum(jnp.where(w > 0, w, 0.0)), "applies"),
    ],
    ids=["abs", "relu", "comparison"],
)
def test_the_complex_step_rejects_a_function_that_is_not_complex_safe(fun, what):
    with pytest.raises(ValueError, match=f"method='complex'.*{what}"):
        jaxcheck.check_grad(fun, jnp.arange(3.0), method="complex")


def test_the_complex_step_needs_real_parameters():
    with pytest.raises(ValueError, match="needs real parameters"):
        jaxcheck.check_grad(
            lambda z: jnp.sum(jnp.abs(z) ** 2),
            jnp.ones(2, jnp.complex128),
            method="complex",
        )


# --------------------------------------------------------------------------
# Diagnosis of a failing leaf, end to end


def test_the_report_says_what_a_wrong_leaf_looks_like():
    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)

    params = {
        "w": jax.random.normal(jax.random.PRNGKey(0), (4, 4)),
        "b": 0.1 * jnp.ones(4),
    }
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    grad = jax.grad(loss)(params, x)
    report = jaxcheck.check_grad(
        loss, params, x, grad={"w": grad["w"].T, "b": -grad["b"]}
    )
    diagnosis = {s.path: s.diagnosis for s in report.leaves}
    assert diagnosis == {
        "['b']": "analytic ≈ −numeric (sign)",
        "['w']": "analytic matches the transpose of numeric",
    }
    with pytest.raises(
        GradCheckError, match=re.escape("['w']: analytic matches the transpose")
    ):
        jaxcheck.assert_grad(loss, params, x, grad={"w": grad["w"].T, "b": grad["b"]})
    assert jaxcheck.check_grad(loss, params, x).leaves[0].diagnosis == ""
    doubled = {"w": grad["w"], "b": 2 * grad["b"]}
    assert (
        jaxcheck.check_grad(loss, params, x, grad=doubled).to_dict()["leaves"][0][
            "diagnosis"
        ]
        == "analytic ≈ 2 × numeric"
    )
