"""Checks under `jax.distributed`: two processes with two CPU devices each share
the perturbed evaluations (each builds and evaluates only its own rows), end
with the same report as one process, refuse to run when their arguments differ,
and fail, not hang, when a peer dies. Every wait has a timeout."""

import inspect
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck

# argv: process id, port, scenario ("checks", "sharded", "disagree", "dead peer").
_CHILD = textwrap.dedent(
    """
    import inspect, json, os, sys, time
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_x64", True)
    pid, port, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # JAX 0.7 added the heartbeat and shutdown timeouts.
    timeouts = dict(initialization_timeout=30, heartbeat_timeout_seconds=5,
                    shutdown_timeout_seconds=5)
    accepted = inspect.signature(jax.distributed.initialize).parameters
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=2, process_id=pid,
        **{k: v for k, v in timeouts.items() if k in accepted},
    )
    import jax.numpy as jnp
    import jaxcheck
    from jaxcheck._engine import evaluate as _evaluate
    from tests_multiprocess_model import loss, params, x, wrong

    calls = []
    compiled_chunk = _evaluate._evaluate_chunk_jit

    def spy(problem, block, dynamic, indices, values):
        calls.append((problem, block, dynamic, indices, values))
        return compiled_chunk(problem, block, dynamic, indices, values)

    _evaluate._evaluate_chunk_jit = spy
    if scenario == "dead peer":
        if pid == 1:
            os._exit(3)  # gone before the check
        jaxcheck.check_grad(loss, params, x)
        sys.exit(0)
    if scenario == "disagree":
        try:
            jaxcheck.check_grad(loss, params, x * (1 + pid))
        except ValueError as error:
            out = json.dumps({"error": str(error)})
            print("@@RESULT@@" + out + "@@END@@", flush=True)
        sys.exit(0)
    if scenario == "sharded":
        # The model axis spans the processes: each holds half of `w`.
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        import numpy as np
        grid = np.array(jax.devices()).reshape(2, 2).T
        mesh = Mesh(grid, ("batch", "model"))
        w = jax.make_array_from_callback(
            params["w"].shape, NamedSharding(mesh, P(None, "model")),
            lambda i: np.asarray(params["w"])[i])
        sharded = dict(params, w=w)
        out = {"held": sorted({str(s.index) for s in w.addressable_shards})}
        for name, kwargs in [("full", {}), ("full, wrong", {"grad": wrong}),
                             ("fast, wrong", {"grad": wrong, "mode": "fast"})]:
            report = jaxcheck.check_grad(loss, sharded, x, **kwargs)
            out[name] = report.to_dict(worst=50)
        mine = [c for c in calls if c[1].sharding is not None]
        text = compiled_chunk.lower(*mine[-1]).compile()
        spec = str(text.input_shardings[0][0][1].spec)  # older JAX: PartitionSpec(...)
        out["w_input"] = spec.replace("PartitionSpec(", "P(")
        out["all_gather"] = "all-gather" in text.as_text()
        print("@@RESULT@@" + json.dumps(out) + "@@END@@", flush=True)
        jax.distributed.shutdown()
        sys.exit(0)
    out = {}
    start = time.perf_counter()
    for name, kwargs in [("full", {}), ("full, wrong", {"grad": wrong}),
                         ("fast, wrong", {"grad": wrong, "mode": "fast"}),
                         ("sample", {"mode": "sample", "samples": 4})]:
        out[name] = jaxcheck.check_grad(loss, params, x, **kwargs).to_dict(worst=50)
    out["seconds"] = time.perf_counter() - start
    problem, block, dynamic, indices, values = calls[-1]
    out["addressable"] = [a.is_fully_addressable for _, _, _, *rows in calls
                          for a in rows]
    text = compiled_chunk.lower(problem, block, dynamic, indices, values).compile()
    out["all_gather"] = "all-gather" in text.as_text()
    out["input_devices"] = [len(indices.sharding.device_set)]
    print("@@RESULT@@" + json.dumps(out) + "@@END@@", flush=True)
    jax.distributed.shutdown()
    """
)

