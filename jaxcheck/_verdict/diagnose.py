"""What a failing leaf's error looks like, in one line: sign, factor, missing term...

`diagnose_leaf` works on the host, on the arrays of one leaf. Every "≈" is decided
by the entry's own pass band (`tolerance`, the bound on |analytic − numeric| the
comparison used), so a pattern is named only when it explains every entry it
covers as well as a correct gradient would have matched.

First the failing entries are located: one entry, or one index along some axes
(a row, a column), or the whole leaf. Then the error inside that region is
matched against patterns, the most specific first: not finite; analytic 0 where
numeric is not (missing term); the reverse (extra term); the transpose; a
constant factor (−1 is a sign error); a constant offset; swapped entries.
"""

from __future__ import annotations

import numpy as np

# A fitted factor is named as an integer m or 1/m when that exact value explains
# the error too; the largest m tried.
_LARGEST_SIMPLE_FACTOR = 1 << 20


def _index(index: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, index))}]"


def _region(failed: np.ndarray) -> tuple[tuple[int | None, ...], str]:
    """The indices shared by every failing entry along each axis (None: varies), and
    how to say it: "one entry wrong: [1, 2]", "only row 3 is wrong", ...; "" when
    the failures are not confined."""
    where = np.argwhere(failed)
    fixed: list[int | None] = []
    for axis, length in enumerate(failed.shape):
        values = np.unique(where[:, axis])
        fixed.append(int(values[0]) if length > 1 and values.size == 1 else None)
    if all(f is None for f in fixed):
        return tuple(fixed), ""
    if len(where) == 1 and failed.size > 1:
        return tuple(fixed), f"one entry wrong: {_index(tuple(where[0]))}"
    if failed.ndim == 2:
        (row, column) = fixed
        if column is None:
            return tuple(fixed), f"only row {row} is wrong"
        if row is None:
            return tuple(fixed), f"only column {column} is wrong"
    named = [(axis, f) for axis, f in enumerate(fixed) if f is not None]
    if len(named) == 1:
        axis, i = named[0]
        return tuple(fixed), f"only index {i} along axis {axis} is wrong"
    text = ", ".join(":" if f is None else str(f) for f in fixed)
    return tuple(fixed), f"only [{text}] is wrong"


def _format_factor(k: float) -> str:
    """3 significant digits, more when 3 would round it to ±1."""
    for digits in range(3, 17):
        text = f"{k:.{digits}g}"
        if abs(float(text)) != 1:
            return text
    return repr(k)


def _factor_text(k: float) -> str:
    if k == -1:
        return "analytic ≈ −numeric (sign)"
    sign = "−" if k < 0 else ""
    m = abs(k)
    if m >= 1 and m == round(m):
        return f"analytic ≈ {sign}{int(m)} × numeric"
    if m < 1 and 1 / m == round(1 / m):
        return f"analytic ≈ {sign}numeric / {int(round(1 / m))}"
    return f"analytic ≈ {_format_factor(k)} × numeric"


def _holds(residual: np.ndarray, tolerance: np.ndarray) -> bool:
    return bool(np.all(np.abs(residual) <= tolerance))


def _factor(a: np.ndarray, n: np.ndarray, tol: np.ndarray) -> str:
    """analytic ≈ k · numeric: k by least squares, named exactly if simple."""
    significant = np.abs(n) > tol
    norm = np.vdot(n, n).real
    if not significant.any() or norm == 0:
        return ""
    fitted = np.vdot(n, a) / norm  # Σ conj(n)·a / Σ |n|²
    if abs(fitted.imag) > 1e-12 * abs(fitted):
        return ""
    fitted = float(fitted.real)
    if fitted == 0:
        return ""
    candidates = []
    if abs(fitted) >= 1 and abs(fitted) <= _LARGEST_SIMPLE_FACTOR:
        candidates.append(float(round(fitted)))
    elif abs(fitted) < 1 and abs(1 / fitted) <= _LARGEST_SIMPLE_FACTOR:
        candidates.append(1 / round(1 / fitted))
    # Only a simple factor is named from one entry; any k fits one entry exactly.
    if np.count_nonzero(significant) >= 2:
        candidates.append(fitted)
    for k in candidates:
        if k not in (0.0, 1.0) and _holds(a - k * n, max(1.0, abs(k)) * tol):
            return _factor_text(k)
    return ""


def _offset(a: np.ndarray, n: np.ndarray, tol: np.ndarray) -> str:
    """analytic ≈ numeric + c, for a constant c, over two entries or more."""
    if a.size < 2:
        return ""
    c = np.mean(a - n)
    if not _holds(a - n - c, tol) or np.all(np.abs(c) <= tol):
        return ""
    if np.iscomplexobj(c):
        return f"analytic ≈ numeric + ({complex(c):.3g}) (constant offset)"
    sign = "−" if c < 0 else "+"
    return f"analytic ≈ numeric {sign} {abs(float(c)):.3g} (constant offset)"


def _negligible(small: np.ndarray, large: np.ndarray) -> bool:
    """Every entry of `small` is below 1 % of its counterpart in `large`."""
    return bool(np.all(np.abs(small) <= 0.01 * np.abs(large)))


