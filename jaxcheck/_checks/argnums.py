"""`argnums` and `has_aux`: a check of several arguments as one of `params`.

`check_grad(fun, params, *args, argnums=..., has_aux=...)` is rewritten before
anything else into the plain problem `check_grad(selected, selected_params,
*rest)`: the arguments at `argnums` become the perturbed `params` (a tuple when
`argnums` is a tuple, as in `jax.grad`), the others are passed through, and the
auxiliary output is dropped.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

from .._engine.traced_fun import output_shape


@dataclasses.dataclass(frozen=True)
class Selected:
    """`fun(*all_args)` called as `Selected(...)(selected, *rest)`; hashable by
    `fun`, so checks of the same function share compiled code."""

    fun: Callable[..., Any]
    argnums: int | tuple[int, ...]
    has_aux: bool

    def arguments(self, selected: Any, rest: tuple[Any, ...]) -> list[Any]:
        positions = (self.argnums,) if isinstance(self.argnums, int) else self.argnums
        values = (selected,) if isinstance(self.argnums, int) else tuple(selected)
        chosen = dict(zip(positions, values, strict=True))
        others = iter(rest)
        n = len(positions) + len(rest)
        return [chosen[i] if i in chosen else next(others) for i in range(n)]

    def __call__(self, selected: Any, *rest: Any) -> Any:
        out = self.fun(*self.arguments(selected, rest))
        return out[0] if self.has_aux else out

    def __repr__(self) -> str:
        return getattr(self.fun, "__qualname__", None) or repr(self.fun)


def _check_argnums(argnums: Any, n_args: int) -> tuple[int, ...]:
    single = isinstance(argnums, numbers.Integral) and not isinstance(argnums, bool)
    many = isinstance(argnums, tuple) and all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in argnums
    )
    if not (single or many):
        raise TypeError(
            f"`argnums` must be an int or a tuple of ints, as in jax.grad, got "
            f"{argnums!r}."
        )
    positions = (argnums,) if single else argnums
    if not positions or len(set(positions)) != len(positions):
        raise ValueError(f"`argnums` must be non-empty and distinct, got {argnums}.")
    bad = [i for i in positions if not 0 <= i < n_args]
    if bad:
        raise ValueError(
            f"`argnums` {argnums} refers to argument {bad[0]}, but `fun` is given "
            f"{n_args} positional arguments (params and {n_args - 1} args); count "
            "params as argument 0."
        )
    return tuple(int(i) for i in positions)


def select(
    fun: Callable[..., Any],
    params: Any,
    args: tuple[Any, ...],
    grad: Any,
    argnums: Any,
    has_aux: Any,
) -> tuple[Callable[..., Any], Any, tuple[Any, ...], Any]:
    """`(fun, params, args, grad)` rewritten so that `params` is what `argnums`
    selects and `fun` returns the value alone; unchanged for the defaults."""
    if not isinstance(has_aux, bool):
        raise TypeError(f"`has_aux` must be True or False, got {has_aux!r}.")
    all_args = (params, *args)
    positions = _check_argnums(argnums, len(all_args))
    if has_aux and callable(fun):
        out = output_shape(fun, *all_args)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(
                "With has_aux=True `fun` must return a pair (value, aux), got "
                f"{type(out).__name__}; pass has_aux=False for a plain scalar."
            )
    if positions == (0,) and isinstance(argnums, numbers.Integral) and not has_aux:
        return fun, params, args, grad
    if not callable(fun):
        return fun, params, args, grad  # check_grad names the problem
    argnums = positions[0] if isinstance(argnums, numbers.Integral) else positions
    selected_fun = Selected(fun, argnums, has_aux)
    if isinstance(argnums, int):
        selected = all_args[argnums]
    else:
        selected = tuple(all_args[i] for i in argnums)
    rest = tuple(x for i, x in enumerate(all_args) if i not in positions)
    if callable(grad):
        given = grad
        grad = lambda selected, *rest: given(  # noqa: E731
            *selected_fun.arguments(selected, rest)
        )
    return selected_fun, selected, rest, grad


def check_order(order: Any, grad: Any) -> int:
    """`order` is 1 (the gradient) or 2 (the Hessian, with jax's own gradient)."""
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"`order` must be 1 (gradient) or 2 (Hessian), got {order!r}; for "
            "higher orders use check_grads(f, args, order)."
        )
    if order == 2 and grad is not None:
        raise ValueError(
            "`grad` cannot be given with order=2: the Hessian is checked through "
            "jax.grad(fun). Check a hand-derived gradient with order=1, or its "
            "Jacobian with check_jacobian."
        )
    return int(order)
