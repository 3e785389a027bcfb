"""Long runs lose nothing: checkpointed synthesis and distillation survive SIGKILL.

The kill tests start ``_resume_worker.py`` in a subprocess, kill it with SIGKILL at
seeded points (after k finished files, halfway through writing one, between a file's
rename and the manifest update, at a random moment), start it again until it finishes,
and compare the result bit for bit with an uninterrupted run in this process.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from cake_mini import SynthesisConfig, SyntheticSet, distill, synthesize
from cake_mini import synthesis as synthesis_module
from cake_mini.checkpoint import MANIFEST, fingerprint, safe_load
from conftest import single_thread as one_thread  # the worker computes with one thread too

WORKER_FILE = Path(__file__).with_name("_resume_worker.py")
_spec = importlib.util.spec_from_file_location("_resume_worker", WORKER_FILE)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

SYNTH_SHARDS = 12  # 23 batches in groups of 2
FIELDS = SyntheticSet.FIELDS


# ----------------------------------------------------------------------------- helpers


class Worker:
    """A ``_resume_worker.py`` subprocess whose output lines can be awaited."""

    def __init__(self, mode: str, checkpoint_dir: Path, out: Path, pause: str | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
        cmd = [sys.executable, str(WORKER_FILE), mode, str(checkpoint_dir), str(out)]
        self.proc = subprocess.Popen(cmd + ([pause] if pause else []), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError("worker timed out; its output:\n" + "\n".join(self.log)) from None
            if line is None:
                raise AssertionError("worker ended early; its output:\n" + "\n".join(self.log))
            self.log.append(line)
            if predicate(line):
                return line

    def saved(self) -> int:
        return sum(line.startswith("saved ") for line in self.log)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)  # reaped: its pid is gone

    def finish(self) -> None:
        self.wait_for(lambda line: line == "done")
        assert self.proc.wait(timeout=30) == 0, "\n".join(self.log)


def manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def assert_consistent(directory: Path) -> dict:
    """The manifest parses and every file it lists is on disk with the listed SHA-256."""
    m = manifest(directory)
    for name, sha in m["shards"].items():
        file = directory / m.get("files", {}).get(name, name)
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha, name
    return m


def current_file(directory: Path, name: str) -> Path:
    """Where the manifest says the latest version of ``name`` is."""
    return directory / manifest(directory).get("files", {}).get(name, name)


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def assert_same_set(a: SyntheticSet, b: SyntheticSet) -> None:
    for f in FIELDS:
        ta, tb = getattr(a, f), getattr(b, f)
        assert ta.dtype == tb.dtype and ta.shape == tb.shape, f
        assert torch.equal(ta, tb), f"{f} differs"


def small_teacher():
    return worker.make_teacher()


def small_config(**changes) -> SynthesisConfig:
    return worker.SYNTH_CONFIG.replace(**{"num_samples": 44, "steps": 5, **changes})


def run(config, checkpoint_dir=None, teacher=None):
    return synthesize(teacher or small_teacher(), worker.INPUT_SHAPE, worker.NUM_CLASSES, config,
                      progress=False, checkpoint_dir=checkpoint_dir)


@pytest.fixture(scope="module")
def synth_reference() -> SyntheticSet:
    """The worker's synthesis, uninterrupted and without a checkpoint directory."""
    with one_thread():
        return run(worker.SYNTH_CONFIG)


# ----------------------------------------------------------------------------- kill tests


@pytest.mark.slow  # seconds: each worker imports torch
def test_synthesis_killed_at_random_points_resumes_bit_identical(tmp_path, synth_reference):
    rng = random.Random(20240607)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.pt"

    # 1. kill after the k-th finished shard (listed in the manifest)
    k = rng.randint(1, 3)
    w = Worker("synth", ckpt, out, pause=f"saved:{k}")
    w.wait_for(lambda line: line == "ready")
    t0 = time.monotonic()
    w.wait_for(lambda line: line.startswith("paused"))
    per_shard = (time.monotonic() - t0) / k
    w.kill()
    assert len(assert_consistent(ckpt)["shards"]) == k

    # 2. kill while a shard's temporary file is written but not yet renamed
    w = Worker("synth", ckpt, out, pause=f"tmp:{rng.randint(1, 2)}")
    w.wait_for(lambda line: line.startswith("paused"))
    w.kill()
    assert temporaries(ckpt), "the paused worker should have left its temporary file"
    done = len(assert_consistent(ckpt)["shards"])

    # 3. kill after a shard was renamed into place, before the manifest lists it
    w = Worker("synth", ckpt, out, pause="rename:1")
    paused = w.wait_for(lambda line: line.startswith("paused")).split()[1]
    w.kill()
    m = assert_consistent(ckpt)
    assert (ckpt / paused).exists() and paused not in m["shards"] and len(m["shards"]) == done

    # 4. kill at a random moment, on average halfway through the remaining shards
    w = Worker("synth", ckpt, out)
    w.wait_for(lambda line: line == "ready")
    time.sleep(rng.uniform(0.0, per_shard * (SYNTH_SHARDS - done)))
    w.kill()
    m = assert_consistent(ckpt)

    # 5. run to the end: only the missing shards are computed
    missing = SYNTH_SHARDS - len(m["shards"])
    w = Worker("synth", ckpt, out)
    w.finish()
    assert w.saved() == missing, w.log
    assert not any("recomputing" in line for line in w.log), w.log  # nothing looked corrupt
    assert temporaries(ckpt) == [], "stale temporary files of killed runs must be removed"
    assert len(assert_consistent(ckpt)["shards"]) == SYNTH_SHARDS

    result = SyntheticSet.load(out)
    assert len(result) == worker.SYNTH_CONFIG.num_samples == 181
    assert_same_set(result, synth_reference)


