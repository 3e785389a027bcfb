"""Tests for cake_mini.baselines (DeepInversion, DAFL) and the ``lenet5-bn`` teacher they need."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cake_mini import SyntheticSet
from cake_mini.baselines import (
    DAFLConfig,
    DAFLGenerator,
    DeepInversionConfig,
    activation_loss,
    batchnorm_layers,
    bn_statistics_loss,
    competition_loss,
    dafl,
    deep_inversion,
    information_entropy_loss,
    one_hot_loss,
    train_dafl_generator,
)
from cake_mini.models import make_model

SHAPE = (1, 16, 16)


@pytest.fixture
def bn_teacher():
    """A conv classifier with two BatchNorm layers and non-trivial running statistics, in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        model(torch.randn(64, *SHAPE) * 0.5 + 0.3)  # training mode: running statistics move off (0, 1)
    return model.eval()


@pytest.fixture
def plain_teacher():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 10)).eval()


def snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), f"{k} changed"
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    hooks = [m._forward_hooks or m._forward_pre_hooks for m in model.modules()]
    assert not any(hooks), "a hook was left on the teacher"


def tiny_di(**changes) -> DeepInversionConfig:
    return DeepInversionConfig(**{"num_samples": 30, "batch_size": 20, "steps": 3, **changes})


def tiny_dafl(**changes) -> DAFLConfig:
    return DAFLConfig(**{"num_samples": 12, "batch_size": 8, "steps": 3, "channels": 8, "latent_dim": 6, **changes})


# ----------------------------------------------------------------------------- losses


def test_bn_statistics_loss_zero_when_batch_matches_running_stats():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 5, 5) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + torch.tensor([0.0, 1.0, -2.0]).view(1, 3, 1, 1)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    assert bn_statistics_loss(x, mean, var).item() == pytest.approx(0.0, abs=1e-5)


