"""`taylor_test`: the Taylor remainder converges at order 2 for a right gradient,
order 1 for a wrong one, and the wrong leaf is the one whose own order is 1."""

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import enable_x64, reference_grad

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

GUIDE = open(__file__.replace("tests/test_taylor.py", "docs/guides/taylor.md")).read()


def mlp_loss(params, x):
    h = x
    for layer in params["layers"]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return params["scale"] * jnp.mean(h**2) + jnp.sum(
        params["v"] * jnp.exp(-params["v"])
    )


def mlp_params(dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "layers": [
            {"w": jax.random.normal(k1, (3, 4), dtype), "b": jnp.zeros(4, dtype)},
            {"w": jax.random.normal(k2, (4, 2), dtype), "b": jnp.ones(2, dtype)},
        ],
        "scale": 1.5,  # a Python float: differentiable, as in jax.grad
        "v": jnp.linspace(0.1, 2.0, 5, dtype=dtype),
        "n_layers": 2,  # static, passes through
        "name": "mlp",
    }


X = np.linspace(-1.0, 1.0, 15).reshape(5, 3)


def leaf_failures(report):
    return [d.name for d in report.failures if d.name != "all"]


def plant(grad, path, factor):
    """A copy of `grad` with the leaf at `path` (a key sequence) scaled."""
    grad = jax.tree_util.tree_map(lambda x: x, grad, is_leaf=lambda x: x is None)
    node = grad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = node[path[-1]] * factor
    return grad


# ---------------------------------------------------------------------------
# A right gradient passes at order ≈ 2


def test_correct_gradient_of_a_nested_pytree_converges_at_order_two():
    report = jaxcheck.taylor_test(mlp_loss, mlp_params(), X)
    assert report.ok, report
    names = [d.name for d in report.directions]
    assert names[0] == "all" and "['layers'][1]['w']" in names
    for d in report.directions:
        # J is linear in ['scale']: its remainder is round-off at every step.
        exact = d.name == "['scale']" and d.verdict == "exact to round-off"
        assert exact or 1.8 <= d.order <= 3.5, report
    assert ("['n_layers']", "int: static, passed through") in report.skipped


@pytest.mark.parametrize(
    "fun, params",
    [
        (lambda t: jnp.sum(jnp.sin(t) * t), jnp.linspace(-2.0, 3.0, 7)),
        (
            lambda t: jnp.exp(t[0]) * jnp.sum(t[1] ** 2),
            (jnp.array(0.3), jnp.array([1.0, 2.0])),
        ),
        (lambda z: jnp.sum(jnp.abs(z) ** 4), jnp.array([1 + 2j, -0.5j])),
        (lambda p: jnp.sum(p["w"] ** 3) * 1e6, {"w": jnp.array([1e3, 1e-3, 0.0])}),
    ],
    ids=["vector", "tuple", "complex", "mixed scales"],
)
def test_correct_gradient_passes(fun, params):
    report = jaxcheck.taylor_test(fun, params)
    assert report.ok, report
    assert report.directions[0].order == pytest.approx(2.0, abs=0.2)


def test_float32_with_x64_off():
    with enable_x64(False):
        params = mlp_params(jnp.float32)
        x = X.astype(np.float32)
        report = jaxcheck.taylor_test(mlp_loss, params, x)
        assert report.ok, report
        # float32 sees a 10 % error; smaller ones drown in round-off.
        wrong = plant(reference_grad(mlp_loss, params, x), ["v"], 1.1)
        report = jaxcheck.taylor_test(mlp_loss, params, x, grad=wrong)
    assert leaf_failures(report) == ["['v']"], report
    assert report.directions[0].steps[0] == 0.25


# ---------------------------------------------------------------------------
# A wrong gradient fails at order ≈ 1, at the wrong leaf only


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def _softplus_fwd(x):
    return softplus(x), x


def _softplus_bwd(x, ct):
    return (1.01 * ct * jax.nn.sigmoid(x),)  # planted: 1 % too large


softplus.defvjp(_softplus_fwd, _softplus_bwd)


def test_custom_vjp_with_a_wrong_backward_rule_is_located():
    def loss(p):
        return jnp.sum(jnp.sin(p["a"]) ** 2) + jnp.sum(softplus(p["b"]) * p["c"])

    params = {"a": jnp.arange(4.0), "b": jnp.array([-1.0, 0.5, 2.0]), "c": 0.7}
    report = jaxcheck.taylor_test(loss, params)
    assert not report.ok
    assert leaf_failures(report) == ["['b']"], report
    by_name = {d.name: d for d in report.directions}
    assert by_name["['b']"].order == pytest.approx(1.0, abs=0.15)
    assert by_name["['b']"].verdict == "FAILED: order ≈ 1 (wrong gradient)"
    assert all(d.order >= 1.8 for d in report.directions if d.name in ("['a']",))
    with pytest.raises(GradCheckError, match=r"wrong along \['b'\] \(order 1\.0"):
        jaxcheck.assert_taylor(loss, params)


