"""How long one step of the best FashionMNIST student recipe takes, and what each speed-up buys.

    python benchmarks/student_step.py                  # 30 batches of 256 per variant, ~1 min on 2 CPU cores
    python benchmarks/student_step.py --batches 5      # a pipeline check

The recipe is `randaugment-snapshots` of ``fashion_mnist_search.py``: LeNet-5-Half trained at
batch 256 on RandAugment-ed 1x32x32 images, every batch relabelled by a LeNet-5 teacher. Three
variants of the same step, on the same random inputs (throughput does not depend on the data):

* ``per-image``: torchvision's ``v2.RandAugment()`` called on each image in turn (cake_mini
  before 2026-12-05, the path of the committed seed-0 run);
* ``grouped``: :func:`cake_mini.distill.rand_augment`, every operation applied once to the
  images that drew it (bit-identical output, tested);
* ``grouped+channels-last``: also ``DistillConfig(channels_last=True)``.

Writes benchmarks/results/student-step-<hardware>.json with the load average, since a busy
machine slows every variant.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

import cake_mini as cm
from cake_mini import models
from cake_mini.experiments import hardware, versions

distill_module = sys.modules["cake_mini.distill"]  # the package exports the function `distill` under that name


def per_image_rand_augment(x: torch.Tensor, generator: torch.Generator, keep=None) -> torch.Tensor:
    """The reference: torchvision's RandAugment on one image at a time, the same draws."""
    from torchvision.transforms import v2

    policy = v2.RandAugment()
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([policy(image) for image in x.cpu()]).to(x.device)
    return out if keep is None else out[keep]


def time_variant(rand_augment, channels_last: bool, batches: int, device: torch.device) -> float:
    """Milliseconds per student step (augment, relabel, forward, backward, SGD) over one epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256 * batches, 1, 32, 32, generator=g)
    soft = torch.randn(len(x), 10, generator=g).softmax(-1)
    teacher = models.make_model("lenet5", 10).to(device).eval()
    config = cm.DistillConfig(epochs=1, lr=0.1, augment="randaugment", val_fraction=0, channels_last=channels_last)
    original = distill_module.rand_augment
    distill_module.rand_augment = rand_augment
    try:
        torch.manual_seed(0)
        student = models.make_model("lenet5-half", 10).to(device)
        cm.distill(student, (x[:512], soft[:512]), config, teacher=teacher, device=device, progress=False)  # warm-up
        t0 = time.perf_counter()
        cm.distill(student, (x, soft), config, teacher=teacher, device=device, progress=False)
        return (time.perf_counter() - t0) / batches * 1000
    finally:
        distill_module.rand_augment = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = {"per-image": (per_image_rand_augment, False),
                "grouped": (distill_module.rand_augment, False),
                "grouped+channels-last": (distill_module.rand_augment, True)}
    load_before = os.getloadavg()[0]
    ms = {name: time_variant(fn, cl, args.batches, device) for name, (fn, cl) in variants.items()}
    hw = hardware(device)
    slug = hw.get("gpu", f"cpu-{hw['cpu_threads']}threads").lower().replace(" ", "-")
    results = {"benchmark": "student-step", "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%d %H:%M UTC"),
               "recipe": "LeNet-5-Half, batch 256, RandAugment, LeNet-5 teacher relabelling every batch",
               "batches": args.batches, "ms_per_step": ms,
               "speedup_vs_per_image": {name: ms["per-image"] / v for name, v in ms.items()},
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
               "hardware": hw, "versions": versions(),
               "command": "python benchmarks/student_step.py " + " ".join(sys.argv[1:])}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"student-step-{slug}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for name, v in ms.items():
        print(f"{name:24s} {v:6.1f} ms/step  x{ms['per-image'] / v:.2f}")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; wrote {out}")


if __name__ == "__main__":
    main()
