"""Loss values against hand-computed cases, shapes, reductions, bad input, gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from cake_mini.losses import (classification_loss, contrastive_loss, kd_loss, soft_cross_entropy,
                              total_variation)


def test_classification_loss_is_mean_ce_times_group_size():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    by_hand = (-math.log(math.e**2 / (math.e**2 + 2)) - math.log(1 / (math.e + 2))) / 2
    assert classification_loss(logits, labels).item() == pytest.approx(by_hand)
    assert classification_loss(logits, labels, group_size=3).item() == pytest.approx(3 * by_hand)
    assert classification_loss(logits, labels, reduction="none").shape == (2,)
    assert classification_loss(logits, labels, reduction="sum").item() == pytest.approx(2 * by_hand)


def test_contrastive_loss_pairs_only_inside_groups_and_of_distinct_labels():
    # group 0: classes 0,1 with logits 1 apart in each of 2 coords -> ||d||^2 = 2
    # group 1: classes 1,1 (equal labels) -> contributes nothing despite a large difference
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.tensor([0, 1, 1, 1])
    per_group = contrastive_loss(logits, labels, group_size=2, reduction="none")
    assert per_group.tolist() == pytest.approx([2 / 2, 0.0])  # sum over unordered pairs / C
    # no pair crosses groups: changing group 1 leaves group 0 alone
    logits2 = logits.clone()
    logits2[2:] = 100.0
    assert contrastive_loss(logits2, labels, 2, "none")[0] == per_group[0]


def test_contrastive_loss_matches_reference_scaling():
    torch.manual_seed(0)
    g, k, c = 3, 4, 5
    logits = torch.randn(g * k, c)
    labels = torch.stack([torch.randperm(c)[:k] for _ in range(g)]).reshape(-1)
    z = logits.view(g, k, c)
    reference = (z.unsqueeze(2) - z.unsqueeze(1)).pow(2).mean() * 0.5 * k**2  # the authors' form
    assert contrastive_loss(logits, labels, k).item() == pytest.approx(reference.item(), rel=1e-6)


def test_total_variation_known_images():
    assert total_variation(torch.zeros(2, 3, 5, 5)).item() == 0.0
    ramp = torch.arange(4.0).repeat(4, 1)  # each row 0,1,2,3: horizontal diffs 1, vertical 0
    assert total_variation(ramp).item() == pytest.approx(1.0)
    checker = (torch.arange(3)[:, None] + torch.arange(3)[None, :]) % 2 * 2.0
    assert total_variation(checker).item() == pytest.approx(4.0)
    x = torch.randn(2, 3, 6, 7)
    assert total_variation(x, "none").shape == (2, 3)
    assert total_variation(x, "sum").item() == pytest.approx(total_variation(x, "none").sum().item())


def test_soft_cross_entropy_equals_ce_for_one_hot_targets():
    logits = torch.randn(6, 4)
    labels = torch.randint(4, (6,))
    assert soft_cross_entropy(logits, F.one_hot(labels, 4).float()).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert soft_cross_entropy(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_kd_loss_weights_and_temperature():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.randint(3, (5,))
    soft = kd_loss(s, t, temperature=2.0)
    by_hand = 4 * soft_cross_entropy(s / 2, (t / 2).softmax(-1))
    assert soft.item() == pytest.approx(by_hand.item(), rel=1e-6)
    both = kd_loss(s, t, y, temperature=2.0, w_true=0.3, w_soft=0.7)
    assert both.item() == pytest.approx(0.7 * by_hand.item() + 0.3 * F.cross_entropy(s, y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="true labels"):
        kd_loss(s, t, w_true=1.0)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, temperature=0)


@pytest.mark.parametrize("call, match", [
    (lambda: classification_loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long)), r"labels must have shape \(N,\)"),
    (lambda: classification_loss(torch.randn(4), torch.zeros(4, dtype=torch.long)), r"\(N, C\)"),
    (lambda: contrastive_loss(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), 2), "multiple of group_size"),
    (lambda: total_variation(torch.randn(5)), "w_tv=0"),
    (lambda: total_variation(torch.randn(2, 2), reduction="avg"), "reduction must be one of"),
    (lambda: soft_cross_entropy(torch.randn(2, 3), torch.rand(2, 4)), "soft targets must match"),
])
def test_bad_inputs_say_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gradients_reach_inputs_and_pass_gradcheck():
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: total_variation(v + 0.01 * torch.arange(16.0, dtype=v.dtype).view(4, 4)), (x,))
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    assert torch.autograd.gradcheck(lambda z: contrastive_loss(z, labels, 2), (logits,))
    assert torch.autograd.gradcheck(lambda z: classification_loss(z, labels, 2), (logits,))
