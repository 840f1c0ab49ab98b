"""How the benchmark (`bench.py`) times each method at one model width.

Every JAX method is timed twice per repeat: a first call right after
`jax.clear_caches()` (compilation included) and a repeated call (run only); torch
compiles nothing and is timed once. The per-parameter loop a careful user writes
and `jax.test_util.check_grads` are timed here beside `check_grad`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bench_model import build_model, mlp_loss, n_params
from bench_torch import torch_gradcheck

LOOP_STEP = 2.0**-17  # the loop's finite-difference step, exact in binary


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _first_and_repeated(make: Callable[[], Callable[[], bool]]) -> dict:
    """Times `make()()` right after clearing JAX's caches, then the same check
    again. `make` (building jitted functions) is in the first timing: a user pays it."""
    jax.clear_caches()
    start = time.perf_counter()
    check = make()
    out1 = check()
    first = time.perf_counter() - start
    second, out2 = _timed(check)
    ok = all(getattr(out, "ok", out) for out in (out1, out2))
    result = {"first": first, "second": second, "ok": bool(ok)}
    if hasattr(out1, "compile_seconds"):  # a report: its own compile time
        result["compile"] = out1.compile_seconds
    return result


class _Loop:
    """The per-parameter loop a careful user writes: one jitted evaluation per ±h
    perturbation, the device scalars fetched once at the end (a fetch per scalar
    would time transfers; `jnp.stack` of thousands of arrays compiles for minutes),
    the comparison on the host. Built once, so a repeated check reuses the compiled
    functions, as `check_grad` reuses its cache."""

    def __init__(self, params: list[dict], x: jax.Array, y: jax.Array):
        self.theta, unravel = ravel_pytree(params)
        self.perturbed = jax.jit(
            lambda th, i, s: mlp_loss(unravel(th.at[i].add(s)), x, y)
        )
        self.grad = jax.jit(jax.grad(mlp_loss))
        self.args = params, x, y

    def __call__(self) -> bool:
        outs = []
        for i in range(self.theta.size):
            outs.append(self.perturbed(self.theta, i, LOOP_STEP))
            outs.append(self.perturbed(self.theta, i, -LOOP_STEP))
        values = np.asarray(jax.device_get(outs))
        numeric = (values[0::2] - values[1::2]) / (2 * LOOP_STEP)
        leaves = jax.tree.leaves(self.grad(*self.args))  # ravel_pytree's order
        analytic = np.concatenate([np.ravel(leaf) for leaf in leaves])
        return bool(np.allclose(analytic, numeric, rtol=1e-5, atol=1e-7))


def _check_grads(params: list[dict], x: jax.Array, y: jax.Array) -> bool:
    """`jax.test_util.check_grads`: one random direction, not every entry."""
    from jax.test_util import check_grads

    try:
        check_grads(lambda p: mlp_loss(p, x, y), (params,), order=1, modes=("rev",))
    except AssertionError:
        return False
    return True


def _once(check: Callable[[], bool]) -> dict:
    """Times one call of a check that compiles nothing (torch): its only cost."""
    seconds, ok = _timed(check)
    return {"time": seconds, "ok": bool(ok)}


def measure_width(h: int, args: argparse.Namespace, torch: Any) -> dict:
    """Every repeat of every method at width `h`; a skipped method gets its reason."""
    from jaxcheck import check_grad

    model = build_model(h)
    params, x, y = jax.tree.map(jnp.asarray, model)
    n = n_params(h)
    methods: dict[str, Any] = {
        "jaxcheck": lambda: lambda: check_grad(mlp_loss, params, x, y),
        "loop": lambda: _Loop(params, x, y),
        "check_grads": lambda: lambda: _check_grads(params, x, y),
    }
    for mode in ("fast", "sample"):
        if mode in args.modes:
            methods[mode] = lambda m=mode: (
                lambda: check_grad(mlp_loss, params, x, y, mode=m)
            )
    if "full" not in args.modes:
        methods["jaxcheck"] = "not in --modes"
    if n > args.max_loop_params:
        methods["loop"] = f"N > --max-loop-params {args.max_loop_params:g}"
    timed_once = {}
    if torch is not None:
        timed_once["torch_slow"] = lambda: torch_gradcheck(torch, model, False)
        timed_once["torch_fast"] = lambda: torch_gradcheck(torch, model, True)
        if n > args.max_torch_params:
            timed_once["torch_slow"] = (
                f"N > --max-torch-params {args.max_torch_params:g}"
            )
    result: dict[str, Any] = {"N": n, "h": h}
    for name, make in [*methods.items(), *timed_once.items()]:
        if isinstance(make, str):
            result[name] = {"skipped": make}
            continue
        measure = _once if name in timed_once else _first_and_repeated
        runs = [measure(make) for _ in range(args.repeats)]
        result[name] = {key: [run[key] for run in runs] for key in runs[0]}
    forward = jax.jit(mlp_loss)
    forward(params, x, y).block_until_ready()
    result["forward"] = [
        _timed(lambda: forward(params, x, y).block_until_ready())[0] for _ in range(20)
    ]
    result["load_average"] = os.getloadavg()  # did other processes compete?
    return result
