"""Parameters that arrive sharded stay sharded: the check runs on their mesh, the
batch of perturbations split over the axes they leave free, and every perturbed
copy keeps the leaf's sharding. Run in a child process with 4 CPU devices, since
the device count is fixed when JAX starts; the child reports what the compiled
chunk programs take as inputs (tracers inside `fun` do not show shardings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jaxcheck
from jaxcheck._engine import directional, evaluate

mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("batch", "model"))
line = Mesh(np.array(jax.devices()), ("x",))
rng = np.random.default_rng(0)
W, b, x = rng.normal(size=(16, 8)), rng.normal(size=8), rng.normal(size=(5, 16))

def loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)

plain = {"w": jnp.asarray(W), "b": jnp.asarray(b)}
g = jax.grad(loss)(plain, x)
wrong = dict(g, w=g["w"].at[3, 5].add(1e-3))
chunks, probes = [], []
run_chunk, run_probe = evaluate._evaluate_chunk_jit, directional._evaluate_points

def chunk_spy(*a):
    chunks.append(a)
    return run_chunk(*a)

def probe_spy(*a):
    probes.append(a)
    return run_probe(*a)

evaluate._evaluate_chunk_jit = chunk_spy
directional._evaluate_points = probe_spy

def _spec(sharding):  # older JAX prints P(...) as PartitionSpec(...)
    return str(getattr(sharding, "spec", sharding)).replace("PartitionSpec(", "P(")

def specs(program, call):
    compiled = program.lower(*call).compile()
    shardings = jax.tree.leaves(compiled.input_shardings[0])
    memory = compiled.memory_analysis()
    return {
        "inputs": [_spec(s) for s in shardings],
        "all_gather": "all-gather" in compiled.as_text(),
        "argument_bytes": memory.argument_size_in_bytes,
        "temp_bytes": memory.temp_size_in_bytes,
    }

out = {}
cases = {
    "plain": plain,
    "2d": dict(plain, w=jax.device_put(W, NamedSharding(mesh, P(None, "model")))),
    "1d": dict(plain, w=jax.device_put(W, NamedSharding(line, P("x", None)))),
}
for name, params in cases.items():
    chunks.clear(); probes.clear()
    reports = {
        "full": jaxcheck.check_grad(loss, params, x),
        "full, wrong": jaxcheck.check_grad(loss, params, x, grad=wrong),
        "fast, wrong": jaxcheck.check_grad(loss, params, x, grad=wrong, mode="fast"),
        "sample": jaxcheck.check_grad(loss, params, x, mode="sample", samples=4),
    }
    out[name] = {k: r.to_dict(worst=3) for k, r in reports.items()}
    mine = [c for c in chunks if c[1].sharding is not None]
    out[name]["chunk"] = specs(run_chunk, mine[0]) if mine else None
    out[name]["batch_axes"] = mine[0][1].batch_axes if mine else None
    mine = [c for c in probes if c[1].sharding is not None]
    out[name]["probe"] = specs(run_probe, mine[0]) if mine else None
# The same W, 64 x 256, in sample mode at a fixed chunk: what a device holds.
big = rng.normal(size=(64, 256)); xb = rng.normal(size=(32, 64))
def big_loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"]) ** 2)
split = NamedSharding(mesh, P(None, "model"))
for name, w in [("one device", jnp.asarray(big)),
                ("sharded", jax.device_put(big, split))]:
    chunks.clear()
    jaxcheck.check_grad(big_loss, {"w": w}, xb, mode="sample", samples=64,
                        chunk_size=64)
    out["memory, " + name] = specs(run_chunk, chunks[-1])
errors = {}
for name, call in [
    ("devices", lambda: jaxcheck.check_grad(loss, cases["2d"], x,
                                            devices=jax.devices()[:1])),
    ("meshes", lambda: jaxcheck.check_grad(loss, dict(cases["2d"],
        b=jax.device_put(b, NamedSharding(line, P("x")))), x)),
]:
    try:
        call()
        errors[name] = None
    except ValueError as error:
        errors[name] = str(error)
out["errors"] = errors
print("@@RESULT@@" + json.dumps(out) + "@@END@@")
"""


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout.split("@@RESULT@@")[1].split("@@END@@")[0]
    return json.loads(text)


@pytest.mark.parametrize("mesh", ["2d", "1d"])
def test_sharded_params_give_the_unsharded_verdicts(result, mesh):
    for check in ("full", "full, wrong", "fast, wrong", "sample"):
        sharded, plain = result[mesh][check], result["plain"][check]
        assert sharded["ok"] == plain["ok"], check
        assert sharded["num_entries"] == plain["num_entries"], check
    assert result[mesh]["full"]["ok"] and result[mesh]["sample"]["ok"]
    for check in ("full, wrong", "fast, wrong"):
        report = result[mesh][check]
        assert not report["ok"]
        assert report["worst"][0]["location"] == "['w'][3, 5]"
        assert "in ['w']" in report["verdict"]


def test_the_chunk_program_keeps_the_leaf_sharded_on_a_2d_mesh(result):
    chunk = result["2d"]["chunk"]
    # dynamic leaves (b, w, x), then the rows: indices and values.
    assert chunk["inputs"][1] == "P(None, 'model')"
    assert chunk["inputs"][3:] == ["P('batch',)"] * 2
    assert not chunk["all_gather"]
    assert result["2d"]["batch_axes"] == ["batch"]


def test_fast_mode_probes_are_whole_copies_sharded_like_the_leaf(result):
    probe = result["2d"]["probe"]
    assert probe["inputs"][-1] == "P('batch', None, 'model')"
    assert not probe["all_gather"]


def test_a_mesh_with_no_free_axis_replicates_the_batch(result):
    chunk = result["1d"]["chunk"]
    assert chunk["inputs"][1] == "P('x', None)"
    assert chunk["inputs"][3:] == ["P(None,)"] * 2
    assert result["1d"]["batch_axes"] == []
    assert not chunk["all_gather"]


def test_a_device_holds_half_the_sharded_leaf(result):
    one, sharded = result["memory, one device"], result["memory, sharded"]
    w_bytes = 64 * 256 * 8
    assert one["argument_bytes"] - sharded["argument_bytes"] >= 0.45 * w_bytes
    # The batch is split over 2 devices instead of 4, each holding half of every
    # copy: the temporaries per device stay the same.
    assert sharded["temp_bytes"] <= 1.05 * one["temp_bytes"]


def test_what_cannot_stay_sharded_is_refused_by_name(result):
    assert "`devices`" in result["errors"]["devices"]
    assert "different meshes" in result["errors"]["meshes"]
