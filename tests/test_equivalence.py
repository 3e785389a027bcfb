"""The fast path (synthesize) computes what the readable loop (synthesize_reference) computes.

synthesize optimises ``parallel_batches`` mini-batches as one batch with per-sample step
sizes and, on CPU, stores one-channel images channel-last; none of that may change the
samples beyond float rounding. The configs use small loss weights on purpose: with the
presets' weights (e.g. w_tv=1e7) a step moves pixels by whole units and rounding
differences grow chaotically, which would test the dynamics, not the implementation.
"""
import pytest
import torch
from torch import nn

import cake_mini as cm
from cake_mini.models import make_model

# 67 samples in batches of 10: 7 batches, the last one cut to 7 samples
BASE = cm.SynthesisConfig(num_samples=67, batch_size=10, steps=6, group_size=5, lr=1.0, lr_decades=2,
                          w_cls=3.0, w_contr=0.3, w_tv=1.0, precision="fp32", seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def _conv_teacher(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).eval()


def _mlp_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 5)).eval()


class _ViewTeacher(nn.Module):
    """Flattens its activations with .view, which fails on channel-last tensors."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))


TEACHERS = {
    "conv-1ch": (_conv_teacher, (1,), (1, 8, 8)),
    "conv-3ch": (_conv_teacher, (3,), (3, 8, 8)),
    "mlp": (_mlp_teacher, (), (6,)),
    "view": (_ViewTeacher, (), (1, 8, 8)),
}


def _teacher(name):
    build, args, shape = TEACHERS[name]
    return build(*args).eval(), shape


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal up to float rounding: max |a - b| <= rtol * max(1, max |b|)."""
    assert a.shape == b.shape
    scale = max(1.0, b.abs().max().item())
    err = (a - b).abs().max().item()
    assert err <= rtol * scale, f"max |diff| = {err:.3g} at scale {scale:.3g}"


def _same_set(fast: cm.SyntheticSet, ref: cm.SyntheticSet) -> None:
    _close(fast.x, ref.x)
    _close(fast.soft_labels, ref.soft_labels)
    assert torch.equal(fast.labels, ref.labels)
    assert torch.equal(fast.step_size, ref.step_size)
    assert torch.equal(fast.step, ref.step)


@pytest.mark.parametrize("parallel_batches", [1, 3, 7, 16])  # 3 does not divide 7 batches; 16 > 7
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("method", ["cake", "lake"])
def test_fast_path_equals_reference(method, optimizer, parallel_batches):
    teacher, shape = _teacher("conv-1ch")
    cfg = BASE.replace(method=method, optimizer=optimizer, parallel_batches=parallel_batches)
    fast = cm.synthesize(teacher, shape, 5, cfg, progress=False)
    ref = cm.synthesize_reference(teacher, shape, 5, cfg)
    assert len(fast) == len(ref) == 67
    _same_set(fast, ref)


@pytest.mark.parametrize("name", ["conv-3ch", "mlp", "view"])
@pytest.mark.parametrize("method, optimizer", [("cake", "sgd"), ("lake", "adam")])
def test_fast_path_equals_reference_for_other_inputs(name, method, optimizer):
    # three channels and flat inputs keep their layout; a teacher that .view()s its
    # activations must fall back to the ordinary layout instead of failing
    teacher, shape = _teacher(name)
    cfg = BASE.replace(method=method, optimizer=optimizer, parallel_batches=3,
                       w_tv=BASE.w_tv if len(shape) == 3 else 0.0)  # no total variation on flat inputs
    _same_set(cm.synthesize(teacher, shape, 5, cfg, progress=False),
              cm.synthesize_reference(teacher, shape, 5, cfg))


def test_lenet5_fast_path_equals_reference():
    # the real architecture, through oneDNN's channel-last kernels on CPU
    torch.manual_seed(0)
    teacher = make_model("lenet5").eval()
    cfg = BASE.replace(num_samples=25, group_size=None, steps=3, parallel_batches=2)
    _same_set(cm.synthesize(teacher, (1, 32, 32), 10, cfg, progress=False),
              cm.synthesize_reference(teacher, (1, 32, 32), 10, cfg))


