"""FashionMNIST, LeNet-5 -> LeNet-5-Half: the paper's row, its baselines and ablations.

    python benchmarks/fashion_mnist.py --size cpu            # every row, 3 seeds, this machine
    python benchmarks/fashion_mnist.py --size paper          # 256k samples x 256 steps (GPU)
    python benchmarks/fashion_mnist.py --size smoke --seeds 0 --rows cake   # a pipeline check

Uses only the public API. Trains (once, cached in benchmarks/cache/) a LeNet-5 teacher on the
fixed 90 % training split, then for every row and seed synthesises (or builds) a training set
without touching the real data, distils LeNet-5-Half on it, and measures the student on the
full 10,000-image test set. Writes benchmarks/results/fashion-mnist-<size>-<hardware>.json
(every row, every seed, settings, versions, hardware) and the markdown table beside it.
Finished (row, seed) results are kept in the JSON and skipped on a rerun.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import cake_mini as cm
from cake_mini import data, models
from cake_mini.checkpoint import atomic_save, atomic_write_bytes, safe_load
from cake_mini.experiments import hardware, versions

HERE = Path(__file__).resolve().parent
CLASSES = 10
SHAPE = (1, 32, 32)


@dataclass(frozen=True)
class Size:
    teacher_epochs: int
    num_samples: int
    steps: int
    student_epochs: int
    kd_epochs: int


SIZES = {
    "smoke": Size(teacher_epochs=1, num_samples=1000, steps=10, student_epochs=2, kd_epochs=1),
    "cpu": Size(teacher_epochs=15, num_samples=5_000, steps=64, student_epochs=80, kd_epochs=5),
    "paper": Size(teacher_epochs=15, num_samples=256_000, steps=256, student_epochs=30, kd_epochs=30),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: how the student's training set is made, and how it is trained."""

    name: str
    description: str
    inputs: str = "cake"  # "real", "noise" or "cake"
    synthesis: dict[str, Any] = field(default_factory=dict)  # overrides of the fashion-mnist preset
    distill: dict[str, Any] = field(default_factory=dict)  # overrides of STUDENT_RECIPE
    online_teacher: bool = False  # relabel every augmented batch with the teacher
    epochs_factor: int = 1  # the student trains this many times the size's epochs


STUDENT_RECIPE = dict(lr=0.1, batch_size=128)
ROWS = [
    Row("kd-real", "KD on the real training images (upper bound; uses data)", inputs="real"),
    Row("noise", "N(0, I) inputs with the teacher's soft labels (lower bound)", inputs="noise"),
    Row("naive", "classification loss only (w_contr = w_tv = 0)", synthesis=dict(w_contr=0.0, w_tv=0.0)),
    Row("lake", "LAKE: CAKE + Langevin noise sqrt(2 eta) N(0, I)", synthesis=dict(method="lake")),
    Row("cake-no-contr", "CAKE without the contrastive term", synthesis=dict(w_contr=0.0)),
    Row("cake-no-tv", "CAKE without total variation", synthesis=dict(w_tv=0.0)),
    Row("cake", "CAKE as published (fashion-mnist preset, SGD, log-linear 0.1 -> 1e-5)"),
    Row("cake-online", "CAKE + online teacher labels on shifted/flipped samples",
        distill=dict(augment="flip-shift"), online_teacher=True),
    Row("cake-low-eta", "CAKE with step sizes 1e-2 -> 1e-4 only (samples stay near the data's range)",
        synthesis=dict(lr=1e-2, lr_decades=2)),
    Row("cake-online-mixup", "as cake-online, plus mixup of sample pairs (relabelled by the teacher)",
        distill=dict(augment="flip-shift", mixup=True), online_teacher=True),
    Row("cake-snapshots", "CAKE keeping 4 iterates of every sample (after T/4, T/2, 3T/4, T steps): "
        "4x the samples, same synthesis cost", synthesis=dict(snapshots=4)),
    Row("cake-long-student", "control for cake-snapshots: CAKE, the student trained 4x as many epochs "
        "(as many SGD steps as on the snapshots)", epochs_factor=4),
    Row("cake-low-eta-snapshots", "cake-low-eta and cake-snapshots together",
        synthesis=dict(lr=1e-2, lr_decades=2, snapshots=4)),
]


