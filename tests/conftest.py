import contextlib

import pytest
import torch
from torch import nn


@contextlib.contextmanager
def single_thread():
    """Compute with one torch thread: tiny tensors gain nothing from threads, subprocess
    workers use one, and equal thread counts give equal float sums."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    with single_thread():
        yield


@pytest.fixture
def tiny_teacher():
    """A small conv classifier on 1x8x8 inputs with 5 classes, in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()
