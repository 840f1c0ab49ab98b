"""`check_hessian` (and its deprecated alias `check_grad(order=2)`), `argnums`,
`has_aux` and the drop-in
`check_grads`: correct derivatives pass, planted bugs are caught and located."""

import pathlib
import re

import jax
import jax.numpy as jnp
import jax.test_util
import pytest
import rules

import jaxcheck
from jaxcheck import GradCheckError

pytestmark = pytest.mark.core

X = jnp.array([0.3, 0.9, 1.4])
PARAMS = {"w": jnp.array([[0.2, -0.4], [0.5, 0.1]]), "b": jnp.array([0.1, -0.3])}
DATA = jnp.array([[1.0, 2.0], [-0.5, 0.3], [0.7, -1.2]])


def model_loss(params, x):
    return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)


def sin_loss(x):
    return jnp.sum(rules.sin_wrong_second(x))


# --------------------------------------------------------------------------
# Hessians


@pytest.mark.parametrize("hvp", [False, True])
def test_hessian_of_model_passes(hvp):
    report = jaxcheck.check_hessian(model_loss, PARAMS, DATA, hvp=hvp)
    assert report.ok
    assert report.num_entries == (6 if hvp else 2 * 6 * 6)


def test_hessian_catches_wrong_second_derivative():
    assert jaxcheck.check_grad(sin_loss, X).ok  # the first derivative is right
    with pytest.raises(GradCheckError, match=re.escape("grad[2] × params[2] (jacfwd)")):
        jaxcheck.assert_hessian(sin_loss, X, autodiff=("fwd",))
    with pytest.raises(GradCheckError, match=re.escape("grad[") + r".*\(hvp\)"):
        jaxcheck.assert_hessian(sin_loss, X, hvp=True, tangents=jnp.ones(3))


def test_check_hessian_takes_argnums_and_has_aux():
    report = jaxcheck.check_hessian(model_loss, PARAMS, DATA)
    assert report.ok and isinstance(report, jaxcheck.JacobianReport)
    # The Hessian in the second argument, of a `fun` with aux: a planted bug there.
    with_aux = lambda data, x: (sin_loss(x), {"aux": data})  # noqa: E731
    report = jaxcheck.check_hessian(with_aux, DATA, X, argnums=1, has_aux=True)
    assert not report.ok
    assert report.worst(1)[0].location.startswith("grad[")


def test_check_grad_order_2_is_a_deprecated_alias_of_check_hessian():
    with pytest.warns(DeprecationWarning, match=r"call check_hessian\(fun"):
        report = jaxcheck.check_grad(sin_loss, X, order=2)
    expected = jaxcheck.check_hessian(sin_loss, X)
    assert not report.ok and not expected.ok
    assert report.verdict == expected.verdict
    with pytest.warns(DeprecationWarning, match="hvp=True"):
        report = jaxcheck.check_grad(sin_loss, X, order=2, mode="fast", seed=3)
    expected = jaxcheck.check_hessian(sin_loss, X, hvp=True, seed=3)
    assert report.verdict == expected.verdict


def test_hessian_vector_product_reports_progress_on_the_given_devices():
    seen = []
    report = jaxcheck.check_hessian(
        model_loss, PARAMS, DATA, hvp=True,
        progress=lambda done, total: seen.append((done, total)),
        devices=[jax.devices()[0]],
    )  # fmt: skip
    assert report.ok and report.seconds > 0
    assert seen and seen[-1][0] == seen[-1][1]  # every evaluation reported
    report = jaxcheck.check_hessian(sin_loss, X, hvp=True, seed=3)
    assert not report.ok
    assert report.worst(1)[0].location.startswith("grad[")


def test_hessian_bad_arguments():
    with pytest.raises(ValueError, match="`order`"):
        jaxcheck.check_grad(sin_loss, X, order=3)
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match='mode="sample" checks sampled entries'):
            jaxcheck.check_grad(sin_loss, X, order=2, mode="sample")
    with pytest.raises(ValueError, match="`samples` is the number of entries"):
        jaxcheck.check_hessian(sin_loss, X, samples=4)
    with pytest.raises(ValueError, match='takes mode="full" only.*pass hvp=True'):
        jaxcheck.check_hessian(sin_loss, X, mode="fast")
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match="Hessian check keeps no record"):
            jaxcheck.check_grad(sin_loss, X, order=2, resume="somewhere")
    with pytest.raises(TypeError, match="does not take the option `resume`"):
        jaxcheck.check_hessian(sin_loss, X, resume="r")
    with pytest.raises(ValueError, match="`grad` cannot be given with order=2"):
        jaxcheck.check_grad(sin_loss, X, order=2, grad=X)
    with pytest.raises(ValueError, match="hvp=True"):
        jaxcheck.check_hessian(sin_loss, X, tangents=X)
    with pytest.raises(TypeError, match="`hvp`"):
        jaxcheck.check_hessian(sin_loss, X, hvp=1)


