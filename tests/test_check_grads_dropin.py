"""The `check_grads` drop-in follows JAX's conventions where a migrating suite
relies on them: per-dtype tolerance dicts, "lin" mode, strict promotion, empty
arrays, NaN on both sides. Each rule has a planted bug that must still fail."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import enable_x64

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core


def _scaled_jvp(factor):
    """sin with a JVP rule off by `factor` (1.0 is right)."""

    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return jnp.sin(x), factor * jnp.cos(x) * t

    return f


X = jnp.array([0.3, -1.2, 2.0])


@pytest.mark.parametrize(
    "atol, rtol",
    [
        ({np.float64: 1e-3}, {np.float64: 1e-3}),
        ({np.dtype("float64"): 1e-3, np.float32: 0.5}, None),
        (1e-3, 1e-3),
        ({np.int32: 0}, None),
    ],
)
def test_accepts_every_tolerance_form_jax_accepts(atol, rtol):
    jaxcheck.check_grads(jnp.sin, (X,), 2, atol=atol, rtol=rtol)


def test_a_dtype_tolerance_is_a_floor_per_entry():
    off_by_2_percent = _scaled_jvp(1.02)
    jaxcheck.check_grads(
        off_by_2_percent, (X,), 1, modes=("fwd",), rtol={np.float64: 0.05}
    )
    with pytest.raises(GradCheckError, match=r"JVP check failed"):
        jaxcheck.check_grads(
            off_by_2_percent, (X,), 1, modes=("fwd",), rtol={np.float64: 1e-3}
        )


def test_the_floor_is_not_scaled_by_the_size_of_the_array():
    """JAX multiplies its tolerance by the array's size (1000 here, so a 2 %
    error passes an rtol of 1e-4); per entry, it does not."""
    x = jnp.linspace(-1.0, 1.0, 1000)
    with pytest.raises(GradCheckError, match=r"out\[\d+\] \(jvp\)"):
        jaxcheck.check_grads(_scaled_jvp(1.02), (x,), 1, modes=("fwd",), rtol=1e-4)


@pytest.mark.parametrize(
    "name, value, error, match",
    [
        ("atol", "small", TypeError, r"`atol` must be None, a non-negative number"),
        (
            "rtol",
            {np.float32: -1.0},
            ValueError,
            r"`rtol\[.*float32.*\]` must be non-neg",
        ),
        (
            "atol",
            {"no-such-dtype": 1e-3},
            TypeError,
            r"`atol` has the key 'no-such-dtype'",
        ),
        ("rtol", {np.float64: "x"}, TypeError, r"`rtol\[.*\]` must be None, a non-neg"),
    ],
)
def test_bad_tolerances_name_the_argument(name, value, error, match):
    with pytest.raises(error, match=match):
        jaxcheck.check_grads(jnp.sin, (X,), 1, **{name: value})


def test_lin_mode_checks_the_linearization():
    jaxcheck.check_grads(jnp.tanh, (X,), 2, modes=("lin",))
    with pytest.raises(GradCheckError, match=r"LIN check failed"):
        jaxcheck.check_grads(_scaled_jvp(1.5), (X,), 1, modes=("lin",))


def test_complex_input_under_strict_promotion_and_checks():
    z = jnp.array([0.5 + 0.25j, -1.0 + 2.0j], jnp.complex64)
    with (
        jax.numpy_dtype_promotion("strict"),
        jax.numpy_rank_promotion("raise"),
        jax.enable_checks(True),
    ):
        jaxcheck.check_grads(lambda z: jnp.sin(z) * z, (z,), 2, modes=("fwd", "rev"))


def test_complex_input_with_a_wrong_rule_fails_under_strict_promotion():
    @jax.custom_jvp
    def f(z):
        return z * z

    f.defjvp(lambda p, t: (p[0] * p[0], p[0] * t[0]))  # should be 2·z·t
    z = jnp.array([0.5 + 0.25j, -1.0 + 2.0j], jnp.complex128)
    with jax.numpy_dtype_promotion("strict"), pytest.raises(GradCheckError):
        jaxcheck.check_grads(f, (z,), 1, modes=("fwd",))


@pytest.mark.parametrize(
    "f, x",
    [
        (jnp.sin, jnp.zeros((0, 3))),
        (lambda x: jnp.sum(x, axis=0), jnp.zeros((0, 3))),
        (lambda x: x[:0] * 2.0, jnp.ones(3)),
        (lambda x: {"empty": jnp.zeros((2, 0)) * x[0]}, jnp.ones(3)),
    ],
)
def test_nothing_to_compare_passes_as_in_jax(f, x):
    jaxcheck.check_grads(f, (x,), 2)


def test_a_size_zero_output_beside_a_wrong_one_still_fails():
    bad = _scaled_jvp(1.5)
    with pytest.raises(GradCheckError, match=r"out\[1\]"):
        jaxcheck.check_grads(lambda x: (x[:0], bad(x)), (X,), 1, modes=("fwd",))


def test_nan_on_both_sides_agrees_as_in_jax():
    x = jnp.array([0.2, 2.0, -3.0])  # arcsin is NaN outside [-1, 1]
    with pytest.warns(UserWarning, match=r"NaN on both sides counts as agreement"):
        jaxcheck.check_grads(jnp.arcsin, (x,), 1)
    with pytest.warns(UserWarning, match=r"NaN on both sides"):
        jaxcheck.check_grads(jax.nn.softplus, (jnp.array([jnp.nan, 1.0]),), 1)


def test_nan_on_one_side_only_still_fails():
    @jax.custom_jvp
    def f(x):
        return jnp.sqrt(x)

    f.defjvp(lambda p, t: (jnp.sqrt(p[0]), jnp.full_like(p[0], jnp.nan) * t[0]))
    with pytest.raises(GradCheckError, match=r"JVP check failed"):
        jaxcheck.check_grads(f, (jnp.array([1.0, 4.0]),), 1, modes=("fwd",))


def test_a_finite_vjp_of_a_nan_output_fails():
    @jax.custom_vjp
    def f(x):
        return jnp.log(x)

    f.defvjp(lambda x: (jnp.log(x), x), lambda x, c: (c * 0.0,))
    with pytest.raises(GradCheckError, match=r"VJP check failed: `f` is NaN"):
        jaxcheck.check_grads(f, (jnp.array([-1.0, 2.0]),), 1, modes=("rev",))


def test_check_jacobian_keeps_its_stricter_verdict_on_nan():
    with pytest.raises(GradCheckError, match=r"analytic nan/inf|inconclusive"):
        jaxcheck.assert_jacobian(jnp.arcsin, jnp.array([0.2, 2.0]))


def test_a_nan_input_does_not_blame_eps():
    """With eps=None the step comes from the finite entries of the input."""
    x = jnp.array([jnp.nan, 1.0])
    jaxcheck.check_grads(jnp.sin, (x,), 1, modes=("fwd",))
    with pytest.warns(UserWarning, match=r"NaN on both sides"):
        jaxcheck.check_grads(jnp.sin, (x,), 1, modes=("rev",))


@pytest.mark.parametrize("modes", [("fwd",), ("rev",)])
def test_an_output_stuck_at_minus_inf_does_not_move(modes):
    def f(x):
        return jnp.stack([jnp.log(jnp.zeros(())) + 0.0 * x[0], jnp.sin(x[1])])

    jaxcheck.check_grads(f, (jnp.array([0.5, 1.0]),), 1, modes=modes)


@pytest.mark.parametrize("modes", [("fwd",), ("rev",)])
def test_beside_an_infinite_output_a_wrong_rule_fails(modes):
    bad = _scaled_jvp(1.5)

    def f(x):
        return jnp.stack([jnp.log(jnp.zeros(())) + 0.0 * x[0], bad(x[1])])

    with pytest.raises(GradCheckError, match=r"check failed"):
        jaxcheck.check_grads(f, (jnp.array([0.5, 1.0]),), 1, modes=modes)


def test_steps_fit_a_function_near_its_domain_edge():
    """arcsin near ±1 in float32: a step chosen for float32 (about 5e-3 of |x|)
    reaches past the edge; the twin's float64 steps, and smaller ones where the
    Richardson estimate says truncation dominates, do not."""
    x = jnp.array([[0.999, -0.9995, 0.3], [0.99, 0.5, -0.98]], jnp.float32)
    jaxcheck.check_grads(jnp.arcsin, (x,), 2, rtol={np.float32: 0.15})
    with pytest.raises(GradCheckError, match=r"JVP check failed"):
        jaxcheck.check_grads(
            _scaled_jvp(1.5), (x,), 1, modes=("fwd",), rtol={np.float32: 0.15}
        )


def _scaled_vjp(factor):
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x) * 2.0

    f.defvjp(lambda x: (f(x), x), lambda x, g: (factor * 2.0 * jnp.cos(x) * g,))
    return f


def test_a_large_input_checks_its_vjp_in_fast_mode(monkeypatch):
    from jaxcheck._checks import check_grads as _check_grads
    from jaxcheck._checks import vjp as _vjp

    monkeypatch.setattr(_check_grads, "FULL_VJP_MAX_ENTRIES", 100)
    modes = []
    report = _vjp.vjp_report
    monkeypatch.setattr(
        _check_grads,
        "vjp_report",
        lambda *a, **k: modes.append(a[-1].mode) or report(*a, **k),
    )
    x = jnp.linspace(-1.0, 1.0, 300).reshape(3, 100)
    jaxcheck.check_grads(_scaled_vjp(1.0), (x,), order=1, modes=("rev",))
    jaxcheck.check_grads(_scaled_vjp(1.0), (x[:, :30],), order=1, modes=("rev",))
    assert modes == ["fast", "full"]  # above the limit only
    failed = "VJP check failed.*Fast mode: the directional probes failed"
    with pytest.raises(GradCheckError, match=failed):
        jaxcheck.check_grads(_scaled_vjp(1.01), (x,), order=1, modes=("rev",))


def _divide_with_vjp(scale):
    @jax.custom_vjp
    def divide(x, y):
        return x / y

    def fwd(x, y):
        return x / y, (x, y)

    def bwd(res, g):
        x, y = res
        return (scale * g / y, -scale * g * x / y**2)

    divide.defvjp(fwd, bwd)
    return divide


def test_a_vjp_off_by_a_factor_below_atol_is_caught_as_jax_catches_it():
    # Every entry of the VJP is about 0.1, below JAX's atol of 0.15: entry by
    # entry a VJP twice too large passes, but not JAX's cotangent projection.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 4)) * 0.05, jnp.float32)
    y = jnp.asarray(10 + rng.random((3, 4)), jnp.float32)
    tol = {np.float32: 0.15}
    from jax.test_util import check_grads as jax_check_grads

    with pytest.raises(AssertionError):  # JAX's own catches it
        jax_check_grads(
            _divide_with_vjp(2.0), (x, y), 1, modes=["rev"], atol=tol, rtol=tol
        )
    with pytest.raises(
        GradCheckError, match="VJP check failed: the (VJP.s error|cotangent proj)"
    ):
        jaxcheck.check_grads(
            _divide_with_vjp(2.0), (x, y), 1, modes=["rev"], atol=tol, rtol=tol
        )
    jaxcheck.check_grads(
        _divide_with_vjp(1.0), (x, y), 1, modes=["rev"], atol=tol, rtol=tol
    )


def test_the_projection_is_jax_s_own_test_and_no_rule_of_its_own():
    # Complex entries below atol 0.15, where every entry of a doubled VJP is
    # within its band: JAX's one projection (its tangent and cotangent, and the
    # tolerance of the float32 it projects to) decides, exactly as in JAX's own
    # check. The right VJP always passes.
    from jax.test_util import check_grads as jax_check_grads

    rng = np.random.default_rng(1)

    def c64(*shape):
        z = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return jnp.asarray(z, jnp.complex64)

    tol = {np.complex64: 0.15, np.float32: 0.15}
    args = dict(atol=tol, rtol=tol, modes=["rev"])
    jax_verdicts, by_projection = [], 0
    for _ in range(8):
        x, y = c64(3, 2), c64(3, 2) * 25
        try:
            jax_check_grads(_divide_with_vjp(2.0), (x, y), 1, **args)
            jax_ok = True
        except AssertionError:
            jax_ok = False
        jax_verdicts.append(jax_ok)
        try:
            jaxcheck.check_grads(_divide_with_vjp(2.0), (x, y), 1, **args)
        except GradCheckError as error:
            # An entry beyond its band fails on its own; the projection fails
            # only where JAX's does.
            if "cotangent projection differs" in str(error):
                assert not jax_ok
                by_projection += 1
        else:
            assert jax_ok  # what JAX's check catches, the drop-in catches
        jaxcheck.check_grads(_divide_with_vjp(1.0), (x, y), 1, **args)
    assert set(jax_verdicts) == {True, False} and by_projection


def test_no_false_alarm_where_jax_s_projection_passes():
    # JAX's custom_linear_solve_test: a Cholesky solve through
    # `custom_linear_solve` of a matrix of condition number 2.5e4, in float32, at
    # order 2. Its second derivatives carry float32 errors of their own size, so
    # the float64 twin's exact projection differs from them; JAX's projection,
    # made with float32 differences that share those errors, passes, and so
    # must the drop-in's.
    from functools import partial

    import jax.scipy as jsp

    def dot(a, b):
        return jax.lax.dot(a, b, precision=jax.lax.Precision.HIGHEST)

    def solve(a, b):
        factors = jsp.linalg.cho_factor(a)
        return jax.lax.custom_linear_solve(
            partial(dot, a), b, lambda _, x: jsp.linalg.cho_solve(factors, x),
            symmetric=True,
        )  # fmt: skip

    rng = np.random.RandomState(zlib.adler32(b"test_custom_linear_solve_cholesky"))
    a, b = rng.randn(2, 2), rng.randn(2)
    with enable_x64(False):
        jaxcheck.check_grads(lambda x, y: solve(dot(x, x.T), y), (a, b), 2, rtol=0.3)


def _index_take_with_vjp(scale):
    idxs, axes = (np.array([0, 2, 1]),), (0,)  # NumPy int64 indices

    def take(src):
        return jax.lax.index_take(src, idxs, axes)

    @jax.custom_vjp
    def mutant(src):
        return take(src)

    def bwd(vjp, g):  # the VJP function itself is the residual
        return tuple(scale * x for x in vjp(g))

    mutant.defvjp(lambda src: jax.vjp(take, src), bwd)
    return mutant


def test_the_twin_traces_in_64_bits_under_strict_promotion():
    # With x64 off the NumPy indices are int32; in the twin's 64 bits they stay
    # int64 where JAX's own are int32. Strict promotion must not cost the twin,
    # whose differences show a doubled bfloat16 VJP that native differences at
    # eps=1 are too coarse to see.
    src = (np.random.default_rng(0).normal(size=(3, 4, 5)) * 3).astype(jnp.bfloat16)
    with enable_x64(False), jax.numpy_dtype_promotion("strict"):
        with pytest.raises(GradCheckError, match=r"VJP check failed: FAILED"):
            jaxcheck.check_grads(_index_take_with_vjp(2.0), (src,), 1, ["rev"], eps=1.0)
        jaxcheck.check_grads(_index_take_with_vjp(1.0), (src,), 1, ["rev"], eps=1.0)
        report = jaxcheck.check_vjp(_index_take_with_vjp(2.0), (src,), eps=1.0)
    assert "float64 twin" in report.note and not report.ok


def _neg_with_swapped_jvp(i, j, n):
    order = np.arange(n)
    order[[i, j]] = order[[j, i]]

    @jax.custom_jvp
    def neg(x):
        return -x

    def jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return -x, (-t)[order]

    neg.defjvp(jvp)
    return neg


def test_each_check_draws_its_own_direction():
    # A JVP rule with two output entries swapped is off by |d_i − d_j| at those
    # entries along a direction d. Under seed 0 this pair of entries is close,
    # which hides the swap from any check drawn with seed 0; the drop-in's
    # checks draw with seeds 0, 1, ... so the next check sees it.
    from jaxcheck._checks.directions import _random_like

    n = 16
    info = jax.ShapeDtypeStruct((n,), jnp.float64)
    d0, d1 = (np.asarray(_random_like([info], seed)[0]) for seed in (0, 1))
    gap0, gap1 = np.abs(d0[:, None] - d0), np.abs(d1[:, None] - d1)
    pairs = np.argwhere((gap0 < 0.05) & (gap1 > 1.0))
    assert pairs.size, "no pair close under seed 0 and apart under seed 1"
    i, j = (int(k) for k in pairs[0])
    x = jnp.linspace(-1.0, 1.0, n)
    tol = {np.float64: 0.15}
    swapped = _neg_with_swapped_jvp(i, j, n)
    # The first check (the JVP, seed 0) does not see it ...
    jaxcheck.check_grads(swapped, (x,), 1, modes=["fwd"], atol=tol, rtol=tol)
    # ... the second (the VJP, seed 1) does, at one of the swapped entries.
    where = rf"(?s)VJP check failed.*primals\[0\]\[({i}|{j})\]"
    with pytest.raises(GradCheckError, match=where):
        jaxcheck.check_grads(swapped, (x,), 1, atol=tol, rtol=tol)
    jaxcheck.check_grads(_neg_with_swapped_jvp(i, i, n), (x,), 1, atol=tol, rtol=tol)
