"""`jaxcheck bench`: `check_grad` against the checks a user would otherwise run.

Every method checks the same float64 tanh MLP (layer sizes [16, h, h, h, 4], batch
32). Each is timed twice per repeat: a first call right after `jax.clear_caches()`
(compilation included), which a test suite pays, and a repeated call (run only),
which an interactive session mostly pays. `--memory` instead runs one large check
in a child process and samples its resident memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

LOOP_STEP = 2.0**-17  # the loop's finite-difference step, exact in binary
MEMORY_BUDGET = 1 << 30
_IN, _OUT, _BATCH = 16, 4, 32
_MiB = 1 << 20


def n_params(h: int) -> int:
    """Parameter count of the MLP [16, h, h, h, 4]: 2h² + 23h + 4."""
    return 2 * h * h + 23 * h + 4


def width_for(target: float) -> int:
    """The hidden width h whose parameter count is closest to `target`."""
    root = (-23 + math.sqrt(529 + 8 * max(target - 4, 0))) / 4
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda h: (abs(n_params(h) - target), h))


def build_model(h: int, seed: int = 0) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The weights and data as float64 NumPy arrays, so JAX and torch check
    bit-identical models.

    Returns:
        `(params, x, y)`: a list of {"w": (a, b), "b": (b,)} layers, inputs (32, 16)
        and targets (32, 4).
    """
    rng = np.random.default_rng(seed)
    sizes = [_IN, h, h, h, _OUT]
    params = [
        {"w": rng.normal(size=(a, b)) / math.sqrt(a), "b": 0.1 * rng.normal(size=b)}
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    return params, rng.normal(size=(_BATCH, _IN)), rng.normal(size=(_BATCH, _OUT))


def mlp_loss(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    """Half the mean squared error of the tanh MLP (its last layer is linear)."""
    hidden = x
    for layer in params[:-1]:
        hidden = jnp.tanh(hidden @ layer["w"] + layer["b"])
    out = hidden @ params[-1]["w"] + params[-1]["b"]
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


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
    ok1 = check()
    first = time.perf_counter() - start
    second, ok2 = _timed(check)
    return {"first": first, "second": second, "ok": bool(ok1 and ok2)}


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


def _torch_gradcheck(torch: Any, model: tuple, fast: bool) -> bool:
    """`torch.autograd.gradcheck` (slow or fast mode) on the same float64 MLP."""
    linear = torch.nn.functional.linear  # takes weights as (out, in): hence w.t()
    params, x, y = model
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    flat = tuple(
        torch.tensor(layer[k], dtype=torch.float64, requires_grad=True)
        for layer in params
        for k in ("w", "b")
    )

    def loss(*ws: Any) -> Any:
        hidden = xt
        for k in range(0, len(ws) - 2, 2):
            hidden = torch.tanh(linear(hidden, ws[k].t(), ws[k + 1]))
        out = linear(hidden, ws[-2].t(), ws[-1])
        return 0.5 * ((out - yt) ** 2).sum(-1).mean()

    return bool(
        torch.autograd.gradcheck(loss, flat, fast_mode=fast, raise_exception=False)
    )


def _measure(h: int, args: argparse.Namespace, torch: Any) -> dict:
    """Every repeat of every method at width `h`; a skipped method gets its reason."""
    from ._check import check_grad

    model = build_model(h)
    params, x, y = jax.tree.map(jnp.asarray, model)
    n = n_params(h)
    methods: dict[str, Any] = {
        "jaxcheck": lambda: lambda: check_grad(mlp_loss, params, x, y).ok,
        "loop": lambda: _Loop(params, x, y),
        "check_grads": lambda: lambda: _check_grads(params, x, y),
    }
    if n > args.max_loop_params:
        methods["loop"] = f"N > --max-loop-params {args.max_loop_params:g}"
    if torch is not None:
        methods["torch_slow"] = lambda: lambda: _torch_gradcheck(torch, model, False)
        methods["torch_fast"] = lambda: lambda: _torch_gradcheck(torch, model, True)
        if n > args.max_torch_params:
            methods["torch_slow"] = f"N > --max-torch-params {args.max_torch_params:g}"
    result: dict[str, Any] = {"N": n, "h": h}
    for name, make in methods.items():
        if isinstance(make, str):
            result[name] = {"skipped": make}
            continue
        runs = [_first_and_repeated(make) for _ in range(args.repeats)]
        result[name] = {key: [run[key] for run in runs] for key in runs[0]}
    forward = jax.jit(mlp_loss)
    forward(params, x, y).block_until_ready()
    result["forward"] = [
        _timed(lambda: forward(params, x, y).block_until_ready())[0] for _ in range(20)
    ]
    result["load_average"] = os.getloadavg()  # did other processes compete?
    return result


_HEAD = (
    "N|h|jaxcheck compile s|jaxcheck run s|loop first s|loop repeated s|"
    "loop/jaxcheck first|loop/jaxcheck repeated|check_grads† first s|"
    "check_grads† repeated s"
)


def _table(results: list[dict], with_torch: bool) -> str:
    """The markdown table of medians, one row per model size."""
    med, fmt = statistics.median, "{:.3g}".format
    head = _HEAD.split("|")
    head += ["torch gradcheck s", "torch fast_mode s"] if with_torch else []
    head += ["jaxcheck evals/s", "forward+loss s"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        jc = r["jaxcheck"]
        first, run = med(jc["first"]), med(jc["second"])
        compile_s = med(a - b for a, b in zip(jc["first"], jc["second"], strict=True))
        row = [str(r["N"]), str(r["h"]), fmt(compile_s), fmt(run)]
        if "skipped" in r["loop"]:
            row += ["skipped"] * 4
        else:
            lf, lr = med(r["loop"]["first"]), med(r["loop"]["second"])
            row += [fmt(lf), fmt(lr), fmt(lf / first) + "×", fmt(lr / run) + "×"]
        row += [fmt(med(r["check_grads"][k])) for k in ("first", "second")]
        if with_torch:  # torch compiles nothing: its repeated call is its cost
            row += [
                "skipped" if "skipped" in r[k] else fmt(med(r[k]["second"]))
                for k in ("torch_slow", "torch_fast")
            ]
        rows.append(row + [fmt(2 * r["N"] / run), fmt(med(r["forward"]))])
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


_CHILD = """
import resource, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jaxcheck._bench import build_model, mlp_loss
params, x, y = jax.tree.map(jnp.asarray, build_model(int(sys.argv[1])))
if sys.argv[2] == "check":
    import jaxcheck
    ok = jaxcheck.check_grad(mlp_loss, params, x, y, memory_budget=int(sys.argv[3])).ok
    print("finished", ok)
else:
    jax.jit(mlp_loss)(params, x, y).block_until_ready()
print("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _rss_kib(pid: int) -> int:
    """The larger of a process's current and peak resident set (KiB), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(ln.split(":", 1) for ln in f if ":" in ln)
    except OSError:
        return 0
    return max(int(fields.get(k, "0 kB").split()[0]) for k in ("VmRSS", "VmHWM"))


def _sample_child(argv: list[str], seconds: float) -> dict:
    """Runs `_CHILD` with `argv`, samples its RSS every 0.1 s, kills it at the limit."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    # Files, not pipes: a full pipe would stall the child and skew what we measure.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        cmd = [sys.executable, "-c", _CHILD, *argv]
        child = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        start, peak, stopped, trace = time.monotonic(), 0, False, []
        while child.poll() is None:
            trace.append((round(time.monotonic() - start, 1), _rss_kib(child.pid)))
            peak = max(peak, trace[-1][1])
            if time.monotonic() - start >= seconds:
                child.kill()
                stopped = True
                break
            time.sleep(0.1)
        child.wait()
        elapsed = time.monotonic() - start
        out.seek(0), err.seek(0)
        lines = dict(ln.split(" ", 1) for ln in out.read().splitlines() if " " in ln)
        if not stopped and child.returncode != 0:
            raise RuntimeError(f"the memory child failed:\n{err.read()[-2000:]}")
    peak = max(peak, int(lines.get("maxrss_kib", 0)))  # catches a peak at exit
    return {
        "peak_rss_bytes": peak * 1024,
        "seconds": elapsed,
        "stopped": stopped,
        "ok": lines.get("finished"),
        "rss_trace_kib": trace,  # (seconds, KiB) every 0.1 s
    }


def _memory(args: argparse.Namespace) -> dict:
    """Peak RSS of a large `check_grad` (stopped at the limit) and of a baseline."""
    h = width_for(args.memory_params)
    n = n_params(h)
    model = f"model {8 * n:,} bytes ({8 * n / _MiB:.1f} MiB)"
    budget = f"memory_budget {MEMORY_BUDGET:,} bytes ({MEMORY_BUDGET / _MiB:.0f} MiB)"
    print(f"memory: check_grad, float64 MLP h={h}, N={n:,}, {model}, {budget}\n")
    sys.stdout.flush()  # the children take a minute
    baseline = _sample_child([str(h), "baseline"], 600)
    check = _sample_child([str(h), "check", str(MEMORY_BUDGET)], args.memory_seconds)
    if check["stopped"]:
        print(
            f"The check was STOPPED after the {args.memory_seconds:g} s limit, "
            f"unfinished: checking all {n:,} entries takes far longer (hours for 1e6 "
            "on a CPU).\nWhat this shows is that memory stays bounded while it runs."
        )
    else:
        print(f"The check finished in {check['seconds']:.1f} s, ok={check['ok']}.")
    peak, base = check["peak_rss_bytes"] / _MiB, baseline["peak_rss_bytes"] / _MiB
    shown, mark = [], 10.0  # RSS at 10, 20, 30 s...: bounded, not growing
    for t, kib in check["rss_trace_kib"]:
        if t >= mark:
            shown.append(f"{kib / 1024:.0f}")
            mark += 10
    if shown:
        print(f"RSS of the check at 10, 20, ... s, MiB: {', '.join(shown)}")
    print(
        f"peak RSS while checking: {peak:.0f} MiB\npeak RSS of the baseline "
        f"(python, import jax, model built, one jitted loss): {base:.0f} MiB\n"
        f"difference: {peak - base:.0f} MiB; {model}; {budget}"
    )
    sizes = dict(h=h, N=n, model_bytes=8 * n, memory_budget=MEMORY_BUDGET)
    return dict(sizes, limit_s=args.memory_seconds, check=check, baseline=baseline)


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
    ]
    for flag, metavar, kind, default, text in options:
        nargs = "+" if default is None else None
        parser.add_argument(
            flag, metavar=metavar, type=kind, default=default, nargs=nargs, help=text
        )
    parser.add_argument("--json", metavar="PATH", help="write all measurements")
    parser.add_argument("--memory", action="store_true", help="measure memory instead")


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
    failed = []
    if args.memory:
        record["memory"] = _memory(args)
    else:
        try:
            import torch
        except ImportError:
            torch = None
        about = "not installed; its columns are left out"
        if torch is not None:
            about = f"{torch.__version__}, {torch.get_num_threads()} threads"
        print("torch:", about)
        targets = args.params or ([] if args.widths else [1e3, 1e4, 1e5])
        widths = sorted({width_for(t) for t in targets} | set(args.widths or []))
        print(
            f"model: tanh MLP [16, h, h, h, 4], batch {_BATCH}, N = 2h² + 23h + 4; "
            f"medians of {args.repeats} repeat(s)\n",
            flush=True,
        )
        # Warm up once so the first method timed does not pay JAX's start-up.
        jax.jit(lambda a: a + 1)(jnp.ones(3)).block_until_ready()
        record["results"] = results = [_measure(h, args, torch) for h in widths]
        print(_table(results, torch is not None))
        print(
            "\ncompile = first call (right after jax.clear_caches()) − repeated call"
            " (below 0 when run-to-run noise exceeds it);"
            "\nratios are loop median / jaxcheck median, first calls with compile;"
            "\nevals/s = 2N / jaxcheck run s; forward+loss = one jitted evaluation."
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    return 1 if failed else 0