@pytest.mark.slow
def test_distillation_killed_after_epoch_resumes_bit_identical(tmp_path):
    rng = random.Random(77)
    ckpt, out = tmp_path / "ckpt", tmp_path / "student.pt"
    epochs = worker.DISTILL_CONFIG.epochs

    # 1. kill after the k-th finished epoch
    k = rng.randint(1, epochs - 2)
    w = Worker("distill", ckpt, out, pause=f"saved:{k}")
    w.wait_for(lambda line: line.startswith("paused"))
    w.kill()
    assert_consistent(ckpt)
    finished = len(safe_load(current_file(ckpt, "state.pt"))["history"])
    assert finished == k

    # 2. kill after the next epoch's checkpoint is renamed into place, before the manifest
    #    lists it: the manifest's version must still be intact (no epoch listed is lost)
    w = Worker("distill", ckpt, out, pause="rename:1")
    w.wait_for(lambda line: line.startswith("paused"))
    w.kill()
    assert_consistent(ckpt)
    assert len(safe_load(current_file(ckpt, "state.pt"))["history"]) == finished

    # 3. to the end
    w = Worker("distill", ckpt, out)
    w.finish()
    assert w.saved() == epochs - finished, w.log
    assert not any("recomputing" in line for line in w.log), w.log
    assert temporaries(ckpt) == []

    with one_thread(), torch.random.fork_rng(devices=[]):
        student = worker.make_student()
        torch.manual_seed(worker.GLOBAL_SEED)
        reference = distill(student, worker.make_train_set(), worker.DISTILL_CONFIG, progress=False)
    resumed = safe_load(out)
    expected = reference.model.state_dict()
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name


# ----------------------------------------------------------------------------- in-process resume


def test_checkpointed_run_equals_plain_run_and_reloads_without_computing(tmp_path, monkeypatch):
    config = small_config()
    plain = run(config)
    first = run(config, tmp_path)
    assert_same_set(first, plain)
    m = assert_consistent(tmp_path)
    assert len(m["shards"]) == 3 and m["version"] and m["identity"]["config"]["seed"] == config.seed
    assert m["identity"]["teacher"] == fingerprint(small_teacher())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished shard was recomputed")

    monkeypatch.setattr(synthesis_module, "_optimize_batches", must_not_run)
    again = run(config, tmp_path)
    assert_same_set(again, plain)
    assert again.meta == plain.meta


def test_damaged_shards_are_detected_and_recomputed(tmp_path):
    config = small_config(method="lake", num_samples=60)  # 8 batches: 4 shards
    plain = run(config)
    run(config, tmp_path)
    names = sorted(assert_consistent(tmp_path)["shards"])
    corrupt, truncated, missing = tmp_path / names[0], tmp_path / names[2], tmp_path / names[3]
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])
    missing.unlink()

    with pytest.warns(UserWarning) as record:
        again = run(config, tmp_path)
    messages = [str(w.message) for w in record]
    assert any(names[0] in m and "truncated or corrupt" in m and "recomputing" in m for m in messages)
    assert any(names[2] in m and "(100 bytes, checksum mismatch)" in m for m in messages)
    assert any(names[3] in m and "is missing" in m for m in messages)
    assert_same_set(again, plain)
    assert_consistent(tmp_path)
    with warnings_as_errors():
        assert_same_set(run(config, tmp_path), plain)  # repaired: no warning now


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("change, field", [
    (dict(steps=6), "config.steps: 5 there, 6 now"),
    (dict(seed=4), "config.seed: 3 there, 4 now"),
    (dict(w_tv=2.0), "config.w_tv: 1.0 there, 2.0 now"),
    (dict(parallel_batches=1), "config.parallel_batches: 2 there, 1 now"),
])
def test_changed_config_is_refused(tmp_path, change, field):
    run(small_config(), tmp_path)
    before = (tmp_path / MANIFEST).read_bytes()
    with pytest.raises(ValueError) as info:
        run(small_config(**change), tmp_path)
    message = str(info.value)
    assert field in message and "Use a new directory" in message, message
    assert (tmp_path / MANIFEST).read_bytes() == before  # nothing was touched