def teacher_for(size: Size, device: torch.device, log=print) -> tuple[torch.nn.Module, dict]:
    cache = HERE / "cache" / f"fmnist-lenet5-e{size.teacher_epochs}.pt"
    torch.manual_seed(0)
    teacher = models.make_model("lenet5", CLASSES).to(device)
    recipe = cm.DistillConfig(epochs=size.teacher_epochs, lr=0.1, augment="flip-shift", seed=0)
    if cache.exists():
        teacher.load_state_dict(safe_load(cache))
        seconds = None
    else:
        t0 = time.perf_counter()
        cm.train_classifier(teacher, data.load_dataset("fashion-mnist", "train"), recipe, device=device)
        seconds = time.perf_counter() - t0
        cache.parent.mkdir(exist_ok=True)
        atomic_save(teacher.state_dict(), cache)
    teacher.eval()
    info = {"model": "lenet5", "recipe": dataclasses.asdict(recipe), "train_seconds": seconds,
            "val_accuracy": cm.evaluate(teacher, data.load_dataset("fashion-mnist", "val"), device=device),
            "test_accuracy": cm.evaluate(teacher, data.load_dataset("fashion-mnist", "test"), device=device)}
    log(f"teacher LeNet-5: test {info['test_accuracy']:.2%}, val {info['val_accuracy']:.2%}")
    return teacher, info


_SYNTHESIS_CACHE: dict[str, tuple[cm.SyntheticSet, float]] = {}


def training_set(row: Row, size: Size, seed: int, teacher, device) -> tuple[Any, dict]:
    """The student's training set for ``row``: (x, soft labels) and what it cost."""
    if row.inputs == "real":
        x = data.load_dataset("fashion-mnist", "train").tensors[0]
    elif row.inputs == "noise":
        x = torch.randn((size.num_samples, *SHAPE), generator=torch.Generator().manual_seed(seed))
    else:
        config = cm.SynthesisConfig.preset("fashion-mnist", num_samples=size.num_samples, steps=size.steps,
                                           seed=seed, **row.synthesis)
        key = json.dumps(dataclasses.asdict(config), sort_keys=True)
        if key not in _SYNTHESIS_CACHE:  # rows that differ only in the student's training share samples
            t0 = time.perf_counter()
            synthetic = cm.synthesize(teacher, SHAPE, CLASSES, config, device=device, progress=False)
            _SYNTHESIS_CACHE.clear()
            _SYNTHESIS_CACHE[key] = synthetic, time.perf_counter() - t0
        synthetic, seconds = _SYNTHESIS_CACHE[key]
        return synthetic, {"synthesis": dataclasses.asdict(config), "synthesis_seconds": seconds,
                           "mean_abs_x": synthetic.x.abs().mean().item()}
    with torch.no_grad():
        soft = torch.cat([teacher(x[i:i + 2048].to(device)).softmax(-1).cpu() for i in range(0, len(x), 2048)])
    return (x, soft), {}


def run_row(row: Row, size: Size, seed: int, teacher, test, device) -> dict:
    t0 = time.perf_counter()
    train, cost = training_set(row, size, seed, teacher, device)
    torch.manual_seed(seed)
    student = models.make_model("lenet5-half", CLASSES).to(device)
    epochs = size.kd_epochs if row.inputs == "real" else size.student_epochs * row.epochs_factor
    recipe = cm.DistillConfig(epochs=epochs, seed=seed, **{**STUDENT_RECIPE, **row.distill})
    result = cm.distill(student, train, recipe, teacher=teacher if row.online_teacher else None,
                        eval_set=test, device=device, progress=False)
    return {"seed": seed, "student_accuracy": cm.evaluate(student, test, device=device),
            "seconds": time.perf_counter() - t0, "distill": dataclasses.asdict(recipe),
            "curve": [h["eval_accuracy"] for h in result.history], **cost}


