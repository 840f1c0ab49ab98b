"""`check_grad(..., resume=dir)`: a check killed (SIGKILL) or interrupted
(Ctrl-C) part-way resumes from its record and gives the report of an
uninterrupted run; a record of a different check is refused."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import jaxcheck

# argv: record directory, then "kill" / "interrupt" (after a few chunks) or
# "resume" (finish from the record, then run the same check without one).
_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where the test
    # runner's worker that started this process ignores SIGINT (inherited).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxcheck

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)

    params = {"w": jnp.linspace(-1.0, 1.0, 60).reshape(6, 10), "b": jnp.ones(10)}
    x = jnp.linspace(-2.0, 2.0, 18).reshape(3, 6)
    directory, how = sys.argv[1], sys.argv[2]
    chunks = []

    def progress(done, total):
        chunks.append(done)
        if how != "resume" and len(chunks) == 5:
            os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGINT)

    options = dict(chunk_size=8, progress=progress)
    resumed = jaxcheck.check_grad(loss, params, x, resume=directory, **options)
    plain = jaxcheck.check_grad(loss, params, x, **options)
    print(json.dumps({"resumed": resumed.to_dict(), "plain": plain.to_dict(),
                      "note": resumed.note}))
    """
)


def _child(directory, how):
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), how],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.parametrize(
    "how, stopped_by", [("kill", -signal.SIGKILL), ("interrupt", None)]
)
def test_a_stopped_check_resumes_and_gives_the_uninterrupted_report(
    tmp_path, how, stopped_by
):
    stopped = _child(tmp_path, how)
    assert stopped.returncode != 0, stopped.stdout
    if stopped_by is not None:
        assert stopped.returncode == stopped_by
    else:
        assert "KeyboardInterrupt" in stopped.stderr
    recorded = sorted(p.name for p in tmp_path.iterdir())
    assert "manifest.json" in recorded
    assert len([p for p in recorded if p.endswith(".npy")]) >= 4
    assert not [p for p in recorded if p.endswith(".part")]  # no torn chunk

    done = _child(tmp_path, "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = int(out["note"].split("resumed: ")[1].split()[0])
    assert loaded >= 4, out["note"]  # the chunks finished before the stop
    resumed, plain = out["resumed"], out["plain"]
    assert resumed.pop("note") != plain.pop("note")
    assert resumed == plain  # every number, verdict and entry


def loss(p, x):
    return jnp.sum(jnp.sin(x @ p["w"]))


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)}
X = jnp.linspace(0.0, 1.0, 8).reshape(2, 4)


def test_a_second_run_loads_every_chunk_and_a_wrong_gradient_still_fails(tmp_path):
    first = jaxcheck.check_grad(loss, PARAMS, X, resume=tmp_path)
    again = jaxcheck.check_grad(loss, PARAMS, X, resume=tmp_path)
    assert first.ok and again.ok
    assert "0 evaluated" in again.note and "0 chunks from" in first.note
    wrong = {"w": PARAMS["w"] * 0 + 1.0}
    with pytest.raises(jaxcheck.GradCheckError, match=r"in \['w'\]"):
        jaxcheck.assert_grad(loss, PARAMS, X, grad=wrong, resume=tmp_path)


@pytest.mark.parametrize(
    "change, differs",
    [
        (dict(args=(2 * X,)), "params and args"),
        (dict(fun=lambda p, x: jnp.sum(jnp.cos(x @ p["w"]))), "program of `fun`"),
        (dict(options=dict(method="central4")), "options"),
    ],
)
def test_a_record_of_another_check_is_refused(tmp_path, change, differs):
    jaxcheck.check_grad(loss, PARAMS, X, resume=tmp_path)
    fun = change.get("fun", loss)
    args = change.get("args", (X,))
    with pytest.raises(ValueError, match=f"different check \\(its {differs} differ"):
        jaxcheck.check_grad(
            fun, PARAMS, *args, resume=tmp_path, **change.get("options", {})
        )


def test_bad_resume_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="`resume` must be a directory path"):
        jaxcheck.check_grad(loss, PARAMS, X, resume=3)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="`resume` .* is not a directory"):
        jaxcheck.check_grad(loss, PARAMS, X, resume=tmp_path / "file")
    with pytest.raises(TypeError, match="check_hessian.. does not take .* `resume`"):
        jaxcheck.check_hessian(loss, PARAMS, X, resume=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_fun_with_host_callbacks_is_refused(tmp_path):
    import numpy as np

    def fun(p, x):
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        host = jax.pure_callback(np.sin, shape, x, vmap_method="sequential")
        return jnp.sum(p["w"] ** 2) + 0.0 * jnp.sum(host)

    with pytest.raises(ValueError, match="`resume` cannot tell host callbacks"):
        jaxcheck.check_grad(fun, PARAMS, X, grad={"w": 2 * PARAMS["w"]},
                            resume=tmp_path)  # fmt: skip