def test_hand_gradient_off_by_one_percent_in_a_nested_leaf():
    params = mlp_params()
    wrong = plant(reference_grad(mlp_loss, params, X), ["layers", 1, "b"], 1.01)
    report = jaxcheck.taylor_test(mlp_loss, params, X, grad=wrong)
    assert leaf_failures(report) == ["['layers'][1]['b']"], report
    assert report.directions[0].order == pytest.approx(1.0, abs=0.2)
    # The same error as a callable with fun's signature.
    report = jaxcheck.taylor_test(
        mlp_loss,
        params,
        X,
        grad=lambda p, x: plant(
            reference_grad(mlp_loss, p, x), ["layers", 1, "b"], 1.01
        ),
    )
    assert leaf_failures(report) == ["['layers'][1]['b']"]


def test_wrong_gradient_where_the_true_one_is_zero():
    # At a minimum g·v = 0 for the right gradient; a wrong one adds h·g·v.
    loss = lambda t: jnp.sum((t - 1.0) ** 2 * jnp.arange(1.0, 4.0))  # noqa: E731
    at_minimum = jnp.ones(3)
    assert jaxcheck.taylor_test(loss, at_minimum).ok
    report = jaxcheck.taylor_test(loss, at_minimum, grad=jnp.array([0.0, 1e-3, 0.0]))
    assert not report.ok
    assert report.directions[0].order == pytest.approx(1.0, abs=0.1)


def test_linear_function_is_exact_to_round_off():
    loss = lambda p: jnp.sum(p["w"] * jnp.arange(5.0)) - 3.0 * p["c"]  # noqa: E731
    params = {"w": jnp.ones(5), "c": jnp.array(2.0)}
    report = jaxcheck.taylor_test(loss, params)
    assert report.ok
    assert {d.verdict for d in report.directions} == {"exact to round-off"}
    wrong = {"w": jnp.arange(5.0), "c": jnp.array(-3.003)}
    report = jaxcheck.taylor_test(loss, params, grad=wrong)
    assert leaf_failures(report) == ["['c']"]


# ---------------------------------------------------------------------------
# NaN and Inf are never "ok"


def test_nan_at_every_step_is_inconclusive():
    theta = jnp.array([0.5, 1.5])

    def loss(t):
        return jnp.where(jnp.all(t == theta), jnp.sum(t**2), jnp.nan)

    report = jaxcheck.taylor_test(loss, theta)
    assert not report.ok
    assert report.directions[0].verdict == "INCONCLUSIVE: fun is NaN/Inf at every step"


def test_nan_gradient_fails():
    report = jaxcheck.taylor_test(
        lambda t: jnp.sum(t**2), jnp.ones(3), grad=jnp.array([2.0, jnp.nan, 2.0])
    )
    assert not report.ok
    assert report.directions[1].verdict == "FAILED: the gradient is NaN/Inf"


def test_nan_at_the_largest_steps_only_is_skipped():
    # log leaves its domain for the largest steps: they are skipped, the rest used.
    loss = lambda t: jnp.sum(jnp.log(t))  # noqa: E731
    report = jaxcheck.taylor_test(loss, jnp.array([0.2, 0.3]), h0=4.0, num_steps=16)
    (direction,) = report.directions[:1]
    assert direction.ok and "skipped" in direction.verdict, report
    assert np.isnan(direction.remainders[0])
    # With NaN at h = 4, only 2 steps are left: too few to read an order.
    report = jaxcheck.taylor_test(loss, jnp.array([0.2, 0.3]), h0=4.0, num_steps=3)
    assert not report.ok and "INCONCLUSIVE" in report.directions[0].verdict


# ---------------------------------------------------------------------------
# The report, seeds, compilation, chunking


def test_empty_leaf_has_nothing_to_move():
    params = {"w": jnp.arange(3.0), "e": jnp.zeros((0, 2))}
    report = jaxcheck.taylor_test(
        lambda p: jnp.sum(p["w"] ** 3) + jnp.sum(p["e"]), params
    )
    assert report.ok
    (empty,) = [d for d in report.directions if d.name == "['e']"]
    assert empty.size == 0 and empty.verdict == "empty leaf: nothing to move"


