"""A second check of the same `fun` on inputs of the same shapes and dtypes traces
nothing new; new shapes, dtypes or static values do retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import counted, init_mlp, mlp_data, mlp_loss

import jaxcheck

MLP_GRAD = jax.jit(jax.grad(mlp_loss))  # compiled once per shape, never calls `fun`


def _scaled(tree, factor):
    return jax.tree_util.tree_map(lambda x: x * factor, tree)


def _run(entry, fun, params, *args, **kwargs):
    if entry == "numerical_grad":
        return jaxcheck.numerical_grad(fun, params, *args, **kwargs)
    if entry == "check_grad":
        return jaxcheck.check_grad(fun, params, *args, **kwargs)
    if entry == "check_grad_given_values":
        grad = MLP_GRAD(params, *args)
        return jaxcheck.check_grad(fun, params, *args, grad=grad, **kwargs)
    raise AssertionError(entry)


ENTRIES = ["numerical_grad", "check_grad", "check_grad_given_values"]


@pytest.mark.parametrize(
    "entry, method",
    [(entry, "central") for entry in ENTRIES] + [("check_grad", "forward")],
)
def test_second_call_traces_nothing(entry, method):
    fun = counted(mlp_loss)
    params = init_mlp(seed=0)
    x, y = mlp_data(seed=1)
    _run(entry, fun, params, x, y, method=method)
    first = fun.calls
    assert first > 0
    # New values, same shapes and dtypes.
    _run(entry, fun, _scaled(init_mlp(seed=5), 0.9), x + 1.0, y * 2.0, method=method)
    assert fun.calls == first


@pytest.mark.parametrize("entry", ENTRIES)
def test_numpy_inputs_of_same_dtype_do_not_retrace(entry):
    fun = counted(mlp_loss)
    params = init_mlp(seed=0)
    x, y = mlp_data(seed=1)
    _run(entry, fun, params, x, y)
    first = fun.calls
    as_numpy = jax.tree_util.tree_map(np.asarray, (params, x, y))
    _run(entry, fun, *as_numpy)
    assert fun.calls == first


@pytest.mark.parametrize("entry", ["numerical_grad", "check_grad"])
def test_new_shapes_retrace(entry):
    fun = counted(mlp_loss)
    x, y = mlp_data(n=5)
    _run(entry, fun, init_mlp(), x, y)
    first = fun.calls
    # A wider hidden layer: new parameter shapes.
    sizes = (4, 7, 6, 2)
    _run(entry, fun, init_mlp(sizes), x, y)
    second = fun.calls
    assert second > first
    # A larger batch: new shapes in args only.
    x, y = mlp_data(n=8)
    _run(entry, fun, init_mlp(sizes), x, y)
    assert fun.calls > second


def test_new_dtype_retraces():
    fun = counted(lambda w: jnp.sum(jnp.sin(w)))
    jaxcheck.check_grad(fun, jnp.linspace(0.0, 1.0, 5))
    first = fun.calls
    jaxcheck.check_grad(fun, jnp.linspace(0.0, 1.0, 5, dtype=jnp.float32))
    assert fun.calls > first
    second = fun.calls
    jaxcheck.check_grad(fun, jnp.linspace(1.0, 2.0, 5, dtype=jnp.float32))
    assert fun.calls == second


def test_python_float_leaf_does_not_retrace():
    fun = counted(lambda p: jnp.sin(p["t"]) * jnp.sum(p["w"] ** 2))
    jaxcheck.check_grad(fun, {"t": 0.5, "w": jnp.ones(3)})
    first = fun.calls
    jaxcheck.check_grad(fun, {"t": 1.7, "w": jnp.zeros(3)})
    assert fun.calls == first


def test_static_leaves_are_part_of_the_cache_key():
    fun = counted(lambda p: jnp.sum(p["w"] ** p["power"]) if p["act"] == "id" else 0.0)
    jaxcheck.check_grad(fun, {"w": jnp.ones(3), "power": 2, "act": "id"})
    first = fun.calls
    # Same static values: nothing new.
    jaxcheck.check_grad(fun, {"w": 2.0 * jnp.ones(3), "power": 2, "act": "id"})
    assert fun.calls == first
    # A new static value is a new program.
    jaxcheck.check_grad(fun, {"w": jnp.ones(3), "power": 3, "act": "id"})
    assert fun.calls > first


def test_repeated_checks_stay_cached():
    fun = counted(mlp_loss)
    x, y = mlp_data()
    jaxcheck.check_grad(fun, init_mlp(seed=0), x, y)
    first = fun.calls
    for seed in range(1, 4):
        assert jaxcheck.check_grad(fun, init_mlp(seed=seed), x, y).ok
    assert fun.calls == first
