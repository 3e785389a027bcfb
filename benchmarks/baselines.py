"""CAKE among data-free methods: DeepInversion and DAFL on the same FashionMNIST teachers.

    OMP_NUM_THREADS=1 python benchmarks/baselines.py --size cpu            # 2 teachers x 5 rows x 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/baselines.py --size smoke --seeds 0  # a pipeline check (seconds)
    python benchmarks/baselines.py --size cpu --table-only                   # rewrite the table from the JSON

Two LeNet-5 teachers on FashionMNIST (padded 28 -> 32, flips and shifts), trained once and
cached in benchmarks/cache/: ``lenet5`` (no BatchNorm, the paper's teacher) and
``lenet5-bn`` (BatchNorm after each conv, so DeepInversion has statistics to match). For
every teacher, row and seed the student LeNet-5-Half learns from ``num_samples`` inputs with
the teacher's soft labels, always with the same recipe, and is tested on the real test set:

* ``noise``: N(0, I) inputs (a lower bound);
* ``cake``: CAKE as published (the fashion-mnist preset's weights);
* ``deepinversion``: DeepInversion with the authors' CIFAR-10 parameters; on ``lenet5`` it
  has no BatchNorm to read and runs with cross-entropy and priors only (labelled);
* ``dafl``: DAFL's generator trained against the teacher, then ``num_samples`` of its images;
* ``kd-real``: ``num_samples`` real training images (an upper bound; uses data).

Budget: CAKE, DeepInversion and DAFL get the same number of teacher forward+backward passes
per sample, ``num_samples x steps`` (DAFL: ``steps x num_samples / dafl_batch`` generator
updates of ``dafl_batch`` images). noise and kd-real need only one forward per sample for
the labels. Wall time is recorded per run (synthesis and student separately): the passes
are equal, the work around them is not (DeepInversion jitters, DAFL trains a generator).

Writes benchmarks/results/baselines-<size>-<hardware>.json (every run, settings, teachers,
hardware, versions), the markdown table beside it, and ``-samples.pt`` with one sample per
class from cake, deepinversion and dafl on each teacher, first seed (float16, for the book's
gallery). Finished
(teacher, row, seed) runs are kept and skipped on a rerun.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import cake_mini as cm
from cake_mini import baselines, data, models
from cake_mini.checkpoint import atomic_save, atomic_write_bytes, safe_load
from cake_mini.experiments import hardware, versions

HERE = Path(__file__).resolve().parent
SHAPE, CLASSES = (1, 32, 32), 10
TEACHERS = {"lenet5": "LeNet-5 (no BatchNorm)", "lenet5-bn": "LeNet-5 + BatchNorm after each conv"}
ROWS = {
    "noise": "N(0, I) inputs with the teacher's soft labels (lower bound)",
    "cake": "CAKE as published (fashion-mnist preset weights, SGD, step sizes 0.1 -> 1e-5 over the batches)",
    "deepinversion": "DeepInversion (authors' CIFAR-10 parameters: Adam 0.05, BN weight 10, jitter 2; "
                     "+ flips, TV 0.05)",
    "dafl": "DAFL: generator trained with one-hot, activation and entropy losses; its images",
    "kd-real": "real training images with the teacher's soft labels (upper bound; uses data)",
}


@dataclass(frozen=True)
class Size:
    teacher_epochs: int
    teacher_images: int | None  # None: the whole 54,000-image training split
    num_samples: int  # the student's training set, in every row
    steps: int  # teacher forward+backward passes per sample (CAKE, DeepInversion; DAFL in total)
    batch_size: int  # CAKE's and DeepInversion's mini-batches
    dafl_batch: int
    dafl_channels: int  # DAFL's generator width (128 in the paper; its cost grows with the square, so small on a CPU)
    student_epochs: int


SIZES = {
    "smoke": Size(teacher_epochs=1, teacher_images=5_000, num_samples=200, steps=5, batch_size=100,
                  dafl_batch=100, dafl_channels=16, student_epochs=2),
    "cpu": Size(teacher_epochs=4, teacher_images=None, num_samples=2_000, steps=40, batch_size=200,
                dafl_batch=200, dafl_channels=16, student_epochs=40),
}


# ----------------------------------------------------------------------------- teachers


def teacher_for(name: str, size: Size, train, test) -> tuple[torch.nn.Module, dict]:
    """``make_model(name)`` trained on FashionMNIST (seed 0, flips and shifts), cached."""
    images = "all" if size.teacher_images is None else size.teacher_images
    cache = HERE / "cache" / f"baselines-fmnist-{name}-e{size.teacher_epochs}-n{images}.pt"
    torch.manual_seed(0)
    teacher = models.make_model(name, CLASSES)
    config = cm.DistillConfig(epochs=size.teacher_epochs, lr=0.1, augment="flip-shift", seed=0)
    seconds = None
    if cache.exists():
        teacher.load_state_dict(safe_load(cache))
    else:
        x, y = train.tensors
        if size.teacher_images is not None:
            x, y = x[:size.teacher_images], y[:size.teacher_images]
        t0 = time.perf_counter()
        cm.train_classifier(teacher, (x, y), config, progress=False)
        seconds = time.perf_counter() - t0
        cache.parent.mkdir(exist_ok=True)
        atomic_save(teacher.state_dict(), cache)
    teacher.eval()
    info = {"model": name, "description": TEACHERS[name], "training": dataclasses.asdict(config),
            "training_images": images, "train_seconds": seconds, "test_accuracy": cm.evaluate(teacher, test),
            "batchnorm_layers": len(baselines.batchnorm_layers(teacher)),
            "cache": str(cache.relative_to(HERE.parent))}
    print(f"teacher {name}: test {info['test_accuracy']:.2%}", flush=True)
    return teacher, info


# ----------------------------------------------------------------------------- one run


def training_set(row: str, size: Size, seed: int, teacher, train) -> tuple[cm.SyntheticSet | tuple, dict]:
    """The student's ``num_samples`` inputs and soft labels for ``row``, and what they cost."""
    n, passes = size.num_samples, size.num_samples * size.steps
    if row in ("noise", "kd-real"):
        if row == "noise":
            x = torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
        else:
            x = train.tensors[0][torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]]
        with torch.no_grad():
            soft = teacher(x).softmax(-1)
        return (x, soft), {"teacher_passes": 0, "teacher_forwards": n}
    if row == "cake":
        config = cm.SynthesisConfig.preset("fashion-mnist", num_samples=n, steps=size.steps,
                                           batch_size=size.batch_size, seed=seed)
        synthetic = cm.synthesize(teacher, SHAPE, CLASSES, config, progress=False)
    elif row == "deepinversion":
        config = baselines.DeepInversionConfig(num_samples=n, steps=size.steps, batch_size=size.batch_size,
                                               seed=seed)
        synthetic = baselines.deep_inversion(teacher, SHAPE, CLASSES, config, allow_no_batchnorm=True)
    else:
        config = baselines.DAFLConfig(num_samples=n, steps=passes // size.dafl_batch, batch_size=size.dafl_batch,
                                      channels=size.dafl_channels, seed=seed)
        synthetic = baselines.dafl(teacher, SHAPE, CLASSES, config)
    info = {"teacher_passes": passes, "teacher_forwards": n, "config": dataclasses.asdict(config),
            "variant": synthetic.meta.get("variant"), "final_losses": synthetic.meta.get("final_losses"),
            "agreement": (synthetic.soft_labels.argmax(-1) == synthetic.labels).float().mean().item(),
            "mean_abs_x": synthetic.x.abs().mean().item(),
            "mean_confidence": synthetic.soft_labels.max(-1).values.mean().item(),
            "classes_used": int((synthetic.soft_labels.argmax(-1).bincount(minlength=CLASSES) > 0).sum())}
    return synthetic, info


