"""An Equinox model goes into `check_grad` as it is: no filtering, no flattening.

The model is an `eqx.Module` holding Equinox layers, activation functions, a static
field and a plain int. jaxcheck perturbs its floating arrays and passes everything
else through, so `check_grad(loss, model, x, y)` is the whole check; failures are
named by their path in the model. A planted bug, a `custom_vjp` linear layer whose
backward rule forgets a transpose, is caught at `.blocks[1].weight`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

import jaxcheck

jax.config.update("jax_enable_x64", True)


@jax.custom_vjp
def linear(x, w):
    return x @ w.T


def linear_fwd(x, w):
    return linear(x, w), (x, w)


def linear_bwd_buggy(res, g):
    x, w = res
    return g @ w, x.T @ g  # bug: the weight cotangent should be g.T @ x


linear.defvjp(linear_fwd, linear_bwd_buggy)


class Block(eqx.Module):
    weight: jax.Array
    bias: jax.Array
    activation: Callable  # a function: passed through, not perturbed
    use_custom_rule: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        y = linear(x, self.weight) if self.use_custom_rule else x @ self.weight.T
        return self.activation(y + self.bias)


class Classifier(eqx.Module):
    blocks: list
    head: eqx.nn.Linear
    n_blocks: int  # an int leaf: passed through

    def __init__(self, key, buggy=False):
        k1, k2, k3 = jax.random.split(key, 3)
        self.blocks = [
            Block(jax.random.normal(k1, (8, 8)) / 3, jnp.zeros(8), jax.nn.gelu),
            Block(jax.random.normal(k2, (8, 8)) / 3, jnp.zeros(8), jnp.tanh, buggy),
        ]
        self.head = eqx.nn.Linear(8, 3, key=k3)
        self.n_blocks = 2

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return jax.vmap(self.head)(x)


def loss(model, x, labels):
    log_p = jax.nn.log_softmax(model(x))
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))


key_x, key_model = jax.random.split(jax.random.key(0))
x = jax.random.normal(key_x, (16, 8))
labels = jnp.arange(16) % 3

report = jaxcheck.check_grad(loss, Classifier(key_model), x, labels)
print(report)
assert report.ok

try:
    jaxcheck.assert_grad(loss, Classifier(key_model, buggy=True), x, labels)
except jaxcheck.GradCheckError as error:
    print(str(error).splitlines()[-1])
    assert "in .blocks[1].weight;" in str(error)
else:
    raise AssertionError("the planted bug was not caught")