def test_bn_statistics_loss_hand_computed_when_off():
    x = torch.tensor([[[1.0], [0.0]], [[3.0], [4.0]]])  # channel means (2, 2), variances (1, 4)
    loss = bn_statistics_loss(x, torch.tensor([2.0, 5.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(3.0 + 4.0)  # ||(0, -3)|| + ||(0, 4)||


def test_bn_statistics_loss_matches_what_batchnorm_normalises_with():
    # after BatchNorm in training mode, the batch statistics are exactly (0, 1)
    torch.manual_seed(0)
    x = torch.randn(8, 4, 6, 6) * 3 + 1
    y = nn.BatchNorm2d(4, affine=False).train()(x)
    assert bn_statistics_loss(y, torch.zeros(4), torch.ones(4)).item() == pytest.approx(0.0, abs=1e-4)


def test_bn_statistics_loss_rejects_mismatched_channels():
    with pytest.raises(ValueError, match=r"\(N, C, \*\)"):
        bn_statistics_loss(torch.randn(2, 3, 4), torch.zeros(4), torch.ones(4))


def test_entropy_loss_is_smallest_for_uniform_class_use():
    confident = torch.eye(10) * 30  # every class once, confidently
    assert information_entropy_loss(confident).item() == pytest.approx(-math.log(10), abs=1e-4)
    torch.manual_seed(0)
    for _ in range(5):
        other = torch.randn(10, 10) * 3
        other[:, 0] += 2  # class 0 favoured
        assert information_entropy_loss(other) > information_entropy_loss(confident)
    assert information_entropy_loss(torch.tensor([[30.0, 0.0, 0.0]] * 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_one_hot_loss_is_cross_entropy_to_the_argmax():
    torch.manual_seed(0)
    logits = torch.randn(7, 5, requires_grad=True)
    expected = F.cross_entropy(logits, logits.argmax(-1))
    assert torch.allclose(one_hot_loss(logits), expected)
    assert one_hot_loss(logits, reduction="none").shape == (7,)
    one_hot_loss(logits).backward()  # the argmax target carries no gradient
    assert logits.grad is not None


def test_activation_loss_is_minus_mean_absolute_feature():
    f = torch.tensor([[1.0, -3.0], [0.5, 0.5]])
    assert activation_loss(f).item() == pytest.approx(-(1 + 3 + 0.5 + 0.5) / 4)
    assert activation_loss(f, reduction="none").tolist() == [-2.0, -0.5]


def test_competition_loss_is_one_on_agreement_and_lower_on_disagreement():
    z = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    assert competition_loss(z, z).item() == pytest.approx(1.0)
    assert competition_loss(z, -5 * z).item() < 0.9


# ----------------------------------------------------------------------------- DeepInversion


def test_deep_inversion_returns_a_valid_set_and_leaves_the_teacher_alone(bn_teacher):
    before = snapshot(bn_teacher)
    out = deep_inversion(bn_teacher, SHAPE, 10, tiny_di())
    assert isinstance(out, SyntheticSet)
    assert out.x.shape == (30, *SHAPE) and out.soft_labels.shape == (30, 10)
    assert torch.allclose(out.soft_labels.sum(-1), torch.ones(30))
    assert out.labels.shape == out.step_size.shape == out.step.shape == (30,)
    assert out.step.unique().tolist() == [3] and out.step_size.unique().tolist() == [pytest.approx(0.05)]
    assert out.meta["variant"] == "batchnorm+priors" and out.meta["batchnorm_layers"] == 2
    with torch.no_grad():
        assert torch.allclose(out.soft_labels, bn_teacher(out.x).softmax(-1), atol=1e-6)
    assert_unchanged(bn_teacher, before)


def test_deep_inversion_moves_batch_statistics_towards_the_running_ones(bn_teacher):
    layer = batchnorm_layers(bn_teacher)[0]
    seen = []
    handle = layer.register_forward_hook(lambda m, inp, out: seen.append(
        bn_statistics_loss(inp[0], m.running_mean, m.running_var).item()))
    try:
        config = tiny_di(num_samples=20, steps=30, lr=0.1, w_ce=0.0, w_tv=0.0, jitter=0, flip=False)
        start = deep_inversion(bn_teacher, SHAPE, 10, dataclasses.replace(config, steps=1))
        end = deep_inversion(bn_teacher, SHAPE, 10, config)
        seen.clear()
        with torch.no_grad():
            bn_teacher(start.x)
            bn_teacher(end.x)
    finally:
        handle.remove()
    assert seen[1] < 0.5 * seen[0]


def test_deep_inversion_hooks_are_removed_even_on_error(bn_teacher):
    before = snapshot(bn_teacher)
    with pytest.raises(FloatingPointError):
        deep_inversion(bn_teacher, SHAPE, 10, tiny_di(lr=float("inf")))
    assert_unchanged(bn_teacher, before)


def test_deep_inversion_without_batchnorm_says_what_to_do(plain_teacher):
    with pytest.raises(ValueError, match="no BatchNorm") as info:
        deep_inversion(plain_teacher, SHAPE, 10, tiny_di())
    assert "allow_no_batchnorm=True" in str(info.value)
    out = deep_inversion(plain_teacher, SHAPE, 10, tiny_di(), allow_no_batchnorm=True)
    assert out.meta["variant"] == "priors-only" and out.meta["batchnorm_layers"] == 0
    assert "bn" not in out.meta["final_losses"]


def test_deep_inversion_is_deterministic_in_the_seed(bn_teacher):
    a = deep_inversion(bn_teacher, SHAPE, 10, tiny_di(seed=1))
    b = deep_inversion(bn_teacher, SHAPE, 10, tiny_di(seed=1))
    c = deep_inversion(bn_teacher, SHAPE, 10, tiny_di(seed=2))
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, c.x) and not torch.equal(a.labels, c.labels)  # start and jitter both follow the seed


def test_deep_inversion_competition_needs_an_eval_mode_student(bn_teacher, plain_teacher):
    with pytest.raises(ValueError, match="student="):
        deep_inversion(bn_teacher, SHAPE, 10, tiny_di(w_competition=0.01))
    with pytest.raises(ValueError, match=r"student.eval\(\)"):
        deep_inversion(bn_teacher, SHAPE, 10, tiny_di(w_competition=0.01), student=plain_teacher.train())
    student = plain_teacher.eval()
    before = snapshot(student)
    out = deep_inversion(bn_teacher, SHAPE, 10, tiny_di(w_competition=0.01), student=student)
    assert "competition" in out.meta["final_losses"] and out.meta["adaptive"]
    assert_unchanged(student, before)


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=15), "multiple of num_classes"), (dict(steps=0), "steps"), (dict(lr=0.0), "lr"),
    (dict(w_bn=-1.0), "w_bn"), (dict(bounds=(1.0, -1.0)), "bounds"),
])
def test_deep_inversion_config_is_checked_before_any_work(bn_teacher, change, message):
    with pytest.raises(ValueError, match=message):
        deep_inversion(bn_teacher, SHAPE, 10, tiny_di(**change))