def run(teacher_name: str, row: str, size: Size, seed: int, teacher, train, test) -> tuple[dict, object]:
    t0 = time.perf_counter()
    train_set, info = training_set(row, size, seed, teacher, train)
    synthesis_seconds = time.perf_counter() - t0
    torch.manual_seed(seed)
    student = models.make_model("lenet5-half", CLASSES)
    recipe = cm.DistillConfig(epochs=size.student_epochs, lr=0.1, batch_size=128, seed=seed)
    t1 = time.perf_counter()
    cm.distill(student, train_set, recipe, progress=False)
    result = {"seed": seed, "student_accuracy": cm.evaluate(student, test), **info,
              "synthesis_seconds": synthesis_seconds, "distill_seconds": time.perf_counter() - t1,
              "seconds": time.perf_counter() - t0, "distill": dataclasses.asdict(recipe)}
    return result, train_set


def gallery(train_set) -> dict[str, torch.Tensor]:
    """One sample per class (the first whose teacher's top class it is), float16: ``x`` (<=10, 1, 32, 32)."""
    x, soft = (train_set.x, train_set.soft_labels) if isinstance(train_set, cm.SyntheticSet) else train_set
    top = soft.argmax(-1)
    index = [int((top == c).nonzero()[0]) for c in range(CLASSES) if (top == c).any()]
    return {"x": x[index].half(), "labels": top[index], "confidence": soft[index].max(-1).values}


