"""Behaviour of synthesize(): layout of labels, what is stored, determinism, noise, toy 2D."""
import pytest
import torch

import cake_mini as cm
from cake_mini import data, models
from cake_mini.synthesis import initial_batch

SMALL = cm.SynthesisConfig(num_samples=40, batch_size=10, steps=5, group_size=5, w_tv=1.0, parallel_batches=2)


def test_labels_come_in_groups_of_distinct_classes(tiny_teacher):
    s = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL.replace(group_size=3, batch_size=9, num_samples=36),
                      progress=False)
    groups = s.labels.view(-1, 3)
    assert all(len(set(g.tolist())) == 3 for g in groups)
    assert set(s.labels.tolist()) == set(range(5))


def test_result_fields_shapes_and_soft_labels_are_teacher_softmax(tiny_teacher):
    s = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL, progress=False)
    assert s.x.shape == (40, 1, 8, 8) and s.soft_labels.shape == (40, 5)
    assert s.labels.shape == s.step_size.shape == (40,)
    with torch.no_grad():
        assert torch.allclose(s.soft_labels, tiny_teacher(s.x).softmax(-1), atol=1e-6)
    expected = cm.step_sizes(4, 0.1, 4).float().repeat_interleave(10)
    assert torch.equal(s.step_size, expected)
    x, y = s[3]
    assert torch.equal(x, s.x[3]) and torch.equal(y, s.soft_labels[3])


def test_same_seed_same_set_other_seed_other_set(tiny_teacher):
    a = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL, progress=False)
    b = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL, progress=False)
    c = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL.replace(seed=1), progress=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.soft_labels, b.soft_labels)
    assert not torch.equal(a.x, c.x)


def test_teacher_is_left_exactly_as_it_was(tiny_teacher):
    before = {k: v.clone() for k, v in tiny_teacher.state_dict().items()}
    flags = [p.requires_grad for p in tiny_teacher.parameters()]
    cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL.replace(method="lake"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in tiny_teacher.state_dict().items())
    assert [p.requires_grad for p in tiny_teacher.parameters()] == flags
    assert all(p.grad is None for p in tiny_teacher.parameters())
    assert not tiny_teacher.training


def test_samples_move_towards_their_class():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 3).eval()
    cfg = cm.SynthesisConfig(num_samples=300, batch_size=30, steps=100, w_cls=10, w_contr=0.0, w_tv=0,
                             schedule="constant", lr=1.0)
    s = cm.synthesize(teacher, (4,), 3, cfg, progress=False)
    starts = [initial_batch(m, cfg, (4,), 3, 3) for m in range(cfg.num_batches)]  # the synthesiser's own start
    start, labels = torch.cat([x for x, _ in starts]), torch.cat([y for _, y in starts])
    assert torch.equal(labels, s.labels)
    with torch.no_grad():
        assert (teacher(start).argmax(-1) == labels).float().mean() < 0.6  # chance-like at the noise start
    assert (s.soft_labels.argmax(-1) == s.labels).float().mean() > 0.95


def test_lake_noise_has_the_stated_variance():
    teacher = torch.nn.Linear(50, 2).eval()
    cfg = cm.SynthesisConfig(num_samples=200, batch_size=100, steps=50, group_size=2, w_cls=0, w_contr=0,
                             w_tv=0, schedule="constant", lr=0.01)
    still = cm.synthesize(teacher, (50,), 2, cfg, progress=False)
    lake = cm.synthesize(teacher, (50,), 2, cfg.replace(method="lake"), progress=False)
    assert torch.equal(lake.x, cm.synthesize(teacher, (50,), 2, cfg.replace(method="lake"), progress=False).x)
    other_seed = cm.synthesize(teacher, (50,), 2, cfg.replace(method="lake", seed=1), progress=False)
    assert not torch.equal(lake.x, other_seed.x)  # the Langevin noise follows the seed
    moved = lake.x - still.x  # no loss gradient: only T steps of sqrt(2 eta) N(0, I)
    assert moved.var().item() == pytest.approx(50 * 2 * 0.01, rel=0.05)
    assert moved.mean().abs().item() < 0.02