def test_deep_inversion_refuses_a_teacher_in_training_mode(bn_teacher):
    with pytest.raises(ValueError, match="eval"):
        deep_inversion(bn_teacher.train(), SHAPE, 10, tiny_di())


# ----------------------------------------------------------------------------- DAFL


def test_dafl_generator_output_shape():
    gen = DAFLGenerator((3, 32, 32), latent_dim=10, channels=8)
    x = gen(torch.randn(5, 10))
    assert x.shape == (5, 3, 32, 32)
    # the last BatchNorm (no affine) standardises every batch per channel
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    with pytest.raises(ValueError, match="divisible by 4"):
        DAFLGenerator((1, 30, 30))


def test_dafl_returns_a_valid_set_and_leaves_the_teacher_alone(bn_teacher):
    before = snapshot(bn_teacher)
    out = dafl(bn_teacher, SHAPE, 10, tiny_dafl())
    assert isinstance(out, SyntheticSet)
    assert out.x.shape == (12, *SHAPE) and out.soft_labels.shape == (12, 10)
    assert torch.equal(out.labels, out.soft_labels.argmax(-1))
    assert out.step.unique().tolist() == [3] and out.step_size.unique().tolist() == [pytest.approx(0.2)]
    assert set(out.meta["final_losses"]) >= {"one_hot", "activation", "entropy", "total"}
    assert_unchanged(bn_teacher, before)


def test_dafl_is_deterministic_in_the_seed(plain_teacher):
    a, b = (dafl(plain_teacher, SHAPE, 10, tiny_dafl(seed=3)) for _ in range(2))
    c = dafl(plain_teacher, SHAPE, 10, tiny_dafl(seed=4))
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    # the initialisation follows the seed too (a step of 1e-12 leaves it as it was)
    weights = [train_dafl_generator(plain_teacher, SHAPE, 10, tiny_dafl(seed=s, steps=1, lr=1e-12))[0].project.weight
               for s in (3, 4)]
    assert not torch.allclose(weights[0], weights[1], atol=1e-6)


def test_dafl_training_lowers_its_loss(plain_teacher):
    config = tiny_dafl(steps=30, batch_size=32, lr=0.02)
    _, history = train_dafl_generator(plain_teacher, SHAPE, 10, config, log_every=1)
    assert len(history) == 30
    first, last = history[0]["total"], sum(h["total"] for h in history[-5:]) / 5
    assert last < first


def test_dafl_features_default_to_the_input_of_the_last_linear():
    torch.manual_seed(0)
    lenet = make_model("lenet5", image_size=16).eval()  # classifier: Flatten, Linear(120, 84), ReLU, Linear(84, 10)
    seen = []
    handle = lenet.classifier[3].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].abs().mean().item()))
    try:
        _, history = train_dafl_generator(lenet, SHAPE, 10, tiny_dafl(steps=1))
    finally:
        handle.remove()
    assert history[-1]["activation"] == pytest.approx(-seen[-1], rel=1e-5)  # seen[0]: the input check
    with pytest.raises(ValueError, match="not a module"):
        train_dafl_generator(lenet, SHAPE, 10, tiny_dafl(feature_layer="nope"))


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=1), "batch_size"), (dict(channels=7), "even"), (dict(lr=-1.0), "lr"), (dict(steps=0), "steps"),
])
def test_dafl_config_is_checked(plain_teacher, change, message):
    with pytest.raises(ValueError, match=message):
        dafl(plain_teacher, SHAPE, 10, tiny_dafl(**change))


# ----------------------------------------------------------------------------- the BatchNorm teacher


def test_lenet5_bn_has_batchnorm_after_each_conv():
    model = make_model("lenet5-bn", num_classes=7)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = batchnorm_layers(model)
    assert [b.num_features for b in bns] == [c.out_channels for c in convs] == [6, 16, 120]
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert not batchnorm_layers(make_model("lenet5"))
    assert make_model("lenet5-bn", width=0.5)(torch.randn(2, 1, 32, 32)).shape == (2, 10)
