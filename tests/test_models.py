"""Models from real libraries, checked as they come: an Equinox module, a Flax NNX
state from `nnx.split`, a Flax Linen variable dict and an Optax loss. Each passes
without the user filtering the pytree, and each has a planted bug (a `custom_vjp`
layer inside the model) that is caught at its path in the model."""

from collections.abc import Callable

import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx
from helpers import at, matmul_missing_transpose

import jaxcheck

pytestmark = pytest.mark.core

X = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4)
LABELS = jnp.array([0, 2, 1, 1, 0, 2])


def _cross_entropy(logits):
    return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean()


# --------------------------------------------------------------------------
# Equinox: static fields, activation callables, ints and strings as leaves


class Dense(eqx.Module):
    weight: jax.Array
    bias: jax.Array
    activation: Callable  # a function leaf: passed through
    name: str = eqx.field(static=True)
    matmul: Callable = eqx.field(static=True, default=jnp.matmul)

    def __call__(self, x):
        return self.activation(self.matmul(x, self.weight.T) + self.bias)


class EqxModel(eqx.Module):
    layers: list
    head: eqx.nn.Linear  # Equinox's own layer, with its static fields
    depth: int  # a Python int leaf: passed through
    tag: str  # a string leaf: passed through

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return jax.vmap(self.head)(x)


def eqx_model(matmul=jnp.matmul):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    layers = [
        Dense(jax.random.normal(k1, (4, 4)) / 2, jnp.full(4, 0.1), jax.nn.tanh, "a"),
        Dense(
            jax.random.normal(k2, (4, 4)) / 2, jnp.zeros(4), jax.nn.gelu, "b", matmul
        ),
    ]
    return EqxModel(layers, eqx.nn.Linear(4, 3, key=k3), 2, "mlp")


def eqx_loss(model, x):
    return _cross_entropy(model(x))


def test_equinox_model():
    report = jaxcheck.assert_grad(eqx_loss, eqx_model(), X)
    assert [s.path for s in report.leaves] == [
        ".layers[0].weight",
        ".layers[0].bias",
        ".layers[1].weight",
        ".layers[1].bias",
        ".head.weight",
        ".head.bias",
    ]
    skipped = dict(report.skipped)
    assert skipped[".depth"] == "int: static, passed through"
    assert skipped[".tag"] == "str: static, passed through"
    assert ".layers[0].activation" in skipped


def test_equinox_model_with_buggy_custom_vjp_layer():
    model = eqx_model(matmul=matmul_missing_transpose)
    with pytest.raises(jaxcheck.GradCheckError, match=r"in \.layers\[1\]\.weight;"):
        jaxcheck.assert_grad(eqx_loss, model, X)


# --------------------------------------------------------------------------
# Flax NNX: the State of `nnx.split`, whole or only its Params


class NnxModel(nnx.Module):
    def __init__(self, rngs, matmul=jnp.matmul):
        self.l1 = nnx.Linear(4, 4, rngs=rngs, param_dtype=jnp.float64)
        self.norm = nnx.LayerNorm(4, rngs=rngs, param_dtype=jnp.float64)
        self.drop = nnx.Dropout(0.5, rngs=rngs)  # RNG state: a key and a count
        self.l2 = nnx.Linear(4, 3, rngs=rngs, param_dtype=jnp.float64)
        self.matmul = matmul

    def __call__(self, x):
        h = self.norm(jnp.tanh(self.matmul(x, self.l1.kernel[...]) + self.l1.bias))
        return self.l2(self.drop(h))


def _nnx_split(matmul=jnp.matmul):
    model = NnxModel(nnx.Rngs(0), matmul)
    model.eval()  # dropout off
    return nnx.split(model)


def test_flax_nnx_state():
    graphdef, state = _nnx_split()

    def loss(state, x):
        return _cross_entropy(nnx.merge(graphdef, state)(x))

    report = jaxcheck.assert_grad(loss, state, X)
    assert ".value" in report.leaves[0].path
    # (older flax keeps the stream's key and count under ['default'])
    assert {p.replace("['default']", "") for p, _ in report.skipped} == {
        "['drop']['rngs']['count'].value",
        "['drop']['rngs']['key'].value",
    }
    # Only the Params, the rest passed as an argument.
    graphdef, params, rest = nnx.split(nnx.merge(graphdef, state), nnx.Param, ...)

    def params_loss(params, rest, x):
        return _cross_entropy(nnx.merge(graphdef, params, rest)(x))

    assert jaxcheck.check_grad(params_loss, params, rest, X).ok


def test_flax_nnx_with_buggy_custom_vjp_layer():
    graphdef, state = _nnx_split(matmul=matmul_missing_transpose)

    def loss(state, x):
        return _cross_entropy(nnx.merge(graphdef, state)(x))

    with pytest.raises(jaxcheck.GradCheckError, match=at("['l1']['kernel'].value")):
        jaxcheck.assert_grad(loss, state, X)


# --------------------------------------------------------------------------
# Flax Linen: the variable dict of `init`


class LinenModel(linen.Module):
    matmul: Callable = jnp.matmul

    @linen.compact
    def __call__(self, x):
        kernel = self.param("kernel", linen.initializers.lecun_normal(), (4, 4))
        x = jnp.tanh(self.matmul(x, kernel))
        return linen.Dense(3)(x)


@pytest.mark.parametrize("buggy", [False, True])
def test_flax_linen_variables(buggy):
    model = LinenModel(matmul_missing_transpose if buggy else jnp.matmul)
    variables = model.init(jax.random.key(0), X)

    def loss(variables, x):
        return _cross_entropy(model.apply(variables, x))

    if not buggy:
        report = jaxcheck.assert_grad(loss, variables, X)
        assert report.leaves[-1].path == "['params']['kernel']"
        return
    with pytest.raises(jaxcheck.GradCheckError, match=at("['params']['kernel']")):
        jaxcheck.assert_grad(loss, variables, X)
