"""cake.py, the method: the initial batch, the objective, and the loop that yields every iterate.

The loop is checked against the fast engine ``synthesize``, which is separate code (many
mini-batches at once, its own SGD and Adam), with ``snapshots=steps`` so that the engine
keeps every iterate too.
"""
import pytest
import torch
from torch import nn

import cake_mini as cm
from cake_mini import cake
from cake_mini.losses import classification_loss, contrastive_loss, total_variation
from cake_mini.schedules import step_sizes

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 mini-batches of 10 (the last cut to 4), groups of 5 of the 5 classes, 4 steps
CONFIG = cm.SynthesisConfig(num_samples=24, batch_size=10, steps=4, group_size=5, lr=1.0, lr_decades=2,
                            w_cls=3.0, w_contr=0.3, w_tv=1.0, precision="fp32", seed=3)
SHAPE, C = (1, 8, 8), 5


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, C)).eval()


def _trajectory(teacher, config, batch):
    """Start, labels, step size and every iterate of mini-batch ``batch``, by the loop of cake.py."""
    x, labels = cake.initial_batch(batch, config, SHAPE, C, config.group_size)
    eta = float(step_sizes(config.num_batches, config.lr, config.lr_decades, config.schedule)[batch].float())
    return x, labels, eta, list(cake.cake_steps(teacher, x, labels, eta, config, batch=batch))


@pytest.mark.parametrize("changes", [{}, {"method": "lake", "optimizer": "adam"}, {"bounds": (-0.5, 0.5)}])
def test_the_loop_ends_where_synthesize_reference_ends(changes):
    teacher, config = _teacher(), CONFIG.replace(**changes)
    reference = cm.synthesize_reference(teacher, SHAPE, C, config)
    for batch in range(config.num_batches):
        x, labels, _, steps = _trajectory(teacher, config, batch)
        t, x_last, logits = steps[-1]
        mine = slice(batch * config.batch_size, (batch + 1) * config.batch_size)
        n = len(reference.x[mine])  # the last batch is cut to num_samples
        assert t == config.steps
        assert torch.equal(x_last[:n], reference.x[mine])
        assert torch.equal(logits.softmax(-1)[:n], reference.soft_labels[mine])
        assert torch.equal(labels[:n], reference.labels[mine])


@pytest.mark.parametrize("changes", [{}, {"method": "lake", "optimizer": "adam", "bounds": (-0.5, 0.5)}])
def test_every_iterate_is_the_fast_engines_iterate(changes):
    # the engine keeps every step's samples and softmax with snapshots=steps
    teacher, config = _teacher(), CONFIG.replace(snapshots=CONFIG.steps, parallel_batches=3, **changes)
    engine = cm.synthesize(teacher, SHAPE, C, config, progress=False)
    for batch in range(config.num_batches):
        x, _, eta, steps = _trajectory(teacher, config, batch)
        assert [t for t, _, _ in steps] == list(range(config.steps + 1))
        start = x.clamp(*config.bounds) if config.bounds else x
        assert torch.equal(steps[0][1], start)
        for t, x_t, logits in steps[1:]:
            kept = engine.subset((engine.step == t) & (engine.step_size == eta))  # batch's samples at step t
            n = min(config.batch_size, config.num_samples - batch * config.batch_size)
            assert len(kept) == n
            torch.testing.assert_close(x_t[:n], kept.x, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(logits.softmax(-1)[:n], kept.soft_labels, rtol=1e-5, atol=1e-5)


def test_the_loop_leaves_its_input_and_the_teacher_alone():
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, labels = cake.initial_batch(0, CONFIG, SHAPE, C, CONFIG.group_size)
    start = x.clone()
    for _, x_t, _ in cake.cake_steps(teacher, x, labels, 1.0, CONFIG):
        x_t.add_(100.0)  # a caller's change to a yielded iterate must not leak into the next step
    again = list(cake.cake_steps(teacher, x, labels, 1.0, CONFIG))
    assert torch.equal(x, start)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in teacher.parameters())
    assert again[-1][1].abs().max() < 100  # the yielded copies were changed, not the run


@pytest.mark.parametrize("num_classes, group_size, batch_size", [(5, 5, 10), (10, 4, 40), (3, 2, 6)])
def test_initial_batch_groups_hold_distinct_classes(num_classes, group_size, batch_size):
    config = cm.SynthesisConfig(batch_size=batch_size, group_size=group_size, seed=1)
    x, labels = cake.initial_batch(2, config, SHAPE, num_classes, group_size)
    assert x.shape == (batch_size, *SHAPE) and labels.shape == (batch_size,)
    groups = labels.view(-1, group_size)  # (G, K)
    assert all(len(set(g.tolist())) == group_size for g in groups), groups
    assert labels.min() >= 0 and labels.max() < num_classes
    same, other = cake.initial_batch(2, config, SHAPE, num_classes, group_size), cake.initial_batch(
        3, config, SHAPE, num_classes, group_size)
    assert torch.equal(same[0], x) and torch.equal(same[1], labels)  # (seed, batch) decides everything
    assert not torch.equal(other[0], x)


@pytest.mark.parametrize("w_cls, w_contr, w_tv", [(1e3, 1e1, 1e5), (3.0, 0.0, 0.0), (0.5, 2.0, 0.0)])
def test_objective_is_the_weighted_sum_of_the_loss_terms(w_cls, w_contr, w_tv):
    torch.manual_seed(0)
    k, per_batch, batches = 5, 10, 3
    logits = 4 * torch.randn(batches * per_batch, C)
    labels = torch.cat([torch.randperm(C)[:k] for _ in range(batches * per_batch // k)])
    x = torch.randn(batches * per_batch, *SHAPE)
    config = cm.SynthesisConfig(w_cls=w_cls, w_contr=w_contr, w_tv=w_tv)

    def by_hand(b):
        z, y, images = (t[b * per_batch:(b + 1) * per_batch] for t in (logits, labels, x))
        return (w_cls * classification_loss(z, y, k) + w_contr * contrastive_loss(z, y, k)
                + w_tv * total_variation(images))

    one = cake.synthesis_objective(logits[:per_batch], x[:per_batch], labels[:per_batch], k, config)
    assert one.shape == (1,)
    torch.testing.assert_close(one[0], by_hand(0))
    several = cake.synthesis_objective(logits, x, labels, k, config, num_batches=batches)
    assert several.shape == (batches,)
    torch.testing.assert_close(several, torch.stack([by_hand(b) for b in range(batches)]))


def test_old_imports_from_synthesis_still_work():
    from cake_mini import synthesis

    for name in ("batch_seed", "initial_batch", "synthesis_objective", "synthesize_reference"):
        assert getattr(synthesis, name) is getattr(cake, name)
    assert cm.synthesize_reference is cake.synthesize_reference


def test_a_caller_can_differentiate_at_every_iterate():
    """The loop body runs in the caller's grad mode, the last iterate too (chapter 3 takes gradients there)."""
    teacher = _teacher()
    x, labels = cake.initial_batch(0, CONFIG, SHAPE, C, CONFIG.group_size)
    modes, norms = [], []
    for _, x_t, _ in cake.cake_steps(teacher, x, labels, 1.0, CONFIG):
        modes.append(torch.is_grad_enabled())
        x_t.requires_grad_(True)
        (grad,) = torch.autograd.grad(teacher(x_t).logsumexp(-1).sum(), x_t)
        norms.append(float(grad.norm()))
    assert modes == [True] * (CONFIG.steps + 1) and len(norms) == CONFIG.steps + 1
    assert torch.is_grad_enabled()
