"""distill / train_classifier / evaluate: targets, hold-out, augmentation, online teacher."""
import pytest
import torch
from torch import nn

import cake_mini as cm
from cake_mini.distill import augment_batch


def _linear_problem(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(-1)  # linearly separable
    return x, y


def test_train_classifier_learns_and_history_has_every_epoch():
    x, y = _linear_problem()
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    result = cm.train_classifier(model, (x, y), cm.DistillConfig(epochs=5, lr=0.1, batch_size=64), progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert cm.evaluate(model, (x, y)) > 0.9
    assert not model.training


def test_distill_on_soft_labels_copies_the_teacher_and_reports_eval_accuracy():
    x, y = _linear_problem()
    torch.manual_seed(0)
    teacher = nn.Linear(6, 3)
    cm.train_classifier(teacher, (x, y), cm.DistillConfig(epochs=5, lr=0.1, batch_size=64), progress=False)
    with torch.no_grad():
        soft = teacher(x).softmax(-1)
    student = nn.Linear(6, 3)
    result = cm.distill(student, (x, soft), cm.DistillConfig(epochs=5, lr=0.1, batch_size=64),
                        eval_set=(x, y), progress=False)
    assert result.eval_accuracy == pytest.approx(cm.evaluate(student, (x, y)))
    assert result.history[-1]["val_agreement"] > 0.8


def test_online_teacher_replaces_stored_targets():
    x, _ = _linear_problem()
    teacher = nn.Linear(6, 3).eval()
    garbage = torch.full((len(x), 3), 1 / 3)
    torch.manual_seed(0)
    student = nn.Linear(6, 3)
    cm.distill(student, (x, garbage), cm.DistillConfig(epochs=5, lr=0.1, batch_size=64), teacher=teacher,
               progress=False)
    with torch.no_grad():
        assert (student(x).argmax(-1) == teacher(x).argmax(-1)).float().mean() > 0.9


def test_augment_shifts_and_flips_each_sample():
    x = torch.arange(2 * 16.0).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(x, None, 1, g), x)
    out = augment_batch(x, "flip-shift", 1, g)
    assert out.shape == x.shape
    zero_shift = augment_batch(x, "shift", 0, g)
    assert torch.equal(zero_shift, x)
    with pytest.raises(ValueError, match="needs images"):
        augment_batch(torch.randn(4, 3), "shift", 1, g)


def test_bad_config_and_non_finite_loss():
    x, y = _linear_problem(64)
    with pytest.raises(ValueError, match="augment must be one of"):
        cm.distill(nn.Linear(6, 3), (x, y), cm.DistillConfig(augment="mixup"), progress=False)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="lower config.lr"):
        cm.distill(nn.Linear(6, 3), (bad, y), cm.DistillConfig(epochs=1, val_fraction=0), progress=False)


def test_mixup_blends_inputs_and_targets_alike():
    from cake_mini.distill import mix_batch

    x = torch.eye(4).view(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 3])
    mixed_x, mixed_y = mix_batch(x, y, 4, torch.Generator().manual_seed(0))
    assert torch.allclose(mixed_x.view(4, 4), mixed_y)  # x_i is one-hot of y_i, so the blends match
    assert torch.allclose(mixed_y.sum(-1), torch.ones(4))
