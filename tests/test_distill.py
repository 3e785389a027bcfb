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


def _moved(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """``image`` (C, H, W) flipped, then its content moved by (dy, dx) with zeros coming in."""
    image = image.flip(-1) if flip else image
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("kind", ["shift", "flip-shift"])
def test_augment_shifts_and_flips_each_sample(kind):
    x = torch.arange(1.0, 1 + 64 * 16).view(64, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(x, None, 1, g), x)
    out = augment_batch(x, kind, 1, g)
    flips = [False, True] if kind == "flip-shift" else [False]
    seen = set()
    for image, result in zip(x, out):
        moves = [(dy, dx, f) for dy in (-1, 0, 1) for dx in (-1, 0, 1) for f in flips
                 if torch.equal(result, _moved(image, dy, dx, f))]
        assert moves, "every output is its input flipped and/or shifted by at most 1 pixel"
        seen.update(moves)
    assert len(seen) >= 9 * len(flips) - 2  # the draws vary per sample and cover the moves
    zero_shift = augment_batch(x, "shift", 0, g)
    assert torch.equal(zero_shift, x)
    with pytest.raises(ValueError, match="needs images"):
        augment_batch(torch.randn(4, 3), "shift", 1, g)


def test_randaugment_changes_images_reproducibly():
    x = torch.rand(16, 1, 12, 12) * 2 - 1
    torch.manual_seed(1)
    out = augment_batch(x, "randaugment", 0, torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    again = augment_batch(x, "randaugment", 0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)  # drawn from the generator, not the global RNG
    assert not torch.equal(out, augment_batch(x, "randaugment", 0, torch.Generator().manual_seed(1)))
    changed = (out - x).flatten(1).abs().amax(1) > 1e-6
    assert 4 <= changed.sum() <= 16  # two operations per image; Identity leaves a few alone


def test_augmenting_a_slice_gives_that_slice_of_the_whole_batch():
    x = torch.rand(40, 1, 12, 12) * 2 - 1
    keep = torch.arange(40).tensor_split(3)[1]  # a rank's slice of a global batch
    for kind in (None, "shift", "flip-shift", "randaugment"):
        whole_g, part_g = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        whole = augment_batch(x, kind, 2, whole_g)
        assert torch.equal(augment_batch(x, kind, 2, part_g, keep), whole[keep]), kind
        assert torch.equal(whole_g.get_state(), part_g.get_state()), kind  # the next batch draws alike


def test_randaugment_equals_torchvision_image_by_image():
    from torchvision.transforms import v2

    from cake_mini.distill import rand_augment

    for seed, x in enumerate([torch.randn(256, 1, 16, 16), torch.rand(256, 3, 12, 12) * 2 - 1]):
        generator = torch.Generator().manual_seed(seed)
        out = rand_augment(x, generator)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(seed))))
        policy = v2.RandAugment()
        assert torch.equal(out, torch.stack([policy(image) for image in x]))  # every operation drawn ~36 times


class _LayoutRecorder(nn.Module):
    """A small conv net that notes the layout of every training batch; ``refuse``: fails on channel-last."""

    def __init__(self, refuse=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 6 * 6, 3)
        self.refuse, self.seen = refuse, set()

    def forward(self, x):
        layout = "channel-last" if x.stride(1) == 1 else "nchw"
        if self.refuse and layout == "channel-last":
            raise ValueError("expects NCHW-contiguous images")
        if self.training:
            self.seen.add(layout)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_channels_last_feeds_the_student_channel_last_with_the_same_result():
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(64, 1, 8, 8, generator=g), torch.randn(64, 3, generator=g).softmax(-1))
    config = cm.DistillConfig(epochs=1, batch_size=16, lr=0.05)
    plain, fast, refusing = _LayoutRecorder(), _LayoutRecorder(), _LayoutRecorder(refuse=True)
    cm.distill(plain, data, config, progress=False)
    cm.distill(fast, data, config.replace(channels_last=True), progress=False)
    cm.distill(refusing, data, config.replace(channels_last=True), progress=False)
    assert plain.seen == {"nchw"} and fast.seen == {"channel-last"} and refusing.seen == {"nchw"}
    for a, b in zip(plain.state_dict().values(), fast.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)  # BatchNorm statistics too: the probe ran in eval mode
    for a, b in zip(plain.state_dict().values(), refusing.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_config_and_non_finite_loss():
    x, y = _linear_problem(64)
    with pytest.raises(ValueError, match="augment must be one of"):
        cm.distill(nn.Linear(6, 3), (x, y), cm.DistillConfig(augment="mixup"), progress=False)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            cm.distill(nn.Linear(6, 3), (x, y), cm.DistillConfig(temperature=temperature), progress=False)
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


class _AutocastRecorder(nn.Linear):
    """Records, per call, the autocast dtype it ran under (None: no autocast)."""

    def __init__(self):
        super().__init__(6, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return super().forward(x)


def test_evaluation_runs_in_the_run_s_precision():
    x, y = _linear_problem(64)
    model = _AutocastRecorder()
    cm.evaluate(model, (x, y), precision="fp32")
    cm.evaluate(model, (x, y), precision="bf16")
    assert model.seen == [None, torch.bfloat16]
    model.seen.clear()
    cm.distill(model, (x, y), cm.DistillConfig(epochs=1, batch_size=64, val_fraction=0, precision="fp16"),
               eval_set=(x, y), progress=False)
    assert model.seen == [torch.float16, torch.float16]  # one training step, one evaluation


def test_fp16_training_with_loss_scaling_matches_fp32():
    x, y = _linear_problem(512)
    results = {}
    for precision in ("fp32", "fp16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
        cm.distill(model, (x, y), cm.DistillConfig(epochs=5, batch_size=64, lr=0.1, precision=precision),
                   progress=False)
        results[precision] = (model, cm.evaluate(model, (x, y)))
    assert results["fp32"][1] > 0.9
    assert results["fp16"][1] == pytest.approx(results["fp32"][1], abs=0.03)
    pairs = list(zip(results["fp32"][0].parameters(), results["fp16"][0].parameters()))
    assert not all(torch.equal(a, b) for a, b in pairs)  # fp16 did run
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02)


def test_progress_under_a_pipe_is_a_few_plain_lines(capsys):
    x, y = _linear_problem(64)
    cm.distill(nn.Linear(6, 3), (x, y), cm.DistillConfig(epochs=3, batch_size=8), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err  # no redrawn bar in a log
    assert "training: 3/3 epochs" in err and len(err.splitlines()) <= 3
