"""cake_mini.book, the helpers the chapters share: setup, teachers, the noise baseline, results files.

Run as a script under torchrun, this file is also the worker of the two-rank teacher test:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/test_book_helpers.py OUT_DIR
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cake_mini import DistillConfig, book, distributed

RECIPE = DistillConfig(epochs=1, batch_size=16, lr=0.05, precision="fp32", val_fraction=0.0, seed=0)


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def _model(seed=0):
    return book.new_model("cnn", 3, seed=seed, in_channels=1, image_size=8, width=4)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_setup_prints_and_returns_the_run_label(monkeypatch, capsys):
    monkeypatch.setenv("CAKE_MINI_SIZE", "smoke")
    size, seed, device, label = book.setup(seed=3, device="cpu")
    assert (size, seed, device) == ("smoke", 3, torch.device("cpu"))
    assert label.startswith("size=smoke seed=3 device=cpu (") and label.endswith(f"torch={torch.__version__}")
    assert capsys.readouterr().out.strip() == label
    drawn = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.rand(3)), "setup seeds torch with the chapter's seed"
    several = book.setup(seed=[1, 2], device="cpu")
    assert several.seed == (1, 2) and "seeds=1,2 " in several.label
    monkeypatch.setenv("CAKE_MINI_SIZE", "huge")
    with pytest.raises(ValueError, match="size must be one of"):
        book.setup()


def test_new_model_depends_on_its_seed_only():
    a = _model(seed=1)
    torch.rand(100)  # whatever ran before
    assert _same_weights(a, _model(seed=1))
    assert not _same_weights(a, _model(seed=2))


def test_teacher_is_trained_once_then_loaded(tmp_path, monkeypatch):
    path = tmp_path / "teacher.pt"
    first = book.train_or_load_teacher(_model(), path, _data(), RECIPE, progress=False, log=lambda *a: None)
    assert path.exists() and not first.training
    assert not _same_weights(first, _model()), "the first call trains"

    def must_not_train(*args, **kwargs):
        raise AssertionError("teacher.pt exists: the second call must load it, not train")

    monkeypatch.setattr(book, "train_classifier", must_not_train)
    said = []
    second = book.train_or_load_teacher(_model(), path, _data(), RECIPE, progress=False, log=said.append)
    assert _same_weights(second, first) and not second.training
    assert said == [f"loaded teacher from {path}"]


@pytest.mark.slow  # seconds: each rank imports torch
def test_under_torchrun_every_rank_ends_with_rank_0s_teacher(tmp_path):
    # each rank's (fake) training gives other weights; the file rank 0 wrote must win everywhere
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
           str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    saved = torch.load(tmp_path / "teacher.pt")
    for r in ranks:
        assert r["trained"], "with no teacher.pt, every rank takes part in training"
        assert all(torch.equal(r["weights"][k], v) for k, v in saved.items())
    assert all(float(v.flatten()[0]) == 0.0 for v in saved.values()), "teacher.pt is rank 0's"


def test_noise_set_is_teacher_labelled_gaussian_noise():
    teacher = _model().eval()
    noise = book.noise_set(teacher, 10, (1, 8, 8), seed=5, chunk=3)
    x, soft = noise.tensors
    assert x.shape == (10, 1, 8, 8) and soft.shape == (10, 3)
    with torch.no_grad():
        torch.testing.assert_close(soft, teacher(x).softmax(-1))
    assert torch.equal(x, torch.randn((10, 1, 8, 8), generator=torch.Generator().manual_seed(5)))
    assert torch.equal(book.noise_set(teacher, 10, (1, 8, 8), seed=5).tensors[0], x)


def test_load_results_reads_files_and_says_clearly_when_there_are_none(tmp_path, capsys):
    (tmp_path / "black-box-cpu.json").write_text(json.dumps({"size": "cpu", "rows": {}}))
    (tmp_path / "black-box-broken.json").write_text("{not json")
    assert book.load_results("black-box-*.json", tmp_path) == [("black-box-cpu.json", {"size": "cpu", "rows": {}})]
    assert "skipping black-box-broken.json" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError) as missing:
        book.load_results("fashion-mnist-*.json", tmp_path / "nowhere")
    message = str(missing.value)
    assert "fashion-mnist-*.json" in message and str((tmp_path / "nowhere").resolve()) in message
    assert "Colab" in message and "CAKE_MINI_RESULTS" in message


TIMINGS = {"date": "2026-01-02", "machine": "a 2-core CPU, shared", "t4_basis": "FLOPs at a share of the peak",
           "chapters": {"04": {"title": "Digits", "cpu": {
               "smoke": {"seconds": 40.2, "kind": "measured", "basis": "load average 2.1"},
               "default": {"seconds": 725.0, "kind": "estimate", "basis": "wall time of x.json / 3 seeds"},
               "paper": {"seconds": None, "kind": "not estimated", "basis": "no run at this size"}},
               "t4": {"smoke": {"seconds": 12_600.0, "kind": "estimate", "basis": "FLOPs at a share of the peak"}}}}}


def test_chapter_timings_renders_a_table_and_says_when_it_cannot(tmp_path):
    missing = book.chapter_timings("04", tmp_path)  # no file: one line, no exception
    assert not missing.available and missing.markdown().startswith("Run times of chapter 04 are not available")
    assert "chapter-timings.json was not found" in missing._repr_markdown_()
    (tmp_path / "chapter-timings.json").write_text(json.dumps(TIMINGS))
    for chapter in ("04", "4", 4):
        assert book.chapter_timings(chapter, tmp_path).available
    timings = book.chapter_timings(4, tmp_path)
    text = timings._repr_markdown_()
    assert "| `smoke` | 40 s (measured, note 1) | 3.5 h (estimate, note 2) |" in text
    assert "| `default` | 12 min (estimate, note 3) | not in the file |" in text
    assert "| `paper` | not estimated (note 4) | not in the file |" in text
    assert "1. load average 2.1" in text and "3. wall time of x.json / 3 seeds" in text
    assert "4. no run at this size" in text and "a 2-core CPU, shared" in text and "2026-01-02" in text
    assert timings.seconds("default") == 725.0 and timings.kind("smoke", "t4") == "estimate"
    other = book.chapter_timings("05", tmp_path)
    assert not other.available and "has no entry for chapter 05 (it has 04)" in str(other)
    assert [book.format_duration(s) for s in (0.2, 59, 600, 7200, 4 * 86400)] == ["<1 s", "59 s", "10 min",
                                                                                  "2.0 h", "4.0 d"]


def _torchrun_worker(out: Path) -> None:
    """One rank: a fake training that leaves rank-specific weights, then train_or_load_teacher."""
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank = distributed.rank_and_world()[0]
    trained = []

    def fake_training(model, *args, **kwargs):
        trained.append(True)
        with torch.no_grad():
            for p in model.state_dict().values():
                p.fill_(rank)

    book.train_classifier = fake_training
    teacher = book.train_or_load_teacher(_model(), out / "teacher.pt", _data(), RECIPE, progress=False)
    torch.save({"trained": bool(trained), "weights": teacher.state_dict()}, out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _torchrun_worker(Path(sys.argv[1]))


def test_fashion_mnist_teachers_of_differently_prepared_images_get_different_files(tmp_path, monkeypatch):
    """Chapter 5 resizes bilinearly and chapter 8 pads: each must train its own teacher file."""
    monkeypatch.setattr(book, "runs_dir", lambda: tmp_path)
    paths = []
    monkeypatch.setattr(book, "train_or_load_teacher", lambda model, path, *a, **k: paths.append(path))
    padded = torch.full((4, 1, 32, 32), -1.0)
    padded[:, :, 2:-2, 2:-2] = torch.rand(4, 1, 28, 28)
    resized = torch.rand(4, 1, 32, 32) * 2 - 1
    labels = torch.arange(4)
    for images in (padded, resized, padded.clone()):
        book.fashion_mnist_teacher(TensorDataset(images, labels), size="smoke", seed=0, progress=False)
    assert paths[0] != paths[1] and paths[0] == paths[2]
