"""`check_jacobian`, `check_vjp` and `check_jvp`: correct derivatives pass, planted
bugs are caught and located on the output and the input side."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rules

import jaxcheck
from jaxcheck import GradCheckError
from jaxcheck._engine import jaxpr as _jaxpr

pytestmark = pytest.mark.core

X, W, B = rules.dense_inputs()
F32 = rules.dense_inputs(jnp.float32)


def _pattern(*parts):
    return ".*".join(re.escape(p) for p in parts)


def two_outputs(x, w):
    return {"y": jnp.tanh(x @ w), "norm": jnp.sum(w**2)}


# --------------------------------------------------------------------------
# check_jacobian


@pytest.mark.parametrize("inputs", [(X, W, B), F32], ids=["float64", "float32"])
def test_jacobian_of_correct_rule_passes(inputs):
    report = jaxcheck.check_jacobian(rules.dense, *inputs, autodiff=("rev",))
    assert report.ok
    assert report.num_entries == 12 * (12 + 9 + 3)
    assert isinstance(report, jaxcheck.JacobianReport)


def test_jacobian_pytree_output_both_modes():
    report = jaxcheck.check_jacobian(two_outputs, X, W)
    assert report.ok
    paths = [s.path for s in report.leaves]
    assert "out['norm'] × primals[1] (jacfwd)" in paths
    assert "out['y'] × primals[0] (jacrev)" in paths


def test_jacobian_locates_missing_transpose():
    with pytest.raises(GradCheckError, match=_pattern("× primals[1][", "(jacrev)")):
        jaxcheck.assert_jacobian(
            rules.dense_missing_transpose, X, W, B, autodiff=("rev",)
        )


def test_jacobian_custom_jvp_checked_by_both_modes():
    with pytest.raises(GradCheckError) as info:
        jaxcheck.assert_jacobian(rules.sin_wrong_first, jnp.linspace(0.1, 1.0, 3))
    message = str(info.value)
    assert "out[1] × primals[0][1] (jacrev)" in message
    assert "out[1] × primals[0][1] (jacfwd)" in message


def test_jacobian_given_value_and_callable():
    exact = jax.jacrev(two_outputs, argnums=(0, 1))(X, W)
    assert jaxcheck.check_jacobian(two_outputs, X, W, jac=exact).ok
    wrong = jax.tree_util.tree_map(lambda a: a, exact)
    wrong["norm"] = (exact["norm"][0], exact["norm"][1].at[2, 1].add(1.0))
    with pytest.raises(
        GradCheckError, match=re.escape("out['norm'] × primals[1][2, 1]")
    ):
        jaxcheck.assert_jacobian(two_outputs, X, W, jac=lambda x, w: wrong)


def test_jacobian_of_a_custom_vjp_checks_reverse_mode_and_says_so():
    report = jaxcheck.check_jacobian(rules.dense, X, W, B)
    assert report.ok
    assert {leaf.path.rsplit(" ", 1)[-1] for leaf in report.leaves} == {"(jacrev)"}
    assert "jax.jacfwd not checked" in str(report).splitlines()[0]
    bad = jaxcheck.check_jacobian(rules.dense_missing_transpose, X, W, B)
    assert not bad.ok and "(jacrev)" in bad.verdict


def test_jacobian_explicit_fwd_of_a_custom_vjp_says_what_to_do():
    with pytest.raises(TypeError) as info:
        jaxcheck.check_jacobian(rules.dense, X, W, B, autodiff=("rev", "fwd"))
    assert "autodiff=('rev',)" in "".join(getattr(info.value, "__notes__", []))


@pytest.mark.parametrize(
    "fun",
    [lambda z: z**3 + 1j * z, lambda z: {"abs": jnp.abs(z) ** 2, "conj": jnp.conj(z)}],
    ids=["holomorphic", "non-holomorphic"],
)
def test_jacobian_complex(fun):
    z = jnp.array([1 + 2j, 0.5 - 1j])
    report = jaxcheck.check_jacobian(fun, z)
    assert report.ok
    assert any(".imag" in s.path for s in report.leaves)


def test_jacobian_bad_arguments():
    with pytest.raises(TypeError, match="`fun`"):
        jaxcheck.check_jacobian(3.0, X)
    with pytest.raises(ValueError, match="`autodiff`"):
        jaxcheck.check_jacobian(two_outputs, X, W, autodiff=("backward",))
    with pytest.raises(TypeError, match="output"):
        jaxcheck.check_jacobian(lambda x: jnp.argmax(x), X)
    with pytest.raises(ValueError, match="`jac` block"):
        jaxcheck.check_jacobian(jnp.sin, X, jac=(jnp.zeros(12 * 12),))


# --------------------------------------------------------------------------
# check_vjp


def test_vjp_passes_and_does_not_mutate():
    x = np.asarray(X)
    before = x.copy()
    report = jaxcheck.check_vjp(rules.dense, (x, W, B))
    assert report.ok and report.num_entries == 12 + 9 + 3
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_locates_planted_bug(seed):
    with pytest.raises(GradCheckError, match=re.escape("primals[2][1]")):
        jaxcheck.assert_vjp(rules.dense_wrong_b, (X, W, B), seed=seed)


def test_vjp_given_vjp_fn_and_cotangents():
    out, vjp = jax.vjp(two_outputs, X, W)
    c = jax.tree_util.tree_map(jnp.ones_like, out)
    assert jaxcheck.check_vjp(two_outputs, (X, W), vjp_fn=vjp, cotangents=c).ok

    def wrong(c):
        dx, dw = vjp(c)
        return dx, dw.at[0, 2].add(0.5)

    with pytest.raises(GradCheckError, match=re.escape("primals[1][0, 2]")):
        jaxcheck.assert_vjp(two_outputs, (X, W), vjp_fn=wrong)


def test_vjp_float32():
    assert jaxcheck.check_vjp(rules.dense, F32).ok


def test_vjp_result_checked_for_number_shape_dtype():
    _, vjp = jax.vjp(rules.dense, X, W, B)
    with pytest.raises(ValueError, match="returned 2 cotangents for 3 primals"):
        jaxcheck.check_vjp(rules.dense, (X, W, B), vjp_fn=lambda c: vjp(c)[:2])
    with pytest.raises(ValueError, match=re.escape("[1] has dtype float32")):
        jaxcheck.check_vjp(
            rules.dense,
            (X, W, B),
            vjp_fn=lambda c: (vjp(c)[0], vjp(c)[1].astype(jnp.float32), vjp(c)[2]),
        )
    with pytest.raises(ValueError, match="`cotangents` at the root has shape"):
        jaxcheck.check_vjp(rules.dense, (X, W, B), cotangents=jnp.ones(3))
    with pytest.raises(TypeError, match="`primals` must be a tuple"):
        jaxcheck.check_vjp(rules.dense, X)
    with pytest.raises(TypeError, match="`vjp_fn` must be callable"):
        jaxcheck.check_vjp(rules.dense, (X, W, B), vjp_fn=1)


@pytest.mark.parametrize("fun", [rules.abs2, lambda z: jnp.sin(z) * z])
def test_vjp_complex_passes(fun):
    z = jnp.array([1 + 2j, 0.5 - 1j, -0.3 + 0.1j])
    assert jaxcheck.check_vjp(fun, (z,)).ok


def test_vjp_complex_convention_bug():
    z = jnp.array([1 + 2j, 0.5 - 1j])
    with pytest.raises(GradCheckError, match=re.escape("primals[0][")):
        jaxcheck.assert_vjp(rules.abs2_wrong, (z,))


# --------------------------------------------------------------------------
# check_jvp


def test_jvp_passes_with_integer_and_static_primals():
    def f(x, n, name):
        return {name: x * n, "s": jnp.sin(x)}

    report = jaxcheck.check_jvp(f, (X, 3, "y"))
    assert report.ok and report.num_entries == 24


def test_jvp_locates_wrong_output_entry():
    def wrong(primals, tangents):
        out, t = jax.jvp(two_outputs, primals, tangents)
        return out, {"y": t["y"].at[2, 1].add(1.0), "norm": t["norm"]}

    with pytest.raises(GradCheckError, match=re.escape("out['y'][2, 1] (jvp)")):
        jaxcheck.assert_jvp(two_outputs, (X, W), jvp_fn=wrong)


def test_jvp_custom_rule_and_tangents():
    x = jnp.linspace(0.1, 1.0, 4)
    assert jaxcheck.check_jvp(rules.sin, (x,), tangents=(jnp.ones(4),)).ok
    with pytest.raises(GradCheckError, match=re.escape("out[0] (jvp)")):
        jaxcheck.assert_jvp(rules.sin_wrong_first, (x,))


def test_jvp_float32_and_complex():
    assert jaxcheck.check_jvp(two_outputs, F32[:2]).ok
    z = jnp.array([1 + 2j, 0.5 - 1j], jnp.complex64)
    assert jaxcheck.check_jvp(lambda z: jnp.exp(z) * jnp.conj(z), (z,)).ok


def test_jvp_bad_arguments():
    with pytest.raises(ValueError, match="`tangents` must have the structure"):
        jaxcheck.check_jvp(jnp.sin, (X,), tangents=(X, X))
    with pytest.raises(ValueError, match="no floating entries"):
        jaxcheck.check_jvp(lambda n: n * 1.0, (jnp.arange(3),))
    with pytest.raises(TypeError, match="`seed`"):
        jaxcheck.check_jvp(jnp.sin, (X,), seed=0.5)


@pytest.mark.parametrize(
    "call",
    [
        lambda f: jaxcheck.check_jacobian(f, X, method="bad"),
        lambda f: jaxcheck.check_jvp(f, (X,), eps=-1.0),
        lambda f: jaxcheck.check_vjp(f, (X,), atol=-1.0),
        lambda f: jaxcheck.check_hessian(lambda x: jnp.sum(f(x)), X, chunk_size=0),
    ],
)
def test_options_validated_before_tracing(call):
    traced = []

    def f(x):
        traced.append(x)
        return jnp.sin(x)

    with pytest.raises(ValueError, match=r"`(method|eps|atol|chunk_size)`"):
        call(f)
    assert traced == []


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_jacobian_in_small_padded_chunks(method):
    report = jaxcheck.check_jacobian(two_outputs, X, W, chunk_size=5, method=method)
    assert report.ok and report.num_entries == 2 * (12 + 1) * (12 + 9)


def test_second_check_reuses_compiled_programs(monkeypatch):
    # A problem this small runs op by op; make it compile, as a larger one does.
    monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)
    traces = []

    def f(x, w):
        traces.append(1)
        return {"y": jnp.tanh(x @ w)}

    jaxcheck.check_jacobian(f, X, W)
    first = len(traces)
    jaxcheck.check_jacobian(f, X + 1.0, W)
    assert len(traces) - first == 1  # the shape probe; no batched program retraced
