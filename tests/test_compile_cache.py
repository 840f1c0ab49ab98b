"""A second check of the same `fun` on inputs of the same shapes and dtypes traces
nothing new; new shapes, dtypes or static values do retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import counted, init_mlp, mlp_data, mlp_loss

import jaxcheck
from jaxcheck._engine import jaxpr as _jaxpr

pytestmark = pytest.mark.core

MLP_GRAD = jax.jit(jax.grad(mlp_loss))  # compiled once per shape, never calls `fun`


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """These tests are about compiled programs: small problems run op by op
    (see `_engine.jaxpr.evaluation_way`), so make every problem compile."""
    monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)


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


def _deep_loss(params, x):
    for layer in params:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return jnp.sum(x**2)


def _deep_model(depth=6, width=70):
    rng = np.random.default_rng(0)
    params = [
        {
            "w": jnp.asarray(rng.normal(size=(width, width)) / width),
            "b": jnp.asarray(rng.normal(size=width)),
        }
        for _ in range(depth)
    ]
    return params, jnp.asarray(rng.normal(size=(3, width)))


# Every check traces `fun` once for its output and once for `jax.grad`; each
# further trace is one compiled batched program.
BASE_TRACES = 2


def test_small_leaves_share_one_program_wherever_they_sit():
    # Six 70×70 weights (4,900 entries: a program each) and six biases of 70
    # entries, no two of them adjacent in the pytree: the biases share one program.
    fun = counted(_deep_loss)
    params, x = _deep_model()
    assert jaxcheck.check_grad(fun, params, x).ok
    assert fun.calls == BASE_TRACES + 6 + 1


@pytest.mark.parametrize("mode", ["sample", "fast"])
def test_checks_of_a_few_entries_per_leaf_compile_one_program(mode):
    # Sample mode evaluates 16 entries per leaf, fast mode a few directions:
    # one program for all twelve leaves, not one per leaf.
    fun = counted(_deep_loss)
    params, x = _deep_model()
    assert jaxcheck.check_grad(fun, params, x, mode=mode).ok
    assert fun.calls == BASE_TRACES + 1


def test_a_planted_bug_in_sample_mode_is_still_located():
    params, x = _deep_model()
    grad = jax.grad(_deep_loss)(params, x)
    grad[3]["w"] = grad[3]["w"].at[5, 9].multiply(1.01)
    report = jaxcheck.check_grad(
        _deep_loss, params, x, grad=grad, mode="sample", samples=4900
    )
    assert not report.ok
    assert [e.location for e in report.failures] == ["[3]['w'][5, 9]"]


def test_plan_groups_per_dtype_and_closes_full_groups():
    from jaxcheck._engine.blocks import MIN_BLOCK_SIZE, plan_blocks
    from jaxcheck._tree.pytree import LeafInfo

    def leaf(position, size, dtype):
        return LeafInfo(f"[{position}]", (size,), np.dtype(dtype), False,
                        position, position, 0)  # fmt: skip

    small = MIN_BLOCK_SIZE // 3 + 1  # three fill a group
    leaves = [
        leaf(0, small, "float64"),
        leaf(1, small, "float32"),
        leaf(2, MIN_BLOCK_SIZE, "float64"),  # large: alone
        leaf(3, small, "float64"),
        leaf(4, small, "float64"),  # fills the float64 group
        leaf(5, small, "float64"),  # a new group
        leaf(6, small, "float32"),
        leaf(7, 0, "float64"),  # nothing to evaluate
    ]
    plan = [block.positions for block, _ in plan_blocks(leaves)]
    assert plan == [(0, 3, 4), (1, 6), (2,), (5,)]
    # Counting only the entries to evaluate, the large leaf joins a group.
    counts = [1] * len(leaves)
    plan = [block.positions for block, _ in plan_blocks(leaves, counts)]
    assert plan == [(0, 2, 3, 4, 5), (1, 6)]
