"""Shared models, planted bugs and small utilities for the jaxcheck tests.

Everything here is independent of jaxcheck's internals: reference gradients come
from `jax.grad`, locations are written out the way the report prints them, and
bugs are planted by editing one entry of a correct gradient.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------
# JAX versions


@contextlib.contextmanager
def enable_x64(enabled: bool = True) -> Iterator[None]:
    """`jax.enable_x64(enabled)`, which JAX 0.8 made public; before it the same
    context is `jax.experimental.enable_x64` (removed from later versions)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        from jax.experimental import enable_x64 as enable
    with enable(enabled):
        yield


# --------------------------------------------------------------------------
# Locations, as the report prints them


def location(path: str, index: tuple[int, ...] = ()) -> str:
    """`['layers'][1]['w'][3, 5]`; the root of `params` prints as `params`."""
    path = path or "params"
    return path + (f"[{', '.join(map(str, index))}]" if index else "")


def at(path: str, index: tuple[int, ...] = ()) -> str:
    """A `match=` pattern for an entry's location."""
    return re.escape(location(path, index))


def leaf_path(key_path: Any) -> str:
    """The printed path of a leaf from `tree_flatten_with_path`."""
    return jax.tree_util.keystr(tuple(key_path)) or "params"


# --------------------------------------------------------------------------
# Which leaves are differentiable: floating/complex arrays and Python floats


def is_float_leaf(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (float, complex)):
        return True
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def _is_none(x: Any) -> bool:
    return x is None


def leaves_with_none(tree: Any) -> list[Any]:
    """All leaves of `tree`, None included, in flattening order."""
    return jax.tree_util.tree_leaves(tree, is_leaf=_is_none)


def structure_with_none(tree: Any) -> Any:
    return jax.tree_util.tree_structure(tree, is_leaf=_is_none)


