"""A gradient check shared by several processes, as on a multi-GPU node, a TPU
slice or a SLURM job: every process runs this same script, and each evaluates
its share of the perturbed points on its own devices.

On one machine, with no arguments, it launches two processes itself, each with
two CPU devices, talking through 127.0.0.1 (CPU collectives through gloo):

    python examples/multiprocess.py

On a cluster, run it once per process. `jax.distributed.initialize()` with no
arguments detects SLURM, Open MPI and Cloud TPU pods; anywhere else pass
`--coordinator HOST:PORT --num-processes N --process-id I` (the same coordinator
for all, the address of process 0).
"""

import argparse
import inspect
import socket
import subprocess
import sys


def worker(args: argparse.Namespace) -> None:
    import jax

    if args.cpu_devices:  # a stand-in for accelerators, on one machine
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_x64", True)
    where = {}
    if args.coordinator:
        where = dict(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    # Short timeouts: a peer that dies makes the others fail within a minute
    # (JAX before 0.7 has no heartbeat_timeout_seconds: there it takes 100 s).
    timeouts = dict(initialization_timeout=60, heartbeat_timeout_seconds=30)
    accepted = inspect.signature(jax.distributed.initialize).parameters
    timeouts = {k: v for k, v in timeouts.items() if k in accepted}
    jax.distributed.initialize(**where, **timeouts)

    import jax.numpy as jnp

    import jaxcheck

    def loss(params, x):
        hidden = jnp.tanh(x @ params["w1"] + params["b1"])
        return jnp.mean((hidden @ params["w2"]) ** 2)

    key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
    params = {
        "w1": jax.random.normal(key1, (8, 16)) / 3,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(key2, (16, 4)) / 4,
    }
    x = jax.random.normal(key3, (32, 8))
    # Every process calls the same check with the same arguments; by default the
    # perturbed evaluations are spread over all devices of all processes.
    report = jaxcheck.check_grad(loss, params, x)
    if jax.process_index() == 0:
        print(f"{jax.process_count()} processes, {len(jax.devices())} devices")
        print(report)
    assert report.ok, report.verdict
    jax.distributed.shutdown()


def launch_locally(n_processes: int = 2, cpu_devices: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, __file__, "--coordinator", f"127.0.0.1:{port}"]
    command += ["--num-processes", str(n_processes), "--cpu-devices", str(cpu_devices)]
    processes = [
        subprocess.Popen(
            command + ["--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n_processes)
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for i, (p, (_, err)) in enumerate(zip(processes, outputs, strict=True)):
        if p.returncode:
            raise SystemExit(f"process {i} failed:\n{err[-3000:]}")
    print(outputs[0][0], end="")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="HOST:PORT of process 0")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--cpu-devices", type=int, help="CPU devices per process")
    parser.add_argument("--worker", action="store_true", help="run as one process")
    arguments = parser.parse_args()
    if arguments.coordinator or arguments.worker:
        worker(arguments)
    else:
        launch_locally()
