"""Mixed precision in one place: ``precision="auto"`` picks what each device runs fastest.

| device | ``"auto"`` gives |
|---|---|
| CUDA, compute capability 8.0 and newer (A100, H100, L4, RTX 30xx/40xx) | bf16 autocast |
| CUDA, capability 7.x (V100, Colab's T4, RTX 20xx) | fp16 autocast with loss scaling |
| older CUDA cards, CPUs | fp32 |

bf16 keeps fp32's exponent range, so it needs no loss scaling. fp16 does: gradients are
computed for ``scale * loss`` and divided by ``scale`` afterwards, and ``scale`` halves
whenever a gradient overflows (:class:`InputGradScaler` for the synthesised inputs,
``torch.amp.GradScaler`` for model weights). Any precision can be asked for by name on any
device (``"fp16"`` and ``"bf16"`` also run on CPUs, slowly), which is how the tests compare
each branch with fp32 without a GPU.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype ``precision`` means on ``device``: ``torch.bfloat16``, ``torch.float16`` or ``None`` (fp32).

    >>> autocast_dtype("cpu", "auto") is None
    True
    >>> autocast_dtype("cpu", "fp16")
    torch.float16
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type != "cuda":
            return None
        major = torch.cuda.get_device_capability(device)[0]
        return torch.bfloat16 if major >= 8 else torch.float16 if major == 7 else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def uses_bf16(device: torch.device, precision: str) -> bool:
    return autocast_dtype(device, precision) == torch.bfloat16


def uses_fp16(device: torch.device, precision: str) -> bool:
    """True when ``precision`` means fp16 autocast on ``device``: gradients then need loss scaling."""
    return autocast_dtype(device, precision) == torch.float16


def autocast(device: torch.device | str, precision: str):
    """``torch.autocast`` to the dtype :func:`autocast_dtype` picks, else a no-op context."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class InputGradScaler:
    """Dynamic loss scaling for gradients with respect to inputs (synthesis under fp16).

    ``torch.amp.GradScaler`` serves optimizers over parameters; synthesis differentiates
    the loss with respect to the samples themselves. :meth:`grad` returns
    ``d(loss)/d(x)`` computed as ``d(scale * loss)/d(x) / scale``, and halves ``scale`` and
    recomputes when the scaled gradient overflows. ``scale`` doubles again after
    ``growth_interval`` steps without overflow. With ``enabled=False`` it is plain
    ``torch.autograd.grad``.
    """

    def __init__(self, enabled: bool, init_scale: float = 2.0 ** 10, growth_interval: int = 200,
                 min_scale: float = 2.0 ** -24):
        self.enabled, self.scale = enabled, init_scale if enabled else 1.0
        self.growth_interval, self.min_scale, self._good_steps = growth_interval, min_scale, 0

    def grad(self, forward, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(losses, grad)`` for ``losses = forward(x)`` (a vector; its sum is differentiated).

        ``forward`` is called again after each overflow. Gradients that stay non-finite at
        ``min_scale`` are returned as they are: the loss itself diverged, and the caller's
        NaN check reports it.
        """
        while True:
            losses = forward(x)
            if not self.enabled:
                return losses, torch.autograd.grad(losses.sum(), x)[0]
            (grad,) = torch.autograd.grad(losses.sum() * self.scale, x)
            if bool(torch.isfinite(grad).all()) or not bool(torch.isfinite(losses.detach()).all()) \
                    or self.scale / 2 < self.min_scale:
                break
            self.scale /= 2
            self._good_steps = 0
        self._good_steps += 1
        if self._good_steps >= self.growth_interval:
            self.scale *= 2
            self._good_steps = 0
        return losses, grad / self.scale
