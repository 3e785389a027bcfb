"""FashionMNIST, LeNet-5 -> LeNet-5-Half: the paper's row, its baselines and ablations.

    python benchmarks/fashion_mnist.py --size cpu            # ablation rows, 3 seeds, this machine
    python benchmarks/fashion_mnist.py --size default        # 25.6k x 256: teacher recipes, 3 seeds
    torchrun --standalone --nproc_per_node=2 benchmarks/fashion_mnist.py --size paper --seeds 0
                                                             # 256k x 256 on 2 CPU cores (~2 h a seed)
    python benchmarks/fashion_mnist.py --size smoke --seeds 0 --rows cake   # a pipeline check

Uses only the public API. Trains (once, cached in benchmarks/cache/) a LeNet-5 teacher on the
fixed 90 % training split with one of two recipes (``TEACHER_RECIPES``: the authors'
bilinear resize + RandAugment, or cake_mini's earlier padding + flips/shifts), then for
every row and seed synthesises (or builds) a training set without touching the real data,
distils LeNet-5-Half on it, and measures the student on the full 10,000-image test set.
At default and paper size the synthesis keeps 4 snapshots of every sample, and the budget
curve (``--curve``) trains students on sub-budgets of the same samples: every k-th
mini-batch (fewer samples, the same schedule) and earlier snapshots (fewer steps).

Writes benchmarks/results/fashion-mnist-<size>-<hardware>.json (every row, every seed,
settings, versions, hardware) and the markdown table beside it, after every finished run.
Finished (row, seed) results are kept and skipped on a rerun; synthesis and distillation
checkpoint into benchmarks/cache/, so an interrupted run resumes where it stopped.
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

import hashlib

import torch

import cake_mini as cm
from cake_mini import data, distributed, models
from cake_mini.checkpoint import atomic_save, atomic_write_bytes, safe_load
from cake_mini.experiments import hardware, versions
from cake_mini.results import machines_by_seed

HERE = Path(__file__).resolve().parent
KEPT_TEACHERS = HERE / "teachers"
CLASSES = 10
SHAPE = (1, 32, 32)


@dataclass(frozen=True)
class Size:
    teacher_epochs: int
    num_samples: int
    steps: int
    student_epochs: int
    kd_epochs: int
    teacher: str = "pad-flip-shift"  # the teacher recipe of rows that do not name one
    student_batch: int = 128
    snapshots: int = 1  # > 1: the synthesis keeps earlier iterates for the budget curve


SIZES = {
    "smoke": Size(teacher_epochs=1, num_samples=1000, steps=16, student_epochs=2, kd_epochs=1,
                  teacher="authors", student_batch=256, snapshots=4),
    "cpu": Size(teacher_epochs=15, num_samples=5_000, steps=64, student_epochs=80, kd_epochs=5),
    "default": Size(teacher_epochs=30, num_samples=25_600, steps=256, student_epochs=30, kd_epochs=30,
                    teacher="authors", student_batch=256, snapshots=4),
    "paper": Size(teacher_epochs=30, num_samples=256_000, steps=256, student_epochs=30, kd_epochs=30,
                  teacher="authors", student_batch=256, snapshots=4),
}

# How the teacher sees FashionMNIST: 28 -> 32 pixels, and its training augmentation (lr 0.1, batch 256)
TEACHER_RECIPES = {
    "authors": dict(resize="bilinear", augment="randaugment"),  # the CAKE authors' code
    "pad-flip-shift": dict(resize="pad", augment="flip-shift"),  # cake_mini before
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
    teacher: str | None = None  # a TEACHER_RECIPES key; None: the size's


STUDENT_RECIPE = dict(lr=0.1)  # batch size: the size's student_batch
ROWS = [
    Row("kd-real", "KD on the real training images (upper bound; uses data)", inputs="real"),
    Row("noise", "N(0, I) inputs with the teacher's soft labels (lower bound)", inputs="noise"),
    Row("cake-pad-teacher", "CAKE as published, the teacher trained cake_mini's earlier way (padded "
        "28 -> 32, flips and shifts): the control for the authors' teacher recipe", teacher="pad-flip-shift"),
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


DEFAULT_ROWS = {
    "smoke": ["kd-real", "noise", "cake", "cake-pad-teacher"],
    "cpu": [r.name for r in ROWS if r.teacher is None],
    "default": ["kd-real", "noise", "cake", "cake-pad-teacher", "cake-low-eta", "cake-snapshots",
                "cake-long-student"],
    "paper": ["kd-real", "noise", "cake", "cake-pad-teacher"],
}
# budget curve: students on every k-th mini-batch (k in strides) of the snapshots after t steps
CURVE_STRIDES = {"smoke": [1, 2], "cpu": [], "default": [1, 5], "paper": [1, 4, 10, 50]}


def log(*args, **kwargs) -> None:
    """print on rank 0 only (asked at every call: the process group starts after import)."""
    if distributed.is_main():
        print(*args, **kwargs)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """The first 16 hex digits of the SHA-256 of ``model``'s parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_same_teachers(recorded: dict, current: dict, where: object) -> None:
    """Refuse to pair runs of a retrained teacher with runs ``where`` records under the same name.

    A teacher retrained on another machine scores differently (90.31 % and 90.26 % for the
    authors' recipe here) and so gets other samples; its students must not be compared seed by
    seed with the old ones, so resuming or merging into such a file stops with what to do.
    """
    for name in recorded.keys() & current.keys():
        for key in ("weights", "test_accuracy", "val_accuracy"):
            mine, theirs = recorded[name].get(key), current[name].get(key)
            if mine is not None and theirs is not None and mine != theirs:
                raise SystemExit(f"{where} holds runs of another {name!r} teacher ({key} {mine} there, {theirs} "
                                 "here, i.e. a retrained teacher): write to a new --out, or move the file away")


