"""`tools/bench.py --gpu`: the accelerator run, in one process, in under 10 minutes.

On the benchmark's MLP (`bench_model`), on JAX's default device:

- full checks at `--gpu-full` sizes (default N = 1e5 and 1e6), the first call
  (tracing and compiling, `report.compile_seconds`, apart) and a repeated call;
- `torch.autograd.gradcheck` on the same device at `--gpu-torch` sizes (default
  1e5 only: at 1e6 its one-evaluation-per-call loop would take hours), when torch
  is installed (with CUDA when JAX runs on a GPU);
- fast mode at `--gpu-fast` sizes (default 1e6 and 1e7);
- the float32 verdicts of a float32 copy of the MLP (`--gpu-float32`, default
  N = 1e4) under JAX's default matmul precision (TF32 on recent NVIDIA GPUs,
  whose 10-bit mantissa rounds the analytic gradient at ~1e-3) and under
  `jax_default_matmul_precision="highest"`.

Measurements run in that order and stop when `--gpu-budget` seconds (default
540) have passed, the rest marked as skipped, so one run fits a 10-minute slot.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp

from bench_model import build_model, mlp_loss, n_params, width_for
from bench_torch import import_torch, torch_gradcheck


def _model(target: float, dtype: Any = jnp.float64) -> tuple[int, tuple]:
    h = width_for(target)
    params, x, y = build_model(h)
    return n_params(h), jax.tree.map(lambda a: jnp.asarray(a, dtype), (params, x, y))


def _check_twice(target: float, **options: Any) -> dict[str, Any]:
    from jaxcheck import check_grad

    n, (params, x, y) = _model(target)
    first = check_grad(mlp_loss, params, x, y, **options)
    start = time.perf_counter()
    again = check_grad(mlp_loss, params, x, y, **options)
    return {
        "N": n,
        "first_s": first.seconds,
        "compile_s": first.compile_seconds,
        "repeated_s": time.perf_counter() - start,
        "ok": bool(first.ok and again.ok),
    }


def _torch_device(torch: Any) -> str:
    gpu = jax.default_backend() == "gpu"
    return "cuda" if gpu and torch.cuda.is_available() else "cpu"


def _torch(target: float, torch: Any) -> dict[str, Any]:
    h = width_for(target)
    device = _torch_device(torch)
    start = time.perf_counter()
    ok = torch_gradcheck(torch, build_model(h), False, device)
    return {"N": n_params(h), "device": device, "time_s": time.perf_counter() - start,
            "ok": ok}  # fmt: skip


def _float32(target: float) -> dict[str, Any]:
    from jaxcheck import check_grad

    n, (params, x, y) = _model(target, jnp.float32)
    out: dict[str, Any] = {"N": n}
    for precision in ("default", "highest"):
        with jax.default_matmul_precision(precision):
            report = check_grad(mlp_loss, params, x, y)
        out[precision] = {
            "ok": bool(report.ok),
            "failed": report.num_failed,
            "rel_diff": report.rel_diff,
        }
    return out


def measure_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement that fits in `args.gpu_budget` seconds."""
    start = time.perf_counter()
    torch = import_torch()
    plan: list[tuple[str, float, Any]] = []
    plan += [("full", n, lambda n: _check_twice(n)) for n in args.gpu_full]
    if torch is not None:
        plan += [("torch", n, lambda n: _torch(n, torch)) for n in args.gpu_torch]
    plan += [("fast", n, lambda n: _check_twice(n, mode="fast")) for n in args.gpu_fast]
    plan += [("float32", n, _float32) for n in args.gpu_float32]
    results: dict[str, list] = {"full": [], "torch": [], "fast": [], "float32": []}
    for kind, n, run in plan:
        if time.perf_counter() - start > args.gpu_budget:
            results[kind].append({"N": n, "skipped": "time budget"})
            continue
        results[kind].append(run(n))
        print(f"{kind} N={n:g}: {results[kind][-1]}", flush=True)
    results["device"] = str(jax.devices()[0])
    results["torch"] = results["torch"] or [{"skipped": "torch not installed"}]
    return results


def gpu_table(results: dict[str, Any]) -> str:
    """The measurements as Markdown tables."""
    lines = [f"device: {results['device']}", "", "| check | N | first s (compile s) "
             "| repeated s | ok |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for kind in ("full", "fast"):
        for r in results[kind]:
            if "skipped" in r:
                lines.append(f"| {kind} | {r['N']:g} | skipped: {r['skipped']} | | |")
                continue
            lines.append(
                f"| jaxcheck {kind} | {r['N']:,} | {r['first_s']:.3g} "
                f"({r['compile_s']:.2g}) | {r['repeated_s']:.3g} | {r['ok']} |"
            )
    for r in results["torch"]:
        if "skipped" in r:
            lines.append(f"| torch gradcheck | | skipped: {r['skipped']} | | |")
        else:
            lines.append(
                f"| torch gradcheck ({r['device']}) | {r['N']:,} | {r['time_s']:.3g} "
                f"| | {r['ok']} |"
            )
    lines += ["", "| float32 MLP, N | matmul precision | ok | failed | rel diff |",
              "|---:|---|---|---:|---:|"]  # fmt: skip
    for r in results["float32"]:
        for precision in ("default", "highest"):
            if precision in r:
                v = r[precision]
                lines.append(
                    f"| {r['N']:,} | {precision} | {v['ok']} | {v['failed']} | "
                    f"{v['rel_diff']:.2e} |"
                )
    return "\n".join(lines)
