"""Step sizes "across scales": one step size per synthetic mini-batch.

CAKE scatters samples along the decision boundary partly through the step size: batch
``m`` of ``M`` is optimised with its own step size ``eta_m``, from ``lr`` for the first
batch down by ``decades`` orders of magnitude. Early batches travel far from their noise
start; late batches barely move. Chapter 3 of the book plots both schedules.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("log-linear", "cosine", "constant")


def step_sizes(num_batches: int, lr: float, decades: float, kind: str = "log-linear") -> Tensor:
    r"""Step size of each of ``num_batches`` mini-batches, shape :math:`(M,)`, float64.

    * ``"log-linear"``: :math:`\eta_m = 10^{\log_{10}\eta_0 - d\,m/M}`, linear in the exponent.
    * ``"cosine"``: :math:`\eta_m = 10^{\log_{10}\eta_0 - d + \frac{d}{2}(1 + \cos(\pi m / M))}`.
    * ``"constant"``: :math:`\eta_m = \eta_0`.

    Both decaying forms start at :math:`\eta_0` and approach, but do not reach,
    :math:`\eta_0 \cdot 10^{-d}` (the reference divides by :math:`M`, not :math:`M-1`).

    Examples:
        >>> step_sizes(4, lr=0.1, decades=4)
        tensor([0.1000, 0.0100, 0.0010, 0.0001], dtype=torch.float64)
        >>> step_sizes(2, lr=0.1, decades=4, kind="cosine")
        tensor([0.1000, 0.0010], dtype=torch.float64)
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    m = torch.arange(num_batches, dtype=torch.float64) / num_batches
    top = math.log10(lr)
    if kind == "log-linear":
        exponent = top - decades * m
    elif kind == "cosine":
        exponent = top - decades + 0.5 * decades * (1 + torch.cos(math.pi * m))
    elif kind == "constant":
        exponent = torch.full_like(m, top)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    return 10.0**exponent
