"""`diagnose_leaf`: one line saying what a failing leaf's error looks like."""

import numpy as np
import pytest

from jaxcheck._verdict.diagnose import diagnose_leaf

RTOL, ATOL = 1e-5, 1e-8


def _numeric(shape, seed=0):
    """A gradient with entries of every sign and size, none near zero."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * 10.0 ** rng.uniform(-2, 2, size=shape)
    return np.where(np.abs(values) < 1e-3, 1.0, values)


def _noisy(numeric, seed=1):
    """`numeric` as finite differences would give it: off by well under rtol."""
    rng = np.random.default_rng(seed)
    return numeric * (1 + 1e-7 * rng.normal(size=np.shape(numeric)))


def diagnose(analytic, numeric):
    """The comparison's pass band and verdicts, then the diagnosis."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    tolerance = ATOL + RTOL * np.maximum(np.abs(analytic), np.abs(numeric))
    failed = ~(np.abs(analytic - numeric) <= tolerance)
    failed |= ~np.isfinite(analytic) | ~np.isfinite(numeric)
    return diagnose_leaf(analytic, numeric, failed, tolerance)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize(
    "factor, expected",
    [
        (-1.0, "analytic ≈ −numeric (sign)"),
        (2.0, "analytic ≈ 2 × numeric"),
        (0.5, "analytic ≈ numeric / 2"),
        (-2.0, "analytic ≈ −2 × numeric"),
        (32.0, "analytic ≈ 32 × numeric"),
        (1 / 32, "analytic ≈ numeric / 32"),
    ],
)
def test_simple_factor_is_named(shape, factor, expected):
    true = _numeric(shape)
    assert diagnose(factor * true, _noisy(true)) == expected


@pytest.mark.parametrize(
    "factor, expected",
    [(1.37, "analytic ≈ 1.37 × numeric"), (1.001, "analytic ≈ 1.001 × numeric")],
)
def test_other_factor_is_estimated(factor, expected):
    true = _numeric((4, 3))
    assert diagnose(factor * true, _noisy(true)) == expected


def test_factor_is_not_named_from_a_single_scalar():
    # Any factor fits one number; only a simple one says anything.
    assert diagnose(np.array(1.37), np.array(1.0)) == ""
    assert diagnose(np.array(-3.0), np.array(1.5)) == "analytic ≈ −2 × numeric"


def test_factor_with_errors_beyond_tolerance_is_not_named():
    true = _numeric((6, 5))
    rng = np.random.default_rng(3)
    analytic = 2 * true * (1 + 1e-2 * rng.normal(size=true.shape))
    assert diagnose(analytic, true) == ""


@pytest.mark.parametrize("shape", [(7,), (4, 5)])
def test_missing_term(shape):
    true = _numeric(shape)
    assert (
        diagnose(np.zeros(shape), true)
        == "analytic is 0 where numeric is not (missing term)"
    )
    # Zero at scattered entries only: the term is missing where it is nonzero.
    analytic = true.copy().reshape(-1)
    analytic[::3] = 0.0
    assert (
        diagnose(analytic.reshape(shape), true)
        == "analytic is 0 where numeric is not (missing term)"
    )


def test_extra_term():
    true = _numeric((4, 5))
    numeric = true.copy()
    numeric[::2, ::2] = 0.0
    numeric[1, 1] = 0.0
    assert (
        diagnose(true, numeric) == "analytic is nonzero where numeric is 0 (extra term)"
    )


def test_constant_offset():
    true = _numeric((3, 4))
    assert (
        diagnose(true + 0.5, _noisy(true))
        == "analytic ≈ numeric + 0.5 (constant offset)"
    )
    assert (
        diagnose(true - 0.25, _noisy(true))
        == "analytic ≈ numeric − 0.25 (constant offset)"
    )


def test_transpose():
    true = _numeric((4, 4))
    assert diagnose(true.T, _noisy(true)) == "analytic matches the transpose of numeric"


@pytest.mark.parametrize(
    "where, expected",
    [
        ((3, slice(None)), "only row 3 is wrong"),
        ((slice(None), 1), "only column 1 is wrong"),
    ],
)
def test_one_row_or_column(where, expected):
    true = _numeric((5, 4))
    analytic = true.copy()
    analytic[where] += np.random.default_rng(4).normal(size=analytic[where].shape)
    assert diagnose(analytic, _noisy(true)) == expected


