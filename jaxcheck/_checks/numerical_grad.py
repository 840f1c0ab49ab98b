"""`numerical_grad`: the finite-difference gradient itself, as a pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._base import validate as _validate
from .._base.options import STEP_OPTION_NAMES, StepOptions, make_options
from .._engine.analytic import base_value_of
from .._engine.numerical import finite_differences, prepare
from .._engine.twins import numerical_side
from .._tree.pytree import SplitTree, leaf_values_to_params


def to_leaves(tree: SplitTree, flat: np.ndarray) -> list[np.ndarray]:
    """Cuts a flat θ-ordered vector into arrays shaped like the perturbed leaves."""
    return [
        flat[leaf.offset : leaf.offset + leaf.size].reshape(leaf.shape)
        for leaf in tree.leaves
    ]


def numerical_grad(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    flat: bool = False,
    **options: Unpack[StepOptions],
) -> Any:
    """The finite-difference gradient of a scalar `fun` with respect to `params`.

    Every floating (and complex) entry of `params` is perturbed by ±h, and all the
    perturbed evaluations run batched (`vmap` inside `jit`), in chunks whose memory
    stays within `memory_budget`. Integer, boolean and PRNG-key arrays, Python ints,
    strings, callables and other static leaves pass through unperturbed; a Python
    float leaf is differentiable, as in `jax.grad`. `args` (data, keys) are shared
    by every evaluation and never perturbed.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters.
        *args: further arguments of `fun`, passed through unchanged.
        flat: return one flat vector over θ (the perturbed entries in pytree
            order, each leaf flattened in C order, in the leaves' common dtype)
            instead of a pytree: `ravel_pytree(numerical_grad(fun, params))[0]`
            when every leaf of `params` is floating.
        **options: the `StepOptions` (method, eps, chunk_size, memory_budget),
            each documented there.

    Returns:
        A pytree like `params` holding the numerical gradient at the perturbed leaves,
        in each leaf's dtype, and None at every other leaf (with `flat`, the
        vector over θ). For a complex leaf it follows JAX's convention for real
        functions: ∂J/∂x − i·∂J/∂y.

    Raises:
        TypeError, ValueError: for invalid arguments, a non-scalar or non-real
            output, a `params` with no floating entries, or a non-finite value of
            `fun` at `params`.

    Examples:
        The lecture's example, θ³ at θ = 1 with a step of 0.01:

        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> cube = lambda theta: theta**3
        >>> theta = jnp.array(1.0)
        >>> round(float(jaxcheck.numerical_grad(cube, theta, eps=0.01)), 8)
        3.0001
        >>> forward = jaxcheck.numerical_grad(cube, theta, eps=0.01, method="forward")
        >>> round(float(forward), 8)
        3.0301
        >>> params = {"b": jnp.ones(2), "w": jnp.ones((2, 2))}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> g = jaxcheck.numerical_grad(loss, params, flat=True)
        >>> g.tolist()  # θ: ['b'] then ['w'], as ravel_pytree lays them out
        [0.0, 0.0, 2.0, 2.0, 2.0, 2.0]
    """
    _validate.check_flag("flat", flat)
    checked = make_options("numerical_grad", options, takes=STEP_OPTION_NAMES)
    prepared = prepare(fun, params, args, checked)
    base_value = base_value_of(prepared)
    with numerical_side(prepared, base_value, False, checked.method) as (numerical, _):
        diffs = finite_differences(numerical, **checked.evaluation)
    tree = prepared.tree
    gradient = to_leaves(tree, diffs.derivative[:, 0])
    values = [
        jnp.asarray((x if leaf.dtype.kind == "c" else x.real).astype(leaf.dtype))
        for leaf, x in zip(tree.leaves, gradient, strict=True)
    ]
    if flat:
        # θ's layout is `ravel_pytree`'s over the perturbed leaves, in pytree
        # order (the None leaves of the pytree form hold no entries).
        return ravel_pytree(values)[0]
    return leaf_values_to_params(tree, values)
