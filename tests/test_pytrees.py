"""Pytrees of every shape: floating leaves are perturbed, everything else passes
through, and a planted bug is located by its path in any container."""

import collections
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    assert_trees_close,
    at,
    is_float_leaf,
    leaf_path,
    location,
    plant,
    reference_grad,
)

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

Affine = collections.namedtuple("Affine", ["w", "b"])


def s(x):
    """A smooth scalar function of an array, with no zero derivatives nearby."""
    return jnp.sum(jnp.sin(x) + 0.5 * x**2)


def arr(*shape, dtype=jnp.float64, lo=-1.0, hi=1.5):
    n = math.prod(shape)
    return jnp.linspace(lo, hi, n, dtype=dtype).reshape(shape)


@dataclasses.dataclass
class Case:
    make_params: Callable[[], Any]  # fresh params for every test
    fun: Callable[..., Any]
    bug: tuple[str, tuple[int, ...]]  # where to plant a wrong entry
    skipped: tuple[str, ...] = ()  # paths listed in report.skipped
    args: tuple[Any, ...] = ()
    tol: float = 1e-7


CASES = {
    "dict": Case(
        lambda: {"w": arr(3, 2), "b": arr(2, lo=0.2)},
        lambda p: s(p["w"]) * s(p["b"]),
        bug=("['w']", (1, 0)),
    ),
    "list": Case(
        lambda: [arr(3), arr(2, 2, lo=0.3)],
        lambda p: s(p[0]) + s(p[1]) * s(p[0]),
        bug=("[1]", (0, 1)),
    ),
    "tuple": Case(
        lambda: (arr(3), jnp.array(0.4)),
        lambda p: s(p[0] * p[1]),
        bug=("[1]", ()),
    ),
    "namedtuple": Case(
        lambda: Affine(w=arr(2, 3), b=arr(3, lo=0.1)),
        lambda p: s(jnp.ones(2) @ p.w + p.b),
        bug=(".w", (1, 2)),
    ),
    "nested": Case(
        lambda: {
            "layers": [
                {"w": arr(2, 3), "b": arr(3, lo=0.1)},
                {"w": arr(3, 2), "b": arr(2)},
            ],
            "scale": jnp.array(1.3),
        },
        lambda p: (
            p["scale"]
            * s(
                jnp.tanh(jnp.ones(2) @ p["layers"][0]["w"] + p["layers"][0]["b"])
                @ p["layers"][1]["w"]
                + p["layers"][1]["b"]
            )
        ),
        bug=("['layers'][1]['w']", (0, 1)),
    ),
    "none_leaves": Case(
        lambda: {"w": arr(3), "unused": None, "pair": [None, arr(2, lo=0.2)]},
        lambda p: s(p["w"]) * s(p["pair"][1]),
        bug=("['pair'][1]", (1,)),
        skipped=("['pair'][0]", "['unused']"),
    ),
    "python_int": Case(
        lambda: {"w": arr(3, lo=0.3), "power": 3},
        lambda p: jnp.sum(p["w"] ** p["power"]) + s(p["w"]),
        bug=("['w']", (2,)),
        skipped=("['power']",),
    ),
    "python_bool": Case(
        lambda: {"w": arr(3), "square": True},
        lambda p: s(p["w"] ** 2 if p["square"] else p["w"]),
        bug=("['w']", (0,)),
        skipped=("['square']",),
    ),
    "int_array": Case(
        lambda: {"w": arr(4), "idx": jnp.array([0, 2, 3])},
        lambda p: s(p["w"][p["idx"]]) * s(p["w"]),
        bug=("['w']", (1,)),
        skipped=("['idx']",),
    ),
    "bool_array": Case(
        lambda: {"w": arr(3), "mask": jnp.array([True, False, True])},
        lambda p: s(jnp.where(p["mask"], p["w"], 2 * p["w"])),
        bug=("['w']", (1,)),
        skipped=("['mask']",),
    ),
    "string": Case(
        lambda: {"activation": "tanh", "w": arr(3)},
        lambda p: s(getattr(jnp, p["activation"])(p["w"])),
        bug=("['w']", (2,)),
        skipped=("['activation']",),
    ),
    "callable": Case(
        lambda: {"activation": jnp.tanh, "w": arr(3)},
        lambda p: s(p["activation"](p["w"])),
        bug=("['w']", (2,)),
        skipped=("['activation']",),
    ),
    "zero_d": Case(
        lambda: {"w": jnp.array(0.7), "b": jnp.array(-0.3)},
        lambda p: s(p["w"] * p["b"] + p["b"]),
        bug=("['b']", ()),
    ),
    "zero_size": Case(
        lambda: {"w": arr(3), "empty": jnp.zeros((0, 4))},
        lambda p: s(p["w"]) + jnp.sum(p["empty"]),
        bug=("['w']", (0,)),
    ),
    "python_float": Case(
        lambda: {"w": arr(3), "t": 1.5},
        lambda p: s(p["w"]) * p["t"] + p["t"] ** 2,
        bug=("['t']", ()),
    ),
    "numpy_float64": Case(
        lambda: {"w": np.linspace(-1.0, 1.0, 4), "b": np.float64(0.2)},
        lambda p: s(p["w"] + p["b"]),
        bug=("['b']", ()),
    ),
    "mixed_precision": Case(
        lambda: {"a": arr(3, dtype=jnp.float32), "b": arr(2, lo=0.2)},
        lambda p: s(p["a"]) * s(p["b"]),
        bug=("['a']", (1,)),
        tol=2e-3,
    ),
    "root_array": Case(lambda: arr(5), s, bug=("params", (3,))),
    "raw_prng_key": pytest.param(
        Case(
            lambda: {"w": arr(3), "key": jax.random.PRNGKey(0)},
            lambda p: s(p["w"] * jax.random.normal(p["key"], (3,))),
            bug=("['w']", (1,)),
            skipped=("['key']",),
        ),
    ),
    "unused_raw_prng_key": Case(
        lambda: {"w": arr(3), "key": jax.random.PRNGKey(0)},
        lambda p: s(p["w"]),
        bug=("['w']", (1,)),
        skipped=("['key']",),
    ),
    "typed_prng_key": pytest.param(
        Case(
            lambda: {"w": arr(3), "key": jax.random.key(0)},
            lambda p: s(p["w"] * jax.random.normal(p["key"], (3,))),
            bug=("['w']", (1,)),
            skipped=("['key']",),
        ),
    ),
    "args_pytree": Case(
        lambda: {"w": arr(3, 2)},
        lambda p, batch, scale: (
            scale * s(batch["x"] @ p["w"]) + jnp.sum(p["w"][batch["labels"], 0])
        ),
        bug=("['w']", (2, 1)),
        args=({"x": arr(4, 3), "labels": jnp.array([0, 2, 2, 1])}, 0.7),
    ),
}


