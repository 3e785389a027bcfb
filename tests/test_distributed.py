"""torchrun with two CPU processes (gloo) gives what one process gives.

Synthesis: the same shards, bit for bit (each rank owns every other group of mini-batches
and writes its own manifest). Distillation under DistributedDataParallel: both ranks end
with identical weights, equal to a one-process run up to float summation order.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cake_mini as cm
from cake_mini import distributed
from cake_mini import synthesis as synthesis_module

WORKER = Path(__file__).with_name("_distributed_worker.py")
sys.path.insert(0, str(WORKER.parent))
import _distributed_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("torchrun")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_two_ranks_synthesise_the_one_process_samples_bit_for_bit(two_ranks, one_thread):
    ranks = [torch.load(two_ranks / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    alone = cm.synthesize(worker.make_teacher(), (1, 8, 8), 5, worker.SYNTH, progress=False)
    for r in ranks:
        for field, tensor in alone.tensors().items():
            assert torch.equal(r["synthetic"][field], tensor), field
    # 11 batches in groups of 2 -> 6 shards; rank 0 owns groups 0, 2, 4 and rank 1 groups 1, 3, 5
    owned = {r: set(json.loads((two_ranks / "synthesis" / f"manifest.rank{r}.json").read_text())["shards"])
             for r in (0, 1)}
    assert owned[0] == {"batches-000000-000001.pt", "batches-000004-000005.pt", "batches-000008-000009.pt"}
    assert owned[1] == {"batches-000002-000003.pt", "batches-000006-000007.pt", "batches-000010-000010.pt"}


def test_one_process_resumes_from_what_two_ranks_wrote(two_ranks, one_thread, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("every shard is finished; nothing should be recomputed")

    monkeypatch.setattr(synthesis_module, "_optimize_batches", must_not_run)
    again = cm.synthesize(worker.make_teacher(), (1, 8, 8), 5, worker.SYNTH, progress=False,
                          checkpoint_dir=two_ranks / "synthesis")
    assert torch.equal(again.x, torch.load(two_ranks / "rank0.pt")["synthetic"]["x"])


def test_ddp_distillation_matches_one_process(two_ranks, one_thread):
    ranks = [torch.load(two_ranks / f"rank{r}.pt") for r in (0, 1)]
    for name, tensor in ranks[0]["student"].items():
        assert torch.equal(tensor, ranks[1]["student"][name]), f"ranks disagree on {name}"
    synthetic = cm.SyntheticSet(**ranks[0]["synthetic"])
    student = worker.make_student()
    alone = cm.distill(student, synthetic, worker.DISTILL, progress=False)
    for name, tensor in student.state_dict().items():
        torch.testing.assert_close(ranks[0]["student"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(ranks[0]["history"], alone.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert (two_ranks / "distill" / "manifest.json").exists()  # rank 0 checkpoints, no per-rank copies
    assert not list((two_ranks / "distill").glob("manifest.rank*"))


def test_ranks_end_with_the_same_batchnorm_statistics(two_ranks):
    ranks = [torch.load(two_ranks / f"rank{r}.pt")["bn_student"] for r in (0, 1)]
    assert any("running_mean" in name for name in ranks[0])
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), f"ranks disagree on {name}"
    start = worker.make_bn_student().state_dict()
    assert not torch.equal(ranks[0]["1.running_mean"], start["1.running_mean"])  # it did train


def test_synthesis_in_several_processes_needs_a_shared_directory(monkeypatch, tiny_teacher):
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="pass checkpoint_dir= on a file system every rank sees"):
        cm.synthesize(tiny_teacher, (1, 8, 8), 5, cm.SynthesisConfig(num_samples=10, batch_size=5, steps=1),
                      progress=False)


def test_cli_runs_under_torchrun(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cake_mini",
           "run", "toy2d", "--size", "smoke", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("student accuracy") == 1  # rank 0 reports, rank 1 stays quiet
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2
    assert sorted(p.name for p in (out / "synthesis").glob("manifest*")) == ["manifest.rank0.json",
                                                                           "manifest.rank1.json"]


@pytest.mark.slow
def test_cli_with_a_batchnorm_teacher_under_torchrun(tmp_path):
    """ResNet teachers have BatchNorm: both ranks must synthesise from the same teacher."""
    out = tmp_path / "c10"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cake_mini",
           "run", "cifar10-resnet", "--size", "smoke", "--stand-in", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["processes"] == 2
