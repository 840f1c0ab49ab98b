"""`mode="fast"` (random directional probes per leaf, then entry by entry where
they fail) and `mode="sample"` (random entries per leaf): correct gradients pass,
planted bugs are caught and located by leaf path and index."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    at,
    init_mlp,
    mlp_data,
    mlp_leaf_paths,
    mlp_loss,
    plant,
    reference_grad,
)

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

PARAMS = init_mlp()
X, Y = mlp_data()
EXACT = jax.grad(mlp_loss)(PARAMS, X, Y)

# A leaf of 2,000 entries, more than fast mode narrows down to before it checks
# entries one by one.
rng = np.random.default_rng(0)
WIDE = {
    "w": jnp.asarray(rng.normal(size=(40, 50)) / 7),
    "b": jnp.asarray(rng.normal(size=50)),
}
WIDE_X = jnp.asarray(rng.normal(size=(8, 40)))


def wide_loss(params, x):
    return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)


WIDE_GRAD = jax.grad(wide_loss)(WIDE, WIDE_X)


def test_fast_mode_passes_a_correct_gradient_without_entrywise_work():
    report = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, mode="fast")
    assert report.ok and report.mode == "fast"
    assert report.num_entries == 0  # no entry was compared one by one
    assert report.num_params == sum(x.size for x in jax.tree.leaves(PARAMS))
    assert [s.checked for s in report.leaves] == ["3 directions"] * 6
    assert "fast mode" in str(report) and "3 directions" in str(report)


@pytest.mark.parametrize("path", mlp_leaf_paths())
def test_fast_mode_locates_a_planted_bug_in_any_leaf(path):
    index = (1,) if path.endswith("['b']") else (1, 0)
    wrong = plant(EXACT, path, index, 1e-3)
    with pytest.raises(GradCheckError, match=at(path, index)):
        jaxcheck.assert_grad(mlp_loss, PARAMS, X, Y, grad=wrong, mode="fast")
    report = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, grad=wrong, mode="fast")
    bad = [s for s in report.leaves if s.status != "ok"]
    assert [s.path for s in bad] == [path]
    assert bad[0].checked == "3 directions (failed), then all entries"
    assert report.num_failed == 1 and report.failures[0].index == index


def test_fast_mode_narrows_a_large_leaf_before_checking_entries():
    wrong = plant(WIDE_GRAD, "['w']", (17, 33), 1e-3)
    with pytest.raises(GradCheckError, match=at("['w']", (17, 33))):
        jaxcheck.assert_grad(wide_loss, WIDE, WIDE_X, grad=wrong, mode="fast")
    report = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, grad=wrong, mode="fast")
    w = next(s for s in report.leaves if s.path == "['w']")
    assert "narrowed in" in w.checked and w.failed == 1
    assert report.num_entries <= 64  # not the 2,000 entries of the leaf


def test_fast_mode_checks_every_entry_of_a_leaf_wrong_everywhere():
    wrong = dict(WIDE_GRAD, w=1.01 * WIDE_GRAD["w"])
    report = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, grad=wrong, mode="fast")
    w = next(s for s in report.leaves if s.path == "['w']")
    assert w.checked == "3 directions (failed), then all entries"
    assert report.num_entries == WIDE["w"].size
    assert w.failed > 1900  # a few entries with a tiny gradient stay in tolerance


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_fast_mode_on_mixed_pytrees(dtype):
    params = {
        "w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4),
        "z": jnp.array([0.5 + 0.2j, -0.3 + 1.0j]),
        "n": 3,
        "empty": jnp.zeros((0,), dtype),
    }

    def loss(p):
        return jnp.sum(jnp.sin(p["w"]) ** 2) * p["n"] + jnp.sum(jnp.abs(p["z"]) ** 2)

    report = jaxcheck.check_grad(loss, params, mode="fast")
    assert report.ok, str(report)
    wrong = plant(reference_grad(loss, params), "['z']", (1,), 0.5)
    with pytest.raises(GradCheckError, match=at("['z']", (1,))):
        jaxcheck.assert_grad(loss, params, grad=wrong, mode="fast")


def test_sample_mode_checks_k_entries_of_every_leaf():
    report = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, mode="sample", samples=5)
    assert report.ok and report.num_entries == 10
    assert [s.checked for s in report.leaves] == ["5 sampled entries"] * 2
    small = jaxcheck.check_grad(mlp_loss, PARAMS, X, Y, mode="sample", samples=6)
    # every leaf of this MLP has at most 36 entries; those with 6 or fewer are
    # checked completely
    sizes = [x.size for x in jax.tree.leaves(PARAMS)]
    assert small.num_entries == sum(min(6, n) for n in sizes)
    assert "sample mode" in small.verdict


def test_sample_mode_is_seeded():
    def entries(seed):
        r = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, mode="sample", seed=seed)
        return [e.location for e in r.worst(32)]

    assert sorted(entries(0)) == sorted(entries(0))
    assert sorted(entries(0)) != sorted(entries(1))


def test_sample_mode_catches_a_bug_in_a_small_leaf():
    # ['layers'][2]['b'] has 2 entries: fewer than `samples`, so all are checked.
    path = "['layers'][2]['b']"
    wrong = plant(EXACT, path, (1,), 1e-3)
    with pytest.raises(GradCheckError, match=at(path, (1,))):
        jaxcheck.assert_grad(mlp_loss, PARAMS, X, Y, grad=wrong, mode="sample")


def test_report_dict_says_how_each_leaf_was_checked():
    d = jaxcheck.check_grad(wide_loss, WIDE, WIDE_X, mode="fast").to_dict()
    assert d["mode"] == "fast" and d["num_params"] == 2050
    assert {leaf["checked"] for leaf in d["leaves"]} == {"3 directions"}


def _never_called(params):
    raise AssertionError("traced before the arguments were validated")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"mode": "quick"}, ValueError, "`mode` must be one of"),
        ({"mode": "sample", "samples": 0}, ValueError, "`samples` must be at least"),
        ({"mode": "sample", "samples": 2.5}, TypeError, "`samples` must be a"),
        ({"mode": "fast", "samples": 8}, ValueError, "`samples` is the number of"),
        ({"samples": 8}, ValueError, "but mode='full'; pass mode=\"sample\""),
        ({"mode": "fast", "seed": -1}, ValueError, "`seed` must be a non-negative"),
        ({"mode": "fast", "seed": "0"}, TypeError, "`seed` must be a non-negative"),
    ],
)
def test_mode_arguments_are_validated_before_tracing(options, error, match):
    with pytest.raises(error, match=match):
        jaxcheck.check_grad(_never_called, {"w": jnp.ones(3)}, **options)


def test_fast_mode_probes_a_float32_fun_in_its_float64_twin():
    # J ≈ 1000 makes float32 round-off in J(θ ± v) about 4e-4·|J| per unit of
    # direction, far above a 1% error of one entry; the float64 twin resolves it.
    w = jnp.asarray(np.random.default_rng(0).normal(size=40), jnp.float32)

    def loss(p):
        return 1000.0 + jnp.sum(jnp.sin(p["w"]))

    wrong = jnp.cos(w) * jnp.where(jnp.arange(40) == 7, 1.01, 1.0)
    grad = {"w": wrong.astype(jnp.float32)}
    right = jaxcheck.check_grad(loss, {"w": w}, mode="fast")
    assert right.ok and right.note.startswith("differences in a float64 twin")
    report = jaxcheck.check_grad(loss, {"w": w}, grad=grad, mode="fast")
    assert not report.ok
    assert report.leaves[0].checked.startswith("3 directions (failed)")
    assert [e.location for e in report.failures] == ["['w'][7]"]
