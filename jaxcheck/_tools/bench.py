"""`jaxcheck bench`: `check_grad` against the checks a user would otherwise run.

Every method checks the same float64 tanh MLP (layer sizes [16, h, h, h, 4], batch
32): `check_grad` in its full, fast and sample modes, a per-parameter jitted loop,
`jax.test_util.check_grads` and, when torch is installed, `torch.autograd.gradcheck`
(slow and `fast_mode`, see `_bench_torch`). Each JAX method is timed twice per
repeat: a first call right after `jax.clear_caches()` (compilation included), which
a test suite pays, and a repeated call (run only), which an interactive session
mostly pays. `--memory` instead runs one large check in a child process and samples
its resident memory (see `_bench_memory`); `--suite` times many small checks (see
`_bench_suite`); `--plot` draws time against N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .bench_model import BATCH, build_model, mlp_loss, n_params, width_for
from .bench_suite import MAX_SUITE_SIZE
from .bench_torch import import_torch, torch_gradcheck

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


def _measure(h: int, args: argparse.Namespace, torch: Any) -> dict:
    """Every repeat of every method at width `h`; a skipped method gets its reason."""
    from .._checks.grad import check_grad

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


# The README's benchmark table has these columns, so a rerun compares cell by cell.
_HEAD = (
    "N|jaxcheck first s|jaxcheck repeated s|loop first s|"
    "loop / jaxcheck, first · repeated|torch gradcheck s|torch / jaxcheck first|"
    "fast first s|sample first s|check_grads† first s|torch fast_mode† s|evals/s|"
    "evals/s ÷ forwards/s"
)


def _table(results: list[dict], with_torch: bool, modes: list[str]) -> str:
    """The markdown table of medians, one row per model size: the README's."""
    med, fmt = statistics.median, "{:.3g}".format
    head = _HEAD.split("|")
    rows = [head, ["---"] * len(head)]
    for r in results:
        jc = r["jaxcheck"]
        if "skipped" in jc:  # --modes without full: only the other columns
            jc = {"first": [math.nan], "second": [math.nan]}
        first, run = med(jc["first"]), med(jc["second"])
        compile_s = med(jc.get("compile", [math.nan]))
        row = [f"{r['N']:,}", f"{fmt(first)} ({fmt(compile_s)})", fmt(run)]
        if "skipped" in r["loop"]:
            row += ["not run", "—"]
        else:
            lf, lr = med(r["loop"]["first"]), med(r["loop"]["second"])
            row += [fmt(lf), f"{fmt(lf / first)}× · {fmt(lr / run)}×"]
        slow = r.get("torch_slow", {"skipped": "torch is not installed"})
        if "skipped" in slow:
            row += ["not run", "—"]
        else:
            row += [fmt(med(slow["time"])), fmt(med(slow["time"]) / first) + "×"]
        for mode in ("fast", "sample"):
            row.append(fmt(med(r[mode]["first"])) if mode in r else "—")
        row.append(fmt(med(r["check_grads"]["first"])))
        fast = r.get("torch_fast")
        row.append(fmt(med(fast["time"])) if fast and "time" in fast else "—")
        forward = med(r["forward"])
        rate = 2 * r["N"] / run
        rate_text = f"{rate:.2g}".replace("e+0", "e").replace("e+", "e")  # 1.5e5
        rows.append(row + [rate_text, f"{fmt(rate * forward)}×"])
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def _machine() -> dict:
    """CPU, cores, load, JAX version, backend and device, for the header."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if "model name" in ln]
        cpu = models[0] if models else cpu
    device = jax.devices()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": f"{device} ({device.device_kind})",
        "load_average": os.getloadavg(),  # were other processes competing?
    }


def _positive(integer: bool) -> Callable[[str], float]:
    """An argparse type: a finite positive number (1e3 is fine), or an integer."""
    what = "a positive integer" if integer else "a finite positive number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0) or (integer and value % 1):
            # argparse prefixes the option: "argument --repeats: must be ..."
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return int(value) if integer else value

    return parse


def _at_most(parse: Callable[[str], float], limit: int) -> Callable[[str], float]:
    def parse_at_most(text: str) -> float:
        value = parse(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text!r}")
        return value

    return parse_at_most


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `jaxcheck bench` to its subparser."""
    num, count = _positive(False), _positive(True)
    options = [  # (flag, metavar, type, default, help); no default: one or more
        ("--params", "N", num, None, "target parameter counts (default 1e3 1e4 1e5)"),
        ("--widths", "H", count, None, "hidden widths, instead of or with --params"),
        ("--repeats", "R", count, 3, "repeats; the table shows medians (default 3)"),
        ("--max-loop-params", "N", num, 2e5, "skip the loop above N (default 2e5)"),
        ("--max-torch-params", "N", num, 3e4, "skip torch's slow mode above N (3e4)"),
        ("--memory-params", "N", num, 1e6, "N of the --memory model (default 1e6)"),
        ("--memory-seconds", "S", num, 60.0, "stop --memory after S s (default 60)"),
        ("--memory-batch", "B", count, BATCH, f"--memory's batch (default {BATCH})"),
        ("--cache-dir", "DIR", str, "", "persistent compilation cache (see README)"),
    ]
    for flag, metavar, kind, default, text in options:
        nargs = "+" if default is None else None
        parser.add_argument(
            flag, metavar=metavar, type=kind, default=default, nargs=nargs, help=text
        )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("full", "fast", "sample"),
        default=["full", "fast", "sample"],
        help="check_grad modes to time (default: all three)",
    )
    parser.add_argument("--plot", metavar="PATH", help="write a log-log plot (PNG)")
    parser.add_argument("--json", metavar="PATH", help="write all measurements")
    parser.add_argument("--memory", action="store_true", help="measure memory instead")
    parser.add_argument(
        "--suite",
        action="store_true",
        help="measure many small checks instead (the unit-test use), against "
        "jax.test_util.check_grads",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the accelerator run instead: full and fast checks at large N, torch "
        "on the same device, float32 under the default and highest matmul "
        "precision (see _bench_gpu)",
    )
    for flag, default, what in [
        ("--gpu-full", [1e5, 1e6], "full checks"),
        ("--gpu-torch", [1e5], "torch gradcheck"),
        ("--gpu-fast", [1e6, 1e7], "fast checks"),
        ("--gpu-float32", [1e4], "the float32 model"),
    ]:
        parser.add_argument(
            flag, metavar="N", type=num, nargs="+", default=default,
            help=f"--gpu: N of {what} (default {' '.join(f'{d:g}' for d in default)})",
        )  # fmt: skip
    parser.add_argument(
        "--gpu-budget",
        metavar="S",
        type=num,
        default=540.0,
        help="--gpu: skip what is left after S seconds (default 540)",
    )
    parser.add_argument(
        "--suite-size",
        metavar="K",
        type=_at_most(count, MAX_SUITE_SIZE),
        default=20,
        help=f"functions in the --suite (default 20, at most {MAX_SUITE_SIZE})",
    )


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark (or `--memory`) and prints it.

    Returns:
        The exit code: 1 if a method called the (correct) gradient wrong, else 0.
    """
    jax.config.update("jax_enable_x64", True)
    m = _machine()
    print(
        f"# jaxcheck bench\n\nmachine: {m['cpu']}, {m['cores']} cores, {m['system']}"
        f"\nJAX {m['jax']}, backend {m['backend']}, device {m['device']}, Python "
        f"{m['python']}, float64; load average at start "
        + ", ".join(f"{x:.2f}" for x in m["load_average"])
        + "\n"
    )
    record: dict[str, Any] = {"machine": m, "args": vars(args)}
    if args.cache_dir:
        from .._runtime.compilation_cache import enable_compilation_cache

        enable_compilation_cache(args.cache_dir)
        print(
            f"persistent compilation cache in {args.cache_dir}: once it is warm, "
            "first calls load compiled programs instead of compiling them\n"
        )
    failed = []
    if args.memory:
        from .bench_memory import measure_memory

        record["memory"] = measure_memory(args)
    elif args.gpu:
        from .bench_gpu import gpu_table, measure_gpu

        record["gpu"] = measured = measure_gpu(args)
        print(gpu_table(measured))
        failed = [
            f"{kind} at N={r['N']}"
            for kind in ("full", "fast", "torch")
            for r in measured[kind]
            if r.get("ok") is False
        ]
        if failed:
            print("\nWRONG VERDICT on a correct gradient: " + ", ".join(failed))
    elif args.suite:
        from .bench_suite import measure_suite, suite_table

        record["suite"] = rows = measure_suite(args.suite_size)
        print(suite_table(rows, args.suite_size))
        failed = [r["tool"] for r in rows if not r["ok"]]
        if failed:
            print("\nWRONG VERDICT on a correct gradient: " + ", ".join(failed))
    else:
        torch = import_torch()
        about = "not installed; its columns are left out"
        if torch is not None:
            about = f"{torch.__version__}, {torch.get_num_threads()} threads"
        print("torch:", about)
        targets = args.params or ([] if args.widths else [1e3, 1e4, 1e5])
        widths = sorted({width_for(t) for t in targets} | set(args.widths or []))
        print(
            f"model: tanh MLP [16, h, h, h, 4], batch {BATCH}, N = 2h² + 23h + 4; "
            f"medians of {args.repeats} repeat(s)\n",
            flush=True,
        )
        # Warm up once so the first method timed does not pay JAX's (or torch's)
        # start-up.
        jax.jit(lambda a: a + 1)(jnp.ones(3)).block_until_ready()
        if torch is not None:
            torch_gradcheck(torch, build_model(1), False)
        record["results"] = results = [_measure(h, args, torch) for h in widths]
        print(_table(results, torch is not None, args.modes))
        print(
            "\njaxcheck first s = the first call (right after jax.clear_caches()),"
            " in brackets the part spent tracing and compiling, from its report "
            "(report.compile_seconds);"
            "\nratios are loop median / jaxcheck median, first calls with compile;"
            "\nevals/s = 2N / jaxcheck repeated s;"
            "\nevals/s ÷ forwards/s: perturbed evaluations per second over single"
            " forward passes per second (above 1× thanks to batching);"
            "\nfast/sample first = mode='fast' / mode='sample' (16 entries per leaf),"
            " first call, compile included;"
            "\ntorch gradcheck (every entry) and fast_mode (one random projection) "
            "compile nothing: one call each; torch/jaxcheck first = torch gradcheck"
            " / jaxcheck first call (compile included)."
            "\n† jax.test_util.check_grads checks one random direction (a single "
            "directional derivative), not every entry.\nload average at the end: "
            + ", ".join(f"{x:.2f}" for x in os.getloadavg())
            + f" (this benchmark alone accounts for up to {m['cores']})"
        )
        failed = [
            f"{name} at N={r['N']}"
            for r in results
            for name, v in r.items()
            if isinstance(v, dict) and not all(v.get("ok", [True]))
        ]
        if failed:
            print("\nWRONG VERDICT on a correct gradient: " + ", ".join(failed))
        if args.plot:
            from .bench_plot import plot_times

            plot_times(results, args.plot)
            print(f"plot written to {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    return 1 if failed else 0