def teacher_path(recipe_name: str, size: Size) -> Path:
    """Where the teacher's weights are read from, or written to once trained.

    A file in benchmarks/teachers/ (committed) comes first: a fresh machine retrains the
    teacher to slightly other weights (the authors' recipe: 90.31 %, 90.26 % and 90.70 % test
    accuracy on three machines), so the teacher of the newest paper-size runs is kept in the
    repository and every later seed distils the same one. Otherwise the machine's cache.
    """
    legacy = recipe_name == "pad-flip-shift" and size.teacher_epochs == 15  # the cpu table's teacher file
    name = f"fmnist-lenet5-e{size.teacher_epochs}.pt" if legacy else \
        f"fmnist-lenet5-{recipe_name}-e{size.teacher_epochs}.pt"
    kept = KEPT_TEACHERS / name
    return kept if kept.exists() else HERE / "cache" / name


def teacher_for(recipe_name: str, size: Size, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """LeNet-5 trained with ``TEACHER_RECIPES[recipe_name]`` (kept or cached), and what it scores."""
    recipe = TEACHER_RECIPES[recipe_name]
    cache = teacher_path(recipe_name, size)
    torch.manual_seed(0)
    teacher = models.make_model("lenet5", CLASSES).to(device)
    config = cm.DistillConfig(epochs=size.teacher_epochs, lr=0.1, augment=recipe["augment"], seed=0)
    seconds = None
    if cache.exists():
        teacher.load_state_dict(safe_load(cache))
    else:
        t0 = time.perf_counter()
        cm.train_classifier(teacher, data.load_dataset("fashion-mnist", "train", resize=recipe["resize"]),
                            config, device=device, progress=False)
        seconds = time.perf_counter() - t0
        if distributed.is_main():
            cache.parent.mkdir(exist_ok=True)
            atomic_save(teacher.state_dict(), cache)
    teacher.eval()
    split = lambda name: data.load_dataset("fashion-mnist", name, resize=recipe["resize"])  # noqa: E731
    info = {"model": "lenet5", "recipe": recipe_name, "resize": recipe["resize"],
            "weights_file": cache.relative_to(HERE.parent).as_posix(),
            "training": dataclasses.asdict(config), "train_seconds": seconds,
            "weights": weights_fingerprint(teacher),
            "val_accuracy": cm.evaluate(teacher, split("val"), device=device),
            "test_accuracy": cm.evaluate(teacher, split("test"), device=device)}
    log(f"teacher LeNet-5 ({recipe_name}): test {info['test_accuracy']:.2%}, val {info['val_accuracy']:.2%}")
    return teacher, info


_SYNTHESIS_CACHE: dict[str, tuple[cm.SyntheticSet, float]] = {}


def synthesis_config(row: Row, size: Size, seed: int) -> cm.SynthesisConfig:
    overrides = {"snapshots": size.snapshots, **row.synthesis}
    return cm.SynthesisConfig.preset("fashion-mnist", num_samples=size.num_samples, steps=size.steps,
                                     seed=seed, **overrides)


def synthetic_set(row: Row, size: Size, seed: int, teacher, teacher_recipe: str, device) -> tuple[cm.SyntheticSet, dict]:
    """Every sample CAKE keeps for ``row`` (all snapshots), checkpointed in benchmarks/cache/synthesis."""
    config = synthesis_config(row, size, seed)
    key = json.dumps({"config": dataclasses.asdict(config), "teacher": teacher_recipe,
                      "teacher_epochs": size.teacher_epochs}, sort_keys=True)
    if key not in _SYNTHESIS_CACHE:  # rows that differ only in the student's training share samples
        t0 = time.perf_counter()
        directory = HERE / "cache" / "synthesis" / hashlib.sha256(key.encode()).hexdigest()[:16]
        synthetic = cm.synthesize(teacher, SHAPE, CLASSES, config, device=device, progress=False,
                                  checkpoint_dir=directory)
        _SYNTHESIS_CACHE.clear()
        _SYNTHESIS_CACHE[key] = synthetic, time.perf_counter() - t0
    synthetic, seconds = _SYNTHESIS_CACHE[key]
    return synthetic, {"synthesis": dataclasses.asdict(config), "synthesis_seconds": seconds}


def budget_subset(synthetic: cm.SyntheticSet, config: cm.SynthesisConfig, stride: int, steps: int) -> cm.SyntheticSet:
    """The samples of every ``stride``-th mini-batch after ``steps`` steps: a smaller run's samples.

    Every k-th of M batches has the step sizes of an M/k-batch run (the schedule is log-linear
    in the batch index), and the snapshot after t steps is what a t-step run returns.
    """
    if steps not in config.snapshot_steps:
        raise ValueError(f"no snapshot after {steps} steps; kept: {config.snapshot_steps}")
    batch = torch.arange(len(synthetic)) // (config.snapshots * config.batch_size)
    return synthetic.subset((batch % stride == 0) & (synthetic.step == steps))


def student_on(train, size: Size, seed: int, test, device, *, row: Row | None = None, teacher=None,
               checkpoint: str) -> tuple[torch.nn.Module, dict]:
    """LeNet-5-Half distilled on ``train`` with the size's recipe (and ``row``'s changes).

    ``distill_seconds`` sums the student's epochs whichever process ran them, so a run resumed
    from its checkpoint reports its whole training; ``wall_seconds`` is this call alone.
    """
    row = row or Row("curve", "")
    torch.manual_seed(seed)
    student = models.make_model("lenet5-half", CLASSES).to(device)
    epochs = size.kd_epochs if row.inputs == "real" else size.student_epochs * row.epochs_factor
    recipe = cm.DistillConfig(**{"epochs": epochs, "seed": seed, "batch_size": size.student_batch,
                                 **STUDENT_RECIPE, **row.distill})
    t0 = time.perf_counter()
    result = cm.distill(student, train, recipe, teacher=teacher if row.online_teacher else None,
                        eval_set=test, device=device, progress=False,
                        checkpoint_dir=HERE / "cache" / "distill" / checkpoint)
    return student, {"student_accuracy": cm.evaluate(student, test, device=device),
                     "distill_seconds": sum(h["seconds"] for h in result.history),
                     "wall_seconds": time.perf_counter() - t0, "distill": dataclasses.asdict(recipe),
                     "curve": [h["eval_accuracy"] for h in result.history]}


def teacher_soft_labels(teacher, x: torch.Tensor, device) -> torch.Tensor:
    """The teacher's softmax on ``x``, in chunks of 2048, on the CPU."""
    with torch.no_grad():
        return torch.cat([teacher(x[i:i + 2048].to(device)).softmax(-1).cpu() for i in range(0, len(x), 2048)])


def run_row(row: Row, size: Size, seed: int, teacher, teacher_recipe: str, test, device, tag: str) -> dict:
    t0 = time.perf_counter()
    cost: dict[str, Any] = {}
    if row.inputs == "cake":
        synthetic, cost = synthetic_set(row, size, seed, teacher, teacher_recipe, device)
        train = synthetic.subset(synthetic.step == size.steps) if row.synthesis.get("snapshots", 1) == 1 \
            else synthetic
        cost["mean_abs_x"] = train.x.abs().mean().item()
    else:
        if row.inputs == "real":
            x = data.load_dataset("fashion-mnist", "train", resize=TEACHER_RECIPES[teacher_recipe]["resize"]).tensors[0]
        else:
            x = torch.randn((size.num_samples, *SHAPE), generator=torch.Generator().manual_seed(seed))
        train = (x, teacher_soft_labels(teacher, x, device))
    _, run = student_on(train, size, seed, test, device, row=row, teacher=teacher,
                        checkpoint=f"{tag}-{row.name}-s{seed}")
    return {"seed": seed, **run, "seconds": time.perf_counter() - t0, **cost}


def run_curve(size: Size, seed: int, teacher, teacher_recipe: str, test, device, tag: str, done: set,
              save) -> None:
    """Students on sub-budgets of the ``cake`` row's samples; ``save(point)`` after each."""
    row = next(r for r in ROWS if r.name == "cake")
    synthetic, cost = synthetic_set(row, size, seed, teacher, teacher_recipe, device)
    config = synthesis_config(row, size, seed)
    points = [(k, t) for t in config.snapshot_steps for k in CURVE_STRIDES[args_size(size)]]
    points.sort(key=lambda p: (config.num_batches / p[0], p[1]))  # cheapest students first
    for stride, steps in points:
        if (seed, stride, steps) in done or (stride == 1 and steps == size.steps):
            continue  # (1, T) is the cake row itself
        train = budget_subset(synthetic, config, stride, steps)
        _, run = student_on(train, size, seed, test, device, checkpoint=f"{tag}-curve-k{stride}-t{steps}-s{seed}")
        save({"seed": seed, "stride": stride, "steps": steps, "samples": len(train),
              "batches": len(train) // config.batch_size, **run})


def args_size(size: Size) -> str:
    return next(name for name, s in SIZES.items() if s == size)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def summarise(results: dict) -> str:
    settings = results["settings"]
    teachers = results.get("teachers", {})
    lines = [f"FashionMNIST, LeNet-5 -> LeNet-5-Half, size `{results['size']}` ({settings['num_samples']:,} "
             f"samples x {settings['steps']} steps, student batch {settings.get('student_batch', 128)}, "
             f"{settings['student_epochs']} epochs), {results['hardware_slug']}", "",
             "| row | teacher (test %) | student test accuracy (mean ± std) | seeds | minutes per seed | what |",
             "|---|---|---:|---:|---:|---|"]
    for row in ROWS:
        runs = results["rows"].get(row.name, {}).get("runs", [])
        if not runs:
            continue
        recipe = results["rows"][row.name].get("teacher", "pad-flip-shift")
        teacher = teachers.get(recipe, results.get("teacher", {}))
        acc = [100 * r["student_accuracy"] for r in runs]
        minutes = statistics.mean(r["seconds"] for r in runs) / 60
        lines.append(f"| {row.name} | {recipe} ({100 * teacher.get('test_accuracy', float('nan')):.1f}) | "
                     f"{_mean_std(acc)} | {len(acc)} | {minutes:.1f} | {row.description} |")
    curve = results.get("budget_curve", [])
    if curve:
        cake = {r["seed"]: r for r in results["rows"].get("cake", {}).get("runs", [])}
        points = [(p["samples"], p["steps"], p["seed"], p["student_accuracy"]) for p in curve]
        points += [(r["synthesis"]["num_samples"], r["synthesis"]["steps"], s, r["student_accuracy"])
                   for s, r in cake.items()]
        lines += ["", "Budget curve (`cake` samples: every k-th mini-batch, snapshot after t steps):", "",
                  "| samples | steps | student test accuracy (mean ± std) | seeds |", "|---:|---:|---:|---:|"]
        for samples, steps in sorted({(p[0], p[1]) for p in points}):
            acc = [100 * p[3] for p in points if (p[0], p[1]) == (samples, steps)]
            lines.append(f"| {samples:,} | {steps} | {_mean_std(acc)} | {len(acc)} |")
    machines = machines_by_seed(results)
    lines += ["", f"Machines: {machines}"] if machines else []
    lines += ["", "Paper (256k samples): CAKE 76.5 ± 1.01, KD with data 89.7, ZSDB3KD 72.3, teacher 91.0."]
    return "\n".join(lines)


def union_rows(rows: dict, extra: dict) -> dict:
    """``rows`` with the runs of ``extra``'s rows added, a seed once: ``{name: {..., "runs": [...]}}``."""
    rows = {name: {**entry, "runs": list(entry["runs"])} for name, entry in rows.items()}
    for name, entry in extra.items():
        mine = rows.setdefault(name, {**entry, "runs": []})
        seeds = {r["seed"] for r in mine["runs"]}
        mine["runs"] = sorted(mine["runs"] + [r for r in entry["runs"] if r["seed"] not in seeds],
                              key=lambda r: r["seed"])
    return rows


def with_run_hardware(results: dict) -> dict:
    """``results`` with every run and budget-curve point naming the hardware and versions it ran on.

    A file's top-level ``hardware`` and ``versions`` are those of the command that wrote it last;
    seeds added by ``--merge`` or by an earlier command into the same file may have run on another
    machine (the paper-size seeds ran on a Zen 4 and a Zen 3), so each run keeps its own. Runs
    from before these records take their file's.
    """
    own = {key: results[key] for key in ("hardware", "versions") if key in results}
    rows = {name: {**entry, "runs": [own | run for run in entry["runs"]]}
            for name, entry in results.get("rows", {}).items()}
    tagged = results | {"rows": rows}
    if "budget_curve" in results:
        tagged["budget_curve"] = [own | point for point in results["budget_curve"]]
    return tagged


def merge(results: dict, other: Path, out: Path) -> dict:
    extra = with_run_hardware(json.loads(other.read_text()))
    results = with_run_hardware(results)
    if extra.get("settings") != results.get("settings", extra.get("settings")):
        raise SystemExit(f"{other} was run at other settings than {out}; not merged")
    check_same_teachers(results.get("teachers", {}), extra.get("teachers", {}), f"{out} (merging {other})")
    results = {**extra, **results, "rows": union_rows(results.get("rows", {}), extra["rows"]),
               "teachers": {**extra.get("teachers", {}), **results.get("teachers", {})}}
    have = {(p["seed"], p["stride"], p["steps"]) for p in results.get("budget_curve", [])}
    results["budget_curve"] = results.get("budget_curve", []) + [
        p for p in extra.get("budget_curve", []) if (p["seed"], p["stride"], p["steps"]) not in have]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=None, choices=[r.name for r in ROWS],
                        help="default: the size's rows (DEFAULT_ROWS)")
    parser.add_argument("--no-curve", action="store_true", help="skip the budget curve")
    parser.add_argument("--teacher-only", action="store_true", help="train (and cache) the teachers, then stop")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the markdown table from the JSON")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                        help="add the runs of these result files (e.g. seeds run in parallel with --out) "
                             "to the output file, then rewrite the table")
    args = parser.parse_args()

    device = distributed.init_from_env(args.device)
    world = distributed.rank_and_world()[1]
    size = SIZES[args.size]
    hw = hardware(device) | {"processes": world}
    slug = hw.get("gpu", f"cpu-{hw['cpu_threads']}threads").lower().replace(" ", "-")
    if world > 1:
        slug = f"{slug}-x{world}"
    out = Path(args.out) if args.out else HERE / "results" / f"fashion-mnist-{args.size}-{slug}.json"
    results = with_run_hardware(json.loads(out.read_text())) if out.exists() else {"rows": {}}

    def save() -> None:
        if distributed.is_main():
            out.parent.mkdir(exist_ok=True)
            atomic_write_bytes(out, json.dumps(results, indent=1).encode())
            atomic_write_bytes(out.with_suffix(".md"), (summarise(results) + "\n").encode())

    if args.merge or args.table_only:
        for other in map(Path, args.merge):
            results = merge(results, other, out)
        save()
        print(summarise(results))
        return
    rows = [r for r in ROWS if r.name in (args.rows or DEFAULT_ROWS[args.size])]
    recipes = list(dict.fromkeys(r.teacher or size.teacher for r in rows))
    teachers = {}
    for recipe in recipes:
        teachers[recipe], info = teacher_for(recipe, size, device)
        if any(entry["runs"] for entry in results["rows"].values()):
            check_same_teachers(results.get("teachers", {}), {recipe: info}, out)
        results.setdefault("teachers", {})[recipe] = info
    if args.teacher_only:
        return
    results |= {"size": args.size, "settings": dataclasses.asdict(size), "hardware": hw, "hardware_slug": slug,
                "versions": versions(), "student_recipe": STUDENT_RECIPE}
    tests = {recipe: data.load_dataset("fashion-mnist", "test", resize=TEACHER_RECIPES[recipe]["resize"])
             for recipe in recipes}
    tag = f"{args.size}-{size.teacher_epochs}"
    for seed in args.seeds:  # all rows of one seed first: a stopped run leaves a comparable table
        for row in rows:
            recipe = row.teacher or size.teacher
            entry = results["rows"].setdefault(row.name, {"description": row.description, "runs": []})
            entry.update(description=row.description, definition=dataclasses.asdict(row), teacher=recipe)
            if any(r["seed"] == seed for r in entry["runs"]):
                continue
            run = run_row(row, size, seed, teachers[recipe], recipe, tests[recipe], device, f"{tag}-{recipe}")
            entry["runs"].append(run | {"hardware": hw, "versions": versions()})
            log(f"{row.name:22s} seed {seed}: student {run['student_accuracy']:.2%} "
                f"({run['seconds'] / 60:.1f} min)", flush=True)
            save()
        if CURVE_STRIDES[args.size] and not args.no_curve and any(r.name == "cake" for r in rows):
            curve = results.setdefault("budget_curve", [])

            def add(point: dict) -> None:
                curve.append(point | {"hardware": hw, "versions": versions()})
                log(f"curve seed {seed}: {point['samples']:,} samples x {point['steps']} steps: "
                    f"student {point['student_accuracy']:.2%} ({point['distill_seconds'] / 60:.1f} min)", flush=True)
                save()

            done = {(p["seed"], p["stride"], p["steps"]) for p in curve}
            run_curve(size, seed, teachers[size.teacher], size.teacher, tests[size.teacher], device,
                      f"{tag}-{size.teacher}", done, add)
    save()
    log(summarise(results))


if __name__ == "__main__":
    main()