def reference_grad(fun: Callable[..., Any], params: Any, *args: Any) -> Any:
    """`jax.grad(fun)` at the floating leaves of `params`, None at all others."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    where = [i for i, x in enumerate(leaves) if is_float_leaf(x)]

    def of_floats(floats):
        new = list(leaves)
        for i, value in zip(where, floats, strict=True):
            new[i] = value
        return fun(jax.tree_util.tree_unflatten(treedef, new), *args)

    grads = jax.jit(jax.grad(of_floats))([jnp.asarray(leaves[i]) for i in where])
    out: list[Any] = [None] * len(leaves)
    for i, value in zip(where, grads, strict=True):
        out[i] = value
    return jax.tree_util.tree_unflatten(treedef, out)


def assert_trees_close(actual: Any, expected: Any, *, rtol: float, atol: float) -> None:
    """Same structure (None counted as a leaf), same dtypes, close values."""
    assert structure_with_none(actual) == structure_with_none(expected)
    for a, e in zip(leaves_with_none(actual), leaves_with_none(expected), strict=True):
        if e is None:
            assert a is None
            continue
        assert a is not None
        assert np.shape(a) == np.shape(e)
        assert jnp.asarray(a).dtype == jnp.asarray(e).dtype
        np.testing.assert_allclose(
            np.asarray(a, np.complex128),
            np.asarray(e, np.complex128),
            rtol=rtol,
            atol=atol,
        )


# --------------------------------------------------------------------------
# Planted bugs


def plant(tree: Any, path: str, index: tuple[int, ...], delta: float) -> Any:
    """A copy of `tree` with `delta` added to entry `index` of the leaf at `path`."""
    found = []

    def edit(key_path, leaf):
        if leaf_path(key_path) != path:
            return leaf
        found.append(path)
        return jnp.asarray(leaf).at[index].add(delta)

    out = jax.tree_util.tree_map_with_path(edit, tree)
    assert found == [path], f"no leaf at {path}"
    return out


def relative_difference(a: Any, b: Any) -> float:
    """‖g − ĝ‖₂ / (‖g‖₂ + ‖ĝ‖₂) over all entries of two gradient pytrees."""
    flat_a = np.concatenate([np.ravel(x) for x in leaves_with_none(a) if x is not None])
    flat_b = np.concatenate([np.ravel(x) for x in leaves_with_none(b) if x is not None])
    flat_a = flat_a.astype(np.complex128)
    flat_b = flat_b.astype(np.complex128)
    return float(
        np.linalg.norm(flat_a - flat_b)
        / (np.linalg.norm(flat_a) + np.linalg.norm(flat_b))
    )


@jax.custom_vjp
def matmul_missing_transpose(h, w):
    """`h @ w` whose backward rule forgets a transpose: dW = gᵀh instead of hᵀg."""
    return h @ w


def _mm_fwd(h, w):
    return h @ w, (h, w)


def _mm_bwd(res, g):
    h, w = res
    return g @ w.T, g.T @ h  # the bug: should be h.T @ g


matmul_missing_transpose.defvjp(_mm_fwd, _mm_bwd)


@jax.custom_vjp
def tanh_double_grad(x):
    """tanh whose backward rule is a factor 2 off."""
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y, g):
    return (2.0 * (1.0 - y**2) * g,)  # the bug: factor 2


tanh_double_grad.defvjp(_tanh_fwd, _tanh_bwd)


@jax.custom_vjp
def square_double_grad(x):
    """x² whose backward rule gives 4x instead of 2x."""
    return x**2


square_double_grad.defvjp(lambda x: (x**2, x), lambda x, g: (4.0 * x * g,))


def square_nonfinite_grad(value: float) -> Callable[[jax.Array], jax.Array]:
    """x² whose backward rule returns `value` (NaN or Inf) everywhere."""

    @jax.custom_vjp
    def square(x):
        return x**2

    square.defvjp(lambda x: (x**2, x), lambda x, g: (jnp.full_like(x, value),))
    return square


# --------------------------------------------------------------------------
# The Q&A seed: a linear unit out = w·x + b and its loss ½(y − out)², with y chosen
# so that dJ/dw = [0.7744, 0] and dJ/db = 0.7744 (d/dout ½(y − out)² = out − y).

QA_PARAMS = {"w": jnp.array([0.34, 0.56]), "b": jnp.array(0.54)}
QA_X = jnp.array([1.0, 0.0])
QA_Y = 0.88 - 0.7744


def qa_output(params, x):
    return params["w"] @ x + params["b"]


def qa_loss(params, x, y):
    return 0.5 * (y - qa_output(params, x)) ** 2


# --------------------------------------------------------------------------
# A small MLP: 4 → 6 → 6 → 2, 86 parameters; layer 1's weight is square so a
# missing transpose in its backward rule keeps the shapes right.

MLP_SIZES = (4, 6, 6, 2)


def init_mlp(sizes: tuple[int, ...] = MLP_SIZES, seed: int = 0, dtype=jnp.float64):
    # NumPy's generator, not jax.random: eager jax.random compiles for every shape.
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)
        b = np.linspace(-0.5, 0.5, n_out) + 0.05  # no zero entries
        layers.append({"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)})
    return {"layers": layers}


def mlp_data(
    n: int = 5, sizes: tuple[int, ...] = MLP_SIZES, seed: int = 1, dtype=jnp.float64
):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, sizes[0])), dtype)
    y = jnp.asarray(rng.normal(size=(n, sizes[-1])), dtype)
    return x, y


def mlp_apply(params, x, *, matmul=jnp.matmul, activation=jnp.tanh, buggy_layer=None):
    """The MLP; `matmul`/`activation` replace the correct ones at `buggy_layer`."""
    h = x
    layers = params["layers"]
    for i, layer in enumerate(layers):
        mm = matmul if i == buggy_layer else jnp.matmul
        h = mm(h, layer["w"]) + layer["b"]
        if i < len(layers) - 1:
            h = activation(h) if i == buggy_layer else jnp.tanh(h)
    return h


def mlp_loss(params, x, y):
    return 0.5 * jnp.mean(jnp.sum((mlp_apply(params, x) - y) ** 2, axis=-1))


def mlp_backprop(params, x, y):
    """The gradient of `mlp_loss`, derived by hand (backpropagation)."""
    layers = params["layers"]
    inputs = [x]  # inputs[i] is the input of layer i
    for i, layer in enumerate(layers):
        z = inputs[-1] @ layer["w"] + layer["b"]
        inputs.append(jnp.tanh(z) if i < len(layers) - 1 else z)
    delta = (inputs[-1] - y) / x.shape[0]  # dJ/dz of the last layer
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        grads[i] = {"w": inputs[i].T @ delta, "b": jnp.sum(delta, axis=0)}
        if i > 0:
            delta = (delta @ layers[i]["w"].T) * (1 - inputs[i] ** 2)
    return {"layers": grads}


def mlp_leaf_paths(n_layers: int = len(MLP_SIZES) - 1) -> list[str]:
    return [
        f"['layers'][{i}]['{name}']"
        for i, name in itertools.product(range(n_layers), "bw")
    ]


def counted(fun: Callable[..., Any]) -> Callable[..., Any]:
    """`fun` with a counter of its Python-side calls (that is, traces under `jit`)
    in the attribute `calls`."""

    def wrapper(*args):
        wrapper.calls += 1
        return fun(*args)

    wrapper.calls = 0
    return wrapper


def custom_vjp_sin(factor: Any) -> Callable[[Any], Any]:
    """sin whose bwd rule is off by `factor` (1.0 is right; an array scales
    each entry); the primal is right."""

    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), x), lambda x, c: (factor * jnp.cos(x) * c,))
    return f
