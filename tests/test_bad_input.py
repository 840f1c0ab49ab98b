"""Bad arguments are rejected before anything runs, with the argument's name in the
message; exceptions raised by `fun` itself propagate with a note from jaxcheck."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._engine import jaxpr as _jaxpr


def loss(params):
    return jnp.sum(params["w"] ** 2) + params["b"]


PARAMS = {"w": jnp.arange(3.0), "b": jnp.array(0.5)}

ENTRIES = {
    "numerical_grad": jaxcheck.numerical_grad,
    "check_grad": jaxcheck.check_grad,
    "assert_grad": jaxcheck.assert_grad,
}
CHECKS = {name: ENTRIES[name] for name in ("check_grad", "assert_grad")}


def case(name, exception, match, *, fun=loss, params=PARAMS, **kwargs):
    return pytest.param(fun, params, kwargs, exception, match, id=name)


# Arguments every entry point takes: (fun, params, keyword arguments, error, match).
COMMON_CASES = [
    # fun
    case("fun_not_callable", TypeError, r"`fun` must be callable.*got int", fun=42),
    case(
        "fun_is_its_value",
        TypeError,
        r"`fun` must be callable.*ArrayImpl",
        fun=loss(PARAMS),
    ),
    case(
        "output_vector",
        TypeError,
        r"`fun` must return a scalar, got an output of shape \(3,\)",
        fun=lambda p: p["w"] * 2,
    ),
    case(
        "output_1x1",
        TypeError,
        r"`fun` must return a scalar, got an output of shape \(1, 1\)",
        fun=lambda p: jnp.reshape(loss(p), (1, 1)),
    ),
    case(
        "output_tuple",
        TypeError,
        r"`fun` must return a scalar array",
        fun=lambda p: (loss(p), p["w"]),
    ),
    case(
        "output_complex",
        TypeError,
        r"`fun` must return a real scalar, got complex128",
        fun=lambda p: loss(p) * (1 + 1j),
    ),
    case(
        "output_integer",
        TypeError,
        r"`fun` must return a floating scalar, got int",
        fun=lambda p: jnp.sum(p["w"] > 0),
    ),
    case(
        "output_bool",
        TypeError,
        r"`fun` must return a floating scalar, got bool",
        fun=lambda p: jnp.all(p["w"] >= 0),
    ),
    # params
    case(
        "no_floating_leaves",
        ValueError,
        r"`params` has nothing to check: no floating leaves",
        fun=lambda p: jnp.float64(1.0),
        params={"n": 3, "idx": jnp.arange(2)},
    ),
    case(
        "nan_in_params",
        ValueError,
        re.escape("`params` has non-finite entries in ['w']"),
        params={"w": jnp.array([0.0, math.nan, 1.0]), "b": jnp.array(0.5)},
    ),
    case(
        "inf_in_params",
        ValueError,
        re.escape("`params` has non-finite entries in ['b']"),
        params={"w": jnp.arange(3.0), "b": jnp.array(math.inf)},
    ),
    case(
        "nonfinite_value",
        ValueError,
        r"`fun\(params, \*args\)` is -inf at the given `params`",
        fun=lambda p: jnp.sum(jnp.log(p["w"])),
    ),
    # method
    case("method_unknown", ValueError, r"`method` must be one of", method="centered"),
    case("method_case", ValueError, r"`method` must be one of", method="Central"),
    case("method_none", ValueError, r"`method` must be one of", method=None),
    # eps
    case("eps_zero", ValueError, r"`eps` must be positive and finite", eps=0.0),
    case("eps_int_zero", ValueError, r"`eps` must be positive and finite", eps=0),
    case("eps_negative", ValueError, r"`eps` must be positive and finite", eps=-1e-3),
    case("eps_nan", ValueError, r"`eps` must be positive and finite", eps=math.nan),
    case("eps_inf", ValueError, r"`eps` must be positive and finite", eps=math.inf),
    case(
        "eps_string", TypeError, r"`eps` must be a positive float or None", eps="0.01"
    ),
    case("eps_true", TypeError, r"`eps` must be a positive float or None", eps=True),
    case(
        "eps_below_resolution",
        ValueError,
        r"`eps`=1e-30 is below the resolution",
        eps=1e-30,
    ),
    # chunking
    case(
        "chunk_size_zero", ValueError, r"`chunk_size` must be at least 1", chunk_size=0
    ),
    case(
        "chunk_size_negative",
        ValueError,
        r"`chunk_size` must be at least 1",
        chunk_size=-2,
    ),
    case(
        "chunk_size_float",
        TypeError,
        r"`chunk_size` must be a positive int",
        chunk_size=2.5,
    ),
    case(
        "chunk_size_true",
        TypeError,
        r"`chunk_size` must be a positive int",
        chunk_size=True,
    ),
    case(
        "memory_budget_zero",
        ValueError,
        r"`memory_budget` must be a positive",
        memory_budget=0,
    ),
    case(
        "memory_budget_negative",
        ValueError,
        r"`memory_budget` must be a positive",
        memory_budget=-1,
    ),
    case(
        "memory_budget_nan",
        ValueError,
        r"`memory_budget` must be a positive",
        memory_budget=math.nan,
    ),
    case(
        "memory_budget_string",
        TypeError,
        r"`memory_budget` must be a number of bytes",
        memory_budget="1GB",
    ),
    case(
        "memory_budget_too_small",
        ValueError,
        r"`memory_budget` of 8 bytes is too small",
        memory_budget=8,
    ),
    # keywords
    case("unknown_keyword", TypeError, r"unexpected keyword argument 'tol'", tol=1e-3),
    case(
        "misspelt_keyword",
        TypeError,
        r"unexpected keyword argument 'chunksize'",
        chunksize=4,
    ),
]


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
@pytest.mark.parametrize("fun, params, kwargs, exception, match", COMMON_CASES)
def test_bad_argument(entry, fun, params, kwargs, exception, match):
    with pytest.raises(exception, match=match):
        entry(fun, params, **kwargs)


G = {"w": 2 * PARAMS["w"], "b": jnp.array(1.0)}

# Arguments of check_grad and assert_grad only.
CHECK_CASES = [
    case("atol_negative", ValueError, r"`atol` must be non-negative", atol=-1e-6),
    case("rtol_negative", ValueError, r"`rtol` must be non-negative", rtol=-1e-6),
    case(
        "atol_nan", ValueError, r"`atol` must be non-negative and finite", atol=math.nan
    ),
    case(
        "rtol_inf", ValueError, r"`rtol` must be non-negative and finite", rtol=math.inf
    ),
    case("atol_string", TypeError, r"`atol` must be a non-negative float", atol="1e-3"),
    case("rtol_true", TypeError, r"`rtol` must be a non-negative float", rtol=True),
    case(
        "grad_missing_key",
        ValueError,
        r"`grad` must have the tree structure of `params`.*'b'",
        grad={"w": G["w"]},
    ),
    case(
        "grad_extra_key",
        ValueError,
        r"`grad` must have the tree structure of `params`.*'c'",
        grad=dict(G, c=jnp.zeros(1)),
    ),
    case(
        "grad_list_for_dict",
        ValueError,
        r"`grad` must have the tree structure of `params`",
        grad=[G["b"], G["w"]],
    ),
    case(
        "grad_callable_wrong_structure",
        ValueError,
        r"`grad` must have the tree structure of `params`",
        grad=lambda p: (G["b"], G["w"]),
    ),
    case(
        "grad_wrong_shape",
        ValueError,
        re.escape("`grad` at ['w'] has shape (2,), but the parameter has shape (3,)"),
        grad=dict(G, w=jnp.zeros(2)),
    ),
    case(
        "grad_transposed",
        ValueError,
        re.escape("`grad` at ['w'] has shape (3, 1)"),
        grad=dict(G, w=jnp.zeros((3, 1))),
    ),
    case(
        "grad_callable_wrong_shape",
        ValueError,
        re.escape("`grad` at ['b'] has shape (1,)"),
        grad=lambda p: dict(G, b=jnp.ones(1)),
    ),
    case(
        "grad_wrong_dtype",
        ValueError,
        re.escape("`grad` at ['w'] has dtype float32, but the parameter is float64"),
        grad=dict(G, w=G["w"].astype(jnp.float32)),
    ),
    case(
        "grad_integer_dtype",
        ValueError,
        re.escape("`grad` at ['w'] has dtype int"),
        grad=dict(G, w=jnp.array([0, 2, 4])),
    ),
    case(
        "grad_string_leaf",
        TypeError,
        re.escape("`grad` at ['w'] must be an array like the parameter, got str"),
        grad=dict(G, w="2w"),
    ),
    case(
        "grad_none_at_float_leaf",
        TypeError,
        re.escape("`grad` at ['b'] must be an array like the parameter, got NoneType"),
        grad=dict(G, b=None),
    ),
]


@pytest.mark.parametrize("entry", CHECKS.values(), ids=CHECKS.keys())
@pytest.mark.parametrize("fun, params, kwargs, exception, match", CHECK_CASES)
def test_bad_check_argument(entry, fun, params, kwargs, exception, match):
    with pytest.raises(exception, match=match):
        entry(fun, params, **kwargs)


@pytest.mark.parametrize("entry", CHECKS.values(), ids=CHECKS.keys())
def test_grad_structure_mismatch_names_the_path(entry):
    params = {"layers": [{"w": jnp.ones(2), "b": jnp.array(0.5)}] * 2}

    def fun(p):
        return sum(jnp.sum(layer["w"] ** 2) + layer["b"] for layer in p["layers"])

    grad = jax.grad(fun)(params)
    grad["layers"][1] = {"w": grad["layers"][1]["w"]}  # forgot the bias of layer 1
    with pytest.raises(ValueError, match=re.escape("['layers'][1]")):
        entry(fun, params, grad=grad)


# --------------------------------------------------------------------------
# Inside a transformation


TRANSFORMS = {
    "jit": lambda f: jax.jit(f),
    "vmap": lambda f: jax.vmap(f),
    "grad": lambda f: jax.grad(lambda w: jnp.sum(w) + f(w)),
}


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_inside_transformation(entry, transform):
    def inner(w):
        entry(lambda p: jnp.sum(p**2), w)
        return 0.0

    with pytest.raises(TypeError, match=r"`params` or `args` hold a JAX tracer"):
        transform(inner)(
            jnp.ones((2, 3)) if transform is TRANSFORMS["vmap"] else jnp.ones(3)
        )


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_tracer_in_args(entry):
    @jax.jit
    def inner(x):
        entry(lambda p, x: jnp.sum(p * x), jnp.ones(3), x)
        return x

    with pytest.raises(TypeError, match=r"`params` or `args` hold a JAX tracer"):
        inner(jnp.ones(3))


# --------------------------------------------------------------------------
# Exceptions raised by fun or by a grad callable propagate, with a note


class PlantedError(Exception):
    pass


def _raise_on_call(n, exception):
    """A loss that raises `exception` on its n-th call (trace)."""
    calls = []

    def fun(params):
        calls.append(None)
        if len(calls) == n:
            raise exception
        return loss(params)

    fun.calls = calls
    return fun


@pytest.mark.parametrize(
    "exception",
    [KeyError("w"), ZeroDivisionError("division by zero"), PlantedError("boom")],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_exception_in_fun_propagates_with_note(entry, exception):
    with pytest.raises(type(exception), match=r"jaxcheck: raised by `fun`") as info:
        entry(_raise_on_call(1, exception), PARAMS)
    assert info.value is exception
    assert any("jaxcheck" in note for note in info.value.__notes__)


@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_exception_in_later_trace_propagates_with_note(entry, monkeypatch):
    # The first trace checks the output; later ones compute jax.grad or evaluate
    # the perturbed chunks. Wherever it is raised, the exception comes out as is.
    # (Eagerly, a check this small would replay its points from the first trace.)
    monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)
    clean = _raise_on_call(0, None)
    entry(clean, PARAMS)
    n_traces = len(clean.calls)
    assert n_traces >= 2
    for n in range(2, n_traces + 1):
        exception = PlantedError(f"raised on call {n}")
        with pytest.raises(PlantedError, match=r"jaxcheck: raised .*fun") as info:
            entry(_raise_on_call(n, exception), PARAMS)
        assert info.value is exception


def test_exception_in_a_real_fun_is_not_hidden():
    def fun(params):
        return jnp.sum(params["weights"] ** 2)  # there is no "weights"

    with pytest.raises(KeyError, match=r"weights") as info:
        jaxcheck.check_grad(fun, PARAMS)
    assert any("jaxcheck: raised by `fun`" in note for note in info.value.__notes__)


@pytest.mark.parametrize("entry", CHECKS.values(), ids=CHECKS.keys())
def test_exception_in_grad_callable_propagates_with_note(entry):
    def grad(params):
        raise PlantedError("no gradient today")

    with pytest.raises(PlantedError, match=r"jaxcheck: raised by the `grad` callable"):
        entry(loss, PARAMS, grad=grad)


def test_validation_happens_before_fun_is_called():
    calls = []

    def fun(params):
        calls.append(None)
        return loss(params)

    for kwargs in [{"method": "x"}, {"eps": -1.0}, {"chunk_size": 0}, {"atol": -1.0}]:
        with pytest.raises((TypeError, ValueError)):
            jaxcheck.check_grad(fun, PARAMS, **kwargs)
    with pytest.raises(ValueError):
        jaxcheck.check_grad(fun, {"n": 1})
    assert calls == []


def test_numpy_nan_params_named():
    params = {"a": np.ones(2), "b": np.array([1.0, np.nan])}
    with pytest.raises(
        ValueError, match=re.escape("`params` has non-finite entries in ['b']")
    ):
        jaxcheck.numerical_grad(lambda p: jnp.sum(p["a"] * p["b"]), params)


def test_exception_in_a_batched_evaluation_names_the_leaves_and_the_chunk():
    def fun(params):
        # Raises only when traced for a batch of perturbations of ['w'].
        if (
            isinstance(params["w"], jax.core.Tracer)
            and "Batch" in type(params["w"]).__name__
        ):
            raise PlantedError("cannot batch this")
        return loss(params)

    params = {"w": jnp.arange(5000.0) / 5000, "b": jnp.array(0.5)}
    with pytest.raises(PlantedError, match="cannot batch this") as info:
        jaxcheck.check_grad(fun, params)
    [note] = [n for n in info.value.__notes__ if "chunk" in n]
    assert re.search(r"evaluating chunk 1 of \d+ with \['w'\] perturbed", note), note
