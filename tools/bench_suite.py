"""`tools/bench.py --suite`: many small checks, as a unit-test suite makes them.

A suite checks many small functions, each once. Their arithmetic is nothing; what
counts is what each new function costs to trace, compile (or dispatch op by op)
and run. The suite here is `count` functions with distinct jaxprs, all of one
shape (two 5-vectors, float64), each checked once:

- `jaxcheck.check_grad` (what the pytest fixture runs), every entry;
- `jaxcheck.check_grads`, the drop-in, order 1, reverse mode;
- `jax.test_util.check_grads`, order 1, reverse mode: one random direction.

Each tool runs in a fresh child process, so none inherits another's compiled
programs. `check_grad` runs twice more with a persistent compilation cache in a
new temporary directory: "cold" fills it, "warm" is the next process, as the
second run of a suite under the pytest plugin (whose cache is on by default).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from bench_model import child_env

MAX_SUITE_SIZE = 90  # the pairs of distinct unary functions below
TOOLS = ("check_grads (JAX)", "check_grad", "check_grads (jaxcheck)")

# The child: `python -c _CHILD TOOL COUNT [CACHE_DIR]`; prints the per-call times.
_CHILD = """
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import jaxcheck
from jax.test_util import check_grads
from bench_suite import suite_functions
tool, count = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3:
    jaxcheck.enable_compilation_cache(sys.argv[3])
params = {"a": jnp.linspace(0.1, 0.9, 5), "b": jnp.linspace(-1.0, 1.0, 5)}
jax.jit(lambda a: a + 1)(jnp.ones(3)).block_until_ready()  # JAX's start-up
times, ok = [], True
for fun in suite_functions(count):
    start = time.perf_counter()
    if tool == "check_grad":
        ok &= bool(jaxcheck.check_grad(fun, params))
    elif tool == "check_grads (jaxcheck)":
        jaxcheck.check_grads(fun, (params,), order=1, modes=("rev",))
    else:
        check_grads(fun, (params,), order=1, modes=("rev",))
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "ok": ok}))
"""


def suite_functions(count: int) -> list:
    """`count` small losses of `{"a": (5,), "b": (5,)}`, no two with one jaxpr."""
    import jax
    import jax.numpy as jnp

    unary = [
        jnp.sin,
        jnp.cos,
        jnp.tanh,
        lambda x: jnp.exp(0.3 * x),
        lambda x: jnp.log1p(x**2),
        jnp.arctan,
        jax.nn.softplus,
        lambda x: jnp.sqrt(1.0 + x**2),
        lambda x: x**3,
        jax.nn.sigmoid,
    ]
    pairs = [(f, g) for f in unary for g in unary if f is not g]
    if not 0 < count <= len(pairs):
        raise ValueError(f"`count` must be in 1..{len(pairs)}, got {count}.")

    def make(f, g):
        return lambda p: jnp.sum(f(p["a"]) * g(p["b"]))

    return [make(f, g) for f, g in pairs[:count]]


def _child(tool: str, count: int, cache: str | None = None) -> dict:
    argv = [sys.executable, "-c", _CHILD, tool, str(count)]
    done = subprocess.run(
        argv + ([cache] if cache else []),
        capture_output=True,
        text=True,
        timeout=900,
        env=child_env(),
    )
    if done.returncode:
        raise RuntimeError(f"the {tool} suite failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, run: dict, reference: dict) -> dict[str, Any]:
    median = statistics.median(run["times"])
    total = sum(run["times"])
    return {
        "tool": name,
        "median": median,
        "total": total,
        "median_ratio": median / statistics.median(reference["times"]),
        "total_ratio": total / sum(reference["times"]),
        "ok": run["ok"],
        "times": run["times"],
    }


def measure_suite(count: int) -> list[dict[str, Any]]:
    """Runs the suite through every tool; one row each, ratios to JAX's."""
    runs = {tool: _child(tool, count) for tool in TOOLS}
    with tempfile.TemporaryDirectory() as cache:
        runs["check_grad, cache cold"] = _child("check_grad", count, cache)
        runs["check_grad, cache warm"] = _child("check_grad", count, cache)
    reference = runs[TOOLS[0]]
    return [_row(name, run, reference) for name, run in runs.items()]


def suite_table(rows: list[dict[str, Any]], count: int) -> str:
    """The suite's rows as a Markdown table."""
    lines = [
        f"suite: {count} small functions of two 5-vectors (float64), distinct "
        "jaxprs, each checked once; a fresh process per tool\n",
        "| tool | median per call | total | median / JAX's | total / JAX's |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        wrong = "" if r["ok"] else " (WRONG VERDICT)"
        lines.append(
            f"| {r['tool']}{wrong} | {r['median'] * 1e3:.1f} ms | {r['total']:.2f} s "
            f"| {r['median_ratio']:.2f}× | {r['total_ratio']:.2f}× |"
        )
    return "\n".join(lines)
