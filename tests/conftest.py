import pytest
import torch
from torch import nn


@pytest.fixture
def tiny_teacher():
    """A small conv classifier on 1x8x8 inputs with 5 classes, in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()
