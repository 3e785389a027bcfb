"""Faults a user can run into, and the messages that say what to change.

Each test provokes one fault with a tiny teacher and checks that the message names the
cause and the fix, and that nothing finished is lost.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cake_mini import (
    NonFiniteLossError, SynthesisConfig, SyntheticSet, checkpoint, cli, data, synthesize,
    synthesize_reference,
)
from cake_mini.checkpoint import MANIFEST
from cake_mini.models import make_model

_spec = importlib.util.spec_from_file_location("_resume_worker", Path(__file__).with_name("_resume_worker.py"))
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

SHAPE, C = worker.INPUT_SHAPE, worker.NUM_CLASSES  # (1, 8, 8), 4 classes


def config(**changes) -> SynthesisConfig:
    """3 mini-batches of 8, one per shard, 3 steps each."""
    return worker.SYNTH_CONFIG.replace(**{"num_samples": 24, "steps": 3, "parallel_batches": 1,
                                          **changes})


def assert_same_set(a: SyntheticSet, b: SyntheticSet) -> None:
    for f in SyntheticSet.FIELDS:
        assert torch.equal(getattr(a, f), getattr(b, f)), f


def assert_consistent(directory: Path) -> dict:
    m = json.loads((directory / MANIFEST).read_text())
    for name, sha in m["shards"].items():
        file = directory / m.get("files", {}).get(name, name)
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha, name
    return m


def temporaries(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("teacher, shape, expected", [
    (make_model("mlp", num_classes=3, in_features=2), (3,),
     "the teacher rejected inputs of shape (N, 3) (ValueError: MLP expected 2 input features"),
    (worker.make_teacher(), (8, 8), "the teacher rejected inputs of shape (N, 8, 8) (RuntimeError"),
    (worker.make_teacher(), (1, 16, 16), "the teacher rejected inputs of shape (N, 1, 16, 16)"),
])
def test_wrong_input_shape_names_the_fix(teacher, shape, expected):
    num_classes, batch_size = (3, 6) if shape == (3,) else (C, 8)
    with pytest.raises(ValueError) as info:
        synthesize(teacher.eval(), shape, num_classes, config(batch_size=batch_size), progress=False)
    message = str(info.value)
    assert expected in message and "Pass the input_shape the teacher was trained on" in message, message


def test_wrong_num_classes():
    with pytest.raises(ValueError, match=r"logits of shape \(N, num_classes\) = \(2, 5\).*got \(2, 4\); "
                                         "check num_classes"):
        synthesize(worker.make_teacher(), SHAPE, 5, config(batch_size=10), progress=False)


def test_group_size_larger_than_num_classes():
    with pytest.raises(ValueError) as info:
        synthesize(worker.make_teacher(), SHAPE, C, config(group_size=5), progress=False)
    assert str(info.value) == ("group_size=5 must be between 2 and num_classes=4: a group holds samples "
                               "of distinct classes. Use group_size <= 4 (or None for all classes).")


def test_batch_size_not_a_multiple_of_group_size():
    with pytest.raises(ValueError, match=r"batch_size=10 must be a multiple of group_size=4; e.g. batch_size=8"):
        synthesize(worker.make_teacher(), SHAPE, C, config(batch_size=10), progress=False)


def test_num_samples_not_divisible_is_rounded_up_then_cut(tmp_path):
    teacher = make_model("mlp", num_classes=5, in_features=2).eval()
    cfg = SynthesisConfig(num_samples=55, batch_size=10, steps=3, parallel_batches=2, w_tv=0.0)
    result = synthesize(teacher, (2,), 5, cfg, progress=False)
    assert len(result) == 55 and result.x.shape == (55, 2) and result.soft_labels.shape == (55, 5)
    assert result.labels.shape == result.step_size.shape == (55,)
    full = synthesize(teacher, (2,), 5, cfg.replace(num_samples=60), progress=False)
    # both runs compute the same 6 mini-batches; 55 keeps the first 55 samples
    assert_same_set(result, full.subset(slice(0, 55)))
    groups = result.labels[:50].view(-1, 5)
    assert all(len(set(g.tolist())) == 5 for g in groups)  # distinct classes per group
    checkpointed = synthesize(teacher, (2,), 5, cfg, progress=False, checkpoint_dir=tmp_path)
    assert_same_set(checkpointed, result)


# ----------------------------------------------------------------------------- the teacher


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_teacher_with_non_finite_output(bad):
    teacher = worker.make_teacher()
    with torch.no_grad():
        teacher[-1].bias[1] = bad
    with pytest.raises(ValueError, match="the teacher's output contains NaN or Inf on an all-zero input; "
                                         "check its weights"):
        synthesize(teacher, SHAPE, C, config(), progress=False)


def test_teacher_in_training_mode():
    with pytest.raises(ValueError, match=r"the teacher is in training mode; call teacher.eval\(\) first"):
        synthesize(worker.make_teacher().train(), SHAPE, C, config(), progress=False)


def test_teacher_is_left_exactly_as_it_was(tmp_path):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 8 * 8, C))
    teacher[1].running_mean.uniform_()  # BatchNorm statistics that must not move
    teacher[0].bias.requires_grad_(False)  # a frozen parameter stays frozen
    teacher[-1].weight.grad = torch.full_like(teacher[-1].weight, 0.5)  # a stale .grad stays as it is
    teacher.eval()

    def snapshot():
        return ({k: v.clone() for k, v in teacher.state_dict().items()},
                {n: (p.requires_grad, None if p.grad is None else p.grad.clone())
                 for n, p in teacher.named_parameters()},
                [m.training for m in teacher.modules()])

    before = snapshot()
    synthesize(teacher, SHAPE, C, config(), progress=False)
    synthesize(teacher, SHAPE, C, config(method="lake", optimizer="adam"), progress=False,
               checkpoint_dir=tmp_path)
    synthesize_reference(teacher, SHAPE, C, config(num_samples=8))
    after = snapshot()
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0]), "weights or buffers changed"
    for name, (flag, grad) in before[1].items():
        assert after[1][name][0] == flag, f"requires_grad of {name} changed"
        assert (grad is None) == (after[1][name][1] is None), f".grad of {name} changed"
        assert grad is None or torch.equal(grad, after[1][name][1]), f".grad of {name} changed"
    assert before[2] == after[2] == [False] * len(after[2]), "training flags changed"


# ----------------------------------------------------------------------------- non-finite loss


class NaNAt(nn.Module):
    """The worker's teacher, but the gradient step ``step`` of mini-batch ``batch`` sees NaN logits.

    Counts only the calls that take a gradient (one per step; ``steps=3``, one batch per
    group), so extra no-grad calls (input checks, final soft labels) do not matter.
    """

    def __init__(self, batch: int, step: int, steps: int = 3):
        super().__init__()
        self.net, self.bad, self.calls = worker.make_teacher(), batch * steps + step, 0

    def forward(self, x):
        out = self.net(x)
        if torch.is_grad_enabled() and x.requires_grad:
            self.calls += 1
            if self.calls - 1 == self.bad:
                return out * float("nan")
        return out


def test_non_finite_loss_names_batch_and_step_and_keeps_finished_batches():
    plain = synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False)
    with pytest.raises(NonFiniteLossError) as info:
        synthesize(NaNAt(batch=2, step=1).eval(), SHAPE, C, config(), progress=False)
    message = str(info.value)
    assert message.startswith("the synthesis loss became NaN/Inf in batch 2 (step size ")
    assert "at step 1 of 3. Lower lr or the loss weights (w_cls, w_contr, w_tv), or use precision='fp32'." \
        in message
    partial = info.value.partial
    assert len(partial) == 16  # batches 0 and 1, exactly as in a healthy run
    assert_same_set(partial, plain.subset(slice(0, 16)))


def test_non_finite_loss_keeps_finished_shards_and_a_rerun_continues(tmp_path):
    plain = synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False)
    with pytest.raises(NonFiniteLossError, match=f"at step 2 of 3.*Finished shards are kept in {tmp_path}"):
        synthesize(NaNAt(batch=1, step=2).eval(), SHAPE, C, config(), progress=False, checkpoint_dir=tmp_path)
    assert sorted(assert_consistent(tmp_path)["shards"]) == ["batches-000000-000000.pt"]
    assert temporaries(tmp_path) == []
    # same weights (the NaN came from elsewhere): the finished shard is reused, the rest computed
    assert_same_set(synthesize(NaNAt(batch=-1, step=0).eval(), SHAPE, C, config(), progress=False,
                               checkpoint_dir=tmp_path), plain)


# ----------------------------------------------------------------------------- disk full


class _FullDisk:
    """A file whose ``write`` stores half of the data and then fails with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("victim, expected_shards", [
    (".batches-000001-000001.pt", ["batches-000000-000000.pt"]),  # the 2nd shard
    (".manifest.json", ["batches-000000-000000.pt"]),  # the manifest update after the 2nd shard
])
def test_disk_full_while_writing(tmp_path, monkeypatch, victim, expected_shards):
    plain = synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False)
    writes = {victim: 0}
    fail_at = 1 if victim.startswith(".batches") else 3  # manifest: creation, shard 0, shard 1
    real_open = open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name.startswith(victim):
            writes[victim] += 1
            if writes[victim] == fail_at:
                return _FullDisk(f)
        return f

    monkeypatch.setattr(checkpoint, "open", open_on_full_disk, raising=False)
    with pytest.raises(OSError) as info:
        synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    target = tmp_path / victim[1:]
    assert str(info.value) == (
        f"[Errno 28] disk full while writing {target}; nothing half-written was left behind. Free some "
        "space (or choose another directory) and run the same command again: finished work in that "
        "directory is kept and reused.")
    assert temporaries(tmp_path) == []
    assert sorted(assert_consistent(tmp_path)["shards"]) == expected_shards
    assert_same_set(synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False,
                               checkpoint_dir=tmp_path), plain)
    assert len(assert_consistent(tmp_path)["shards"]) == 3


