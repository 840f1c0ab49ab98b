"""Property-based tests: random pytrees with known gradients.

For any nesting of dicts, lists and tuples, with float32/float64 leaves of any shape
(zero-size included) and static leaves mixed in, `check_grad` passes on the true
gradient; with one random entry of it corrupted, it fails and names exactly that
leaf path and index. The CI profile runs 100 examples per property; set
HYPOTHESIS_PROFILE=slow for 1000.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxcheck

# 40 examples keep each property near 7 s on a 2-core machine (every example is a
# new pytree, so a new compilation); HYPOTHESIS_PROFILE=slow runs 1000.
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile("slow", parent=settings.get_profile("ci"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

shapes = st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def float_leaves(draw):
    shape = draw(shapes)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).uniform(-1.5, 1.5, shape)
    return jnp.asarray(values, dtype=dtype)


static_leaves = st.sampled_from([None, 3, "relu", True, jnp.arange(2)])
leaves = st.one_of(float_leaves(), float_leaves(), static_leaves)
pytrees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from("abcd"), children, max_size=3),
    ),
    max_leaves=6,
)


def loss(params):
    """Σ over floating leaves of Σ sin(x)·x², computed in each leaf's dtype."""
    total = jnp.zeros((), jnp.float64)
    for leaf in jax.tree_util.tree_leaves(params):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.floating):
            total = total + jnp.sum(jnp.sin(leaf) * leaf**2).astype(jnp.float64)
    return total


def true_grad(params):
    def one(leaf):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.cos(leaf) * leaf**2 + 2 * jnp.sin(leaf) * leaf
        return None

    return jax.tree_util.tree_map(one, params)


def floating_paths(params):
    return [
        (jax.tree_util.keystr(path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if isinstance(leaf, jax.Array)
        and jnp.issubdtype(leaf.dtype, jnp.floating)
        and leaf.size > 0
    ]


@given(pytrees)
def test_true_gradient_passes(params):
    if not floating_paths(params):
        with pytest.raises(ValueError, match="`params` has nothing to check"):
            jaxcheck.check_grad(loss, params, grad=true_grad)
        return
    report = jaxcheck.check_grad(loss, params, grad=true_grad)
    assert report.ok, str(report)
    assert report.num_entries == sum(x.size for _, x in floating_paths(params))


@given(pytrees, st.data())
def test_one_corrupted_entry_is_named(params, data):
    candidates = floating_paths(params)
    if not candidates:
        return
    path, leaf = data.draw(st.sampled_from(candidates))
    index = tuple(data.draw(st.integers(0, n - 1)) for n in leaf.shape)
    grads = true_grad(params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(grads)
    corrupted = []
    for key_path, g in flat:
        if jax.tree_util.keystr(key_path) == path:
            g = g.at[index].add(0.5 + 0.5 * abs(float(g[index])))
        corrupted.append(g)
    grads = jax.tree_util.tree_unflatten(treedef, corrupted)
    report = jaxcheck.check_grad(loss, params, grad=grads)
    assert not report.ok
    [failure] = report.failures
    location = (path or "params") + (f"[{', '.join(map(str, index))}]" if index else "")
    assert failure.location == location
    with pytest.raises(jaxcheck.GradCheckError, match=re.escape(location)):
        jaxcheck.assert_grad(loss, params, grad=grads)
