"""Each rule of the engine is written once, and every front door and mode goes
through it: patch the one function (the step rule, the evaluation rule) and
every check notices."""

import inspect
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._base import options as _options
from jaxcheck._engine import numerical as _numerical
from jaxcheck._engine import steps as _steps

pytestmark = pytest.mark.core

X = jnp.linspace(0.2, 1.4, 6)


def _loss(x):
    return jnp.sum(jnp.sin(3 * x) * x)


@jax.custom_vjp
def _square(x):
    return x**2


_square.defvjp(lambda x: (x**2, x), lambda x, g: (2 * x * g,))


@jax.custom_jvp
def _cube(x):
    return x**3


_cube.defjvp(lambda p, t: (p[0] ** 3, 3 * p[0] ** 2 * t[0]))

FRONT_DOORS = {
    "check_grad": lambda: jaxcheck.check_grad(_loss, X),
    "check_grad fast": lambda: jaxcheck.check_grad(_loss, X, mode="fast"),
    "check_grad sample": lambda: jaxcheck.check_grad(_loss, X, mode="sample"),
    "check_hessian hvp": lambda: jaxcheck.check_hessian(_loss, X, hvp=True),
    "numerical_grad": lambda: jaxcheck.numerical_grad(_loss, X),
    "check_jacobian": lambda: jaxcheck.check_jacobian(jnp.sin, X),
    "check_jvp": lambda: jaxcheck.check_jvp(jnp.sin, (X,)),
    "check_vjp": lambda: jaxcheck.check_vjp(jnp.sin, (X,)),
    "check_vjp fast": lambda: jaxcheck.check_vjp(jnp.sin, (X,), mode="fast"),
    "check_hessian": lambda: jaxcheck.check_hessian(_loss, X),
    "check_custom_vjp": lambda: jaxcheck.check_custom_vjp(_square, X),
    "check_custom_jvp": lambda: jaxcheck.check_custom_jvp(_cube, X),
    "taylor_test": lambda: jaxcheck.taylor_test(_loss, X),
    "check_grads": lambda: jaxcheck.check_grads(jnp.sin, (X,), order=2),
}


def _spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_every_step_comes_from_the_step_rule(door, monkeypatch):
    calls = _spy(monkeypatch, _steps, "default_step_scale")
    FRONT_DOORS[door]()
    assert calls, f"{door} took a step without `default_step_scale`"


@pytest.mark.parametrize("door", [d for d in FRONT_DOORS if d != "taylor_test"])
def test_every_check_evaluates_its_points_by_the_one_rule(door, monkeypatch):
    calls = _spy(monkeypatch, _numerical, "evaluation_way")
    FRONT_DOORS[door]()
    assert calls, f"{door} picked its way to evaluate points without the rule"


def test_a_patched_step_rule_moves_the_steps_of_a_check(monkeypatch):
    def quadratic(x):  # central differences are exact: every entry passes at once
        return jnp.sum(x**2)

    before = jaxcheck.check_grad(quadratic, X)
    original = _steps.default_step_scale
    monkeypatch.setattr(_steps, "default_step_scale", lambda *a: original(*a) * 4)
    after = jaxcheck.check_grad(quadratic, X)
    assert before.ok and after.ok
    np.testing.assert_array_equal(after.steps, 4 * before.steps)


# One options object: `CheckOptions`, validated once by `make_options`.

PUBLIC_CHECKS = [
    name
    for name in dir(jaxcheck)
    if name.startswith(("check_", "assert_"))
    or name in ("numerical_grad", "taylor_test")
]


@pytest.mark.parametrize("name", sorted(set(PUBLIC_CHECKS) - {"check_grads"}))
def test_no_front_door_redeclares_an_option(name):
    signature = inspect.signature(getattr(jaxcheck, name))
    redeclared = set(signature.parameters) & set(_options.OPTION_NAMES)
    assert not redeclared, f"{name} declares {redeclared} itself"
    assert any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def test_the_options_are_typed_once_for_type_checkers():
    hints = typing.get_type_hints(jaxcheck.check_grad, include_extras=True)
    assert hints["options"] == typing.Unpack[_options.CheckOptions]
    hints = typing.get_type_hints(jaxcheck.numerical_grad, include_extras=True)
    assert hints["options"] == typing.Unpack[_options.StepOptions]
    documented = _options.CheckOptions.__doc__ + _options.StepOptions.__doc__
    for option in _options.OPTION_NAMES:
        assert f"        {option}: " in documented, f"`{option}` is not documented"


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_every_check_validates_its_options_once(door, monkeypatch):
    from jaxcheck._base import validate as _validate

    calls = _spy(monkeypatch, _validate, "check_eps")
    FRONT_DOORS[door]()
    assert len(calls) == 1, f"{door} validated its options {len(calls)} times"


def test_a_misspelt_or_refused_option_is_named():
    with pytest.raises(TypeError, match="'atoll'. Did you mean `atol`"):
        jaxcheck.check_grad(_loss, X, atoll=1e-3)
    with pytest.raises(TypeError, match=r"check_jacobian\(\) does not take .*`resume`"):
        jaxcheck.check_jacobian(jnp.sin, X, resume="somewhere")
    with pytest.raises(TypeError, match=r"numerical_grad\(\) does not take .*`atol`"):
        jaxcheck.numerical_grad(_loss, X, atol=1e-3)
    with pytest.raises(TypeError, match=r"taylor_test\(\) does not take .*`method`"):
        jaxcheck.taylor_test(_loss, X, method="forward")
