"""Notes added to an error that `fun` raises: where jaxcheck was, and for the
errors a new user meets first, what to do."""

from __future__ import annotations

import re
from typing import Any

import jax

from .._tree.pytree import Problem


def add_context(error: Exception, what: str, problem: Problem | None = None) -> None:
    """Notes where jaxcheck was when `fun` raised, and for the errors a new user
    meets first, what to do; the traceback stays the user's."""
    error.add_note(f"jaxcheck: raised by `fun` while {what}.")
    if isinstance(error, _VALUE_DEPENDENT):
        error.add_note(
            "jaxcheck: `fun` is traced (under `jit` and `vmap`) to evaluate it at "
            "many perturbed points at once, so it must not use the values of its "
            "inputs in Python (`if x > 0:`, `bool(x)`, `float(x)`, `int(x)`). "
            "Branch with `jnp.where(x > 0, a, b)` or `jax.lax.cond`; pass a value "
            "that must stay a Python number through a closure "
            "(`lambda p: fun(p, n=3)`)."
        )
    elif (
        problem is not None
        and isinstance(error, TypeError)
        and _SIGNATURE.search(str(error))
        and _name(problem.fun) in str(error)
    ):
        n = problem.n_args
        error.add_note(
            f"jaxcheck: `fun` is called as `fun(params, *args)`, here with "
            f"{n} argument{'' if n == 1 else 's'} after `params`: pass `fun`'s other "
            "arguments, and only those, after `params` (`check_grad(loss, params, "
            "x, y)`), or bind them first (`functools.partial(loss, x=x)`)."
        )


_VALUE_DEPENDENT = (
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.ConcretizationTypeError,
)


_SIGNATURE = re.compile(
    r"missing \d+ required positional argument|takes \d+ positional arguments? but "
    r"\d+ (?:was|were) given|got an unexpected keyword argument"
)


def _name(fun: Any) -> str:
    """How Python names `fun` in a call's TypeError: `loss()`, `<lambda>()`."""
    return getattr(fun, "__name__", type(fun).__name__) + "()"