def _case_params():
    """The cases as pytest params."""
    out = []
    for name, case in CASES.items():
        marks = ()
        if not isinstance(case, Case):
            [case], marks = case.values, tuple(case.marks)
        out.append(pytest.param(case, marks=marks, id=name))
    return out


ALL_CASES = _case_params()


_REFERENCE: dict[int, Any] = {}


def _reference(case):
    """`reference_grad` of a case, computed once per session."""
    if id(case) not in _REFERENCE:
        _REFERENCE[id(case)] = reference_grad(case.fun, case.make_params(), *case.args)
    return _REFERENCE[id(case)]


def _perturbed_paths(params):
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [leaf_path(k) for k, leaf in leaves if is_float_leaf(leaf)]


@pytest.mark.parametrize("case", ALL_CASES)
def test_numerical_grad_matches_jax_grad(case):
    params = case.make_params()
    numeric = jaxcheck.numerical_grad(case.fun, params, *case.args)
    expected = _reference(case)
    # Same structure as params, None exactly at the leaves that are not perturbed.
    assert_trees_close(numeric, expected, rtol=case.tol, atol=case.tol)


@pytest.mark.parametrize("case", ALL_CASES)
def test_check_grad_passes(case):
    params = case.make_params()
    report = jaxcheck.assert_grad(case.fun, params, *case.args)
    assert report.ok
    assert [leaf.path for leaf in report.leaves] == _perturbed_paths(params)
    grad = _reference(case)
    assert jaxcheck.check_grad(case.fun, params, *case.args, grad=grad).ok


