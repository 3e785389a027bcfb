"""Mixed precision in one place: ``precision="auto"`` means bf16 autocast where it pays.

bf16 autocast runs on CUDA cards with bf16 tensor cores (compute capability 8.0 and newer:
A100, H100, RTX 30xx/40xx, L4). Older cards such as Colab's T4 (7.5) would emulate bf16,
so "auto" keeps them, and CPUs, in fp32.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def uses_bf16(device: torch.device, precision: str) -> bool:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
    return precision == "bf16"


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` to bf16 when :func:`uses_bf16`, else a no-op context."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
