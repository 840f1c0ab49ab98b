"""Small checks evaluate all their points at once by NumPy, from `fun`'s jaxpr,
where every op has a NumPy counterpart; op by op otherwise, or where NumPy does
not reproduce the op-by-op value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._engine import host_rows as _host_rows
from jaxcheck._engine import numpy_ops as _numpy_ops
from jaxcheck._engine.op_by_op import OpByOp

X = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3) + 0.05


def _mixed(x, y):
    # Broadcasts of a reduced (rank-0) value, a transpose, a select and a
    # reshape: the ops whose axes the rows' axis must not disturb.
    s = jnp.sum(jnp.sin(x) * y)
    z = jnp.where(x > 0, jnp.tanh(x), jnp.exp(x) - 1) + s
    return (z.T**2).reshape(-1) / (1 + jnp.abs(y).T.reshape(-1))


def _rows_by_vmap(fun, args, batched):
    axes = tuple(0 if b else None for b in batched)
    return jax.vmap(fun, in_axes=axes)(*args)


def test_rows_by_numpy_match_vmap_with_batched_and_shared_leaves():
    rows = 5
    xs = X[None] + 0.1 * jnp.arange(rows, dtype=X.dtype)[:, None, None]
    y = jnp.cos(X) + 2.0
    closed = jax.make_jaxpr(_mixed)(X, y)
    assert _numpy_ops.supported(closed.jaxpr)
    (out,) = _host_rows.host_rows(closed, [xs, y], [True, False], rows)
    expected = _rows_by_vmap(_mixed, (xs, y), (True, False))
    assert out.shape == (rows, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_an_op_without_numpy_counterpart_is_not_supported():
    assert not _numpy_ops.supported(jax.make_jaxpr(jax.scipy.special.erf)(X).jaxpr)
    assert not _numpy_ops.supported(jax.make_jaxpr(jnp.cumsum)(X).jaxpr)
    # an integer division has no NumPy counterpart with C's rounding
    ints = jnp.arange(6).reshape(2, 3)
    assert not _numpy_ops.supported(jax.make_jaxpr(jax.lax.div)(ints, ints + 1).jaxpr)


def _count_op_by_op_points(monkeypatch):
    calls = []
    original = OpByOp.__call__

    def counted(self, dynamic):
        calls.append(1)
        return original(self, dynamic)

    monkeypatch.setattr(OpByOp, "__call__", counted)
    return calls


def test_a_small_check_evaluates_its_rows_by_numpy(monkeypatch):
    calls = _count_op_by_op_points(monkeypatch)
    f = lambda x: jnp.sinh(x) * jnp.sum(x)  # noqa: E731
    report = jaxcheck.check_grad(lambda x: jnp.sum(f(x) ** 2), X)
    assert report.ok, str(report)
    # op by op: the base point and the first row of each pass, not 2N rows
    assert 0 < len(calls) <= 6


def test_a_check_with_an_unsupported_op_evaluates_op_by_op(monkeypatch):
    calls = _count_op_by_op_points(monkeypatch)
    loss = lambda x: jnp.sum(jnp.cumsum(jnp.sin(x)) ** 2)  # noqa: E731
    report = jaxcheck.check_grad(loss, X)
    assert report.ok, str(report)
    assert len(calls) >= 2 * X.size  # every row op by op


def test_numpy_disagreeing_with_the_op_by_op_row_falls_back(monkeypatch):
    # A wrong NumPy counterpart is caught by the first row and never trusted:
    # the verdict is the op-by-op one, right for a right gradient ...
    monkeypatch.setitem(_numpy_ops.UNARY, "sin", np.cos)
    calls = _count_op_by_op_points(monkeypatch)
    loss = lambda x: jnp.sum(jnp.sin(x) ** 3)  # noqa: E731
    assert jaxcheck.check_grad(loss, X).ok
    assert len(calls) >= 2 * X.size

    # ... and a planted error is still located.
    @jax.custom_jvp
    def sin3(x):
        return jnp.sin(x) ** 3

    @sin3.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        grad = 3 * jnp.sin(x) ** 2 * jnp.cos(x)
        return sin3(x), jnp.where(x == x[1, 2], 1.1, 1.0) * grad * t

    with pytest.raises(jaxcheck.GradCheckError, match=r"\[1, 2\]"):
        jaxcheck.assert_grad(lambda x: jnp.sum(sin3(x)), X)


def test_a_planted_error_is_located_through_numpy_rows(monkeypatch):
    calls = _count_op_by_op_points(monkeypatch)

    @jax.custom_jvp
    def softplus(x):
        return jnp.log1p(jnp.exp(x))

    @softplus.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        scale = jnp.where(x == x[0, 1], 1.001, 1.0)  # one entry off by 0.1 %
        return softplus(x), scale * t / (1 + jnp.exp(-x))

    with pytest.raises(jaxcheck.GradCheckError, match=r"primals\[0\]\[0, 1\]"):
        jaxcheck.check_grads(softplus, (X,), order=1, modes=("rev",))
    assert len(calls) < 2 * X.size  # the rows came from NumPy


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_a_narrow_dtype_twin_is_evaluated_by_numpy(dtype, monkeypatch):
    # The float64 twin agrees with `fun` in its own dtype, which vouches for
    # its NumPy rows: none of them is evaluated op by op in float64.
    points = []
    original = OpByOp.__call__

    def counted(self, dynamic):
        points.append(np.result_type(*[np.asarray(x).dtype for x in dynamic]))
        return original(self, dynamic)

    monkeypatch.setattr(OpByOp, "__call__", counted)
    x = X.astype(dtype)
    jaxcheck.check_grads(jnp.tanh, (x,), order=2)
    assert points and np.dtype(np.float64) not in points

    @jax.custom_jvp
    def tanh(x):
        return jnp.tanh(x)

    @tanh.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return tanh(x), 1.5 * (1 - jnp.tanh(x) ** 2) * t  # 50 % too large

    with pytest.raises(jaxcheck.GradCheckError, match=r"JVP"):
        jaxcheck.check_grads(tanh, (x,), order=1)
