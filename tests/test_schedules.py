import math

import pytest
import torch

from cake_mini.schedules import step_sizes


@pytest.mark.parametrize("kind", ["log-linear", "cosine"])
def test_first_and_last_step_size(kind):
    eta = step_sizes(256, lr=0.1, decades=4, kind=kind)
    assert eta.shape == (256,)
    assert eta[0].item() == pytest.approx(0.1)
    assert 1e-5 < eta[-1].item() < 1.1e-5 * (10 ** (4 / 256) if kind == "log-linear" else 1.001)
    assert torch.all(eta[1:] < eta[:-1])


def test_log_linear_is_linear_in_the_exponent():
    log_eta = step_sizes(10, lr=0.1, decades=4).log10()
    assert torch.allclose(log_eta[1:] - log_eta[:-1], torch.full((9,), -0.4, dtype=torch.float64))


def test_constant_and_errors():
    assert torch.all(step_sizes(5, 0.01, 4, "constant") == 0.01)
    with pytest.raises(ValueError, match="schedule must be one of"):
        step_sizes(5, 0.1, 4, "linear")
    with pytest.raises(ValueError, match="num_batches"):
        step_sizes(0, 0.1, 4)