@pytest.mark.parametrize("case", ALL_CASES)
def test_planted_bug_is_located(case):
    params = case.make_params()
    path, index = case.bug
    grad = plant(_reference(case), path, index, 0.05)
    with pytest.raises(GradCheckError, match=at(path, index)):
        jaxcheck.assert_grad(case.fun, params, *case.args, grad=grad)
    report = jaxcheck.check_grad(case.fun, params, *case.args, grad=lambda *_: grad)
    [failure] = report.failures
    assert (failure.path, failure.index) == (path, index)
    assert failure.location == location(path, index)


@pytest.mark.parametrize("case", ALL_CASES)
def test_skipped_leaves_are_listed(case):
    params = case.make_params()
    report = jaxcheck.check_grad(case.fun, params, *case.args)
    assert sorted(path for path, _ in report.skipped) == sorted(case.skipped)
    for path in case.skipped:
        assert path in str(report)


def test_grad_may_hold_anything_at_skipped_leaves():
    params = {"w": arr(3), "n": 2, "idx": jnp.array([1, 2]), "name": "x"}
    fun = lambda p: s(p["w"] ** p["n"]) + s(p["w"][p["idx"]])  # noqa: E731
    g = reference_grad(fun, params)["w"]
    grad = {"w": g, "n": "anything", "idx": None, "name": 3.0}
    assert jaxcheck.check_grad(fun, params, grad=grad).ok
    with pytest.raises(GradCheckError, match=at("['w']", (1,))):
        jaxcheck.assert_grad(fun, params, grad=dict(grad, w=g.at[1].add(0.1)))


# --------------------------------------------------------------------------
# NumPy inputs are not mutated


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "entry", [jaxcheck.numerical_grad, jaxcheck.check_grad], ids=lambda f: f.__name__
)
def test_numpy_inputs_are_not_mutated(entry, dtype):
    params = {
        "w": np.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(2, 3),
        "b": np.ones(3, dtype),
    }
    x = np.arange(4.0, dtype=dtype).reshape(2, 2) / 3
    assert params["w"].flags.writeable and params["b"].flags.writeable
    before = {k: v.copy() for k, v in params.items()}
    x_before = x.copy()
    entry(lambda p, x: s(x @ p["w"] + p["b"]), params, x)
    for name in params:
        np.testing.assert_array_equal(params[name], before[name])
        assert params[name].dtype == dtype
        assert params[name].flags.writeable
    np.testing.assert_array_equal(x, x_before)


# --------------------------------------------------------------------------
# A PRNG key in args: dropout with a fixed key checks cleanly


def dropout_loss(params, x, key):
    h = jnp.tanh(x @ params["w"])
    keep = jax.random.bernoulli(key, 0.5, h.shape)
    return jnp.sum(jnp.where(keep, h / 0.5, 0.0) ** 2)


def dropout_split_loss(params, x, key):
    _, sub = jax.random.split(key)
    return dropout_loss(params, x, sub)


@pytest.mark.parametrize(
    "loss, key",
    [
        pytest.param(dropout_loss, jax.random.key(3), id="typed_key"),
        pytest.param(dropout_loss, jax.random.PRNGKey(3), id="raw_key"),
        pytest.param(
            dropout_split_loss,
            jax.random.key(3),
            id="typed_key_split",
        ),
    ],
)
def test_dropout_with_fixed_key(loss, key):
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)))}
    x = jnp.asarray(rng.normal(size=(5, 3)))
    report = jaxcheck.assert_grad(loss, params, x, key)
    assert report.ok and report.num_entries == 12
    assert report.skipped == ()  # args are never perturbed nor listed
    numeric = jaxcheck.numerical_grad(loss, params, x, key)
    exact = jax.jit(jax.grad(loss))(params, x, key)
    np.testing.assert_allclose(numeric["w"], exact["w"], rtol=1e-7, atol=1e-9)
    grad = plant(exact, "['w']", (2, 3), 0.01)
    with pytest.raises(GradCheckError, match=at("['w']", (2, 3))):
        jaxcheck.assert_grad(loss, params, x, key, grad=grad)


