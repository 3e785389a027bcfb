"""A synthesis or distillation run that tests kill with SIGKILL and then resume.

    python tests/_resume_worker.py synth|distill CHECKPOINT_DIR OUT_FILE [PAUSE]

Prints ``ready`` when the run begins, ``saved NAME`` after each checkpoint file and its
manifest are on disk, and ``done`` at the end, where the result goes to OUT_FILE.
PAUSE stops the process (so the test can kill it at an exact point) at the K-th
checkpoint write of this process:

* ``saved:K``  the file and the manifest that lists it are written;
* ``tmp:K``    the temporary file is written and fsynced, the rename has not happened;
* ``rename:K`` the file is renamed into place, the manifest does not list it yet.

The test module imports this file for the same teacher, student, data and configs.
"""
from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from cake_mini import DistillConfig, SynthesisConfig, distill, synthesize
from cake_mini import checkpoint
from cake_mini.checkpoint import atomic_save

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 4
# 23 batches of 8 in groups of 2: 12 shards, the last one half full; 181 samples are kept
SYNTH_CONFIG = SynthesisConfig(num_samples=181, batch_size=8, steps=15, parallel_batches=2,
                               w_cls=10.0, w_contr=1.0, w_tv=1.0, lr=0.1, lr_decades=2, seed=3)
DISTILL_CONFIG = DistillConfig(epochs=6, batch_size=16, lr=0.05, augment="shift", shift_pixels=1,
                               val_fraction=0.1, seed=5)
GLOBAL_SEED = 123  # the global RNG (dropout) is seeded with this before distill()


def make_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, NUM_CLASSES)).eval()


def make_student() -> nn.Module:
    """Dropout draws from the global RNG, so resuming must restore it too."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(3 * 8 * 8, NUM_CLASSES))


def make_train_set() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(72, *INPUT_SHAPE, generator=g)
    return x, torch.randn(72, NUM_CLASSES, generator=g).softmax(-1)


def _instrument(pause: str | None) -> None:
    """Report finished checkpoint files, and stop at the requested point."""
    where, _, k = (pause or "none:0").partition(":")
    writes, saves = {"n": 0}, {"n": 0}
    real_replace, real_save = os.replace, checkpoint.RunDirectory.save

    def replace(src, dst, *args, **kwargs):
        is_shard = not str(dst).endswith(checkpoint.MANIFEST)
        writes["n"] += is_shard
        if is_shard and where == "tmp" and writes["n"] == int(k):
            print(f"paused {os.path.basename(dst)} before rename", flush=True)
            time.sleep(600)
        real_replace(src, dst, *args, **kwargs)
        if is_shard and where == "rename" and writes["n"] == int(k):
            print(f"paused {os.path.basename(dst)} before manifest", flush=True)
            time.sleep(600)

    def save(self, name, obj):
        real_save(self, name, obj)
        print(f"saved {name}", flush=True)
        saves["n"] += 1
        if where == "saved" and saves["n"] == int(k):
            print(f"paused after {name}", flush=True)
            time.sleep(600)

    checkpoint.os.replace = replace
    checkpoint.RunDirectory.save = save


def main(mode: str, checkpoint_dir: str, out: str, pause: str | None = None) -> None:
    torch.set_num_threads(1)
    _instrument(pause)
    if mode == "synth":
        teacher = make_teacher()
        print("ready", flush=True)
        result = synthesize(teacher, INPUT_SHAPE, NUM_CLASSES, SYNTH_CONFIG, progress=False,
                            checkpoint_dir=checkpoint_dir)
        result.save(out)
    else:
        student, train_set = make_student(), make_train_set()
        torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (seconds)
        torch.manual_seed(GLOBAL_SEED)
        print("ready", flush=True)
        distill(student, train_set, DISTILL_CONFIG, progress=False, checkpoint_dir=checkpoint_dir)
        atomic_save(student.state_dict(), out)
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