# ----------------------------------------------------------------------------- directories


def test_directory_of_another_kind_or_with_a_broken_manifest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / MANIFEST).write_text(json.dumps({"kind": "distill", "identity": {}, "shards": {}}))
    with pytest.raises(ValueError, match="holds another distill run .*runs are never mixed"):
        synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False, checkpoint_dir=tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / MANIFEST).write_text("{")
    with pytest.raises(ValueError, match="manifest.json is not valid JSON .*delete the directory to start over"):
        synthesize(worker.make_teacher(), SHAPE, C, config(), progress=False, checkpoint_dir=tmp_path / "b")


def test_cli_missing_dataset_offline(tmp_path, monkeypatch, capsys):
    """`cake-mini run fashion-mnist` without the files and without network: exit code 2, what to do."""
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("CAKE_MINI_DATA", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/cake_mini
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion-mnist": tmp_path / "no-debian-package"})

    def offline(name, target):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_torchvision_download", offline)
    code = cli.main(["run", "fashion-mnist", "--size", "smoke", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: Could not find the 'fashion-mnist' data set (train files); the download")
    assert "OSError: Temporary failure in name resolution" in err
    assert "set CAKE_MINI_DATA to it" in err and "apt-get install dataset-fashion-mnist" in err
    assert str(empty) in err  # the searched directories are listed


def test_only_this_machines_dead_temporaries_are_removed(tmp_path):
    # ranks of a multi-node job share the directory: another machine's PIDs mean nothing here
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    mine = tmp_path / f".shard.pt.tmp-{checkpoint._HOST}-{dead}"
    foreign = tmp_path / f".shard.pt.tmp-some-other-host-{dead}"
    for f in (mine, foreign):
        f.write_bytes(b"half")
    checkpoint.RunDirectory(tmp_path, {"a": 1}, kind="synthesis")
    assert not mine.exists() and foreign.exists()