# ----------------------------------------------------------------------------- table


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def summarise(results: dict) -> str:
    s = results["settings"]
    lines = [f"CAKE, DeepInversion and DAFL on FashionMNIST teachers, size `{results['size']}`, "
             f"{results['hardware_slug']}: student LeNet-5-Half on {s['num_samples']:,} samples "
             f"({s['student_epochs']} epochs, every row), {s['steps']} teacher forward+backward passes per sample "
             f"for cake, deepinversion and dafl (dafl: {s['num_samples'] * s['steps'] // s['dafl_batch']} "
             f"generator steps of {s['dafl_batch']}, width {s['dafl_channels']}).", "",
             "| teacher (test %) | row | student test accuracy % (mean ± std) | seeds | per-seed accuracies "
             "| synthesis s | student s | teacher agrees with target % | what |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for teacher, tinfo in results["teachers"].items():
        for row, description in ROWS.items():
            runs = results["rows"].get(f"{teacher}/{row}", {}).get("runs", [])
            if not runs:
                continue
            acc = [100 * r["student_accuracy"] for r in runs]
            agree = [100 * r["agreement"] for r in runs if "agreement" in r]
            variant = runs[0].get("variant")
            what = description + (f" [{variant}]" if variant == "priors-only" else "")
            lines.append(
                f"| {teacher} ({100 * tinfo['test_accuracy']:.1f}) | {row} | {_mean_std(acc)} | {len(acc)} | "
                f"{', '.join(f'{a:.1f}' for a in acc)} | {statistics.mean(r['synthesis_seconds'] for r in runs):.0f} | "
                f"{statistics.mean(r['distill_seconds'] for r in runs):.0f} | "
                f"{_mean_std(agree) if agree else '-'} | {what} |")
    lines += ["", "Synthesis s and student s: mean wall seconds per seed (one thread, machine shared with other "
              "jobs). Teacher agrees with target: the teacher's top class on the final sample equals the class "
              "the method aimed at (cake, deepinversion: the assigned label; dafl: by construction)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teachers", nargs="+", choices=TEACHERS, default=list(TEACHERS))
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the markdown table from the JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    hw = hardware("cpu")
    slug = f"cpu-{hw['cpu_threads']}threads"
    out = Path(args.out) if args.out else HERE / "results" / f"baselines-{args.size}-{slug}.json"
    samples_path = out.with_name(out.stem + "-samples.pt")
    results = json.loads(out.read_text()) if out.exists() else {"rows": {}, "teachers": {}}

    def save() -> None:
        out.parent.mkdir(exist_ok=True)
        atomic_write_bytes(out, json.dumps(results, indent=1).encode())
        atomic_write_bytes(out.with_suffix(".md"), (summarise(results) + "\n").encode())

    if args.table_only:
        save()
        print(summarise(results))
        return
    t_start = time.perf_counter()
    train, test = data.load_dataset("fashion-mnist", "train"), data.load_dataset("fashion-mnist", "test")
    teachers = {}
    for name in args.teachers:
        teachers[name], results["teachers"][name] = teacher_for(name, size, train, test)
    results |= {"size": args.size, "settings": dataclasses.asdict(size), "hardware": hw, "hardware_slug": slug,
                "versions": versions(), "rows_described": ROWS, "load_average_at_start": os.getloadavg()}
    samples = safe_load(samples_path) if samples_path.exists() else {}
    for seed in args.seeds:  # every teacher and row of one seed first: a stopped run leaves a comparable table
        for name in args.teachers:
            for row in args.rows:
                entry = results["rows"].setdefault(f"{name}/{row}", {"teacher": name, "row": row, "runs": []})
                if any(r["seed"] == seed for r in entry["runs"]):
                    continue
                result, train_set = run(name, row, size, seed, teachers[name], train, test)
                entry["runs"].append(result)
                print(f"{name:9s} {row:13s} seed {seed}: student {result['student_accuracy']:.2%} "
                      f"(synthesis {result['synthesis_seconds']:.0f} s, student {result['distill_seconds']:.0f} s)",
                      flush=True)
                if seed == min(args.seeds) and row in ("cake", "deepinversion", "dafl"):
                    samples[f"{name}/{row}"] = gallery(train_set)
                    atomic_save(samples, samples_path)
                save()
    results["last_invocation_seconds"] = time.perf_counter() - t_start
    save()
    print(summarise(results))


if __name__ == "__main__":
    main()
