"""Black-box CAKE: distil teachers that answer only with probabilities (BlackBoxTeacher).

    python benchmarks/black_box.py --size cpu              # every digits row, 3 seeds, this machine
    python benchmarks/black_box.py --size smoke --seeds 0  # a pipeline check
    python benchmarks/black_box.py --size cpu --seeds 0 --rows fmnist-noise fmnist-white fmnist-black-q4
    python benchmarks/black_box.py --size cpu --table-only # rewrite the markdown table from the JSON

Teachers on scikit-learn's 8x8 digits: a random forest (no gradient at all) and the
digits CNN of ``cake_mini.experiments`` (white-box reference). For each, the student CNN
learns from CAKE samples synthesised through ``BlackBoxTeacher`` with a sweep of
``queries`` (random directions per sample and step), from teacher-labelled N(0, I) noise,
and, for the CNN, from plain white-box CAKE. Optional FashionMNIST rows wrap the cached
LeNet-5 (benchmarks/cache/fmnist-lenet5-e15.pt) as a black box. Every run records the
number of teacher queries it used. Writes benchmarks/results/black-box-<size>-<hardware>.json
(every row, every seed, settings, versions, hardware) and the markdown table beside it;
finished (row, seed) results are kept and skipped on a rerun.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import cake_mini as cm
from cake_mini import data, models
from cake_mini.blackbox import BlackBoxTeacher
from cake_mini.checkpoint import atomic_write_bytes, safe_load
from cake_mini.experiments import EXPERIMENTS, hardware, versions

HERE = Path(__file__).resolve().parent
FMNIST_TEACHER = HERE / "cache" / "fmnist-lenet5-e15.pt"
SIGMA = 0.1  # smoothing scale of the queries, in normalised pixel units (inputs in [-1, 1])


@dataclass(frozen=True)
class Size:
    teacher_epochs: int  # digits CNN teacher
    num_samples: int
    steps: int
    student_epochs: int
    queries: tuple[int, ...]
    fmnist_samples: int
    fmnist_steps: int
    fmnist_epochs: int


SIZES = {
    "smoke": Size(3, 200, 5, 2, (1, 4), 200, 3, 1),
    "cpu": Size(30, 2_000, 30, 60, (1, 4, 16, 64), 1_000, 20, 20),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a teacher, and how the student's training set is made."""

    name: str
    teacher: str  # "forest", "cnn" or "fmnist"
    kind: str  # "noise", "white", "white-logp" (exact gradients of log p) or "black"
    queries: int = 0  # directions per sample and step (black only)
    description: str = ""


def rows_for(size: Size) -> list[Row]:
    rows = []
    for teacher, what in (("forest", "random forest (100 trees)"), ("cnn", "digits CNN")):
        rows.append(Row(f"{teacher}-noise", teacher, "noise", description=f"{what}: soft labels on N(0, I)"))
        if teacher == "cnn":
            rows.append(Row("cnn-white", teacher, "white", description="digits CNN: white-box CAKE (autograd)"))
            rows.append(Row("cnn-white-logp", teacher, "white-logp",
                            description="digits CNN: white-box CAKE on log(clamp(softmax, 1e-6)), "
                                        "the black box's objective"))
        rows += [Row(f"{teacher}-black-q{q}", teacher, "black", q, f"{what}: black-box CAKE, queries={q}")
                 for q in size.queries]
    rows += [Row("fmnist-noise", "fmnist", "noise", description="FashionMNIST LeNet-5: soft labels on N(0, I)"),
             Row("fmnist-white", "fmnist", "white", description="FashionMNIST LeNet-5: white-box CAKE"),
             Row("fmnist-black-q4", "fmnist", "black", 4, "FashionMNIST LeNet-5: black-box CAKE, queries=4"),
             Row("fmnist-black-q16", "fmnist", "black", 16, "FashionMNIST LeNet-5: black-box CAKE, queries=16")]
    return rows


# ----------------------------------------------------------------------------- teachers


def digits_cnn(size: Size, test) -> tuple[torch.nn.Module, dict]:
    """The digits experiment's teacher and recipe (seed 0)."""
    exp = EXPERIMENTS["digits"]
    torch.manual_seed(0)
    teacher = models.make_model("cnn", 10, in_channels=1, image_size=8, **exp.teacher_options)
    recipe = cm.DistillConfig(epochs=size.teacher_epochs, seed=0, **exp.teacher_recipe)
    t0 = time.perf_counter()
    cm.train_classifier(teacher, data.load_dataset("digits", "train"), recipe, progress=False)
    teacher.eval()
    return teacher, {"model": "cnn", "options": exp.teacher_options, "recipe": dataclasses.asdict(recipe),
                     "train_seconds": time.perf_counter() - t0, "test_accuracy": cm.evaluate(teacher, test)}


