"""Bounded memory: a check of N = 2e5 parameters, whose dense 2N × N perturbation
matrix would take 640 GB in float64, runs in chunks within its memory budget.

Every chunk of a block is the same compiled program on a batch of the same size,
so the memory of the first few hundred chunks is the memory of the whole check;
the script stops there to keep the suite fast (a full element-wise check of 2e5
entries costs 4e5 evaluations of an O(N) function). `tools/bench.py --memory`
measures whole runs.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import jaxcheck
    from jaxcheck._engine import evaluate as _evaluate

    n, budget, stop_after = (int(a) for a in sys.argv[1:])
    params = {"w": jnp.linspace(-1.0, 1.0, n)}
    loss = lambda p: jnp.sum(jnp.sin(p["w"]) ** 2)
    jax.block_until_ready(jax.grad(loss)(params))
    chunks = []
    run_chunk = _evaluate._evaluate_chunk_jit

    class Stop(Exception):
        pass

    def counted(*a):
        out = jax.block_until_ready(run_chunk(*a))
        if not chunks:  # compiled and run once: the baseline from here on
            analysis = run_chunk.lower(*a).compile().memory_analysis()
            chunks.append(a[3].shape[0])
            chunks.append(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes)
            chunks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        chunks.append(None)
        if len(chunks) - 3 >= stop_after:
            raise Stop
        return out

    _evaluate._evaluate_chunk_jit = counted
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        jaxcheck.check_grad(loss, params, memory_budget=budget)
    except Stop:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_first_kib": chunks[2],
                      "peak_kib": peak, "chunk": chunks[0], "xla_bytes": chunks[1],
                      "chunks": len(chunks) - 3}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB")
def test_a_check_of_2e5_parameters_stays_within_its_memory_budget():
    n, budget = 200_000, 64 << 20
    # One malloc arena: otherwise glibc's per-thread arenas keep freed chunk
    # buffers mapped, and RSS measures the allocator's slack, not the check.
    env = dict(os.environ, MALLOC_ARENA_MAX="1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n), str(budget), "150"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=env,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    dense_bytes = 2 * n * n * 8
    assert dense_bytes > 600e9
    # A chunk of evaluations holds a perturbed copy of θ per evaluation; the
    # budget bounds the chunk, and with it the memory, from the first chunk on.
    assert seen["chunk"] * 2 * n * 8 <= budget
    assert seen["xla_bytes"] <= budget, seen  # what XLA allocates for a chunk
    assert seen["chunks"] >= 150
    growth = (seen["peak_kib"] - seen["before_kib"]) * 1024
    steady = (seen["peak_kib"] - seen["after_first_kib"]) * 1024
    assert growth < budget + (256 << 20), seen  # compiling costs a fixed amount
    assert steady < budget, seen