def _pointwise(a: np.ndarray, n: np.ndarray, tol: np.ndarray, bad: np.ndarray) -> str:
    """Patterns of the failing entries `bad` (a mask over the same flat arrays)."""
    if not np.all(np.isfinite(a[bad])):
        return "analytic is NaN or Inf"
    if not np.all(np.isfinite(n[bad])):
        return "numeric is NaN or Inf"
    # A side is "0" only where it is within its band of 0 and far below the
    # other side: 8.4e-7 against 8.9e-6 is a factor of 10, not a missing term.
    if _holds(a[bad], tol[bad]) and _negligible(a[bad], n[bad]):
        return "analytic is 0 where numeric is not (missing term)"
    if _holds(n[bad], tol[bad]) and _negligible(n[bad], a[bad]):
        return "analytic is nonzero where numeric is 0 (extra term)"
    if np.iscomplexobj(a) and _holds(a - np.conj(n), tol):
        return "analytic ≈ conj(numeric)"
    return _factor(a, n, tol) or _offset(a, n, tol)


def _transpose(a: np.ndarray, n: np.ndarray, tol: np.ndarray) -> str:
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        return ""
    if _holds(a - n.T, np.maximum(tol, tol.T)):
        return "analytic matches the transpose of numeric"
    return ""


def _swapped(a: np.ndarray, n: np.ndarray, tol: np.ndarray, failed: np.ndarray) -> str:
    """The failing entries hold numeric's values in another order."""
    where = np.argwhere(failed)
    if len(where) < 2:
        return ""
    fa, fn, ft = a[failed], n[failed], tol[failed]
    by_a, by_n = np.argsort(fa, kind="stable"), np.argsort(fn, kind="stable")
    pair_tol = np.maximum(ft[by_a], ft[by_n])
    if not _holds(fa[by_a] - fn[by_n], pair_tol):
        return ""
    if len(where) == 2:
        first, second = (_index(tuple(i)) if a.ndim else "" for i in where)
        return f"entries {first} and {second} are swapped"
    return f"{len(where)} entries hold numeric's values in another order (permuted)"


def diagnose_leaf(
    analytic: np.ndarray,
    numeric: np.ndarray,
    failed: np.ndarray,
    tolerance: np.ndarray,
) -> str:
    """One line saying what a failing leaf's error looks like; "" when unrecognised.

    Args:
        analytic: the analytic gradient of the leaf.
        numeric: its finite-difference gradient, shaped like `analytic`.
        failed: booleans, True at the entries that failed the comparison.
        tolerance: each entry's pass band for |analytic − numeric|.

    Returns:
        For example "analytic ≈ −numeric (sign)", "analytic ≈ 2 × numeric",
        "only row 3 is wrong; analytic is 0 where numeric is not (missing term)",
        "one entry wrong: [1, 2]", "analytic matches the transpose of numeric";
        "" when no entry failed or the error has no recognised pattern.

    Examples:
        >>> import numpy as np
        >>> numeric = np.arange(1.0, 7.0).reshape(2, 3)
        >>> tolerance = np.full((2, 3), 1e-6)
        >>> diagnose_leaf(-numeric, numeric, np.ones((2, 3), bool), tolerance)
        'analytic ≈ −numeric (sign)'
        >>> analytic = numeric.copy()
        >>> analytic[1] *= 2
        >>> failed = np.abs(analytic - numeric) > tolerance
        >>> diagnose_leaf(analytic, numeric, failed, tolerance)
        'only row 1 is wrong; analytic ≈ 2 × numeric'
    """
    a, n = np.asarray(analytic), np.asarray(numeric)
    failed = np.asarray(failed, bool)
    tol = np.broadcast_to(np.asarray(tolerance, np.float64), a.shape)
    if not failed.any():
        return ""
    fixed, where = _region(failed)
    inside = tuple(slice(None) if f is None else f for f in fixed)
    ra, rn, rtol, bad = (np.atleast_1d(x[inside]) for x in (a, n, tol, failed))
    finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(n)))
    what = _transpose(a, n, tol) if finite and not where else ""
    what = what or _pointwise(ra, rn, rtol, bad)
    if not what and finite:
        what = _swapped(a, n, tol, failed)
    return "; ".join(x for x in (where, what) if x)


def diagnose_narrowed(
    shape: tuple[int, ...],
    flat: np.ndarray,
    analytic: np.ndarray,
    numeric: np.ndarray,
    failed: np.ndarray,
    tolerance: np.ndarray,
) -> str:
    """`diagnose_leaf` for a leaf of which only the entries `flat` (flat indices,
    with their values in the other arrays) were compared one by one, as in fast
    mode: the others passed the directional probes, so count as not failed.

    Examples:
        >>> import numpy as np
        >>> flat = np.array([3, 4, 5, 6])  # row 1 of a (3, 3) leaf, and [2, 0]
        >>> numeric = np.array([1.0, 2.0, 3.0, 4.0])
        >>> analytic = numeric * np.array([2, 2, 2, 1])
        >>> failed, tol = analytic != numeric, np.full(4, 1e-9)
        >>> diagnose_narrowed((3, 3), flat, analytic, numeric, failed, tol)
        'only row 1 is wrong (the rest passed the probes); analytic ≈ 2 × numeric'
    """
    failed = np.asarray(failed, bool)
    mask = np.zeros(int(np.prod(shape)), bool)
    mask[np.asarray(flat)[failed]] = True
    if not mask.any():
        return ""
    fixed, where = _region(mask.reshape(shape))
    inside = np.ones(len(flat), bool)
    for axis, index in zip(np.unravel_index(flat, shape), fixed, strict=True):
        if index is not None:
            inside &= axis == index
    a, n, tol = (np.asarray(x)[inside] for x in (analytic, numeric, tolerance))
    what = _pointwise(a, n, tol, failed[inside])
    where = f"{where} (the rest passed the probes)" if where else ""
    return "; ".join(x for x in (where, what) if x)
