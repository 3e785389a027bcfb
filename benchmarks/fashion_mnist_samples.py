"""What the teacher says about CAKE's FashionMNIST samples, for two step-size schedules.

    python benchmarks/fashion_mnist_samples.py --size default --seeds 0 1 2

The search (``fashion_mnist_search.py``) found that samples synthesised with step sizes from
1e-2 down to 1e-4 train a better student than the paper's 1e-1 down to 1e-5, at the same
budget. This script looks at the two sets of samples themselves, snapshot by snapshot, with
the kept teacher: how many samples the teacher puts in the class they were synthesised for,
how confident it is, how much of the set falls into its most frequent class, and how far the
pixels stray from the data's range [-1, 1]; then the last snapshot again, in fifths by the
step size of each sample's mini-batch (largest first). The numbers are the teacher's soft labels stored
with the samples, so nothing is trained.

The samples are those the search trained on (checkpointed in ``benchmarks/cache/synthesis``;
synthesised if missing, about 20 CPU-core minutes a seed and schedule at the default size).
Writes benchmarks/results/fashion-mnist-samples-<size>-<hardware>.json and the markdown beside it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path

import torch

import fashion_mnist as fm
import fashion_mnist_search as search
from cake_mini.checkpoint import atomic_write_bytes
from cake_mini.experiments import hardware, versions
from cake_mini.results import file_section

SCHEDULES = {  # name: (the search candidate whose synthesis it is, what it is)
    "paper step sizes": ("randaugment-snapshots", "the fashion-mnist preset: 1e-1 down to 1e-5 over the batches"),
    "low-eta": ("low-eta-randaugment-snapshots", "1e-2 down to 1e-4 over the batches, as many samples and steps"),
}


def sample_statistics(x: torch.Tensor, soft_labels: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Teacher's view and pixel range of one set of samples; shares in %.

    >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> s = sample_statistics(torch.tensor([[0.5], [-2.0], [0.0]]), p, torch.tensor([0, 1, 1]))
    >>> round(s["in target class"], 1), round(s["largest class"], 1), round(s["outside [-1, 1]"], 1)
    (66.7, 66.7, 33.3)
    """
    predicted = soft_labels.argmax(1)
    counts = torch.bincount(predicted, minlength=soft_labels.shape[1])
    return {
        "in target class": 100 * (predicted == labels).float().mean().item(),
        "teacher's top probability": 100 * soft_labels.max(1).values.mean().item(),
        "largest class": 100 * counts.max().item() / len(predicted),
        "largest class index": int(counts.argmax()),
        "outside [-1, 1]": 100 * (x.abs() > 1).float().mean().item(),
        "pixel std": x.std().item(),
    }


UNITS = {"in target class": "%", "teacher's top probability": "%", "largest class": "%",
         "outside [-1, 1]": "%", "pixel std": ""}
FIFTHS = 5  # the last snapshot, split by the step size of each sample's mini-batch, largest first
BY_STEP_SIZE = ("in target class", "largest class", "outside [-1, 1]")
GROUPS = {"in target class": "samples the teacher puts in their target class",
          "teacher's top probability": "the teacher's mean top probability",
          "largest class": "share of the teacher's most frequent class",
          "outside [-1, 1]": "pixels outside the data's range [-1, 1]",
          "pixel std": "standard deviation of the pixels"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["smoke", "default", "paper"], default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    size = fm.SIZES[args.size]
    device = torch.device("cpu")
    teacher, info = fm.teacher_for("authors", size, device)
    per_run, per_fifth = [], []
    for seed in args.seeds:
        for name, (candidate, _) in SCHEDULES.items():
            row = fm.Row(candidate, "", synthesis=search.BY_NAME[candidate].synthesis)
            synthetic, _ = fm.synthetic_set(row, size, seed, teacher, "authors", device)
            for step in sorted(set(synthetic.step.tolist())):
                snapshot = synthetic.subset(synthetic.step == step)
                stats = sample_statistics(snapshot.x, snapshot.soft_labels, snapshot.labels)
                per_run.append({"schedule": name, "seed": seed, "step": step, "samples": len(snapshot), **stats})
                fm.log(f"seed {seed} {name} after {step} steps: " + ", ".join(
                    f"{k} {v:.3g}" for k, v in stats.items()))
            final = synthetic.subset(synthetic.step == size.steps)
            for part, chunk in enumerate(final.step_size.argsort(descending=True).chunk(FIFTHS)):
                fifth = final.subset(chunk)
                stats = sample_statistics(fifth.x, fifth.soft_labels, fifth.labels)
                per_fifth.append({"schedule": name, "seed": seed, "fifth": part + 1, "samples": len(fifth),
                                  "step_sizes": [fifth.step_size.max().item(), fifth.step_size.min().item()],
                                  **stats})
    metrics = []
    for key, group in GROUPS.items():
        for name in SCHEDULES:
            for step in sorted({r["step"] for r in per_run}):
                values = {str(r["seed"]): r[key] for r in per_run if r["schedule"] == name and r["step"] == step}
                metrics.append({"group": group, "name": f"{name}, after {step} steps", "unit": UNITS[key],
                                "values": values})
    for key in BY_STEP_SIZE:
        for name in SCHEDULES:
            for part in range(1, FIFTHS + 1):
                runs = [r for r in per_fifth if r["schedule"] == name and r["fifth"] == part]
                high, low = runs[0]["step_sizes"]
                metrics.append({"group": f"after the last step, by step size: {GROUPS[key]}", "unit": UNITS[key],
                                "name": f"{name}, fifth {part} (step sizes {high:.1e} to {low:.1e})",
                                "values": {str(r["seed"]): r[key] for r in runs}})
    data = {
        "benchmark": "fashion-mnist-samples",
        "title": "FashionMNIST: what the kept teacher says about CAKE's samples under two step-size schedules",
        "size": args.size,
        "settings": {"num_samples": size.num_samples, "steps": size.steps,
                     "schedules": {name: what for name, (_, what) in SCHEDULES.items()},
                     "synthesis": {name: search.BY_NAME[c].synthesis for name, (c, _) in SCHEDULES.items()}},
        "teachers": {"authors": info},
        "snapshots": per_run,
        "step_size_fifths": per_fifth,
        "metrics": metrics,
        "hardware": hardware(device),
        "versions": versions(),
        "commands": ["python benchmarks/fashion_mnist_samples.py --size " + args.size
                     + " --seeds " + " ".join(map(str, args.seeds))],
        "date": datetime.date.today().isoformat(),
    }
    slug = f"cpu-{data['hardware']['cpu_threads']}threads"
    out = args.out or fm.HERE / "results" / f"fashion-mnist-samples-{args.size}-{slug}.json"
    atomic_write_bytes(out, (json.dumps(data, indent=1) + "\n").encode())
    out.with_suffix(".md").write_text(file_section(out.name, data, level="#") + "\n", encoding="utf8")
    for name in SCHEDULES:
        last = [r for r in per_run if r["schedule"] == name and r["step"] == size.steps]
        fm.log(f"{name}, after {size.steps} steps: in target class "
               f"{statistics.mean(r['in target class'] for r in last):.1f} %, largest class "
               f"{statistics.mean(r['largest class'] for r in last):.1f} %")
    print(out)


if __name__ == "__main__":
    main()
