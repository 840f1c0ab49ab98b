"""The benchmark: `check_grad` against the checks a user would otherwise run.

    python tools/bench.py --params 1e3 1e4 --repeats 3   # see docs/benchmarks.md

A developer tool, not part of the package: it imports the jaxcheck on the path
(install the checkout, or put its root on PYTHONPATH) and, for the torch columns,
torch if it is installed.

Every method checks the same float64 tanh MLP (layer sizes [16, h, h, h, 4], batch
32): `check_grad` in its full, fast and sample modes, a per-parameter jitted loop,
`jax.test_util.check_grads` and, when torch is installed, `torch.autograd.gradcheck`
(slow and `fast_mode`, see `bench_torch`). Each JAX method is timed twice per
repeat: a first call right after `jax.clear_caches()` (compilation included), which
a test suite pays, and a repeated call (run only), which an interactive session
mostly pays. `--memory` instead runs one large check in a child process and samples
its resident memory (see `bench_memory`); `--suite` times many small checks (see
`bench_suite`); `--plot` draws time against N.

This module holds the command's options and its run; `bench_measure`
times the methods and `bench_report` prints the machine and the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bench_measure import measure_width
from bench_model import BATCH, build_model, width_for
from bench_report import machine, table
from bench_suite import MAX_SUITE_SIZE
from bench_torch import import_torch, torch_gradcheck


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
    """Adds the benchmark's options to `parser`."""
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
        ("--cache-dir", "DIR", str, "", "compile cache: docs/guides/compile-time.md"),
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
        "precision (see bench_gpu.py)",
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
    m = machine()
    print(
        f"# tools/bench.py\n\nmachine: {m['cpu']}, {m['cores']} cores, {m['system']}"
        f"\nJAX {m['jax']}, backend {m['backend']}, device {m['device']}, Python "
        f"{m['python']}, float64; load average at start "
        + ", ".join(f"{x:.2f}" for x in m["load_average"])
        + "\n"
    )
    record: dict[str, Any] = {"machine": m, "args": vars(args)}
    if args.cache_dir:
        from jaxcheck import enable_compilation_cache

        enable_compilation_cache(args.cache_dir)
        print(
            f"persistent compilation cache in {args.cache_dir}: once it is warm, "
            "first calls load compiled programs instead of compiling them\n"
        )
    failed = []
    if args.memory:
        from bench_memory import measure_memory

        record["memory"] = measure_memory(args)
    elif args.gpu:
        from bench_gpu import gpu_table, measure_gpu

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
        from bench_suite import measure_suite, suite_table

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
        record["results"] = results = [measure_width(h, args, torch) for h in widths]
        print(table(results, torch is not None, args.modes))
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
            from bench_plot import plot_times

            plot_times(results, args.plot)
            print(f"plot written to {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python tools/bench.py [options]`: the exit code of `run`, or 2 for a usage
    error (argparse exits)."""
    parser = argparse.ArgumentParser(
        prog="tools/bench.py",
        description="Times check_grad (compile and run apart) against a jitted "
        "per-parameter loop, jax.test_util.check_grads and, where torch is "
        "installed, torch.autograd.gradcheck, on tanh MLPs of N parameters; "
        "medians and ratios, as in the table of docs/benchmarks.md.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
