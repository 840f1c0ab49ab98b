"""Correct and planted-bug `custom_vjp`/`custom_jvp` rules for the linearization tests.

Each buggy rule differs from a correct one by one classic mistake: a wrong
residual, a missing transpose, a missing cotangent, a wrong dtype, a bad batching
behaviour, a wrong second derivative, a mishandled symbolic zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------
# custom_vjp: a dense layer tanh(x @ w + b), correct and with planted bugs


def _dense(x, w, b):
    return jnp.tanh(x @ w + b)


def _dense_fwd(x, w, b):
    y = _dense(x, w, b)
    return y, (x, w, y)


def _dense_bwd(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    return dz @ w.T, x.T @ dz, jnp.sum(dz, axis=0)


def make_dense(fwd=_dense_fwd, bwd=_dense_bwd):
    dense = jax.custom_vjp(_dense)
    dense.defvjp(fwd, bwd)
    return dense


dense = make_dense()


def _fwd_wrong_residual(x, w, b):
    y = _dense(x, w, b)
    return y, (x, w, x @ w + b)  # the bug: saves the pre-activation, not tanh


def _bwd_missing_transpose(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    return dz @ w.T, dz.T @ x, jnp.sum(dz, axis=0)  # the bug: (xᵀ dz)ᵀ


def _bwd_missing_cotangent(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    return dz @ w.T, x.T @ dz  # the bug: nothing for b


def _bwd_wrong_dtype(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    return dz @ w.T, (x.T @ dz).astype(jnp.float32), jnp.sum(dz, axis=0)


def _bwd_wrong_b(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    return dz @ w.T, x.T @ dz, jnp.sum(dz, axis=0).at[1].multiply(2.0)


dense_wrong_residual = make_dense(fwd=_fwd_wrong_residual)
dense_missing_transpose = make_dense(bwd=_bwd_missing_transpose)
dense_missing_cotangent = make_dense(bwd=_bwd_missing_cotangent)
dense_wrong_dtype = make_dense(bwd=_bwd_wrong_dtype)
dense_wrong_b = make_dense(bwd=_bwd_wrong_b)


def _fwd_wrong_output(x, w, b):
    y, res = _dense_fwd(x, w, b)
    return 2 * y, res  # the bug: the fwd rule's primal output is not fun's


dense_wrong_output = make_dense(fwd=_fwd_wrong_output)


def dense_inputs(dtype=jnp.float64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 3)), dtype)
    w = jnp.asarray(rng.normal(size=(3, 3)) / 2, dtype)
    b = jnp.asarray([0.1, -0.2, 0.3], dtype)
    return x, w, b


# A bwd rule that runs on the host and reduces over every axis it is given: right
# for one cotangent, wrong when `vmap` hands it a batch of them.
def _host_column_sums(g):
    rows = g.shape[0]  # the bug: under vmap this is the batch size
    return np.asarray(np.sum(g, axis=-2) * rows / g.shape[-2], g.dtype)


def _bwd_bad_batching(res, g):
    x, w, y = res
    dz = g * (1 - y**2)
    db = jax.pure_callback(
        _host_column_sums,
        jax.ShapeDtypeStruct(dz.shape[1:], dz.dtype),
        dz,
        vmap_method="expand_dims",
    )
    return dz @ w.T, x.T @ dz, db


dense_bad_batching = make_dense(bwd=_bwd_bad_batching)


# --------------------------------------------------------------------------
# custom_vjp with nondiff_argnums: an activation chosen by a static argument


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def scaled_act(power, x, scale):
    return scale * x**power


def _scaled_fwd(power, x, scale):
    return scaled_act(power, x, scale), (x, scale)


def _scaled_bwd(power, res, g):
    x, scale = res
    return g * scale * power * x ** (power - 1), jnp.sum(g * x**power)


scaled_act.defvjp(_scaled_fwd, _scaled_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def scaled_act_wrong(power, x, scale):
    return scale * x**power


def _scaled_bwd_wrong(power, res, g):
    x, scale = res
    return g * scale * x ** (power - 1), jnp.sum(g * x**power)  # the bug: no power


scaled_act_wrong.defvjp(_scaled_fwd, _scaled_bwd_wrong)


# --------------------------------------------------------------------------
# custom_jvp: sin with correct and buggy rules


@jax.custom_jvp
def sin(x):
    return jnp.sin(x)


@sin.defjvp
def _sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.sin(x), jnp.cos(x) * t


@jax.custom_jvp
def sin_wrong_second(x):
    return jnp.sin(x)


@sin_wrong_second.defjvp
def _sin_jvp_stopped(primals, tangents):
    (x,), (t,) = primals, tangents
    # the bug: the first derivative is right, its own derivative is zero
    return jnp.sin(x), jnp.cos(jax.lax.stop_gradient(x)) * t


@jax.custom_jvp
def sin_wrong_first(x):
    return jnp.sin(x)


@sin_wrong_first.defjvp
def _sin_jvp_wrong(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.sin(x), -jnp.cos(x) * t


# A rule for x * y with symbolic zeros: right when both tangents are given, wrong
# when `y`'s tangent is a symbolic zero.
@jax.custom_jvp
def mul(x, y):
    return x * y


def _mul_jvp(primals, tangents, *, buggy):
    x, y = primals
    tx, ty = tangents
    zero = jax.custom_derivatives.SymbolicZero
    if isinstance(ty, zero):
        out = y * tx * (2.0 if buggy else 1.0)
    elif isinstance(tx, zero):
        out = x * ty
    else:
        out = y * tx + x * ty
    return x * y, out


mul.defjvp(functools.partial(_mul_jvp, buggy=False), symbolic_zeros=True)


@jax.custom_jvp
def mul_wrong_zero(x, y):
    return x * y


mul_wrong_zero.defjvp(functools.partial(_mul_jvp, buggy=True), symbolic_zeros=True)


# --------------------------------------------------------------------------
# Complex: |z|² with a bwd rule that forgets JAX's conjugation convention


@jax.custom_vjp
def abs2(z):
    return jnp.real(z * jnp.conj(z))


abs2.defvjp(lambda z: (abs2(z), z), lambda z, g: (2 * g * jnp.conj(z),))


@jax.custom_vjp
def abs2_wrong(z):
    return jnp.real(z * jnp.conj(z))


abs2_wrong.defvjp(lambda z: (abs2_wrong(z), z), lambda z, g: (2 * g * z,))