def test_changed_teacher_is_refused(tmp_path):
    run(small_config(), tmp_path)
    teacher = small_teacher()
    with torch.no_grad():
        teacher[0].bias[0] += 1e-3
    with pytest.raises(ValueError, match=r"differs in: teacher: '[0-9a-f]{12}\.\.\.' there") as info:
        run(small_config(), tmp_path, teacher=teacher)
    assert "new config or teacher" in str(info.value)


def test_function_teacher_resumes_across_processes(tmp_path):
    """A plain callable is identified by its name and the modules it uses, not its address."""
    def make(net):
        def teacher(x):
            return net(x)
        return teacher

    config = small_config()
    first = run(config, tmp_path, teacher=make(small_teacher()))
    again = run(config, tmp_path, teacher=make(small_teacher()))  # a new object, as in a new process
    assert_same_set(first, again)
    assert fingerprint(make(small_teacher())) == fingerprint(make(small_teacher()))
    other = small_teacher()
    with torch.no_grad():
        other[-1].weight.mul_(2)
    assert fingerprint(make(other)) != fingerprint(make(small_teacher()))
    assert fingerprint(small_teacher().forward) == fingerprint(small_teacher().forward)


def test_other_version_warns_and_reuses(tmp_path):
    config = small_config()
    plain = run(config, tmp_path)
    m = manifest(tmp_path)
    m["version"] = "0.0.1"
    (tmp_path / MANIFEST).write_text(json.dumps(m))
    with pytest.warns(UserWarning, match="written by cake_mini 0.0.1"):
        assert_same_set(run(config, tmp_path), plain)


def test_distill_checkpoint_reload_and_damage(tmp_path):
    def train(checkpoint_dir=None):
        with one_thread(), torch.random.fork_rng(devices=[]):
            student = worker.make_student()
            torch.manual_seed(worker.GLOBAL_SEED)
            config = worker.DISTILL_CONFIG.replace(epochs=2)
            return distill(student, worker.make_train_set(), config, progress=False,
                           checkpoint_dir=checkpoint_dir)

    plain = train().model.state_dict()
    first = train(tmp_path)
    assert all(torch.equal(first.model.state_dict()[k], v) for k, v in plain.items())
    again = train(tmp_path)  # finished: loads and returns the same weights and history
    assert all(torch.equal(again.model.state_dict()[k], v) for k, v in plain.items())
    assert [r["train_loss"] for r in again.history] == [r["train_loss"] for r in first.history]

    state = current_file(tmp_path, "state.pt")
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.warns(UserWarning, match=r"state(\.alt)?\.pt is truncated or corrupt"):
        redone = train(tmp_path)
    assert all(torch.equal(redone.model.state_dict()[k], v) for k, v in plain.items())

    with pytest.raises(ValueError, match="config.lr: 0.05 there, 0.1 now"):
        with torch.random.fork_rng(devices=[]):
            distill(worker.make_student(), worker.make_train_set(),
                    worker.DISTILL_CONFIG.replace(epochs=2, lr=0.1), progress=False,
                    checkpoint_dir=tmp_path)


# ----------------------------------------------------------------------------- SyntheticSet files


def test_synthetic_set_save_load_roundtrip(tmp_path):
    data = run(small_config(num_samples=20))
    path = tmp_path / "set.pt"
    data.save(path)
    loaded = SyntheticSet.load(path)
    assert_same_set(loaded, data)
    assert loaded.meta == data.meta and loaded.meta["config"]["seed"] == 3
    raw = torch.load(path, weights_only=True)  # no pickled objects: the safe loader accepts it
    assert set(raw) == {*FIELDS, "meta"}
    assert [p.name for p in tmp_path.iterdir()] == ["set.pt"]  # no temporary left behind


_GLOBAL_NET = None


def test_fingerprint_follows_the_modules_a_function_reads_from_its_globals():
    """``lambda q: net(q)`` with ``net`` a module-level name, as in a notebook (chapter 9)."""
    global _GLOBAL_NET
    _GLOBAL_NET = small_teacher()
    teacher = lambda q: _GLOBAL_NET(q)  # noqa: E731
    before = fingerprint(teacher)
    assert fingerprint(lambda q: _GLOBAL_NET(q)) == before  # a new object with the same weights
    with torch.no_grad():
        _GLOBAL_NET[-1].weight.mul_(2)
    assert fingerprint(teacher) != before
