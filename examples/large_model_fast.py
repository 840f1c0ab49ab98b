"""A large model in fast mode: a screen of every leaf, then the wrong entries.

A full check costs two evaluations per entry: 2 × 133,002 here. `mode="fast"`
probes each leaf along 3 seeded random directions (6 evaluations per leaf), so a
right model is cleared in a few dozen evaluations; a leaf whose probes disagree
is narrowed down to its wrong entries, which are then checked one by one. A
planted bug, a backward rule that drops one row of a weight's gradient, is found
in the 256 × 256 weight and located to that row. Fast mode is a screen: certify
with `mode="full"` when the time is there.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

jax.config.update("jax_enable_x64", True)
SIZES = (128, 256, 256, 128, 10)
BAD_ROW = 17


@jax.custom_vjp
def matmul(h, w):
    return h @ w


def matmul_fwd(h, w):
    return h @ w, (h, w)


def matmul_bwd_buggy(res, g):
    h, w = res
    return g @ w.T, (h.T @ g).at[BAD_ROW].set(0.0)  # bug: one row of dW lost


matmul.defvjp(matmul_fwd, matmul_bwd_buggy)


def init(seed=0):
    rng = np.random.default_rng(seed)
    return [
        {"w": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a)), "b": jnp.zeros(b)}
        for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]


def make_loss(buggy_layer=None):
    def loss(layers, x, y):
        h = x
        for i, layer in enumerate(layers):
            mm = matmul if i == buggy_layer else jnp.matmul
            h = mm(h, layer["w"]) + layer["b"]
            h = jnp.tanh(h) if i < len(layers) - 1 else h
        return jnp.mean(jnp.sum((h - y) ** 2, axis=-1))

    return loss


rng = np.random.default_rng(1)
x = jnp.asarray(rng.normal(size=(32, SIZES[0])))
y = jnp.asarray(rng.normal(size=(32, SIZES[-1])))
params = init()
print(f"{sum(p.size for p in jax.tree_util.tree_leaves(params)):,} parameters")

start = time.perf_counter()
report = jaxcheck.check_grad(make_loss(), params, x, y, mode="fast")
print(f"fast mode, right gradient ({time.perf_counter() - start:.1f} s):")
print(report.verdict)
assert report.ok

start = time.perf_counter()
report = jaxcheck.check_grad(make_loss(buggy_layer=1), params, x, y, mode="fast")
print(f"fast mode, planted bug ({time.perf_counter() - start:.1f} s):")
print(report)
assert not report.ok
rows = {e.index[0] for e in report.failures}
assert {e.path for e in report.failures} == {"[1]['w']"} and rows == {BAD_ROW}
