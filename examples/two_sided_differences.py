"""The lecture seed: two-sided differences are much more accurate than one-sided.

For f(θ) = θ³ at θ = 1 (exact derivative 3), a table of the step ε against the
error of the forward difference (error ≈ 3ε, first order) and of the central
difference (error = ε², second order): at ε = 0.01 the central difference gives
3.0001 and the forward one 3.0301. Below some ε, round-off takes over, which is
why jaxcheck picks the step from the dtype: about u^(1/3) for central.
"""

import jax
import jax.numpy as jnp

import jaxcheck

jax.config.update("jax_enable_x64", True)


def cube(theta):
    return theta**3


theta = jnp.array(1.0)
print(f"{'eps':>8} {'forward':>12} {'error':>9} {'central':>12} {'error':>9}")
errors = {}
for eps in (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10):
    row = []
    for method in ("forward", "central"):
        value = float(jaxcheck.numerical_grad(cube, theta, eps=eps, method=method))
        errors[method, eps] = abs(value - 3.0)
        row += [value, abs(value - 3.0)]
    print(f"{eps:>8.0e} {row[0]:>12.8f} {row[1]:>9.1e} {row[2]:>12.8f} {row[3]:>9.1e}")

assert abs(errors["central", 1e-2] - 1e-4) < 1e-9  # 3.0001
assert abs(errors["forward", 1e-2] - 0.0301) < 1e-9  # 3.0301
assert errors["central", 1e-3] < errors["forward", 1e-3] / 100

report = jaxcheck.check_grad(cube, theta)  # its own step, 2^-17 for float64
print(f"default step: rel diff {report.rel_diff:.1e}, ok = {report.ok}")
assert report.ok and report.rel_diff < 1e-7  # the lecture's threshold
