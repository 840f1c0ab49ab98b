"""What the default run of `tools/bench.py` prints: the machine it ran on and
the table of medians, laid out as the table of docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
import statistics

import jax

# The benchmark table of docs/benchmarks.md has these columns, so a rerun compares
# cell by cell.
_HEAD = (
    "N|jaxcheck first s|jaxcheck repeated s|loop first s|"
    "loop / jaxcheck, first · repeated|torch gradcheck s|torch / jaxcheck first|"
    "fast first s|sample first s|check_grads† first s|torch fast_mode† s|evals/s|"
    "evals/s ÷ forwards/s"
)


def table(results: list[dict], with_torch: bool, modes: list[str]) -> str:
    """The markdown table of medians, one row per model size: docs/benchmarks.md's."""
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


def machine() -> dict:
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
