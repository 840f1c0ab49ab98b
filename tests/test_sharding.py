"""`devices=`: the batch of perturbed evaluations split across devices gives the
same report as one device. Run in a child process with 4 CPU devices
(`--xla_force_host_platform_device_count=4`), since the device count is fixed
when JAX starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import jaxcheck

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
import jaxcheck

rng = np.random.default_rng(0)
params = {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}
params = jax.tree.map(jnp.asarray, params)
x = jnp.asarray(rng.normal(size=(7, 6)))

def loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)

g = jax.grad(loss)(params, x)
wrong = dict(g, w=g["w"].at[2, 3].add(1e-3))
out = {"devices": len(jax.devices())}
for name, kwargs in [
    ("one", dict(devices=jax.devices()[:1])),
    ("all", dict()),  # the default: every local device
]:
    for mode in ("full", "fast", "sample"):
        for label, grad in (("ok", None), ("bug", wrong)):
            r = jaxcheck.check_grad(loss, params, x, grad=grad, mode=mode,
                                    chunk_size=6, **kwargs)
            out[f"{name} {mode} {label}"] = r.to_dict()
print("RESULT", json.dumps(out))
"""


def test_four_devices_give_the_single_device_results():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert out.pop("devices") == 4
    for key, one in out.items():
        if key.startswith("one "):
            _assert_same_report(out["all" + key[3:]], one, key)
    assert out["all full bug"]["ok"] is False
    assert "['w'][2, 3]" in out["all fast bug"]["verdict"]


def _assert_same_report(sharded, single, key):
    """The same verdict, entries and statuses; the numbers equal up to the last
    bits that a batch of another size may round differently in (an entry
    retried at larger steps is evaluated in batches of a few rows)."""
    assert sharded["verdict"].split(" (")[0] == single["verdict"].split(" (")[0], key
    for field in ("ok", "num_entries", "num_failed", "num_kinks", "skipped"):
        assert sharded[field] == single[field], key
    assert sharded["rel_diff"] == pytest.approx(single["rel_diff"], rel=1e-6), key
    for mine, theirs in zip(sharded["worst"], single["worst"], strict=True):
        assert mine["location"] == theirs["location"], key
        assert mine["status"] == theirs["status"], key
        assert mine["numeric"] == pytest.approx(theirs["numeric"], rel=1e-9), key


@pytest.mark.parametrize(
    ("devices", "error", "match"),
    [
        ("cpu", TypeError, "`devices` must hold"),
        (3, TypeError, "`devices` must be None"),
        ([], ValueError, "`devices` must be non-empty"),
    ],
)
def test_devices_are_validated(devices, error, match):
    with pytest.raises(error, match=match):
        jaxcheck.check_grad(lambda p: p.sum(), jax.numpy.ones(3), devices=devices)


def test_a_single_device_is_named_as_such():
    with pytest.raises(TypeError, match="single device"):
        jaxcheck.check_grad(
            lambda p: p.sum(), jax.numpy.ones(3), devices=jax.devices()[0]
        )
