"""Functions from JAX's own tests, under JAX's test settings (`jax_enable_checks`,
strict dtype promotion, rank promotion that raises) and with 4 CPU devices: a
`fun` containing `shard_map`, one that `device_put`s to another device, and a
jitted `scan` over a closed-over NumPy array are checked by every outcome of
the evaluation rule, and a planted bug inside `shard_map` is caught. Run in a
child process, since the device count is fixed when JAX starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, warnings
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
jax.config.update("jax_enable_checks", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
try:
    from jax import shard_map
except ImportError:  # older JAX
    from jax.experimental.shard_map import shard_map
import jaxcheck
from jaxcheck._engine import jaxpr as _jaxpr

mesh = Mesh(np.array(jax.devices()), ("i",))

def sharded(f):
    return shard_map(f, mesh=mesh, in_specs=P("i"), out_specs=P("i"))

def with_shard_map(x):
    return sharded(lambda y: jnp.sin(y) * 2.0)(x)

def with_device_put(x):
    return jnp.sin(jax.device_put(x, jax.devices()[1]))

C = np.arange(5, dtype=np.float32)

@jax.jit
def with_scan(x):
    def body(c, a):
        return c * jnp.cos(a) + a, c
    c, ys = jax.lax.scan(body, x, C)
    return c + jnp.sum(ys)

@jax.custom_jvp
def wrong_sin(x):
    return jnp.sin(x)

@wrong_sin.defjvp
def _(p, t):
    return wrong_sin(p[0]), 1.01 * jnp.cos(p[0]) * t[0]

x = jnp.linspace(0.1, 1.0, 8, dtype=jnp.float32)
out = {"devices": len(jax.devices())}
for way in ("eager, one point at a time", "eager", "compiled"):
    if way == "eager":
        _jaxpr.ONE_BY_ONE_MAX_DISPATCHES = 0
    if way == "compiled":
        _jaxpr.EAGER_MAX_EQUATIONS = -1
    for name, fun, arg in [
        ("shard_map", with_shard_map, x),
        ("device_put", with_device_put, x),
        ("scan", with_scan, jnp.float32(0.3)),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jaxcheck.check_grads(fun, (arg,), order=2, modes=("fwd", "rev"))
            report = jaxcheck.check_jacobian(fun, arg)
        out[f"{way} {name}"] = [report.ok, report.evaluation]
    try:
        jaxcheck.check_grads(sharded(wrong_sin), (x,), order=1, modes=("fwd",))
        out[f"{way} planted"] = "passed"
    except AssertionError as error:
        out[f"{way} planted"] = str(error).splitlines()[0]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


WAYS = ["eager, one point at a time", "eager", "compiled"]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", ["shard_map", "device_put", "scan"])
def test_is_checked_under_jaxs_test_settings(results, way, name):
    assert results["devices"] == 4
    assert results[f"{way} {name}"] == [True, way]


@pytest.mark.parametrize("way", WAYS)
def test_a_planted_bug_inside_shard_map_is_caught(results, way):
    assert results[f"{way} planted"].startswith("JVP check failed: FAILED")
    assert "out[" in results[f"{way} planted"]
