"""How long one step of the best FashionMNIST student recipe takes, and what each speed-up buys.

    python benchmarks/student_step.py                  # 30 batches of 256 per variant, ~1 min on 2 CPU cores
    python benchmarks/student_step.py --batches 5      # a pipeline check

The recipe is `randaugment-snapshots` of ``fashion_mnist_search.py``: LeNet-5-Half trained at
batch 256 on RandAugment-ed 1x32x32 images, every batch relabelled by a LeNet-5 teacher. Four
variants of the same step, on the same random inputs (throughput does not depend on the data):

* ``per-image``: torchvision's ``v2.RandAugment()`` called on each image in turn (cake_mini
  before 2026-12-05, the path of the committed seed-0 run);
* ``grouped``: :func:`cake_mini.distill.rand_augment`, every operation applied once to the
  images that drew it (bit-identical output, tested);
* ``grouped+channels-last``: also ``DistillConfig(channels_last=True)``;
* ``grouped+channels-last, torch pool, uncached draws``: the same with cake_mini before
  2026-12-07: ``nn.MaxPool2d`` where LeNet now has :class:`cake_mini.models.MaxPool2x2`, and
  RandAugment's operations drawn by one scalar call each, the magnitude table rebuilt every
  time (both changes give the same numbers, tested).

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
BEFORE = "grouped+channels-last, torch pool, uncached draws"


def per_image_rand_augment(x: torch.Tensor, generator: torch.Generator, keep=None) -> torch.Tensor:
    """The reference: torchvision's RandAugment on one image at a time, the same draws."""
    from torchvision.transforms import v2

    policy = v2.RandAugment()
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([policy(image) for image in x.cpu()]).to(x.device)
    return out if keep is None else out[keep]


def uncached_draw_operation(policy, size: tuple[int, int]) -> tuple[str, float]:
    """cake_mini's draw before 2026-12-07: the magnitude table rebuilt on every call."""
    names = tuple(policy._AUGMENTATION_SPACE)
    name = names[int(torch.randint(len(names), ()))]
    magnitudes_fn, signed = policy._AUGMENTATION_SPACE[name]
    magnitudes = magnitudes_fn(policy.num_magnitude_bins, *size)
    if magnitudes is None:
        return name, 0.0
    magnitude = float(magnitudes[policy.magnitude])
    if signed and torch.rand(()) <= 0.5:
        magnitude *= -1
    return name, magnitude


def uncached_draw_operations(policy, n: int, size: tuple[int, int]) -> list[list[tuple[str, float]]]:
    """cake_mini's draws before 2026-12-07: one image and operation at a time."""
    return [[uncached_draw_operation(policy, size) for _ in range(policy.num_ops)] for _ in range(n)]


def with_torch_pool(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every :class:`~cake_mini.models.MaxPool2x2` replaced by ``nn.MaxPool2d(2)``."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, models.MaxPool2x2):
                setattr(module, name, torch.nn.MaxPool2d(2))
    return model


def time_variant(rand_augment, channels_last: bool, batches: int, device: torch.device,
                 before: bool = False) -> float:
    """Milliseconds per student step (augment, relabel, forward, backward, SGD) over one epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256 * batches, 1, 32, 32, generator=g)
    soft = torch.randn(len(x), 10, generator=g).softmax(-1)
    as_before = with_torch_pool if before else (lambda model: model)
    teacher = as_before(models.make_model("lenet5", 10)).to(device).eval()
    config = cm.DistillConfig(epochs=1, lr=0.1, augment="randaugment", val_fraction=0, channels_last=channels_last)
    original = distill_module.rand_augment, distill_module._draw_operations
    distill_module.rand_augment = rand_augment
    if before:
        distill_module._draw_operations = uncached_draw_operations
    try:
        torch.manual_seed(0)
        student = as_before(models.make_model("lenet5-half", 10)).to(device)
        cm.distill(student, (x[:512], soft[:512]), config, teacher=teacher, device=device, progress=False)  # warm-up
        t0 = time.perf_counter()
        cm.distill(student, (x, soft), config, teacher=teacher, device=device, progress=False)
        return (time.perf_counter() - t0) / batches * 1000
    finally:
        distill_module.rand_augment, distill_module._draw_operations = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = {"per-image": (per_image_rand_augment, False, False),
                "grouped": (distill_module.rand_augment, False, False),
                "grouped+channels-last": (distill_module.rand_augment, True, False),
                BEFORE: (distill_module.rand_augment, True, True)}
    load_before = os.getloadavg()[0]
    ms = {name: time_variant(fn, cl, args.batches, device, before)
          for name, (fn, cl, before) in variants.items()}
    hw = hardware(device)
    slug = hw.get("gpu", f"cpu-{hw['cpu_threads']}threads").lower().replace(" ", "-")
    results = {"benchmark": "student-step", "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                   "%Y-%m-%d %H:%M UTC"),
               "recipe": "LeNet-5-Half, batch 256, RandAugment, LeNet-5 teacher relabelling every batch",
               "batches": args.batches, "ms_per_step": ms,
               "speedup_vs_per_image": {name: ms["per-image"] / v for name, v in ms.items()},
               "speedup_of_2026_12_07": ms[BEFORE] / ms["grouped+channels-last"],
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
               "hardware": hw, "versions": versions(),
               "command": "python benchmarks/student_step.py " + " ".join(sys.argv[1:])}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"student-step-{slug}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for name, v in ms.items():
        print(f"{name:50s} {v:6.1f} ms/step  x{ms['per-image'] / v:.2f}")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; wrote {out}")


if __name__ == "__main__":
    main()
