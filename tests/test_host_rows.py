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
    assert not _numpy_ops.supported(jax.make_jaxpr(jnp.argsort)(X).jaxpr)
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
    loss = lambda x: jnp.sum(jax.lax.erf(jnp.sin(x)) ** 2)  # noqa: E731
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
    # in the native dtype too, the rows come from NumPy: op by op, only the
    # base points and each pass's first row (2N rows a VJP check otherwise)
    assert len(points) < 2 * x.size

    @jax.custom_jvp
    def tanh(x):
        return jnp.tanh(x)

    @tanh.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return tanh(x), 1.5 * (1 - jnp.tanh(x) ** 2) * t  # 50 % too large

    with pytest.raises(jaxcheck.GradCheckError, match=r"JVP"):
        jaxcheck.check_grads(tanh, (x,), order=1)


@pytest.mark.parametrize("batched", [(True, False), (False, True), (True, True)])
def test_dot_general_rows_match_vmap(batched):
    # A batch dimension, a contraction and free dimensions on both sides.
    def f(a, b):
        dims = (((2,), (1,)), ((0,), (0,)))
        return jax.lax.dot_general(jnp.sin(a), b, dims)

    a = jnp.arange(24.0).reshape(2, 3, 4) / 10
    b = jnp.cos(jnp.arange(40.0)).reshape(2, 4, 5)
    rows = 3
    args = [
        x[None] + 0.01 * jnp.arange(rows, dtype=x.dtype).reshape(-1, 1, 1, 1)
        if on
        else x
        for x, on in zip((a, b), batched, strict=True)
    ]
    closed = jax.make_jaxpr(f)(a, b)
    assert _numpy_ops.supported(closed.jaxpr)
    (out,) = _host_rows.host_rows(closed, args, list(batched), rows)
    np.testing.assert_allclose(out, _rows_by_vmap(f, args, batched), rtol=1e-13)


_LAX_OPS = [
    jax.lax.neg, jax.lax.abs, jax.lax.sign, jax.lax.floor, jax.lax.ceil,
    jax.lax.exp, jax.lax.exp2, jax.lax.log, jax.lax.log1p, jax.lax.expm1,
    jax.lax.sqrt, jax.lax.rsqrt, jax.lax.cbrt, jax.lax.square, jax.lax.sin,
    jax.lax.cos, jax.lax.tan, jax.lax.asin, jax.lax.acos, jax.lax.atan,
    jax.lax.sinh, jax.lax.cosh, jax.lax.tanh, jax.lax.asinh, jax.lax.atanh,
    jax.lax.logistic, lambda x: jax.lax.acosh(1 + x),
    lambda x: jax.lax.round(x * 4, jax.lax.RoundingMethod.AWAY_FROM_ZERO),
    lambda x: jax.lax.round(x * 4, jax.lax.RoundingMethod.TO_NEAREST_EVEN),
    lambda x: jax.lax.integer_pow(x, -3), lambda x: jax.lax.pow(x, x + 1),
    lambda x: jax.lax.rem(x * 7, x + 2), lambda x: jax.lax.atan2(x, x - 0.3),
    lambda x: jax.lax.max(x, 0.5 - x), lambda x: jax.lax.min(x, 0.5 - x),
    lambda x: jax.lax.complex(x, 2 * x), lambda x: jnp.abs(x + 1j * x**2),
    lambda x: jnp.exp(x * (1 - 2j)).imag, lambda x: jnp.sqrt(x - 1j).real,
    lambda x: jax.lax.clamp(0.3, x, 0.6), jnp.cumsum,
    lambda x: jax.lax.cumprod(x, reverse=True), jax.lax.cummax,
    lambda x: jax.lax.cummin(x, reverse=True), lambda x: jax.lax.rev(x, (0,)),
]  # fmt: skip


@pytest.mark.parametrize("op", _LAX_OPS)
def test_each_numpy_counterpart_computes_the_lax_op(op):
    x = jnp.linspace(0.05, 0.95, 7).at[3].set(0.5)  # a half for the roundings
    closed = jax.make_jaxpr(op)(x)
    assert _numpy_ops.supported(closed.jaxpr), closed
    (out,) = _host_rows.host_rows(closed, [x], [False], 1)
    np.testing.assert_allclose(out[0], op(x), rtol=1e-14, atol=1e-15)


def test_rows_beyond_the_memory_bound_are_evaluated_in_passes(monkeypatch):
    monkeypatch.setattr(_host_rows, "HOST_ROWS_MAX_BYTES", 1)  # one row a pass
    calls = []
    original = _host_rows.host_rows

    def counted(closed, leaves, batched, rows):
        calls.append(rows)
        return original(closed, leaves, batched, rows)

    monkeypatch.setattr(_host_rows, "host_rows", counted)
    report = jaxcheck.check_grad(lambda x: jnp.sum(jnp.sin(x) ** 2), X)
    assert report.ok, str(report)
    assert calls and set(calls) == {1} and len(calls) >= 2 * X.size


def _structural(x, y):
    # A concatenation of a batched and a shared operand, a split, interior and
    # negative padding, a reversal and a slice.
    z = jnp.concatenate([jnp.sin(x), y], axis=1)
    first, second = jax.lax.split(z, (2, 3), axis=1)
    z = jnp.concatenate([second, first * 2], axis=1)
    z = jax.lax.pad(z, 0.5, [(1, -1, 1), (-2, 3, 2)])
    return jax.lax.rev(z, (1,))[1:, ::2]


@pytest.mark.parametrize("batched", [(True, False), (False, True), (False, False)])
def test_concatenate_and_pad_rows_match_vmap(batched):
    rows = 3
    x, y = X, jnp.cos(X[:, :2])
    args = [
        v[None] + 0.1 * jnp.arange(rows, dtype=v.dtype).reshape(-1, 1, 1) if on else v
        for v, on in zip((x, y), batched, strict=True)
    ]
    closed = jax.make_jaxpr(_structural)(x, y)
    assert _numpy_ops.supported(closed.jaxpr)
    (out,) = _host_rows.host_rows(closed, args, list(batched), rows)
    if any(batched):
        expected = _rows_by_vmap(_structural, args, batched)
    else:
        expected = np.broadcast_to(_structural(x, y), out.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-14)