def summarise(results: dict) -> str:
    lines = [f"FashionMNIST, LeNet-5 (test {results['teacher']['test_accuracy']:.1%}) -> LeNet-5-Half, "
             f"size `{results['size']}` ({results['settings']['num_samples']:,} samples x "
             f"{results['settings']['steps']} steps), {results['hardware_slug']}", "",
             "| row | student test accuracy (mean ± std) | seeds | minutes per seed | what |",
             "|---|---|---|---|---|"]
    for row in ROWS:
        runs = results["rows"].get(row.name, {}).get("runs", [])
        if not runs:
            continue
        acc = [100 * r["student_accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        minutes = statistics.mean(r["seconds"] for r in runs) / 60
        lines.append(f"| {row.name} | {statistics.mean(acc):.1f} ± {std:.1f} | {len(acc)} | {minutes:.1f} | "
                     f"{row.description} |")
    lines += ["", "Paper (256k samples): CAKE 76.5 ± 1.01, KD with data 89.7, ZSDB3KD 72.3, teacher 91.0."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=[r.name for r in ROWS], choices=[r.name for r in ROWS])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the markdown table from the JSON")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                        help="add the runs of these result files (e.g. seeds run in parallel with --out) "
                             "to the output file, then rewrite the table")
    args = parser.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = SIZES[args.size]
    hw = hardware(device)
    slug = hw.get("gpu", f"cpu-{hw['cpu_threads']}threads").lower().replace(" ", "-")
    out = Path(args.out) if args.out else HERE / "results" / f"fashion-mnist-{args.size}-{slug}.json"
    results = json.loads(out.read_text()) if out.exists() else {"rows": {}}
    for other in map(Path, args.merge):
        extra = json.loads(other.read_text())
        if extra.get("settings") != results.get("settings", extra.get("settings")):
            raise SystemExit(f"{other} was run at other settings than {out}; not merged")
        results = {**extra, **results, "rows": results.get("rows", {})}
        for name, entry in extra["rows"].items():
            mine = results["rows"].setdefault(name, {**entry, "runs": []})
            seeds = {r["seed"] for r in mine["runs"]}
            mine["runs"] += [r for r in entry["runs"] if r["seed"] not in seeds]
            mine["runs"].sort(key=lambda r: r["seed"])
    if args.merge:
        atomic_write_bytes(out, json.dumps(results, indent=1).encode())
    if args.table_only or args.merge:
        table = summarise(results)
        atomic_write_bytes(out.with_suffix(".md"), (table + "\n").encode())
        print(table)
        return
    teacher, teacher_info = teacher_for(size, device)
    results |= {"size": args.size, "settings": dataclasses.asdict(size), "hardware": hw, "hardware_slug": slug,
                "teacher": teacher_info, "versions": versions(), "student_recipe": STUDENT_RECIPE}
    test = data.load_dataset("fashion-mnist", "test")
    for seed in args.seeds:  # all rows of one seed first: a stopped run leaves a comparable table
        for row in (r for r in ROWS if r.name in args.rows):
            entry = results["rows"].setdefault(row.name, {"description": row.description, "runs": []})
            entry.update(description=row.description, definition=dataclasses.asdict(row))
            if any(r["seed"] == seed for r in entry["runs"]):
                continue
            run = run_row(row, size, seed, teacher, test, device)
            entry["runs"].append(run)
            print(f"{row.name:22s} seed {seed}: student {run['student_accuracy']:.2%} "
                  f"({run['seconds'] / 60:.1f} min)", flush=True)
            out.parent.mkdir(exist_ok=True)
            atomic_write_bytes(out, json.dumps(results, indent=1).encode())
    table = summarise(results)
    atomic_write_bytes(out.with_suffix(".md"), (table + "\n").encode())
    print(table)


if __name__ == "__main__":
    main()
