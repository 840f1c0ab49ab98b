"""`jaxcheck demo`: the two seed examples and a planted bug in a `custom_vjp` layer."""

from __future__ import annotations

import argparse
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from .._checks.grad import check_grad
from .._checks.numerical_grad import numerical_grad


def _section(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


def _say(text: str) -> None:
    print(textwrap.fill(textwrap.dedent(text).strip(), 78))


# (a) The Q&A seed: a linear unit out = w·x + b with squared loss ½(y − out)².
LINEAR_PARAMS = {"w": np.array([0.34, 0.56]), "b": 0.54}
LINEAR_INPUT = np.array([1.0, 0.0])
# Chosen so that backprop gives dJ/dw = [0.7744, 0] and dJ/db = 0.7744, the
# numbers in the question: dJ/dout = out − y = 0.88 − y = 0.7744.
LINEAR_TARGET = 0.1056


def linear_output(params, x):
    return jnp.dot(params["w"], x) + params["b"]


def linear_loss(params, x, y):
    return 0.5 * (y - linear_output(params, x)) ** 2


def demo_output_vs_loss() -> None:
    _section("(a) Differencing the output instead of the loss (the Q&A seed)")
    params, x, y = LINEAR_PARAMS, LINEAR_INPUT, LINEAR_TARGET
    backprop = jax.grad(linear_loss)(params, x, y)
    of_output = numerical_grad(linear_output, params, x)
    of_loss = numerical_grad(linear_loss, params, x, y)
    print(
        f"backprop of the loss:        dw = {np.round(backprop['w'], 6)}, "
        f"db = {float(backprop['b']):.6g}"
    )
    print(
        f"differences of the output:   dw = {np.round(of_output['w'], 6)}, "
        f"db = {float(of_output['b']):.6g}"
    )
    print(
        f"differences of the loss:     dw = {np.round(of_loss['w'], 6)}, "
        f"db = {float(of_loss['b']):.6g}"
    )
    print("\nChecking backprop of the loss against differences of the output:")
    print(check_grad(linear_output, params, x, grad=backprop))
    print("\nChecking it against differences of the loss:")
    print(check_grad(linear_loss, params, x, y))
    _say("""
        J must be the loss: the function whose gradient backprop computed.
        Differencing the network's output measures d(out)/dθ = x, which is why the
        question always got 1 for the first weight.""")


def cube(theta):
    return theta**3


def demo_two_sided() -> None:
    _section("(b) Two-sided against one-sided differences (the lecture seed)")
    theta = jnp.array(1.0)
    print("f(θ) = θ³ at θ = 1, exact derivative 3θ² = 3, step ε = 0.01")
    for method in ("central", "forward"):
        value = float(numerical_grad(cube, theta, eps=0.01, method=method))
        print(f"  {method:<8} {value:.6f}   error {abs(value - 3):.1e}")
    report = check_grad(cube, theta, eps=0.01)
    print(
        f"check_grad with ε = 0.01: rel diff {report.rel_diff:.1e} -> "
        f"{'OK' if report.ok else 'FAILED'} at the default tolerance"
    )
    report = check_grad(cube, theta)
    step = report.worst(1)[0].step
    print(
        f"check_grad with its own step (h = 2^{int(np.log2(step))}): "
        f"rel diff {report.rel_diff:.1e} -> {'OK' if report.ok else 'FAILED'}"
    )
    _say("""
        The two-sided difference has error O(ε²) (1e-4 here) where the one-sided
        one has O(ε) (3e-2): use two-sided differences. check_grad passed even with
        ε = 0.01 because an entry that does not agree at its first step is
        differenced again at 2ε and extrapolated (Richardson), which removes the
        ε² term: exactly, for a cubic. For other functions the next terms remain,
        and a fixed 0.01 can be larger than θ itself: let check_grad pick a step
        per entry from its dtype and magnitude, as in the last line.""")


@jax.custom_vjp
def dense(x, w, b):
    return x @ w + b


def _dense_fwd(x, w, b):
    return dense(x, w, b), (x, w)


def _dense_bwd_buggy(residuals, g):
    x, w = residuals
    # Planted bug: the bias cotangent takes the first example of the batch
    # instead of summing over the batch.
    return g @ w.T, x.T @ g, g[0]


dense.defvjp(_dense_fwd, _dense_bwd_buggy)


def mlp_loss(params, x, y):
    h = x
    for layer in params["layers"][:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    last = params["layers"][-1]
    out = dense(h, last["w"], last["b"])
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


def demo_custom_vjp_bug() -> None:
    _section("(c) A planted bug in a custom_vjp layer, located")
    sizes = [4, 8, 8, 3]
    keys = jax.random.split(jax.random.key(0), len(sizes) + 1)
    params = {
        "layers": [
            {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)
        ],
        "activation": "tanh",  # a static leaf: passed through, not perturbed
    }
    x = jax.random.normal(keys[-2], (5, sizes[0]))
    y = jax.random.normal(keys[-1], (5, sizes[-1]))
    print(check_grad(mlp_loss, params, x, y))
    _say("""
        Only the last layer's bias is wrong: its custom_vjp rule returns the first
        example's cotangent, not the sum over the batch. Every other leaf checks
        clean, and the failing entries are named by path and index.""")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # the demo takes no options


def run(args: argparse.Namespace) -> int:
    del args
    jax.config.update("jax_enable_x64", True)
    demo_output_vs_loss()
    demo_two_sided()
    demo_custom_vjp_bug()
    return 0
