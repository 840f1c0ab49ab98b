"""Argument checks, run in Python before anything is traced.

Each error names the argument, says what was wrong and how to fix it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._runtime.sharding import host_value
from .._tree.pytree import SplitTree, format_path

# The finite-difference methods, by name; Jacobian-family checks take all but
# the complex step, which needs a real-valued loss.
METHODS = ("central", "forward", "backward", "central4", "complex")
JACOBIAN_METHODS = ("central", "forward", "backward", "central4")


def check_fun(fun: Any) -> None:
    if not callable(fun):
        raise TypeError(
            f"`fun` must be callable as fun(params, *args) -> scalar, got "
            f"{type(fun).__name__}. Pass the loss function itself, not its value."
        )


def check_method(method: Any, allowed: tuple[str, ...] = METHODS) -> None:
    if method not in allowed:
        raise ValueError(
            f"`method` must be one of {', '.join(map(repr, allowed))}, got {method!r}."
        )


def _is_real_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_eps(eps: Any) -> None:
    if eps is None:
        return
    if not _is_real_number(eps):
        raise TypeError(
            f"`eps` must be a positive float or None (a step chosen per entry), got "
            f"{type(eps).__name__}."
        )
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(
            f"`eps` must be positive and finite, got {eps!r}; pass eps=None to let "
            "jaxcheck choose a step for each entry from its dtype and magnitude."
        )


def check_tolerance(name: str, value: Any) -> None:
    if value is None:
        return
    if not _is_real_number(value):
        raise TypeError(
            f"`{name}` must be a non-negative float or None, got {value!r}."
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"`{name}` must be non-negative and finite, got {value!r}; pass None for "
            "the dtype's default."
        )


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.")


def _check_positive_int(name: str, value: Any, what: str, hint: str) -> None:
    """`value` is an int of at least 1; `what` says what else it may be."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a positive int{what}, got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1, got {value}; {hint}")


def check_chunking(chunk_size: Any, memory_budget: Any) -> None:
    if chunk_size is not None:
        _check_positive_int(
            "chunk_size",
            chunk_size,
            " or None",
            "pass None to derive it from `memory_budget`.",
        )
    if not _is_real_number(memory_budget):
        raise TypeError(
            f"`memory_budget` must be a number of bytes, got {memory_budget!r}."
        )
    if not (math.isfinite(memory_budget) and memory_budget > 0):
        raise ValueError(
            "`memory_budget` must be a positive number of bytes, got "
            f"{memory_budget!r}."
        )


def check_not_traced(params: Any, args: tuple[Any, ...]) -> None:
    for leaf in jax.tree_util.tree_leaves((params, args)):
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                "`params` or `args` hold a JAX tracer: a gradient check cannot run "
                "inside `jax.jit`, `jax.vmap` or `jax.grad`. Call it outside the "
                "transformation, on concrete arrays; it jits its own evaluations."
            )


def check_has_entries(tree: SplitTree) -> None:
    if tree.size > 0:
        return
    kept_leaves = [(p, why) for p, why in tree.skipped if not why.startswith("None")]
    if tree.leaves:
        found = "only zero-size floating leaves"
    elif kept_leaves:
        kept = ", ".join(f"{format_path(p)} ({why})" for p, why in kept_leaves[:5])
        found = f"no floating leaves; kept unperturbed: {kept}"
    else:
        found = "an empty pytree"
    raise ValueError(
        f"`params` has nothing to check: {found}. jaxcheck perturbs floating and "
        "complex array leaves; cast integer parameters with `.astype(float)`."
    )


