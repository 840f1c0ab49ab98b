"""Dropout: check with a fixed key, passed as an argument.

The lecture warns that gradient checking "doesn't work with dropout": each call
draws a new mask, so J(θ + ε) and J(θ − ε) are different functions, and neither
is the one backprop differentiated. In JAX the mask is a function of a PRNG key.
Pass the key as an argument of `fun` (arguments are never perturbed) and every
evaluation uses the same mask: the check is exact, dropout and all. With the
backprop from one key and the differences from another, it fails, as it should.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

jax.config.update("jax_enable_x64", True)

RATE = 0.5


def loss(params, x, y, key):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    keep = jax.random.bernoulli(key, 1.0 - RATE, h.shape)
    h = jnp.where(keep, h / (1.0 - RATE), 0.0)  # inverted dropout
    return jnp.mean((h @ params["w2"] - y) ** 2)


rng = np.random.default_rng(0)
params = {
    "w1": jnp.asarray(rng.normal(size=(5, 12)) / 2),
    "b1": jnp.zeros(12),
    "w2": jnp.asarray(rng.normal(size=(12, 1)) / 3),
}
x, y = jnp.asarray(rng.normal(size=(20, 5))), jnp.ones((20, 1))

# One fixed key for both sides: the mask is part of the function being checked.
key = jax.random.key(42)
report = jaxcheck.check_grad(loss, params, x, y, key)
print("fixed key:", report.verdict)
assert report.ok
assert report.skipped == ()  # the key is an argument, not a parameter

# Backprop with one mask, differences with another: not the same function.
other_mask_grad = jax.jit(jax.grad(loss))(params, x, y, jax.random.key(7))
mixed = jaxcheck.check_grad(loss, params, x, y, key, grad=other_mask_grad)
print("different keys:", mixed.verdict)
assert not mixed.ok