_MODEL = textwrap.dedent(
    """
    import jax, jax.numpy as jnp

    def loss(params, x):
        return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)

    params = {"w": jnp.linspace(-1.0, 1.0, 24).reshape(4, 6), "b": jnp.ones(6) / 3}
    x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    grad = jax.grad(loss)(params, x)
    wrong = {"w": grad["w"].at[2, 5].multiply(1.001), "b": grad["b"]}
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, scenario, timeout=90):
    """Runs the two processes; returns (returncode, stdout, stderr) of each."""
    (tmp_path / "tests_multiprocess_model.py").write_text(_MODEL)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    port = str(_free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(pid), port, scenario],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for pid in (0, 1)
    ]
    results = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in processes:
            p.kill()
    return results


def _last_json(out):
    # gloo writes to the same stdout, at any time: the result is marked
    return json.loads(re.findall(r"@@RESULT@@(.*?)@@END@@", out, flags=re.S)[-1])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    results = _launch(tmp_path_factory.mktemp("mp"), "checks")
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return [_last_json(out) for _, out, _ in results]


def _model():
    namespace = {}
    exec(_MODEL, namespace)
    return namespace


@pytest.mark.parametrize("name", ["full", "full, wrong", "fast, wrong", "sample"])
def test_two_processes_end_with_the_report_of_one(two_processes, name):
    first, second = (out[name] for out in two_processes)
    assert first == second  # every process holds the same report
    m = _model()
    kwargs = {
        "full": {},
        "full, wrong": {"grad": m["wrong"]},
        "fast, wrong": {"grad": m["wrong"], "mode": "fast"},
        "sample": {"mode": "sample", "samples": 4},
    }[name]
    single = jaxcheck.check_grad(m["loss"], m["params"], m["x"], **kwargs)
    single = single.to_dict(worst=50)
    # Same verdict; the numbers may differ in their last bits (rows evaluated in
    # batches of other sizes), within each entry's band.
    assert first["ok"] == single["ok"]
    assert first["verdict"].split(" (")[0] == single["verdict"].split(" (")[0]
    mine = {e["location"]: e for e in first["worst"]}
    theirs = {e["location"]: e for e in single["worst"]}
    assert mine.keys() == theirs.keys()  # every compared entry (at most 30)
    for where, entry in theirs.items():
        assert mine[where]["status"] == entry["status"]
        assert abs(mine[where]["numeric"] - entry["numeric"]) <= entry["tolerance"]
    if name != "full":
        assert first["ok"] is (name == "sample")
    if "wrong" in name:
        assert "['w'][2, 5]" in first["verdict"]


def test_the_work_was_split_between_the_processes(two_processes):
    for out in two_processes:
        assert out["addressable"] and not any(out["addressable"])
        assert out["input_devices"] == [4]
        assert not out["all_gather"]  # no process gathers the perturbed rows


def test_a_leaf_sharded_across_the_processes_stays_sharded(tmp_path):
    results = _launch(tmp_path, "sharded")
    for code, _, err in results:
        assert code == 0, err[-3000:]
    first, second = (_last_json(out) for _, out, _ in results)
    # Each process holds one half of `w`'s columns, not the whole leaf.
    assert first["held"] != second["held"] and len(first["held"]) == 1
    for name in ("full", "full, wrong", "fast, wrong"):
        assert first[name] == second[name]
        assert first[name]["ok"] is (name == "full")
    assert "['w'][2, 5]" in first["full, wrong"]["verdict"]
    assert "['w'][2, 5]" in first["fast, wrong"]["verdict"]
    assert first["w_input"] == "P(None, 'model')"
    assert not first["all_gather"]


def test_processes_that_pass_different_arguments_are_told(tmp_path):
    results = _launch(tmp_path, "disagree")
    for code, out, err in results:
        assert code == 0, err[-3000:]
        message = _last_json(out)["error"]
        assert "disagree on its params and args" in message


@pytest.mark.skipif(
    "heartbeat_timeout_seconds"
    not in inspect.signature(jax.distributed.initialize).parameters,
    reason="JAX before 0.7 cannot shorten its 100 s heartbeat timeout",
)
def test_a_dead_peer_fails_the_check_instead_of_hanging(tmp_path):
    (code0, _, err0), (code1, _, _) = _launch(tmp_path, "dead peer", timeout=60)
    assert code1 == 3
    assert code0 != 0, err0[-2000:]


def test_one_process_is_not_multiprocess():
    from jaxcheck._runtime.multiprocess import agree, gather, is_multiprocess

    assert not is_multiprocess()
    agree({"anything": "differs nowhere"})  # a no-op with one process
    np.testing.assert_array_equal(gather(jnp.arange(3.0)), [0.0, 1.0, 2.0])
    assert jax.process_count() == 1