def digits_forest(test) -> tuple[object, dict]:
    from sklearn.ensemble import RandomForestClassifier

    train = data.load_dataset("digits", "train")
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    t0 = time.perf_counter()
    forest.fit(train.tensors[0].flatten(1).numpy(), train.tensors[1].numpy())
    seconds = time.perf_counter() - t0
    accuracy = float((forest.predict(test.tensors[0].flatten(1).numpy()) == test.tensors[1].numpy()).mean())
    return forest, {"model": "sklearn RandomForestClassifier(n_estimators=100, random_state=0)",
                    "train_seconds": seconds, "test_accuracy": accuracy}


def fmnist_lenet5(test) -> tuple[torch.nn.Module, dict]:
    teacher = models.make_model("lenet5", 10)
    teacher.load_state_dict(safe_load(FMNIST_TEACHER))
    teacher.eval()
    return teacher, {"model": "lenet5", "weights": str(FMNIST_TEACHER.relative_to(HERE.parent)),
                     "test_accuracy": cm.evaluate(teacher, test)}


# ----------------------------------------------------------------------------- one run


def synthesis_config(row: Row, size: Size, seed: int) -> cm.SynthesisConfig:
    if row.teacher == "fmnist":
        return cm.SynthesisConfig.preset("fashion-mnist", num_samples=size.fmnist_samples,
                                         steps=size.fmnist_steps, batch_size=100, seed=seed)
    return cm.SynthesisConfig(num_samples=size.num_samples, steps=size.steps, seed=seed,
                              **EXPERIMENTS["digits"].synthesis)


def black_box(row: Row, teacher, shape: tuple[int, ...], seed: int) -> BlackBoxTeacher:
    if row.teacher == "forest":
        return BlackBoxTeacher.from_sklearn(teacher, shape, queries=max(row.queries, 1), sigma=SIGMA, seed=seed)
    return BlackBoxTeacher(lambda x: teacher(x).softmax(-1), queries=max(row.queries, 1), sigma=SIGMA, seed=seed,
                           name=row.teacher)


def run_row(row: Row, size: Size, seed: int, teacher, shape, test) -> dict:
    t0 = time.perf_counter()
    box = black_box(row, teacher, shape, seed)
    info: dict = {}
    if row.kind == "noise":
        x = torch.randn((size.fmnist_samples if row.teacher == "fmnist" else size.num_samples, *shape),
                        generator=torch.Generator().manual_seed(seed))
        train = torch.utils.data.TensorDataset(x, box.log_proba(x).softmax(-1))
    else:
        config = synthesis_config(row, size, seed)
        synthesis_teacher = {"black": box, "white": teacher,
                             "white-logp": lambda x: teacher(x).softmax(-1).clamp_min(box.eps).log()}
        train = cm.synthesize(synthesis_teacher[row.kind], shape, 10, config, progress=False)
        info = {"synthesis": dataclasses.asdict(config), "synthesis_seconds": time.perf_counter() - t0,
                "agreement": (train.soft_labels.argmax(-1) == train.labels).float().mean().item()}
        if row.kind == "black":
            info["sigma"] = box.sigma
    teacher_queries = None if row.kind.startswith("white") else box.queries_used
    torch.manual_seed(seed)
    if row.teacher == "fmnist":
        student = models.make_model("lenet5-half", 10)
        recipe = cm.DistillConfig(epochs=size.fmnist_epochs, lr=0.1, batch_size=128, seed=seed)
    else:
        student = models.make_model("cnn", 10, in_channels=1, image_size=8, **EXPERIMENTS["digits"].student_options)
        recipe = cm.DistillConfig(epochs=size.student_epochs, seed=seed, **EXPERIMENTS["digits"].student_recipe)
    cm.distill(student, train, recipe, progress=False)
    return {"seed": seed, "student_accuracy": cm.evaluate(student, test), "teacher_queries": teacher_queries,
            "num_samples": len(train), "seconds": time.perf_counter() - t0, "distill": dataclasses.asdict(recipe),
            **info}


# ----------------------------------------------------------------------------- table


