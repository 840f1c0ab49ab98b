"""The two ways to evaluate a check's points, eager and compiled: one rule picks
one from the call alone (`_engine.jaxpr.evaluation_way`), the report says which
ran, both give the same numbers and catch the same planted bugs; in a narrow
dtype the float64 twin is used only where the native differences do not settle
a verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import custom_vjp_sin

import jaxcheck
from jaxcheck._engine import jaxpr as _jaxpr

pytestmark = pytest.mark.core

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


ONE_BY_ONE = "eager, one point at a time"


def _force(monkeypatch, way):
    """Makes the rule pick `way` for the small checks here (which are eager,
    one point at a time, by default)."""
    if way != ONE_BY_ONE:
        monkeypatch.setattr(_jaxpr, "ONE_BY_ONE_MAX_DISPATCHES", 0)
    if way == "compiled":
        monkeypatch.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)


@pytest.fixture(params=[ONE_BY_ONE, "eager", "compiled"])
def way(request, monkeypatch):
    """Runs a test under each outcome of the rule."""
    _force(monkeypatch, request.param)
    return request.param


def test_the_rule_reads_the_size_of_theta_and_of_fun():
    small = jaxcheck.check_grad(_nested, X)
    assert small.evaluation == ONE_BY_ONE

    def deep(x):  # 41 equations: 96 entries pass the one-point-at-a-time bound
        for _ in range(40):
            x = jnp.sin(x)
        return jnp.sum(x)

    assert jaxcheck.check_grad(deep, jnp.linspace(-1.0, 1.0, 96)).evaluation == (
        "eager"
    )

    def wide(x):  # 4.8 MB of intermediates a point: 24 points pass the bound
        return jnp.sum(jnp.sin(jnp.outer(x, jnp.ones(100_000))))

    assert jaxcheck.check_grad(wide, X).evaluation == "compiled"

    def long(x):  # more equations than the eager bound
        for _ in range(_jaxpr.EAGER_MAX_EQUATIONS):
            x = jnp.sin(x)
        return jnp.sum(x)

    assert jaxcheck.check_grad(long, X).evaluation == "compiled"


def test_the_same_call_takes_the_same_way_after_any_history(monkeypatch):
    def loss(x):
        return jnp.sum(jnp.tanh(x) ** 3)

    fresh = jaxcheck.check_grad(loss, X)
    # A history of other checks: this very check compiled, the same function
    # at another size, other functions of the same shapes.
    with monkeypatch.context() as patched:
        patched.setattr(_jaxpr, "EAGER_MAX_EQUATIONS", -1)
        assert jaxcheck.check_grad(loss, X).evaluation == "compiled"
    jaxcheck.check_grad(loss, jnp.linspace(0.0, 1.0, 40))
    jaxcheck.check_grad(lambda x: jnp.sum(jnp.cos(x)), X)
    jaxcheck.check_jacobian(jnp.tanh, X)
    again = jaxcheck.check_grad(loss, X)
    assert fresh.evaluation == again.evaluation == ONE_BY_ONE
    assert jaxcheck.check_jacobian(jnp.tanh, X).evaluation == ONE_BY_ONE


def test_every_way_gives_the_same_numbers(monkeypatch):
    numbers = {}
    for way in (ONE_BY_ONE, "eager", "compiled"):
        with monkeypatch.context() as patched:
            _force(patched, way)
            grad = jaxcheck.check_grad(_nested, X)
            jac = jaxcheck.check_jacobian(lambda x: jnp.sin(x) * x[0], X)
        assert grad.evaluation == jac.evaluation == way
        numbers[way] = (grad.comparison.numeric, jac.comparison.numeric)
    for way in ("eager", "compiled"):
        for mine, theirs in zip(numbers[way], numbers[ONE_BY_ONE], strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-9)


def test_a_planted_bug_in_nested_rules_is_located_either_way(way):
    def wrong_grad(x):
        return jax.grad(_nested)(x).at[3].multiply(1.01)

    with pytest.raises(jaxcheck.GradCheckError, match=r"worst params\[3\]"):
        jaxcheck.assert_grad(_nested, X, grad=wrong_grad)
    report = jaxcheck.check_grad(_nested, X)
    assert report.ok and report.evaluation == way


def test_no_jax_private_module_is_imported():
    import ast
    import pathlib

    package = pathlib.Path(jaxcheck.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [
                    f"{node.module}.{alias.name}" for alias in node.names
                ]
            found += [f"{path.name}: {n}" for n in names if "jax._src" in n]
    assert not found, found


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


def test_a_wrong_complex_vjp_is_caught_either_way(way):
    z = jnp.array([0.5 + 1.0j, -1.5 + 0.25j, 0.1 - 0.3j])
    right = custom_vjp_sin(jnp.ones(3))
    jaxcheck.check_grads(right, (z,), order=1, modes=("rev",))
    wrong = custom_vjp_sin(jnp.array([1.0, 1.0, 1.05]))
    with pytest.raises(
        jaxcheck.GradCheckError, match=r"1 of 3 entries differ.*primals\[0\]\[2\]"
    ):
        jaxcheck.check_grads(wrong, (z,), order=1, modes=("rev",))
