"""`tools/bench.py --memory`: the peak resident memory of one large check.

The check runs in a child process whose resident set is sampled every 0.1 s (and
read from `getrusage` at its end), next to a baseline child that only imports JAX,
builds the model and evaluates the loss once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from bench_model import MEMORY_BUDGET, child_env, n_params, width_for

_MiB = 1 << 20

_CHILD = """
import resource, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from bench_model import build_model, mlp_loss
h, batch = int(sys.argv[1]), int(sys.argv[4])
params, x, y = jax.tree.map(jnp.asarray, build_model(h, batch=batch))
if sys.argv[2] == "check":
    import jaxcheck, time
    start, shown = time.monotonic(), [0.0]
    def progress(done, total):  # a line a minute, so a stopped run says how far it got
        if time.monotonic() - shown[0] >= 60:
            shown[0] = time.monotonic()
            print("progress", done, total, time.monotonic() - start, flush=True)
    report = jaxcheck.check_grad(
        mlp_loss, params, x, y, memory_budget=int(sys.argv[3]), progress=progress
    )
    ok = report.ok
    print("finished", ok)
else:
    jax.jit(mlp_loss)(params, x, y).block_until_ready()
# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so it
# would report the parent's size at fork when the parent is the larger.
try:
    with open("/proc/self/status") as f:
        peak = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("maxrss_kib", peak)
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
    env = child_env()
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
        # The last progress line wins: evaluations done, announced, seconds.
        done = [float(v) for v in lines.get("progress", "0 0 0").split()]
        if not stopped and child.returncode != 0:
            raise RuntimeError(f"the memory child failed:\n{err.read()[-2000:]}")
    peak = max(peak, int(lines.get("maxrss_kib", 0)))  # catches a peak at exit
    return {
        "peak_rss_bytes": peak * 1024,
        "seconds": elapsed,
        "stopped": stopped,
        "ok": lines.get("finished"),
        "evaluations_done": int(done[0]),
        "evaluations_total": int(done[1]),
        "seconds_at_last_progress": done[2],
        "rss_trace_kib": trace,  # (seconds, KiB) every 0.1 s
    }


def measure_memory(args: argparse.Namespace) -> dict:
    """Peak RSS of a large `check_grad` (stopped at the limit) and of a baseline."""
    h = width_for(args.memory_params)
    n = n_params(h)
    model = f"model {8 * n:,} bytes ({8 * n / _MiB:.1f} MiB)"
    budget = f"memory_budget {MEMORY_BUDGET:,} bytes ({MEMORY_BUDGET / _MiB:.0f} MiB)"
    print(
        f"memory: check_grad, float64 MLP h={h}, N={n:,}, batch "
        f"{args.memory_batch}, {model}, {budget}\n"
    )
    sys.stdout.flush()  # the children take a minute
    batch = str(args.memory_batch)
    baseline = _sample_child([str(h), "baseline", "0", batch], 600)
    check = _sample_child(
        [str(h), "check", str(MEMORY_BUDGET), batch], args.memory_seconds
    )
    if check["stopped"]:
        print(
            f"The check was STOPPED after the {args.memory_seconds:g} s limit, "
            f"unfinished: checking all {n:,} entries takes far longer (hours for 1e6 "
            "on a CPU).\nWhat this shows is that memory stays bounded while it runs."
        )
        done, total = check["evaluations_done"], check["evaluations_total"]
        if done:
            print(
                f"It had done {done:,} of the {total:,} perturbed evaluations "
                f"announced so far after {check['seconds_at_last_progress']:.0f} s."
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
    sizes["batch"] = args.memory_batch
    return dict(sizes, limit_s=args.memory_seconds, check=check, baseline=baseline)
