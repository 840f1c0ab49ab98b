"""Checking a hand-written `custom_vjp` rule: a numerically stable log(1 + eˣ).

The stable forward pass is fine, but a hand-written backward rule is easy to get
wrong. The correct rule passes; a planted bug (the derivative of log(1 + eˣ) is
sigmoid(x), not sigmoid(−x)) is caught and located, by leaf path and index.
"""

import jax
import jax.numpy as jnp

import jaxcheck

jax.config.update("jax_enable_x64", True)


def make_log1pexp(buggy: bool):
    @jax.custom_vjp
    def log1pexp(x):
        return jnp.logaddexp(x, 0.0)

    def fwd(x):
        return log1pexp(x), x

    def bwd(x, g):
        return (g * jax.nn.sigmoid(-x if buggy else x),)

    log1pexp.defvjp(fwd, bwd)
    return log1pexp


def make_loss(log1pexp):
    def loss(params, x):
        return jnp.sum(log1pexp(x @ params["w"] + params["b"]))

    return loss


params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.3]]), "b": jnp.array([0.1, -0.2])}
x = jnp.array([[1.0, 2.0], [-3.0, 0.5], [10.0, -10.0]])

good = jaxcheck.assert_grad(make_loss(make_log1pexp(buggy=False)), params, x)
print(good.verdict)

try:
    jaxcheck.assert_grad(make_loss(make_log1pexp(buggy=True)), params, x)
except jaxcheck.GradCheckError as error:
    print(error)
    assert "['w'][" in str(error) and "['b']" in str(error)
else:
    raise AssertionError("the planted bug was not caught")
