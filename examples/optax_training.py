"""Check at initialization, and again after some training (the lecture's advice).

A gradient can be right at the random initialization and wrong later: a rule
that only holds while activations are small, a branch that training reaches.
Here a `custom_vjp` clip of the logits has a backward rule that forgets the clip
(it passes every cotangent through). At initialization no logit reaches the clip
and the check passes; after 200 Adam steps (Optax) on a separable problem some
logits do, and the same check fails, located at the layers before the clip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcheck

jax.config.update("jax_enable_x64", True)
LIMIT = 3.0


@jax.custom_vjp
def clip_logits(z):
    return jnp.clip(z, -LIMIT, LIMIT)


def clip_fwd(z):
    return clip_logits(z), z


def clip_bwd_buggy(z, g):
    return (g,)  # bug: should be g * (|z| < LIMIT)


clip_logits.defvjp(clip_fwd, clip_bwd_buggy)


def loss(params, x, labels):
    h = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
    logits = clip_logits(h @ params["out"]["w"] + params["out"]["b"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(64, 2)))
labels = jnp.asarray(x[:, 0] + x[:, 1] > 0, jnp.int32)
params = {
    "hidden": {"w": jnp.asarray(rng.normal(size=(2, 8)) / 4), "b": jnp.zeros(8)},
    "out": {"w": jnp.asarray(rng.normal(size=(8, 2)) / 4), "b": jnp.zeros(2)},
}

at_init = jaxcheck.check_grad(loss, params, x, labels)
print("at initialization:", at_init.verdict)
assert at_init.ok

optimizer = optax.adam(0.1)
state = optimizer.init(params)


@jax.jit
def step(params, state):
    grads = jax.grad(loss)(params, x, labels)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state


for _ in range(200):
    params, state = step(params, state)
print(f"loss after 200 steps: {loss(params, x, labels):.4f}")

trained = jaxcheck.check_grad(loss, params, x, labels)
print("after training:", trained.verdict)
assert not trained.ok
