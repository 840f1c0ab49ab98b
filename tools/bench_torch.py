"""`torch.autograd.gradcheck` on the benchmark's MLP, when torch is installed.

The model is built from the same float64 NumPy arrays as the JAX one (see
`bench_model.build_model`), so both libraries check bit-identical weights
and data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def import_torch() -> Any:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_loss(
    torch: Any, model: tuple, device: str = "cpu"
) -> tuple[Callable[..., Any], tuple]:
    """The MLP's loss as a function of its weights, and those weights as float64
    tensors on `device` that require grad: ([0]['w'], [0]['b'], [1]['w'], ...)."""
    linear = torch.nn.functional.linear  # takes weights as (out, in): hence w.t()
    params, x, y = model
    on = dict(dtype=torch.float64, device=device)
    xt, yt = torch.tensor(x, **on), torch.tensor(y, **on)
    flat = tuple(
        torch.tensor(layer[k], **on, requires_grad=True)
        for layer in params
        for k in ("w", "b")
    )

    def loss(*ws: Any) -> Any:
        hidden = xt
        for k in range(0, len(ws) - 2, 2):
            hidden = torch.tanh(linear(hidden, ws[k].t(), ws[k + 1]))
        out = linear(hidden, ws[-2].t(), ws[-1])
        return 0.5 * ((out - yt) ** 2).sum(-1).mean()

    return loss, flat


def torch_gradcheck(torch: Any, model: tuple, fast: bool, device: str = "cpu") -> bool:
    """`torch.autograd.gradcheck` (slow, every entry; or `fast_mode`, one random
    projection) on the float64 MLP on `device`, with torch's default tolerances."""
    loss, flat = torch_loss(torch, model, device)
    return bool(
        torch.autograd.gradcheck(loss, flat, fast_mode=fast, raise_exception=False)
    )
