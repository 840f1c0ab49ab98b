"""`fun` is traced once per check: its output shape and the numerical sides
replay that trace (`_engine.traced_fun`), and fall back to `fun` itself for
arguments of other types."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._engine.traced_fun import (
    remembering_traces,
    replaying_op_by_op,
    traced_fun,
)

pytestmark = pytest.mark.core

X = jnp.linspace(0.25, 1.5, 6).reshape(2, 3)


def _counted():
    calls = []

    def f(x, n):
        calls.append(1)
        return {"y": jnp.sin(x) * n, "z": jnp.sum(x**2)}

    return f, calls


def test_the_drop_in_runs_funs_python_once_for_both_numerical_sides():
    f, calls = _counted()
    jaxcheck.check_grads(lambda x: f(x, 2.0), (X,), order=1)
    # One trace (output shape, JVP and VJP numerical sides), then `jax.jvp`
    # and `jax.vjp`, the analytic sides: three runs, not five.
    assert len(calls) == 3


def test_a_wrong_rule_is_caught_through_the_replayed_trace():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x) * x

    f.defjvp(lambda p, t: (f(p[0]), (jnp.cos(p[0]) * p[0]) * t[0]))  # no sin(x)
    with pytest.raises(jaxcheck.GradCheckError, match=r"JVP check failed"):
        jaxcheck.check_grads(f, (X,), order=1, modes=("fwd",))
    with pytest.raises(jaxcheck.GradCheckError, match=r"primals\[0\]\[1, 2\]"):
        jaxcheck.check_grads(f, (X,), order=1, modes=("rev",))


def test_the_stand_in_replays_like_arguments_and_calls_fun_for_others():
    f, calls = _counted()
    stand_in = traced_fun(f, X, 2)
    assert len(calls) == 1
    assert stand_in.out_info["y"].shape == (2, 3)
    np.testing.assert_array_equal(stand_in(X + 1.0, 2)["y"], f(X + 1.0, 2)["y"])
    calls.clear()
    stand_in(X + 1.0, 2)  # replayed: `fun`'s Python does not run
    assert calls == []
    wide = stand_in(X.astype(jnp.float32), 2)  # other dtype: `fun` itself
    assert wide["y"].dtype == jnp.float32 and calls == [1]
    np.testing.assert_allclose(stand_in(X, 3)["y"], jnp.sin(X) * 3)  # other static
    assert calls == [1, 1]


def test_stand_ins_of_one_function_and_types_compare_equal():
    # Compiled programs are keyed on them: a second check of the same function
    # must find the first one's.
    f, _ = _counted()
    assert traced_fun(f, X, 2) == traced_fun(f, X + 1.0, 2)
    assert hash(traced_fun(f, X, 2)) == hash(traced_fun(f, X, 2))
    assert traced_fun(f, X, 2) != traced_fun(f, X, 3)
    with remembering_traces():
        assert traced_fun(f, X, 2) is traced_fun(f, X * 2, 2)


def test_the_replay_is_one_call_when_traced_and_op_by_op_when_eager():
    f, _ = _counted()
    stand_in = traced_fun(f, X, 2)

    def g(x):
        return stand_in(x * 2.0, 2)["y"]

    names = [e.params.get("name") for e in jax.make_jaxpr(g)(X).eqns]
    assert any(str(n).startswith("jaxcheck_replay") for n in names)

    @replaying_op_by_op
    def eager(x):
        return jax.make_jaxpr(jax.vmap(g))(x)

    inlined = eager(X[None])
    names = [str(e.params.get("name")) for e in inlined.eqns]
    assert not any(n.startswith("jaxcheck_replay") for n in names)
    np.testing.assert_allclose(jax.vmap(g)(X[None])[0], jnp.sin(X * 2.0) * 2)


def test_jaxchecks_own_trace_runs_without_jaxs_self_checks_and_restores_them():
    # JAX's internal checks double the cost of tracing jaxcheck's wrappers at
    # every check; the derivatives being checked are still taken under them.
    seen = []

    def loss(x):
        seen.append(jax.config.jax_enable_checks)
        return jnp.sum(jnp.sin(x) ** 2)

    with jax.enable_checks(True):
        jaxcheck.assert_grad(loss, X)
        assert jax.config.jax_enable_checks
    assert seen[0] is False  # the numerical side's trace
    assert True in seen  # the analytic side's
