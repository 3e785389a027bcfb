"""One rank of the torchrun job in tests/test_distributed.py (not collected by pytest).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/_distributed_worker.py OUT_DIR

Synthesises into OUT_DIR/synthesis and distils into OUT_DIR/distill with the settings below;
each rank writes what it ended with to OUT_DIR/rank<R>.pt for the test to compare.
"""
import sys
from pathlib import Path

import torch
from torch import nn

import cake_mini as cm
from cake_mini import distributed

SYNTH = cm.SynthesisConfig(num_samples=110, batch_size=10, steps=4, group_size=5, lr=0.5, lr_decades=2,
                           w_cls=3.0, w_contr=0.3, w_tv=1.0, parallel_batches=2, precision="fp32", seed=7)
DISTILL = cm.DistillConfig(epochs=3, batch_size=16, lr=0.05, augment="shift", precision="fp32", seed=1)


def make_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


def make_student() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))


def make_bn_student() -> nn.Module:
    """With BatchNorm: its running statistics are buffers that DDP does not keep equal by itself."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 5))


def main(out: Path) -> None:
    torch.set_num_threads(1)
    device = distributed.init_from_env("cpu")
    rank, world = distributed.rank_and_world()
    synthetic = cm.synthesize(make_teacher(), (1, 8, 8), 5, SYNTH, device=device, progress=False,
                              checkpoint_dir=out / "synthesis")
    student = make_student()
    result = cm.distill(student, synthetic, DISTILL, device=device, progress=False, checkpoint_dir=out / "distill")
    bn_student = make_bn_student()
    cm.distill(bn_student, synthetic, DISTILL.replace(epochs=2), device=device, progress=False)
    torch.save({"world": world, "synthetic": synthetic.tensors(), "student": student.state_dict(),
                "bn_student": bn_student.state_dict(), "history": result.history}, out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