def test_one_row_with_a_pattern_inside_it():
    true = _numeric((5, 4))
    analytic = true.copy()
    analytic[1] *= 2
    assert diagnose(analytic, true) == "only row 1 is wrong; analytic ≈ 2 × numeric"
    analytic = true.copy()
    analytic[:, 2] = 0.0
    assert diagnose(analytic, true) == (
        "only column 2 is wrong; analytic is 0 where numeric is not (missing term)"
    )


def test_one_index_along_an_axis_of_a_3d_leaf():
    true = _numeric((3, 4, 2))
    analytic = true.copy()
    analytic[:, 2, :] *= -1
    assert diagnose(analytic, true) == (
        "only index 2 along axis 1 is wrong; analytic ≈ −numeric (sign)"
    )
    analytic = true.copy()
    analytic[2, :, 1] += 1.0
    assert diagnose(analytic, true) == (
        "only [2, :, 1] is wrong; analytic ≈ numeric + 1 (constant offset)"
    )


def test_one_entry():
    true = _numeric((4, 5))
    analytic = true.copy()
    analytic[1, 2] += 0.123
    assert diagnose(analytic, true) == "one entry wrong: [1, 2]"
    analytic[1, 2] = -true[1, 2]
    assert diagnose(analytic, true) == (
        "one entry wrong: [1, 2]; analytic ≈ −numeric (sign)"
    )
    vector = true[0].copy()
    vector[3] = 0.0
    assert diagnose(vector, true[0]) == (
        "one entry wrong: [3]; analytic is 0 where numeric is not (missing term)"
    )


def test_swapped_and_permuted_entries():
    true = _numeric((4, 5))
    analytic = true.copy()
    analytic[0, 1], analytic[2, 3] = true[2, 3], true[0, 1]
    assert diagnose(analytic, true) == "entries [0, 1] and [2, 3] are swapped"
    analytic = true.copy().reshape(-1)
    moved = np.array([1, 6, 13, 17])
    analytic[moved] = analytic[np.roll(moved, 1)]
    assert diagnose(analytic.reshape(4, 5), true) == (
        "4 entries hold numeric's values in another order (permuted)"
    )


def test_non_finite_entries():
    true = _numeric((4, 5))
    analytic = true.copy()
    analytic[0, 0] = analytic[3, 4] = np.nan
    assert diagnose(analytic, true) == "analytic is NaN or Inf"
    numeric = true.copy()
    numeric[2, :] = np.inf
    assert diagnose(true, numeric) == "only row 2 is wrong; numeric is NaN or Inf"


def test_complex_conjugate():
    true = _numeric((3, 3)) + 1j * _numeric((3, 3), seed=5)
    assert diagnose(np.conj(true), true) == "analytic ≈ conj(numeric)"


# ---------------------------------------------------------------------------
# What must not be diagnosed


@pytest.mark.parametrize("shape", [(), (6,), (4, 5), (2, 3, 4)])
def test_correct_leaf_gives_nothing(shape):
    true = _numeric(shape)
    assert diagnose(true, _noisy(true)) == ""


def test_empty_leaf_gives_nothing():
    assert diagnose(np.zeros((0, 3)), np.zeros((0, 3))) == ""


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(8,), (5, 4), (5, 5), (2, 3, 4)])
def test_random_errors_everywhere_give_nothing(shape, seed):
    true = _numeric(shape, seed)
    rng = np.random.default_rng(100 + seed)
    analytic = true + rng.normal(size=shape) * np.abs(true)
    assert diagnose(analytic, true) == ""


def test_errors_in_two_rows_are_not_called_one_row():
    true = _numeric((5, 4))
    analytic = true.copy()
    analytic[1] *= 2
    analytic[3] *= 3
    assert diagnose(analytic, true) == ""


def test_a_small_analytic_value_is_not_called_zero():
    """Issue seen on JAX's own tests: analytic 8.4e-7 against numeric −8.9e-6,
    both inside a wide band of 0, is a factor of about −0.09, not a missing term."""
    a = np.array([8.4e-7, 1.0, 2.0])
    n = np.array([-8.9e-6, 1.0, 2.0])
    tol = np.full(3, 1e-6)
    failed = np.array([True, False, False])
    assert "missing term" not in diagnose_leaf(a, n, failed, tol)
    a[0] = 0.0
    assert "missing term" in diagnose_leaf(a, n, failed, tol)
