"""What each precision does to synthesis and distillation on this device, against fp32.

    python benchmarks/precision_check.py --device cuda     # on a GPU: auto, bf16, fp16 vs fp32
    python benchmarks/precision_check.py --device cpu --small   # the same code path on a CPU (seconds)

For a LeNet-5 and a ResNet-18 teacher (random weights: the arithmetic, not the accuracy, is
under test) it synthesises the same samples in every precision and reports how far each
lands from fp32 (relative L2 distance of the samples, agreement of the teacher's argmax on
them) and how fast each ran; then it trains LeNet-5-Half for a few epochs in each precision
on the fp32 samples and reports the final training loss. Writes
benchmarks/results/precision-<hardware>.json, including what ``precision="auto"`` picks here.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import cake_mini as cm
from cake_mini.experiments import hardware, versions
from cake_mini.models import make_model
from cake_mini.precision import PRECISIONS, autocast_dtype

HERE = Path(__file__).resolve().parent


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes, LeNet-5 only: a pipeline check")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    hw = hardware(device)
    slug = hw.get("gpu", "cpu").lower().replace(" ", "-")
    out = Path(args.out) if args.out else HERE / "results" / f"precision-{slug}{'-small' if args.small else ''}.json"
    precisions = [p for p in PRECISIONS if p != "auto"]
    auto = str(autocast_dtype(device, "auto") or "fp32").removeprefix("torch.").replace("float16", "fp16")
    results = {"benchmark": "precision", "hardware": hw, "versions": versions(), "auto_means": auto,
               "capability": list(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None,
               "teachers": {}}
    n, steps = (100, 8) if args.small else (2000, 64)
    teachers = [("lenet5", (1, 32, 32))] + ([] if args.small else [("resnet18", (3, 32, 32))])
    for name, shape in teachers:  # --small: LeNet-5 only (fp16 convolutions crawl on CPUs)
        torch.manual_seed(0)
        teacher = make_model(name, 10, in_channels=shape[0]).to(device).eval()
        base = cm.SynthesisConfig.preset("fashion-mnist" if name == "lenet5" else "cifar10",
                                         num_samples=n, batch_size=min(500, n), steps=steps, parallel_batches=2)
        sets, rows = {}, {}
        for precision in precisions:
            config = base.replace(precision=precision)
            synchronize(device)
            t0 = time.perf_counter()
            sets[precision] = cm.synthesize(teacher, shape, 10, config, device=device, progress=False)
            synchronize(device)
            rows[precision] = {"seconds": time.perf_counter() - t0,
                               "sample_steps_per_s": n * steps / (time.perf_counter() - t0)}
        ref = sets["fp32"]
        for precision, s in sets.items():
            rows[precision] |= {
                "relative_l2_to_fp32": ((s.x - ref.x).norm() / ref.x.norm()).item(),
                "argmax_agreement_with_fp32": (s.soft_labels.argmax(-1) == ref.soft_labels.argmax(-1)).float().mean().item(),
                "finite": bool(torch.isfinite(s.x).all())}
        results["teachers"][name] = {"synthesis": dataclasses.asdict(base), "precisions": rows}
        print(name, json.dumps(rows, indent=1), flush=True)
    # distillation on the LeNet-5 samples of fp32
    torch.manual_seed(0)
    teacher = make_model("lenet5", 10).to(device).eval()
    data = cm.synthesize(teacher, (1, 32, 32), 10, cm.SynthesisConfig.preset(
        "fashion-mnist", num_samples=n, batch_size=min(500, n), steps=steps, precision="fp32"),
        device=device, progress=False)
    distill_rows = {}
    for precision in precisions:
        torch.manual_seed(1)
        student = make_model("lenet5-half", 10).to(device)
        synchronize(device)
        t0 = time.perf_counter()
        result = cm.distill(student, data, cm.DistillConfig(epochs=3, batch_size=256, lr=0.1, precision=precision),
                            device=device, progress=False)
        synchronize(device)
        distill_rows[precision] = {"seconds": time.perf_counter() - t0,
                                   "final_train_loss": result.history[-1]["train_loss"],
                                   "val_agreement": result.history[-1].get("val_agreement")}
    results["distill_lenet5_half"] = distill_rows
    print("distill", json.dumps(distill_rows, indent=1))
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