def check_output(out_info: Any) -> None:
    """`fun` must return a real floating scalar."""
    shape = getattr(out_info, "shape", None)
    dtype = getattr(out_info, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            "`fun` must return a scalar array, got a "
            f"{jax.tree_util.tree_structure(out_info)} pytree. Reduce it to a scalar "
            "loss, e.g. `jnp.sum(...)`; pass has_aux=True if it returns (loss, aux); "
            "for the derivatives of a pytree output use check_jacobian or check_vjp."
        )
    if shape != ():
        raise TypeError(
            f"`fun` must return a scalar, got an output of shape {shape}. A gradient "
            "check needs a scalar loss J(θ): reduce it (e.g. `jnp.mean(...)`), not "
            "the network's raw output. To check the derivatives of a vector output "
            "use check_jacobian (the whole Jacobian) or check_vjp/check_jvp (one "
            "cotangent or tangent)."
        )
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"`fun` must return a real scalar, got {np.dtype(dtype).name}. Return "
            "the real part, or a real function of it such as `jnp.abs(z) ** 2`."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"`fun` must return a floating scalar, got {np.dtype(dtype).name}; an "
            "integer or boolean output has no gradient. Compute the loss in floats."
        )


def check_base_value(value: float, tree: SplitTree) -> None:
    if math.isfinite(value):
        return
    bad = [
        format_path(leaf.path)
        for leaf in tree.leaves
        if not np.all(np.isfinite(host_value(tree.dynamic[leaf.position])))
    ]
    where = f" `params` has non-finite entries in {', '.join(bad)}." if bad else ""
    raise ValueError(
        f"`fun(params, *args)` is {value} at the given `params`; a gradient check "
        f"needs a finite value there.{where} Check for NaN/Inf in the inputs or a "
        "log/division at a domain edge."
    )


def check_mode(mode: Any, samples: Any, seed: Any) -> None:
    """`mode` is "full", "fast" or "sample"; `samples` and `seed` are ints."""
    modes = ("full", "fast", "sample")
    if mode not in modes:
        raise ValueError(
            f"`mode` must be one of {', '.join(map(repr, modes))}, got {mode!r}: "
            '"full" checks every entry, "fast" probes each leaf along random '
            'directions, "sample" checks `samples` random entries per leaf.'
        )
    if samples is not None and mode != "sample":
        raise ValueError(
            f'`samples` is the number of entries per leaf that mode="sample" '
            f'checks, but mode={mode!r}; pass mode="sample" or drop `samples`.'
        )
    if samples is not None:
        _check_positive_int(
            "samples",
            samples,
            " (entries per leaf)",
            'it is the number of random entries checked per leaf with mode="sample".',
        )
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        error = TypeError if not isinstance(seed, numbers.Integral) else ValueError
        raise error(
            f"`seed` must be a non-negative int, got {seed!r}; it seeds the random "
            "directions, entries, tangents and cotangents of a check."
        )


def check_progress(progress: Any) -> None:
    """None, a bool, or a callable progress(done, total)."""
    if progress is None or isinstance(progress, bool):
        if progress is True:
            from .._runtime.progress import has_tqdm

            if not has_tqdm():
                raise ImportError(
                    "`progress=True` needs tqdm: pip install 'jaxcheck[progress]', "
                    "or pass a callable progress(done, total)."
                )
        return
    if not callable(progress):
        raise TypeError(
            "`progress` must be None (a bar when stderr is a terminal), True, False "
            f"or a callable progress(done, total), got {type(progress).__name__}."
        )


def check_devices(devices: Any) -> None:
    """None, or a non-empty sequence of distinct `jax.Device`s."""
    if devices is None:
        return
    if isinstance(devices, jax.Device):
        raise TypeError(
            f"`devices` must be a sequence of devices, got the single device "
            f"{devices}; pass [device]."
        )
    try:
        listed = list(devices)
    except TypeError:
        raise TypeError(
            "`devices` must be None (all local devices) or a sequence of "
            f"`jax.Device`s such as jax.devices(), got {type(devices).__name__}."
        ) from None
    bad = [d for d in listed if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(
            f"`devices` must hold `jax.Device`s (from jax.devices()), got "
            f"{type(bad[0]).__name__}."
        )
    if not listed or len(set(listed)) != len(listed):
        raise ValueError(
            f"`devices` must be non-empty and without repeats, got {listed}; pass "
            "None to use every local device."
        )