# --------------------------------------------------------------------------
# Trees with nothing to check


ENTRIES = [jaxcheck.numerical_grad, jaxcheck.check_grad, jaxcheck.assert_grad]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "params",
    [{}, [], (), None, {"a": None}, {"a": [], "b": {}}],
    ids=["dict", "list", "tuple", "None", "dict_of_None", "nested_empty"],
)
def test_empty_tree_is_rejected(params, entry):
    with pytest.raises(
        ValueError, match=r"`params` has nothing to check: an empty pytree"
    ):
        entry(lambda p: jnp.float64(0.0), params)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "params",
    [
        {"n": 3},
        {"idx": jnp.arange(3)},
        [True, jnp.array([True, False])],
        {"name": "x", "f": jnp.sin, "n": np.int32(2)},
    ],
    ids=["python_int", "int_array", "bools", "statics"],
)
def test_tree_without_floating_leaves_is_rejected(params, entry):
    with pytest.raises(
        ValueError, match=r"`params` has nothing to check: no floating leaves"
    ):
        entry(lambda p: jnp.float64(1.0), params)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda f: f.__name__)
def test_tree_of_zero_size_leaves_is_rejected(entry):
    params = {"a": jnp.zeros((0,)), "b": jnp.zeros((3, 0))}
    with pytest.raises(
        ValueError, match=r"`params` has nothing to check: only zero-size"
    ):
        entry(lambda p: jnp.sum(p["a"]) + jnp.sum(p["b"]), params)


def test_output_tree_has_params_structure():
    params = {"w": arr(2), "n": 3, "none": None, "mask": jnp.array([True, False])}
    fun = lambda p: s(p["w"]) * p["n"]  # noqa: E731
    numeric = jaxcheck.numerical_grad(fun, params)
    assert set(numeric) == set(params)
    assert numeric["n"] is None and numeric["none"] is None and numeric["mask"] is None
    assert numeric["w"].shape == (2,)


def test_theta_is_ravel_pytree_of_the_floating_leaves():
    from jax.flatten_util import ravel_pytree

    params = {
        "w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3),
        "b": jnp.ones(2),
        "c": jnp.array(0.5),
    }

    def loss(p):
        return jnp.sum(jnp.sin(p["w"]) * p["c"]) + jnp.sum(p["b"] ** 3)

    flat = jaxcheck.numerical_grad(loss, params, flat=True)
    tree = jaxcheck.numerical_grad(loss, params)
    np.testing.assert_array_equal(flat, ravel_pytree(tree)[0])
    theta = ravel_pytree(params)[0]
    exact = ravel_pytree(jax.grad(loss)(params))[0]
    report = jaxcheck.check_grad(loss, params)
    leaves = {f"['{k}']": v for k, v in params.items()}
    for entry in report.worst(9):  # every entry, located both ways
        assert theta[entry.flat_index] == leaves[entry.path][entry.index]
        assert entry.analytic == pytest.approx(float(exact[entry.flat_index]))
    wrong = dict(jax.grad(loss)(params))
    wrong["w"] = wrong["w"].at[1, 2].add(0.1)
    (failure,) = jaxcheck.check_grad(loss, params, grad=wrong).failures
    assert failure.location == "['w'][1, 2]" and failure.flat_index == 3 + 5


def test_theta_leaves_out_what_is_not_perturbed_and_flat_is_validated():
    params = {"n": 3, "w": jnp.arange(3.0), "i": jnp.arange(2)}
    loss = lambda p: jnp.sum(p["w"] ** 2) * p["n"]  # noqa: E731
    flat = jaxcheck.numerical_grad(loss, params, flat=True)
    assert flat.shape == (3,)  # only ['w']: ints and Python ints are not in θ
    np.testing.assert_allclose(flat, [0.0, 6.0, 12.0], atol=1e-6)
    with pytest.raises(TypeError, match="`flat` must be True or False"):
        jaxcheck.numerical_grad(loss, params, flat="yes")