def test_presets_carry_the_papers_numbers():
    fm = cm.SynthesisConfig.preset("fashion-mnist")
    assert (fm.steps, fm.batch_size, fm.num_batches) == (256, 500, 512)
    assert (fm.w_cls, fm.w_contr, fm.w_tv) == (1e3, 1e-3, 1e7)
    c10 = cm.SynthesisConfig.preset("cifar10")
    assert (c10.num_samples, c10.steps, c10.w_contr, c10.w_tv) == (250_000, 256, 1e1, 1e5)
    d = cm.SynthesisConfig()
    assert (d.steps, d.batch_size, d.num_batches, d.lr, d.lr_decades) == (500, 100, 256, 0.1, 4)
    with pytest.raises(ValueError, match="unknown preset"):
        cm.SynthesisConfig.preset("imagenet")


@pytest.mark.parametrize("change, match", [
    (dict(group_size=6), "group_size=6 must be between 2 and num_classes=5"),
    (dict(batch_size=12), "multiple of group_size"),
    (dict(method="langevin"), "method must be one of"),
    (dict(schedule="step"), "schedule must be one of"),
])
def test_bad_config_fails_before_any_work(tiny_teacher, change, match):
    with pytest.raises(ValueError, match=match):
        cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL.replace(**change), progress=False)


def _agreement(student, teacher, points):
    with torch.no_grad():
        return (student(points).argmax(-1) == teacher(points).argmax(-1)).float().mean().item()


def test_toy2d_cake_beats_noise_when_the_boundary_is_away_from_the_origin():
    """Blobs centred at (4, 0): N(0, I) noise puts little mass near the teacher's boundaries.

    Around the origin (offset 0) noise inputs already cover the plane and do about as well
    as CAKE; chapter 2 shows both cases.
    """
    x, y = data.toy2d("blobs", 2000, noise=0.05, offset=(4.0, 0.0))
    torch.manual_seed(0)
    teacher = models.make_model("mlp", 3, in_features=2, hidden=64, depth=3)
    cm.train_classifier(teacher, (x, y), cm.DistillConfig(epochs=30, lr=0.05, batch_size=64, val_fraction=0),
                        progress=False)
    teacher.eval()
    assert cm.evaluate(teacher, (x, y)) > 0.98
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    grid = torch.rand(5000, 2, generator=torch.Generator().manual_seed(1)) * (hi - lo) + lo

    cfg = cm.SynthesisConfig(num_samples=1500, batch_size=30, steps=150, w_cls=10, w_contr=0.1, w_tv=0,
                             lr=0.1, lr_decades=3)
    synthetic = cm.synthesize(teacher, (2,), 3, cfg, progress=False)
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        noise_set = (noise, teacher(noise).softmax(-1))
    recipe = cm.DistillConfig(epochs=40, lr=0.05, batch_size=64)
    torch.manual_seed(1)
    cake_student = cm.distill(models.make_model("mlp", 3, in_features=2, hidden=32, depth=2), synthetic,
                              recipe, progress=False).model
    torch.manual_seed(1)
    noise_student = cm.distill(models.make_model("mlp", 3, in_features=2, hidden=32, depth=2), noise_set,
                               recipe, progress=False).model
    cake, noise_only = _agreement(cake_student, teacher, grid), _agreement(noise_student, teacher, grid)
    assert cake > 0.85
    assert cake > noise_only + 0.1


def test_synthetic_sets_compare_by_value(tiny_teacher):
    cfg = cm.SynthesisConfig(num_samples=20, batch_size=10, steps=2, group_size=5)
    a = cm.synthesize(tiny_teacher, (1, 8, 8), 5, cfg, progress=False)
    b = cm.synthesize(tiny_teacher, (1, 8, 8), 5, cfg, progress=False)
    assert a == b and a is not b
    assert a != cm.synthesize(tiny_teacher, (1, 8, 8), 5, cfg.replace(seed=1), progress=False)
    assert a != a.subset(slice(0, 10)) and a != "not a set"


def test_fp16_synthesis_with_loss_scaling_stays_close_to_fp32(tiny_teacher):
    cfg = cm.SynthesisConfig(num_samples=40, batch_size=10, steps=10, group_size=5, lr=0.5, lr_decades=1,
                             w_cls=3.0, w_contr=0.3, w_tv=1.0, precision="fp32")
    fp32 = cm.synthesize(tiny_teacher, (1, 8, 8), 5, cfg, progress=False)
    fp16 = cm.synthesize(tiny_teacher, (1, 8, 8), 5, cfg.replace(precision="fp16"), progress=False)
    start = torch.cat([initial_batch(m, cfg, (1, 8, 8), 5, 5)[0] for m in range(cfg.num_batches)])
    moved = (fp32.x - start).norm()
    assert moved > 1.0  # the samples did move
    assert not torch.equal(fp16.x, fp32.x)  # fp16 did run
    assert (fp16.x - fp32.x).norm() < 0.02 * moved
    assert (fp16.soft_labels.argmax(-1) == fp32.soft_labels.argmax(-1)).float().mean() >= 0.95


