"""Checking a `custom_vjp` rule of a vector-valued function: softmax.

The backward rule of softmax is s ⊙ (g − ⟨g, s⟩). Forgetting the ⟨g, s⟩ term is
a classic bug. `check_custom_vjp` checks the rule with random cotangents against
finite differences of every input entry, and also runs it under `jit` and
`vmap`; the correct rule passes and the bug is located by entry.
"""

import jax
import jax.numpy as jnp

import jaxcheck

jax.config.update("jax_enable_x64", True)


def make_softmax(buggy: bool):
    @jax.custom_vjp
    def softmax(x):
        return jax.nn.softmax(x, axis=-1)

    def fwd(x):
        s = softmax(x)
        return s, s

    def bwd(s, g):
        if buggy:
            return (s * g,)  # the bug: the ⟨g, s⟩ term is missing
        return (s * (g - jnp.sum(g * s, axis=-1, keepdims=True)),)

    softmax.defvjp(fwd, bwd)
    return softmax


if __name__ == "__main__":
    x = jnp.array([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]])

    good = jaxcheck.check_custom_vjp(make_softmax(buggy=False), x, num_cotangents=1)
    for step in good.steps:
        print("ok" if step.ok else "FAILED", step.name)
    print(good.verdict)

    buggy = jaxcheck.check_custom_vjp(make_softmax(buggy=True), x, num_cotangents=1)
    if buggy.ok:
        raise AssertionError("the missing term was not caught")
    print(buggy.verdict)