def test_report_table_dict_and_immutability():
    params = mlp_params()
    wrong = plant(reference_grad(mlp_loss, params, X), ["v"], -1.0)
    report = jaxcheck.taylor_test(mlp_loss, params, X, grad=wrong, num_steps=6)
    text = str(report)
    assert text.startswith("Taylor test of `mlp_loss`")
    assert re.search(r"\['v'\] +5 +1\.\d\d  FAILED: order ≈ 1", text), text
    assert text.splitlines()[-1] == report.verdict
    assert "remainders:" in text and "not perturbed: ['n_layers']" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and len(data["directions"]) == len(report.directions)
    assert len(data["directions"][0]["remainders"]) == 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = True


def test_seeded_and_reused_compilation():
    traces = []

    def loss(t, x):
        traces.append(1)
        return jnp.sum(jnp.cos(t * x))

    t, x = jnp.linspace(0.0, 1.0, 6), jnp.arange(6.0)
    first = jaxcheck.taylor_test(loss, t, x)
    n_traces = len(traces)
    again = jaxcheck.taylor_test(loss, t + 0.5, x)
    assert len(traces) == n_traces  # same shapes: nothing is traced again
    assert jaxcheck.taylor_test(loss, t, x).directions == first.directions
    other = jaxcheck.taylor_test(loss, t, x, seed=1)
    assert other.directions[0].remainders != first.directions[0].remainders
    assert again.ok and other.ok


def test_chunked_steps_give_the_same_remainders():
    params = mlp_params()
    whole = jaxcheck.taylor_test(mlp_loss, params, X)
    chunked = jaxcheck.taylor_test(mlp_loss, params, X, chunk_size=5)
    for a, b in zip(chunked.directions, whole.directions, strict=True):
        # Batches of another size may round J differently in the last bits.
        atol = 2 * max(a.floors)
        np.testing.assert_allclose(a.remainders, b.remainders, rtol=1e-6, atol=atol)
        assert a.verdict == b.verdict


# ---------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"num_steps": 2}, ValueError, "`num_steps` must be at least 3"),
        ({"num_steps": 5.0}, TypeError, "`num_steps` must be an int"),
        ({"h0": -1.0}, ValueError, "`h0` must be non-negative and finite"),
        ({"h0": 0.0}, ValueError, "`h0` must be positive, got 0"),
        ({"h0": "big"}, TypeError, "`h0` must be a non-negative float or None"),
        ({"seed": "zero"}, TypeError, "`seed` must be a non-negative int"),
        ({"seed": -1}, ValueError, "`seed` must be a non-negative int"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be at least 1"),
        ({"grad": jnp.ones(2)}, ValueError, "`grad` .*shape"),
    ],
)
def test_bad_arguments_are_named(options, error, match):
    with pytest.raises(error, match=match):
        jaxcheck.taylor_test(lambda t: jnp.sum(t**2), jnp.ones(3), **options)


def test_bad_fun_and_params_are_named():
    with pytest.raises(TypeError, match="`fun` must be callable"):
        jaxcheck.taylor_test(3.0, jnp.ones(3))
    with pytest.raises(TypeError, match="`fun` must return a scalar"):
        jaxcheck.taylor_test(lambda t: t**2, jnp.ones(3))
    with pytest.raises(ValueError, match="`params` has nothing to check"):
        jaxcheck.taylor_test(lambda t: jnp.sum(t), jnp.arange(3))


def test_taylor_guide_example_runs():
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
        if "taylor_test" in b
    ]
    namespace: dict = {}
    exec(compile(block, "Taylor test guide", "exec"), namespace)
    assert namespace["report"].ok
    assert leaf_failures(namespace["bad"]) == ["['b']"]


def test_the_report_has_the_interface_every_report_shares(tmp_path):
    params = mlp_params()
    right = jaxcheck.taylor_test(mlp_loss, params, X)
    wrong_grad = plant(reference_grad(mlp_loss, params, X), ["layers", 1, "b"], 1.01)
    wrong = jaxcheck.taylor_test(mlp_loss, params, X, grad=wrong_grad)
    for report in (right, wrong):
        assert np.isnan(report.rel_diff)  # orders, not a difference of gradients
        assert report.leaves == report.directions[1:]
        assert [d.name for d in report.leaves][0].startswith("['layers'][0]")
        assert json.loads(report.to_json()) == json.loads(json.dumps(report.to_dict()))
    assert right.order == pytest.approx(2.0, abs=0.2)
    assert wrong.order == pytest.approx(1.0, abs=0.2)
    worst = wrong.worst(2)
    assert [d.ok for d in worst] == [False, False]
    assert {d.name for d in worst} == {"all", "['layers'][1]['b']"}
    assert right.worst(1)[0].ok
    pytest.importorskip("matplotlib")
    wrong.plot(tmp_path / "taylor.png")
    assert (tmp_path / "taylor.png").read_bytes()[:4] == b"\x89PNG"
