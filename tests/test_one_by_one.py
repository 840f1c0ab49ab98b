"""Small checks evaluate their points one at a time, op by op, from the jaxpr
traced once; in a narrow dtype the float64 twin is then used only where the
native differences do not settle a verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import custom_vjp_sin

import jaxcheck
from jaxcheck._engine import jaxpr as _jaxpr
from jaxcheck._engine.evaluate import CompiledPoint
from jaxcheck._engine.numerical import prepare
from jaxcheck._engine.op_by_op import run_jaxpr

X = jnp.linspace(-1.0, 1.0, 6)


@jax.custom_jvp
def _cube(x):
    return x**3


@_cube.defjvp
def _cube_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _cube(x), 3 * x**2 * t


@jax.custom_vjp
def _softsign(x):
    return x / (1 + jnp.abs(x))


_softsign.defvjp(lambda x: (_softsign(x), x), lambda x, c: (c / (1 + jnp.abs(x)) ** 2,))


def _nested(x):
    inner = jax.jit(lambda y: jnp.where(y > 0, _cube(y), _softsign(y)))
    return jnp.sum(jax.checkpoint(jnp.sin)(inner(x)) * jnp.arange(1.0, 7.0))


def test_the_interpreter_inlines_calls_and_matches_fun():
    closed = jax.make_jaxpr(_nested)(X)
    names = {e.primitive.name for e in closed.jaxpr.eqns}
    assert names & {"jit", "pjit"} and names & {"remat2", "checkpoint"}
    (value,) = run_jaxpr(closed.jaxpr, closed.consts, [X])
    np.testing.assert_allclose(value, _nested(X), rtol=0, atol=0)


def test_primitives_are_called_through_jaxs_own_eager_programs():
    # Op by op, a primitive is called by the program JAX's eager dispatch
    # compiled for it (shared with the analytic side), not re-bound; a
    # primitive without that dispatch (here a call) is bound or inlined.
    from jaxcheck._engine.op_by_op import _fast_call

    closed = jax.make_jaxpr(lambda x: jnp.sin(x) * x)(X)
    calls = [_fast_call(eqn) for eqn in closed.jaxpr.eqns]
    assert all(call is not None for call in calls)
    np.testing.assert_array_equal(calls[0](X), jnp.sin(X))
    nested = jax.make_jaxpr(_nested)(X)
    jits = [e for e in nested.jaxpr.eqns if e.primitive.name in ("jit", "pjit")]
    assert jits and _fast_call(jits[0]) is None


def test_a_small_check_traces_fun_once_and_compiles_no_batch(monkeypatch):
    traces = []

    def loss(x):
        traces.append(1)
        return jnp.sum(jnp.tanh(x) ** 2)

    report = jaxcheck.check_grad(
        loss, X, grad=jax.grad(lambda x: jnp.sum(jnp.tanh(x) ** 2))
    )
    assert report.ok, str(report)
    assert len(traces) == 1  # the trace of `prepare`; every point from its jaxpr
    monkeypatch.setattr(_jaxpr, "ONE_BY_ONE_MAX_OPS", 0)
    monkeypatch.setattr(_jaxpr, "ONE_POINT_MAX_EVALUATIONS", 0)
    batched = jaxcheck.check_grad(
        loss, X, grad=jax.grad(lambda x: jnp.sum(jnp.tanh(x) ** 2))
    )
    assert len(traces) > 2  # the batched program traces `fun` again
    np.testing.assert_allclose(
        report.comparison.numeric, batched.comparison.numeric, rtol=1e-9
    )


def test_a_larger_check_compiles_funs_own_program_once(monkeypatch):
    # Past the op-by-op budget, the points call `fun`'s own program, compiled
    # once for every pass from the one trace: never traced per point or per
    # batch size, and a planted bug is still located.
    monkeypatch.setattr(_jaxpr, "ONE_BY_ONE_MAX_OPS", 0)
    traces = []

    def loss(x):
        traces.append(1)
        return _nested(x)

    assert jaxcheck.check_grad(loss, X, grad=jax.grad(_nested)).ok
    assert len(traces) == 1  # one trace; the program compiles from it
    prepared = prepare(loss, X, (), method="central", eps=None, chunk_size=None,
                       memory_budget=1 << 30)  # fmt: skip
    assert isinstance(prepared.point, CompiledPoint)

    def wrong_grad(x):
        return jax.grad(_nested)(x).at[4].multiply(1.01)

    with pytest.raises(jaxcheck.GradCheckError, match=r"worst params\[4\]"):
        jaxcheck.assert_grad(loss, X, grad=wrong_grad)


def test_one_by_one_locates_a_planted_bug_in_nested_rules():
    def wrong_grad(x):
        return jax.grad(_nested)(x).at[3].multiply(1.01)

    with pytest.raises(jaxcheck.GradCheckError, match=r"worst params\[3\]"):
        jaxcheck.assert_grad(_nested, X, grad=wrong_grad)
    assert jaxcheck.check_grad(_nested, X).ok


def _float32(x):
    return jnp.asarray(x, jnp.float32)


def test_float32_drop_in_settles_natively_without_the_twin():
    report = jaxcheck.check_vjp(jnp.sin, (_float32(X),), atol=1e-3, rtol=1e-3)
    assert report.ok, str(report)
    assert "float64 twin" not in report.note


def test_the_twin_judges_only_what_native_differences_leave_open():
    # An offset of 1e3 leaves float32 differences too coarse to settle the
    # default float32 floors: the twin judges those entries, and its verdicts
    # are the report's.
    def loss(x):
        return jnp.sum(jnp.sin(3 * x)) + 1e3

    report = jaxcheck.check_grad(loss, _float32(X))
    assert report.ok, str(report)
    assert "differences in a float64 twin of `fun` for the" in report.note

    def wrong(x):
        return (jnp.cos(3 * x) * 3).at[4].multiply(1.001)

    with pytest.raises(jaxcheck.GradCheckError, match=r"worst params\[4\]"):
        jaxcheck.assert_grad(loss, _float32(X), grad=wrong)


def test_a_wrong_float32_vjp_is_caught_with_or_without_the_twin():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), x), lambda x, c: (1.02 * jnp.cos(x) * c,))
    with pytest.raises(jaxcheck.GradCheckError, match=r"VJP check failed"):
        jaxcheck.check_grads(f, (_float32(X),), order=1, modes=("rev",))


def test_output_shapes_are_traced_once_per_types_within_a_drop_in_call():
    from jaxcheck._engine.traced_fun import output_shape, remembering_traces

    traces = []

    def f(x, n):
        traces.append(1)
        return jnp.sin(x) * n

    with remembering_traces():
        first = output_shape(f, X, 2)
        assert output_shape(f, X + 1.0, 2) is first
        assert len(traces) == 1
        output_shape(f, X.astype(jnp.float32), 2)  # new types: traced again
        output_shape(f, X, 3)  # a new static value: traced again
        assert len(traces) == 3
    output_shape(f, X, 2)  # outside: nothing remembered
    assert len(traces) == 4


def test_host_twins_of_the_wrappers_agree_with_their_programs():
    # One by one, jaxcheck's own wrappers run as NumPy on the host; compiled,
    # as programs. Both must give the same numbers.
    from jaxcheck._checks.jvp import Directional
    from jaxcheck._checks.vjp import Pairing
    from jaxcheck._engine.numerical_jacobian import VectorFun
    from jaxcheck._engine.op_by_op import run_jaxpr

    def f(z, x):
        return {"a": jnp.sin(z) * x[0], "b": jnp.stack([x, x**2])}

    z = jnp.array([0.5 + 1.0j, -1.5 + 0.25j])
    x = jnp.linspace(0.5, 1.5, 3)
    c = [jnp.array([1.0 - 2.0j, 0.0 + 0.0j]), jnp.ones((2, 3)) * 0.5]
    for wrapper, args in [
        (lambda z, x, c: Pairing(f)((z, x), c), (z, x, c)),
        (lambda z, x: VectorFun(Directional(f))(0.25, (z, x), [z, x]), (z, x)),
    ]:
        closed = jax.make_jaxpr(wrapper)(*args)
        leaves = jax.tree_util.tree_leaves(args)
        (one_by_one,) = run_jaxpr(closed.jaxpr, closed.consts, leaves)
        np.testing.assert_allclose(one_by_one, jax.jit(wrapper)(*args), rtol=1e-13)


def test_a_wrong_complex_vjp_is_caught_one_by_one():
    z = jnp.array([0.5 + 1.0j, -1.5 + 0.25j, 0.1 - 0.3j])
    right = custom_vjp_sin(jnp.ones(3))
    jaxcheck.check_grads(right, (z,), order=1, modes=("rev",))
    wrong = custom_vjp_sin(jnp.array([1.0, 1.0, 1.05]))
    with pytest.raises(
        jaxcheck.GradCheckError, match=r"1 of 3 entries differ.*primals\[0\]\[2\]"
    ):
        jaxcheck.check_grads(wrong, (z,), order=1, modes=("rev",))
