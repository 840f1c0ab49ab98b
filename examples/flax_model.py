"""A Flax NNX model: `nnx.split` it and check the `State` as it comes.

`nnx.split(model)` gives a graph definition (static) and a `State` (a pytree of
variables). The loss merges them back, and `check_grad(loss, state, x, y)` checks
every floating parameter; the dropout layer's RNG key and counter pass through.
(To check only the parameters, split with `nnx.split(model, nnx.Param, ...)` and
pass the rest as an argument.) A planted bug, a
`custom_vjp` activation whose backward rule halves one term, is located at the
leaves whose gradient flows through it, the `['hidden']` layer.
"""

import jax
import jax.numpy as jnp
from flax import nnx

import jaxcheck

jax.config.update("jax_enable_x64", True)


@jax.custom_vjp
def swish(x):
    return x * jax.nn.sigmoid(x)


def swish_fwd(x):
    return swish(x), x


def swish_bwd_buggy(x, g):
    s = jax.nn.sigmoid(x)
    return (g * (s + x * s * (1 - s) / 2),)  # bug: the second term has no / 2


swish.defvjp(swish_fwd, swish_bwd_buggy)


class Regressor(nnx.Module):
    def __init__(self, rngs, buggy=False):
        self.hidden = nnx.Linear(4, 16, rngs=rngs, param_dtype=jnp.float64)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs, param_dtype=jnp.float64)
        self.activation = swish if buggy else jax.nn.swish

    def __call__(self, x):
        return self.out(self.dropout(self.activation(self.hidden(x))))


def make_loss(graphdef):
    def loss(state, x, y):
        model = nnx.merge(graphdef, state)
        return jnp.mean((model(x)[:, 0] - y) ** 2)

    return loss


x = jnp.linspace(-2.0, 2.0, 128).reshape(32, 4)
y = jnp.sin(x[:, 0]) + x[:, 1]

model = Regressor(nnx.Rngs(0))
model.eval()  # dropout off while checking (see dropout_fixed_key.py otherwise)
graphdef, state = nnx.split(model)
report = jaxcheck.check_grad(make_loss(graphdef), state, x, y)
print(report)
assert report.ok

buggy = Regressor(nnx.Rngs(0), buggy=True)
buggy.eval()
graphdef, state = nnx.split(buggy)
try:
    jaxcheck.assert_grad(make_loss(graphdef), state, x, y)
except jaxcheck.GradCheckError as error:
    print(str(error).splitlines()[-1])
    assert "['hidden']['kernel'].value" in str(error)
else:
    raise AssertionError("the planted bug was not caught")