@pytest.mark.parametrize("method, optimizer", [("cake", "sgd"), ("lake", "adam")])
def test_result_does_not_depend_on_parallel_batches(method, optimizer):
    teacher, shape = _teacher("conv-1ch")
    cfg = BASE.replace(method=method, optimizer=optimizer)
    runs = [cm.synthesize(teacher, shape, 5, cfg.replace(parallel_batches=p), progress=False)
            for p in (1, 2, 3, 4, 7, 100)]
    for other in runs[1:]:
        _same_set(other, runs[0])


@pytest.mark.parametrize("name", ["conv-1ch", "mlp"])
def test_same_seed_gives_identical_tensors(name):
    teacher, shape = _teacher(name)
    cfg = BASE.replace(method="lake", optimizer="adam", parallel_batches=3, w_tv=BASE.w_tv if len(shape) == 3 else 0.0)
    a = cm.synthesize(teacher, shape, 5, cfg, progress=False)
    b = cm.synthesize(teacher, shape, 5, cfg, progress=False)
    for field in cm.SyntheticSet.FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    c = cm.synthesize(teacher, shape, 5, cfg.replace(seed=4), progress=False)
    assert not torch.equal(a.x, c.x)


def test_samples_come_back_with_standard_strides():
    # the channel-last layout used while optimising is an internal detail
    teacher, shape = _teacher("conv-1ch")
    s = cm.synthesize(teacher, shape, 5, BASE, progress=False)
    assert s.x.stride() == torch.empty(s.x.shape).stride()


@pytest.mark.parametrize("parallel_batches", [1, 3])
@pytest.mark.parametrize("method, optimizer", [("cake", "sgd"), ("lake", "adam")])
def test_bounds_and_snapshots_match_reference(method, optimizer, parallel_batches):
    teacher, shape = _teacher("conv-1ch")
    cfg = BASE.replace(method=method, optimizer=optimizer, parallel_batches=parallel_batches,
                       bounds=(-0.5, 0.5), snapshots=3)
    fast = cm.synthesize(teacher, shape, 5, cfg, progress=False)
    ref = cm.synthesize_reference(teacher, shape, 5, cfg)
    assert len(fast) == len(ref) == 3 * 67
    _same_set(fast, ref)
    assert fast.x.min() >= -0.5 and fast.x.max() <= 0.5


def test_snapshots_are_the_trajectory_of_the_same_samples():
    # the last snapshot is the ordinary result; the others are earlier iterates of it
    teacher, shape = _teacher("conv-1ch")
    plain = cm.synthesize(teacher, shape, 5, BASE, progress=False)
    shorter = cm.synthesize(teacher, shape, 5, BASE.replace(steps=4), progress=False)
    snap = cm.synthesize(teacher, shape, 5, BASE.replace(snapshots=3, parallel_batches=3), progress=False)
    assert len(snap) == 3 * len(plain)
    assert sorted(snap.step.unique().tolist()) == [2, 4, 6]
    _same_set(snap.subset(snap.step == 6), plain)
    _same_set(snap.subset(snap.step == 4), shorter)
    assert torch.equal(snap.subset(snap.step == 2).labels, plain.labels)
    assert snap.x.stride() == torch.empty(snap.x.shape).stride()


class _LayoutCheckingTeacher(nn.Module):
    """Refuses channel-last inputs with its own error type, as a hand-written model might."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        if x.stride(1) != x.stride(0):
            raise ValueError("expects NCHW-contiguous images")
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_a_teacher_refusing_channel_last_with_any_error_gets_the_ordinary_layout():
    teacher, cfg = _LayoutCheckingTeacher().eval(), BASE.replace(parallel_batches=3)
    _same_set(cm.synthesize(teacher, (1, 8, 8), 5, cfg, progress=False),
              cm.synthesize_reference(teacher, (1, 8, 8), 5, cfg))
