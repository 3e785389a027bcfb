"""Channel-last strides for one-channel images on a CPU: same values, faster convolutions.

With channel-last strides oneDNN runs its NHWC convolution kernels instead of padding the
single channel to 16, so a LeNet-5 step gets 1.5-2x faster on a CPU
(``benchmarks/throughput.py``). The model's activations become channel-last too, so a model
that calls ``.view`` on them fails: :func:`takes_channel_last` probes it once.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_last(x: Tensor) -> Tensor:
    """The same values as ``x`` ``(N, 1, H, W)`` with channel-last strides (still contiguous)."""
    n, c, h, w = x.shape
    return torch.empty_strided(x.shape, (c * h * w, 1, w * c, c), dtype=x.dtype, device=x.device).copy_(x)


def takes_channel_last(model, input_shape: tuple[int, ...], device: torch.device) -> bool:
    """Whether to feed ``model`` one-channel images ``input_shape = (1, H, W)`` with channel-last strides.

    Only on a CPU, for an ``nn.Module`` with a ``Conv2d`` (a black-box model would pay for the
    probe in queries) that accepts such a batch; the probe runs in eval mode, so BatchNorm
    statistics are left alone.
    """
    if device.type != "cpu" or len(input_shape) != 3 or input_shape[0] != 1:
        return False
    if not (isinstance(model, nn.Module) and any(isinstance(m, nn.Conv2d) for m in model.modules())):
        return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(channel_last(torch.zeros((2, *input_shape), device=device)))
    except Exception:  # e.g. a .view on channel-last activations; any failure means "keep NCHW"
        return False
    finally:
        model.train(was_training)
    return True
