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