# --------------------------------------------------------------------------
# argnums and has_aux


def loss_abc(a, x, b):
    return jnp.sum(jnp.sin(a * x)) + jnp.sum(b**2), {"x": x}


def test_argnums_tuple_and_has_aux():
    report = jaxcheck.check_grad(
        loss_abc, 1.5, X, jnp.ones(2), argnums=(0, 2), has_aux=True
    )
    assert report.ok and [s.path for s in report.leaves] == ["[0]", "[1]"]

    def wrong(a, x, b):
        return (jnp.sum(x * jnp.cos(a * x)), 2 * b.at[1].add(1.0))

    report = jaxcheck.check_grad(
        loss_abc, 1.5, X, jnp.ones(2), argnums=(0, 2), has_aux=True, grad=wrong
    )
    assert report.worst(1)[0].location == "[1][1]"


def test_argnums_int():
    report = jaxcheck.check_grad(
        lambda a, x: loss_abc(a, x, X)[0], 1.5, X, argnums=1, grad=lambda a, x: X
    )
    assert not report.ok
    assert jaxcheck.check_grad(lambda a, x: loss_abc(a, x, X)[0], 1.5, X, argnums=1).ok


def test_argnums_and_aux_errors():
    with pytest.raises(ValueError, match="`argnums` 3 refers to argument 3"):
        jaxcheck.check_grad(model_loss, PARAMS, DATA, argnums=3)
    with pytest.raises(TypeError, match="`argnums` must be an int"):
        jaxcheck.check_grad(model_loss, PARAMS, DATA, argnums=[0])
    with pytest.raises(TypeError, match="has_aux=True"):
        jaxcheck.check_grad(model_loss, PARAMS, DATA, has_aux=True)


def test_vector_output_points_to_check_jacobian():
    with pytest.raises(TypeError, match="check_jacobian"):
        jaxcheck.check_grad(jnp.sin, X)


# --------------------------------------------------------------------------
# check_grads, the drop-in


def f_two(x, y):
    return {"a": jnp.sin(x) * y, "b": x @ y}


def test_check_grads_same_call_as_jax():
    args = (X, jnp.array([1.0, -2.0, 0.5]))
    jax.test_util.check_grads(f_two, args, 1, ("fwd", "rev"), None, None, None)
    assert (
        jaxcheck.check_grads(f_two, args, 1, ("fwd", "rev"), None, None, None) is None
    )


def test_check_grads_rev_only_for_custom_vjp():
    x, w, b = rules.dense_inputs()
    jaxcheck.check_grads(rules.dense, (x, w, b), 1, modes=("rev",))
    with pytest.raises(GradCheckError, match=r"^VJP check failed(.|\n)*primals\[1\]"):
        jaxcheck.check_grads(rules.dense_missing_transpose, (x, w, b), 1, modes=["rev"])


def test_check_grads_second_order_bug_is_named():
    jaxcheck.check_grads(rules.sin_wrong_second, (X,), 1)
    with pytest.raises(GradCheckError, match="^JVP of JVP check failed"):
        jaxcheck.check_grads(rules.sin_wrong_second, (X,), 2)
    with pytest.raises(GradCheckError, match="^VJP of VJP check failed"):
        jaxcheck.check_grads(rules.sin_wrong_second, (X,), 2, modes=("rev",))


def test_check_grads_bad_arguments():
    with pytest.raises(ValueError, match="`order`"):
        jaxcheck.check_grads(f_two, (X, X), 0)
    with pytest.raises(ValueError, match="`modes`"):
        jaxcheck.check_grads(f_two, (X, X), 1, modes=("forward",))
    with pytest.raises(TypeError, match="`args` must be a tuple"):
        jaxcheck.check_grads(f_two, X, 1)


def test_migration_guide_examples_run():
    root = pathlib.Path(__file__).resolve().parent.parent
    page = (root / "docs" / "guides" / "migrating.md").read_text()
    blocks = re.findall(r"```py(?:thon)?\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 4
    for block in blocks:
        if "import torch" not in block and "jax.test_util" not in block:
            exec(compile(block, "migration guide", "exec"), {})
