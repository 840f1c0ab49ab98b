"""One table of bad inputs across every public check: each is refused before
anything is traced, with a TypeError or ValueError that names the argument."""

import jax
import jax.numpy as jnp
import pytest

import jaxcheck

pytestmark = pytest.mark.core

W = jnp.array([0.5, -1.0, 2.0])


def loss(w):
    return jnp.sum(jnp.sin(w) ** 2)


ENTRY_POINTS = {
    "check_grad": lambda f, p, **kw: jaxcheck.check_grad(f, p, **kw),
    "assert_grad": lambda f, p, **kw: jaxcheck.assert_grad(f, p, **kw),
    "numerical_grad": lambda f, p, **kw: jaxcheck.numerical_grad(f, p, **kw),
    "taylor_test": lambda f, p, **kw: jaxcheck.taylor_test(f, p, **kw),
    "check_jacobian": lambda f, p, **kw: jaxcheck.check_jacobian(f, p, **kw),
    "check_vjp": lambda f, p, **kw: jaxcheck.check_vjp(f, (p,), **kw),
    "check_jvp": lambda f, p, **kw: jaxcheck.check_jvp(f, (p,), **kw),
    "check_hessian": lambda f, p, **kw: jaxcheck.check_hessian(f, p, **kw),
}
WITH_EPS = [name for name in ENTRY_POINTS if name != "taylor_test"]

BAD_OPTIONS = [
    # (options, error, what the message must name)
    (dict(eps=0.0), ValueError, "`eps`"),
    (dict(eps=-1e-3), ValueError, "`eps`"),
    (dict(eps=float("nan")), ValueError, "`eps`"),
    (dict(eps="small"), TypeError, "`eps`"),
    (dict(chunk_size=0), ValueError, "`chunk_size`"),
    (dict(chunk_size=2.5), TypeError, "`chunk_size`"),
    (dict(memory_budget=0), ValueError, "`memory_budget`"),
    (dict(memory_budget=-5), ValueError, "`memory_budget`"),
    (dict(memory_budget=16), ValueError, "`memory_budget`"),
    (dict(bogus=1), TypeError, "bogus"),
]


# taylor_test takes no `eps` (it walks a whole ladder of steps): see below.
CASES = [
    (name, *bad)
    for name in ENTRY_POINTS
    for bad in BAD_OPTIONS
    if name in WITH_EPS or "eps" not in bad[0]
]


@pytest.mark.parametrize(
    "name, options, error, named", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_a_bad_option_is_named(name, options, error, named):
    calls = []

    def counted(w):
        calls.append(None)
        return loss(w)

    with pytest.raises(error, match=named):
        ENTRY_POINTS[name](counted, W, **options)
    if named != "`memory_budget`":  # that one needs a trace to size `fun`
        assert calls == [], "validated after tracing `fun`"


@pytest.mark.parametrize("option", ["eps", "method"])
def test_taylor_test_refuses_the_options_that_cannot_apply(option):
    with pytest.raises(TypeError, match=option):
        jaxcheck.taylor_test(loss, W, **{option: 1e-3})


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_fun_must_be_callable(name):
    with pytest.raises(TypeError, match="`fun`"):
        ENTRY_POINTS[name](3.0, W)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_nothing_to_check_is_refused(name):
    with pytest.raises(ValueError, match="nothing to check|no floating"):
        ENTRY_POINTS[name](lambda p: jnp.float64(1.0), {"n": 3, "s": "text"})


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_check_inside_jit_is_refused(name):
    @jax.jit
    def inside(w):
        ENTRY_POINTS[name](loss, w)
        return w

    with pytest.raises(TypeError, match="tracer"):
        inside(W)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_an_error_in_fun_comes_out_as_itself(name):
    class Planted(Exception):
        pass

    def broken(w):
        raise Planted("inside fun")

    with pytest.raises(Planted, match="inside fun") as info:
        ENTRY_POINTS[name](broken, W)
    assert any("jaxcheck" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize(
    "kwargs, error, named",
    [
        (dict(order=0), ValueError, "order"),
        (dict(order=1, modes=("sideways",)), ValueError, "modes"),
        (dict(order=1, eps=-1.0), ValueError, "eps"),
    ],
)
def test_the_drop_in_check_grads_refuses_bad_arguments(kwargs, error, named):
    order = kwargs.pop("order")
    with pytest.raises(error, match=named):
        jaxcheck.check_grads(loss, (W,), order, **kwargs)


@pytest.mark.parametrize(
    "options, error, named",
    [
        (dict(mode="bogus"), ValueError, "`mode`"),
        (dict(mode="sample", samples=0), ValueError, "`samples`"),
        (dict(mode="sample", samples="x"), TypeError, "`samples`"),
        (dict(devices="gpu"), TypeError, "`devices`"),
        (dict(progress=3), TypeError, "`progress`"),
        (dict(shadow="yes"), TypeError, "`shadow`"),
        (dict(nondet_tol=-1.0), ValueError, "`nondet_tol`"),
        (dict(method="richardson"), ValueError, "`method`"),
        (dict(atol=float("nan")), ValueError, "`atol`"),
        (dict(rtol=-1e-3), ValueError, "`rtol`"),
    ],
    ids=lambda x: str(x) if isinstance(x, dict) else "",
)
def test_a_bad_check_grad_option_is_named(options, error, named):
    with pytest.raises(error, match=named):
        jaxcheck.check_grad(loss, W, **options)


def _counted_rules(calls):
    @jax.custom_vjp
    def vjp_sin(w):
        calls.append(None)
        return jnp.sin(w)

    vjp_sin.defvjp(lambda w: (vjp_sin(w), w), lambda w, g: (jnp.cos(w) * g,))

    @jax.custom_jvp
    def jvp_sin(w):
        calls.append(None)
        return jnp.sin(w)

    jvp_sin.defjvp(lambda p, t: (jvp_sin(p[0]), jnp.cos(p[0]) * t[0]))
    return {"check_custom_vjp": vjp_sin, "check_custom_jvp": jvp_sin}


RULE_CASES = [
    (name, *bad)
    for name in ("check_custom_vjp", "check_custom_jvp")
    for bad in BAD_OPTIONS
]


@pytest.mark.parametrize(
    "name, options, error, named",
    RULE_CASES,
    ids=[f"{c[0]}-{c[1]}" for c in RULE_CASES],
)
def test_the_rule_checks_name_a_bad_option(name, options, error, named):
    calls = []
    fun = _counted_rules(calls)[name]
    with pytest.raises(error, match=named):
        getattr(jaxcheck, name)(fun, W, **options)
    if named != "`memory_budget`":
        assert calls == [], "validated after tracing `fun`"