def summarise(results: dict) -> str:
    s, t = results["settings"], results["teachers"]
    lines = [f"Black-box CAKE, size `{results['size']}`, {results['hardware_slug']}. Digits: "
             f"{s['num_samples']:,} samples x {s['steps']} steps, student cnn-16 ({s['student_epochs']} epochs); "
             f"FashionMNIST: {s['fmnist_samples']:,} x {s['fmnist_steps']}, LeNet-5-Half "
             f"({s['fmnist_epochs']} epochs). "
             f"sigma = {results['sigma']}. Teachers' test accuracy: "
             + ", ".join(f"{name} {100 * info['test_accuracy']:.1f} %" for name, info in t.items()) + ".", "",
             "`queries=n`: random directions per sample and step (2n + 1 teacher queries per sample-step).", "",
             "| row | teacher queries per seed | student test accuracy (mean ± std) | seeds | minutes per seed "
             "| what |",
             "|---|---|---|---|---|---|"]
    order = [r.name for r in rows_for(SIZES[results["size"]])]
    for name in sorted(results["rows"], key=lambda n: order.index(n) if n in order else len(order)):
        entry = results["rows"][name]
        runs = entry["runs"]
        if not runs:
            continue
        acc = [100 * r["student_accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        queries = runs[0]["teacher_queries"]
        queries = "gradients" if queries is None else f"{queries:,}"
        minutes = statistics.mean(r["seconds"] for r in runs) / 60
        lines.append(f"| {name} | {queries} | {statistics.mean(acc):.1f} ± {std:.1f} | {len(acc)} | "
                     f"{minutes:.1f} | {entry['description']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    all_rows = sorted({r.name for size in SIZES.values() for r in rows_for(size)})
    parser.add_argument("--rows", nargs="+", default=None, choices=all_rows,
                        help="default: every digits row (FashionMNIST rows only when named)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the markdown table from the JSON")
    args = parser.parse_args()

    size = SIZES[args.size]
    hw = hardware("cpu")  # the black boxes here are CPU models; CPU only keeps rows comparable
    slug = f"cpu-{hw['cpu_threads']}threads"
    out = Path(args.out) if args.out else HERE / "results" / f"black-box-{args.size}-{slug}.json"
    results = json.loads(out.read_text()) if out.exists() else {"rows": {}, "teachers": {}}
    if args.table_only:
        table = summarise(results)
        atomic_write_bytes(out.with_suffix(".md"), (table + "\n").encode())
        print(table)
        return
    rows = [r for r in rows_for(size) if (r.name in args.rows if args.rows else r.teacher != "fmnist")]
    if any(r.teacher == "fmnist" for r in rows) and not FMNIST_TEACHER.exists():
        print(f"skipping the FashionMNIST rows: no teacher at {FMNIST_TEACHER} "
              "(python benchmarks/fashion_mnist.py --size cpu trains and caches it)")
        rows = [r for r in rows if r.teacher != "fmnist"]

    digits_test = data.load_dataset("digits", "test")
    teachers, tests = {}, {}
    for name in dict.fromkeys(r.teacher for r in rows):
        if name == "fmnist":
            tests[name] = data.load_dataset("fashion-mnist", "test")
            teachers[name], info = fmnist_lenet5(tests[name])
        else:
            tests[name] = digits_test
            teachers[name], info = digits_forest(digits_test) if name == "forest" else digits_cnn(size, digits_test)
        results["teachers"][name] = info
        print(f"teacher {name}: test accuracy {info['test_accuracy']:.2%}", flush=True)
    results |= {"size": args.size, "settings": dataclasses.asdict(size), "sigma": SIGMA, "hardware": hw,
                "hardware_slug": slug, "versions": versions() | {"sklearn": _sklearn_version()}}
    for seed in args.seeds:  # all rows of one seed first: a stopped run leaves a comparable table
        for row in rows:
            entry = results["rows"].setdefault(row.name, {"runs": []})
            entry.update(description=row.description, definition=dataclasses.asdict(row))
            if any(r["seed"] == seed for r in entry["runs"]):
                continue
            shape = (1, 32, 32) if row.teacher == "fmnist" else (1, 8, 8)
            run = run_row(row, size, seed, teachers[row.teacher], shape, tests[row.teacher])
            entry["runs"].append(run)
            print(f"{row.name:18s} seed {seed}: student {run['student_accuracy']:.2%}, "
                  f"{run['teacher_queries'] or 'white-box'} queries ({run['seconds'] / 60:.1f} min)", flush=True)
            out.parent.mkdir(exist_ok=True)
            atomic_write_bytes(out, json.dumps(results, indent=1).encode())
    table = summarise(results)
    atomic_write_bytes(out.with_suffix(".md"), (table + "\n").encode())
    print(table)


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


if __name__ == "__main__":
    main()