def test_input_grad_scaler_backs_off_on_overflow_and_returns_the_true_gradient():
    from cake_mini.precision import InputGradScaler

    x = torch.ones(4, requires_grad=True)

    def forward(x):  # d/dx = 100 per element, carried through fp16
        return (x.half() * 100.0).float().sum().view(1)

    scaler = InputGradScaler(True, init_scale=2.0 ** 12)  # 100 * 4096 overflows fp16 (max 65504)
    losses, grad = scaler.grad(forward, x)
    assert torch.equal(grad, torch.full((4,), 100.0)) and scaler.scale == 2.0 ** 9
    assert torch.equal(InputGradScaler(False).grad(forward, x)[1], grad)


def test_the_result_is_assembled_one_shard_at_a_time(tiny_teacher, tmp_path, monkeypatch):
    # a paper-size run keeps 4.2 GB; holding every shard beside the result doubled that per
    # torchrun process and the kernel killed one on a 24-GB machine
    import weakref

    from cake_mini import synthesis

    assemble, drawn = synthesis._cat_into, []

    def watching(parts, total):
        def each():
            for part in parts:
                assert all(ref() is None for ref in drawn[:-1]), "earlier shards are still held"
                drawn.append(weakref.ref(part))
                yield part
        return assemble(each(), total)

    monkeypatch.setattr(synthesis, "_cat_into", watching)
    config = SMALL.replace(parallel_batches=1)
    fresh = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False, checkpoint_dir=tmp_path)
    resumed = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False, checkpoint_dir=tmp_path)
    assert len(drawn) == 2 * config.num_batches
    assert fresh == resumed == cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False)


def test_with_a_checkpoint_directory_finished_shards_wait_on_disk(tiny_teacher, tmp_path, monkeypatch):
    # holding every finished shard until the end, beside the heap the optimisation leaves
    # behind, got a torchrun rank of a paper-size run killed on a 24-GB machine
    import weakref

    from cake_mini import synthesis

    optimize, load, assemble = synthesis._optimize_batches, synthesis.RunDirectory.load, synthesis._cat_into
    made, loaded = [], []

    def optimizing(*args, **kwargs):
        assert all(ref() is None for ref in made), "a finished shard is still held"
        part = optimize(*args, **kwargs)
        made.append(weakref.ref(part.x))
        return part

    def loading(self, name):
        shard = load(self, name)
        if shard is not None:
            loaded.append(weakref.ref(shard["x"]))
        return shard

    def assembling(parts, total):
        assert all(ref() is None for ref in made + loaded), "shards are held before the assembly"
        return assemble(parts, total)

    config = SMALL.replace(parallel_batches=1)
    plain = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False)  # holds its shards: no directory
    monkeypatch.setattr(synthesis, "_optimize_batches", optimizing)
    monkeypatch.setattr(synthesis.RunDirectory, "load", loading)
    monkeypatch.setattr(synthesis, "_cat_into", assembling)
    fresh = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False, checkpoint_dir=tmp_path)
    resumed = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False, checkpoint_dir=tmp_path)
    assert len(made) == config.num_batches and len(loaded) > config.num_batches  # checked, then read back
    assert fresh == resumed == plain


def test_shards_that_do_not_add_up_to_the_run_are_refused(tiny_teacher):
    from cake_mini.synthesis import _cat_into

    s = cm.synthesize(tiny_teacher, (1, 8, 8), 5, SMALL, progress=False)
    whole = _cat_into(iter([s.subset(slice(0, 25)), s.subset(slice(25, 40))]), 40)
    assert all(torch.equal(a, b) for a, b in zip(whole.tensors().values(), s.tensors().values()))
    with pytest.raises(RuntimeError, match="run the same command again"):
        _cat_into(iter([s.subset(slice(0, 25))]), 40)
