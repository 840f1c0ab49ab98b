"""`check_grad` and `assert_grad`: analytic gradient against finite differences."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from .._base.errors import raise_if_failed
from .._base.options import DEFAULT_MEMORY_BUDGET, Options, make_options, tracked
from .._verdict.report import GradCheckReport
from .argnums import check_order, select
from .hessian import hessian_report
from .loss import gradient_report


def _hessian(
    fun: Callable[..., Any], params: Any, args: tuple[Any, ...], options: Options
) -> GradCheckReport:
    """`check_grad(..., order=2)`: the Hessian (mode="full") or one
    Hessian-vector product (mode="fast"), with progress and devices as for the
    gradient."""
    if options.mode == "sample":
        raise ValueError(
            'mode="sample" checks sampled entries of a gradient (order=1); for '
            'order=2 use mode="full" (the whole Hessian) or mode="fast" (one '
            "Hessian-vector product)."
        )
    hvp = options.mode == "fast"
    return tracked(
        options, lambda: hessian_report(fun, params, args, hvp=hvp, options=options)
    )


def check_grad(
    fun: Callable[..., Any],
    params: Any,
    *args: Any,
    grad: Any = None,
    method: str = "central",
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    nondet_tol: float | None = None,
    shadow: bool = True,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    argnums: int | tuple[int, ...] = 0,
    has_aux: bool = False,
    order: int = 1,
    mode: str = "full",
    samples: int | None = None,
    seed: int = 0,
    progress: bool | Callable[[int, int], Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
    resume: str | os.PathLike | None = None,
) -> GradCheckReport:
    """Compares the gradient of a scalar `fun` with finite differences, entry by entry.

    Every floating entry of `params` is perturbed by ±h and all the perturbed
    evaluations run batched (`vmap` inside `jit`, in memory-bounded chunks). Entry i
    passes when |aᵢ − nᵢ| ≤ atol + rtol·max(|aᵢ|, |nᵢ|) and both are finite, where
    by default atol is the entry's own error bound; the tolerance is never scaled
    by the size of an array, so a large leaf cannot hide a wrong small one. An
    entry that does not pass at once is re-evaluated at 2h (Richardson), at a
    smaller step where `fun` is not finite, and accepted as a kink where its
    analytic value lies between the one-sided slopes (see the README).
    Non-floating leaves (integer and bool arrays, PRNG keys, Python ints, strings,
    callables, None) pass through unperturbed and are listed in the report as not
    perturbed. A Python float leaf is differentiable, as in
    `jax.grad`.

    Args:
        fun: a function `fun(params, *args)` returning a real floating scalar.
        params: a pytree of parameters.
        *args: further arguments of `fun` (data, PRNG keys), never perturbed.
        grad: the analytic gradient to check. None (default) uses `jax.grad(fun)`,
            so the `custom_vjp`/`custom_jvp` rules inside `fun` are what is checked;
            a callable `grad(params, *args)` (a hand-derived gradient); or a pytree
            of values. Either must match `params` in structure, shapes and dtypes
            (None or anything at non-floating leaves).
        method: "central" (default), "forward", "backward", "central4" (five
            points, fourth order) or "complex" (complex step); see
            `numerical_grad`.
        eps: absolute step for every entry; None picks one per entry from its
            dtype and magnitude (see `numerical_grad`).
        atol: absolute tolerance; None uses the entry's error bound (round-off,
            plus the Richardson truncation estimate for an entry refined at 2h)
            plus the dtype's floor times the leaf's largest |numeric| entry.
        rtol: relative tolerance; None uses the dtype's floor (float64 1e-6,
            float32 1e-4, float16 1e-2, bfloat16 5e-2).
        shadow: for a float32, float16 or bfloat16 `fun`, take the finite
            differences in a float64 twin of it (leaves and floating `args` cast
            up, x64 enabled for the check), which makes them accurate to ~1e-10;
            the analytic gradient stays in the original dtype. When `fun` does
            not allow it (it fails in float64, or casts down inside), the check
            falls back to the native dtype and the report says why.
        nondet_tol: the largest spread of J(θ) between identical evaluations
            that is still deterministic; None uses 16·u·|J(θ)|. Beyond it the
            report says `fun` is nondeterministic and the check fails.
        chunk_size: perturbed evaluations per batch; None derives it from
            `memory_budget`.
        memory_budget: bytes that one batch of evaluations may use (default 1 GiB).
        argnums: which positional arguments of `fun` to differentiate, as in
            `jax.grad`: 0 (`params`, the default), another int, or a tuple (then
            `grad` is a tuple and paths start `[k]`, the k-th selected argument).
        has_aux: `fun` returns `(value, aux)`; aux is ignored, as in `jax.grad`.
        order: 1 (default) checks the gradient; 2 checks the Hessian, the
            Jacobian of `jax.grad(fun)`, as `check_hessian` does (a report with
            entries located as `grad<path>[i] × params<path>[j]`): with
            mode="full" the whole Hessian, with mode="fast" one Hessian-vector
            product along a `seed`ed random tangent (`check_hessian(...,
            hvp=True)`); mode="sample" is for order 1 only.
        mode: "full" (default) compares every entry. "fast" first compares, per
            leaf, 3 directional derivatives along seeded random directions (six
            evaluations of `fun` per leaf), then checks entry by entry only the
            leaves whose probes disagree, which locates the wrong entries.
            "sample" compares `samples` seeded random entries of every leaf.
        samples: entries per leaf with mode="sample" (None: 16; all entries of
            a smaller leaf). Only for mode="sample".
        seed: seeds the random directions and entries; leaf L draws from
            `numpy.random.default_rng((seed, offset of L in θ))`.
        progress: None (default) shows a tqdm bar on stderr when stderr is a
            terminal, tqdm is installed and the check looks longer than about
            2 s; True always shows it (needs tqdm); False never; a callable is
            called as progress(done, total) after each chunk, with the perturbed
            evaluations done and announced so far.
        devices: the devices that share each batch of perturbed evaluations
            (a `Mesh` over them, the batch split with a `NamedSharding`). None
            (default) uses all local devices when there is more than one; pass
            `[jax.devices()[0]]` to stay on one device.
        resume: a directory in which to record each chunk of evaluations as it
            finishes, so that a long check that was stopped (killed, Ctrl-C)
            resumes where it was when run again with the same directory, and
            gives the same report. A record of a different check (another `fun`,
            θ, args, options, device count or version) is refused with a
            ValueError. None (default): no record. Only for order=1.

    Returns:
        A `GradCheckReport`: `.ok`, `.rel_diff`, `.leaves` (a summary per leaf,
        whose `.checked` says how the leaf was checked), `.seconds` and
        `.compile_seconds` (time spent tracing and compiling),
        `.worst(k)`, `str(report)` and `.to_dict()`.

    Raises:
        TypeError, ValueError: for invalid arguments, a non-scalar or non-real
            output, no floating entries in `params`, a `grad` that does not match
            `params`, or a non-finite value of `fun` at `params`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> def loss(params, x):
        ...     return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)
        >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
        >>> report = jaxcheck.check_grad(loss, params, jnp.ones((4, 3)))
        >>> report.ok
        True
        >>> bad = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}  # a wrong gradient
        >>> jaxcheck.check_grad(loss, params, jnp.ones((4, 3)), grad=bad).ok
        False
        >>> fast = jaxcheck.check_grad(loss, params, jnp.ones((4, 3)), mode="fast")
        >>> [leaf.checked for leaf in fast.leaves]
        ['3 directions', '3 directions']
    """
    fun, params, args, grad = select(fun, params, args, grad, argnums, has_aux)
    options = make_options(
        method=method, eps=eps, atol=atol, rtol=rtol, nondet_tol=nondet_tol,
        shadow=shadow, chunk_size=chunk_size, memory_budget=memory_budget,
        mode=mode, samples=samples, seed=seed, progress=progress, devices=devices,
        resume=resume,
    )  # fmt: skip
    if check_order(order, grad) == 2:
        if options.resume is not None:
            raise ValueError(
                "`resume` records the evaluations of a gradient check (order=1); "
                "a Hessian check (order=2) does not keep a record: drop `resume`."
            )
        return _hessian(fun, params, args, options)
    return gradient_report(fun, params, args, grad, options)


def assert_grad(fun: Callable[..., Any], params: Any, *args: Any, **options: Any):
    """Like `check_grad`, but raises `GradCheckError` when the gradient is wrong.

    Takes the same arguments as `check_grad` and returns its report when the check
    passes, so it drops into a test as one line.

    Raises:
        GradCheckError: an `AssertionError` whose first line is the verdict
            (the failing leaves and the worst entry by path and index), followed
            by the report: the leaf table, the worst entries and the verdict.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxcheck
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> _ = jaxcheck.assert_grad(loss, {"w": jnp.arange(3.0)})
        >>> wrong = lambda p: {"w": 3 * p["w"]}  # should be 2 * w
        >>> jaxcheck.assert_grad(loss, {"w": jnp.arange(3.0)}, grad=wrong)
        Traceback (most recent call last):
        ...
        jaxcheck.GradCheckError: FAILED: 2 of 3 entries differ, in ['w']; worst ...
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    return raise_if_failed(check_grad(fun, params, *args, **options))
