"""The Q&A seed: a gradient check must difference the loss, not the network output.

A linear unit out = w·x + b with w = [0.34, 0.56], b = 0.54 and input x = [1, 0],
trained with the squared loss ½(y − out)². Backprop gives dw = [0.7744, 0] and
db = 0.7744. Differencing the *output* gives d(out)/dw = x = [1, 0] whatever the
step, which looks like a backprop bug but is a wrong J; differencing the loss
agrees with backprop.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

jax.config.update("jax_enable_x64", True)

params = {"w": jnp.array([0.34, 0.56]), "b": jnp.array(0.54)}
x = jnp.array([1.0, 0.0])
y = 0.1056  # so that dJ/dout = out − y = 0.7744, the question's number


def output(params, x):
    return params["w"] @ x + params["b"]


def loss(params, x, y):
    return 0.5 * (y - output(params, x)) ** 2


backprop = jax.grad(loss)(params, x, y)
print("backprop:                dw =", backprop["w"], " db =", backprop["b"])
of_output = jaxcheck.numerical_grad(output, params, x)
print("differences of output:   dw =", of_output["w"], " db =", of_output["b"])
of_loss = jaxcheck.numerical_grad(loss, params, x, y)
print("differences of the loss: dw =", of_loss["w"], " db =", of_loss["b"])

np.testing.assert_allclose(backprop["w"], [0.7744, 0.0], atol=1e-12)
np.testing.assert_allclose(of_output["w"], [1.0, 0.0], atol=1e-9)
np.testing.assert_allclose(of_loss["w"], [0.7744, 0.0], atol=1e-9)

wrong_j = jaxcheck.check_grad(output, params, x, grad=backprop)
right_j = jaxcheck.check_grad(loss, params, x, y)
assert not wrong_j.ok and right_j.ok
print(right_j.verdict)
print("Differencing the output instead:", wrong_j.verdict)
