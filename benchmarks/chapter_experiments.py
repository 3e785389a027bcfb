"""The book's chapter experiments at the chapters' own settings, over seeds, into benchmarks/results/.

    python benchmarks/chapter_experiments.py --chapter 2          # toy 2D: CAKE vs classification only vs noise
    python benchmarks/chapter_experiments.py --chapter 4          # digits: students and the w_TV sweep
    python benchmarks/chapter_experiments.py --chapter 6          # digits 32x32: teacher x student grids
    python benchmarks/chapter_experiments.py --chapter 8          # FashionMNIST: samples vs nearest real images
    python benchmarks/chapter_experiments.py --chapter 3 --seeds 0   # contrastive / classification gradient norms
    python benchmarks/chapter_experiments.py --chapter 2 --size smoke --seeds 0   # a pipeline check
    python benchmarks/chapter_experiments.py --chapter 4 --table-only            # rewrite the .md from the JSON

The book is executed at smoke size; this script runs a chapter's experiment with the values
the chapter's ``pick(...)`` gives at ``default`` size (its models, budgets and recipes, built
from ``cake_mini``), once per seed. A seed is the chapter's ``SEED`` (teacher, synthesis,
noise, student initialisation), except where a chapter's own loop names other seeds (chapter 4's
student seeds). Where a part of a chapter does not fit a CPU (chapter 6's ResNet and ViT, the
chapter 8 teacher's 30 epochs of RandAugment), the JSON's ``size`` and ``size_note`` say what
was run instead and why.

Writes benchmarks/results/chapterNN-<name>-<size>-cpu-<threads>threads.json after every seed:
every seed's raw results (``runs``), the per-seed numbers the book and the Results page print
(``metrics``: group, name, unit, ``values`` by seed), settings, what was not run, hardware with
the load average, versions, dates, wall times and the command; a markdown table beside it.
Finished seeds are skipped on a rerun. Chapter 3 has no experiment of its own at default size:
its file measures how large each loss term's gradient is on trained teachers, per preset.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import cake_mini as cm
from cake_mini import DistillConfig, NonFiniteLossError, SynthesisConfig, book, distill, evaluate, synthesize
from cake_mini.cake import cake_steps, initial_batch
from cake_mini.checkpoint import atomic_write_bytes, fingerprint
from cake_mini.data import load_dataset, toy2d
from cake_mini.experiments import EXPERIMENTS, hardware, versions
from cake_mini.losses import classification_loss, contrastive_loss, total_variation
from cake_mini.viz import predict_grid

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = ("default", "smoke")
MACHINE = "this project's 2-core CPU machine, 1 thread, shared with other jobs (see load_average)"


def _load(path: Path, name: str):
    """A module from a file (benchmarks/ and scripts/ are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- chapter 2


PROBLEMS = ("moons", "circles", "checkerboard", "spirals")
CH2 = {  # notebooks/02_toy_2d.py: NUM_SAMPLES, STEPS, STUDENT_EPOCHS; TEACHER_EPOCHS = 60 at every size
    "default": dict(num_samples=4_000, steps=150, student_epochs=100, teacher_epochs=60, strip_steps=400),
    "smoke": dict(num_samples=2_000, steps=100, student_epochs=40, teacher_epochs=60, strip_steps=400),
}
SET_KINDS = ("CAKE", "classification only", "LAKE", "noise")
NO_BOUNDARY = "the teacher predicts one class on the whole grid"


def boundary_distance(model, points: torch.Tensor, extent, resolution: int = 400) -> torch.Tensor:
    """Distance of each 2D point to the nearest pixel of ``model``'s decision boundary on a grid."""
    xx, yy, classes = (torch.as_tensor(a) for a in predict_grid(model, extent, resolution))
    across = F.pad(classes[:, 1:] != classes[:, :-1], (1, 0)) | F.pad(classes[1:] != classes[:-1], (0, 0, 1, 0))
    if not across.any():  # one class everywhere on the grid: no boundary to measure to
        return torch.full((len(points),), math.nan)
    return torch.cdist(points, torch.stack([xx[across], yy[across]], 1)).min(1).values


def _median(values: torch.Tensor) -> float | None:
    value = values.median().item()
    return value if math.isfinite(value) else None


def grid_agreement(a, b, extent, resolution: int = 200) -> float:
    """Share of a grid over ``extent`` where ``a`` and ``b`` predict the same class (chapter 2)."""
    return float((predict_grid(a, extent, resolution)[2] == predict_grid(b, extent, resolution)[2]).mean())


def chapter2(seed: int, s: dict) -> dict:
    teacher_recipe = DistillConfig(epochs=s["teacher_epochs"], lr=0.05, batch_size=64, val_fraction=0.0, seed=seed)
    student_recipe = DistillConfig(epochs=s["student_epochs"], lr=0.05, batch_size=64, seed=seed)
    centred = (-3.0, 3.0, -3.0, 3.0)
    problems = [(name, (0.0, 0.0), centred) for name in PROBLEMS] + [("blobs at (4, 0)", (4.0, 0.0),
                                                                       (1.0, 7.0, -3.0, 3.0))]
    out: dict[str, Any] = {"problems": {}}
    for label, offset, extent in problems:
        name = label.split()[0]
        x, y = toy2d(name, 1000, noise=0.1, seed=seed, offset=offset)
        test = TensorDataset(*toy2d(name, 1000, noise=0.1, seed=seed + 1, offset=offset))
        num_classes = int(y.max()) + 1
        teacher = book.new_model("mlp", num_classes, seed=seed, in_features=2, hidden=64, depth=3)
        cm.train_classifier(teacher, TensorDataset(x, y), teacher_recipe, progress=False)
        teacher.eval()
        config = SynthesisConfig(num_samples=s["num_samples"], batch_size=10 * num_classes, group_size=num_classes,
                                 steps=s["steps"], w_cls=10.0, w_contr=0.1, w_tv=0.0, lr=0.1, lr_decades=3,
                                 parallel_batches=64, seed=seed)
        sets = {"CAKE": config, "classification only": config.replace(w_contr=0.0),
                "LAKE": config.replace(method="lake")}
        sets = {kind: synthesize(teacher, (2,), num_classes, c, progress=False) for kind, c in sets.items()}
        sets["noise"] = book.noise_set(teacher, s["num_samples"], (2,), seed=seed)
        view = (extent[0] - 1, extent[1] + 1, extent[2] - 1, extent[3] + 1)  # chapter 2's VIEW, around the data
        entry = {"teacher_accuracy": evaluate(teacher, test), "classes": num_classes, "students": {}}
        for kind in SET_KINDS:
            student = book.new_model("mlp", num_classes, seed=seed + 1, in_features=2, hidden=32, depth=2)
            distill(student, sets[kind], student_recipe, progress=False)
            result = {"test_accuracy": evaluate(student, test), "grid_agreement": grid_agreement(student, teacher, extent)}
            soft = sets[kind].tensors[1] if kind == "noise" else sets[kind].soft_labels
            far = int(torch.stack([x[y == c].mean(0) for c in range(num_classes)]).norm(dim=1).argmax())
            result |= {"far_class_top": (soft.argmax(-1) == far).float().mean().item(),  # the class farthest
                       "far_class_mass": soft[:, far].mean().item()}  # from the origin, where the noise is
            if kind != "noise":
                samples = sets[kind]
                result |= {"median_boundary_distance": _median(boundary_distance(teacher, samples.x, view)),
                           "own_side": (samples.soft_labels.argmax(-1) == samples.labels).float().mean().item()}
            entry["students"][kind] = result
        out["problems"][label] = entry
        if name == "moons":  # chapter 2's one-batch strip: 30 C samples, one step size 0.1
            out["strip"] = one_batch_strip(teacher, num_classes, seed, s["strip_steps"])
    return out


def one_batch_strip(teacher, num_classes: int, seed: int, steps: int) -> dict:
    """Median distance to the boundary after ``steps`` steps of one batch, per objective."""
    config = SynthesisConfig(num_samples=30 * num_classes, batch_size=30 * num_classes, group_size=num_classes,
                             steps=steps, w_cls=10.0, w_contr=0.1, w_tv=0.0, lr=0.1, seed=seed)
    variants = {"classification only": config.replace(w_contr=0.0), "CAKE": config, "LAKE": config.replace(method="lake")}
    distances = {}
    for kind, c in variants.items():
        x, labels = initial_batch(0, c, (2,), num_classes, num_classes)
        *_, (_, final, _) = cake_steps(teacher, x, labels, c.lr, c)
        distances[kind] = _median(boundary_distance(teacher, final, (-4.0, 4.0, -4.0, 4.0)))
    return {"steps": steps, "median_boundary_distance": distances}


def chapter2_metrics(runs: dict[str, dict]) -> list[dict]:
    metrics = []
    problems = next(iter(runs.values()))["problems"]
    for label in problems:
        metrics.append(_metric("teacher test accuracy (%)", label, "%", runs,
                               lambda r, p=label: 100 * r["problems"][p]["teacher_accuracy"]))
        for kind in SET_KINDS:
            path = lambda r, p=label, k=kind: r["problems"][p]["students"][k]  # noqa: E731
            metrics.append(_metric("student test accuracy (%)", f"{label}: {kind}", "%", runs,
                                   lambda r, f=path: 100 * f(r)["test_accuracy"]))
            metrics.append(_metric("student-teacher grid agreement (%)", f"{label}: {kind}", "%", runs,
                                   lambda r, f=path: 100 * f(r)["grid_agreement"]))
            if label.startswith("blobs"):
                metrics.append(_metric("samples: share whose top class is the class farthest from the origin (%)",
                                       f"{label}: {kind}", "%", runs, lambda r, f=path: 100 * f(r)["far_class_top"]))
                metrics.append(_metric("samples: mean soft-label probability of that class (%)", f"{label}: {kind}",
                                       "%", runs, lambda r, f=path: 100 * f(r)["far_class_mass"]))
            if kind != "noise":
                metrics.append(_metric("samples: median distance to the teacher's boundary", f"{label}: {kind}",
                                       "", runs, lambda r, f=path: f(r)["median_boundary_distance"], NO_BOUNDARY))
    for kind in ("classification only", "CAKE", "LAKE"):
        metrics.append(_metric("one batch on moons (step size 0.1, 400 steps): median distance to the boundary",
                               kind, "", runs, lambda r, k=kind: r["strip"]["median_boundary_distance"][k],
                               NO_BOUNDARY))
    return metrics


# ----------------------------------------------------------------------------- chapter 4


CH4 = {  # notebooks/04_digits.py at default size; TEACHER_EPOCHS = 30 at every size
    "default": dict(teacher_epochs=30, num_samples=5_000, steps=50, student_epochs=60, student_seeds=(1, 2),
                    sweep_samples=2_000, sweep_steps=50, w_tvs=(0.0, 1e2, 1e3, 1e4, 1e5)),
    "smoke": dict(teacher_epochs=30, num_samples=1_000, steps=30, student_epochs=30, student_seeds=(1,),
                  sweep_samples=500, sweep_steps=20, w_tvs=(0.0, 1e2, 1e3, 1e4, 1e5)),
}
DIGITS_STUDENTS = ("CAKE (data-free)", "noise (data-free)", "KD, real images", "labels, real images")


def chapter4(seed: int, s: dict) -> dict:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    shape = tuple(train.tensors[0].shape[1:])

    def cnn(width: int, model_seed: int):
        return book.new_model("cnn", 10, seed=model_seed, in_channels=1, image_size=8, width=width)

    teacher = cnn(32, seed)
    cm.train_classifier(teacher, train, DistillConfig(epochs=s["teacher_epochs"], lr=0.1, batch_size=64,
                                                      augment="shift", shift_pixels=1, seed=seed), progress=False)
    teacher.eval()
    try:  # the chapter's first synthesis: the reference settings, one batch of 100, 50 steps
        synthesize(teacher, shape, 10, SynthesisConfig(num_samples=100, steps=50, seed=seed), progress=False)
        reference_diverged = False
    except NonFiniteLossError:
        reference_diverged = True
    config = SynthesisConfig(num_samples=s["num_samples"], batch_size=100, steps=s["steps"], lr=0.1, lr_decades=2,
                             w_cls=1e2, w_contr=1.0, w_tv=1e4, seed=seed)
    t0 = time.perf_counter()
    synthetic = synthesize(teacher, shape, 10, config, progress=False)
    synthesis_seconds = time.perf_counter() - t0
    recipe = DistillConfig(epochs=s["student_epochs"], lr=0.1, batch_size=128)

    def student_accuracy(train_set, student_seed: int, **kwargs) -> float:
        student = cnn(16, student_seed)
        distill(student, train_set, recipe.replace(seed=student_seed), progress=False, **kwargs)
        return evaluate(student, test)

    noise = book.noise_set(teacher, s["num_samples"], shape, seed=seed)
    sources = {"CAKE (data-free)": (synthetic, {}), "noise (data-free)": (noise, {}),
               "KD, real images": (train, {"teacher": teacher}), "labels, real images": (train, {})}
    students = {name: {str(k): student_accuracy(data, k, **kw) for k in s["student_seeds"]}
                for name, (data, kw) in sources.items()}
    sweep = {}
    for w_tv in s["w_tvs"]:
        try:
            part = synthesize(teacher, shape, 10, config.replace(num_samples=s["sweep_samples"], steps=s["sweep_steps"],
                                                                 w_tv=w_tv), progress=False)
        except NonFiniteLossError:
            sweep[f"{w_tv:g}"] = None
            continue
        counts = torch.bincount(part.soft_labels.argmax(-1), minlength=10)
        sweep[f"{w_tv:g}"] = {"tv": total_variation(part.x).item(), "classes": int((counts > 0.02 * len(part)).sum()),
                              "accuracy": student_accuracy(part, s["student_seeds"][0])}
    return {"teacher_accuracy": evaluate(teacher, test), "reference_settings_diverged": reference_diverged,
            "synthesis": dataclasses.asdict(config), "synthesis_seconds": synthesis_seconds,
            "agreement": (synthetic.soft_labels.argmax(-1) == synthetic.labels).float().mean().item(),
            "median_confidence": synthetic.soft_labels.max(-1).values.median().item(),
            "pixel_range": [synthetic.x.min().item(), synthetic.x.max().item()],
            "students": students, "sweep": sweep, "real_tv": total_variation(train.tensors[0]).item()}


def chapter4_metrics(runs: dict[str, dict]) -> list[dict]:
    def per_student(name: str) -> dict[str, float]:
        return {f"{seed}/s{k}": 100 * acc for seed, r in runs.items() for k, acc in r["students"][name].items()}

    metrics = [_metric("teacher cnn-32 test accuracy (%)", "teacher", "%", runs, lambda r: 100 * r["teacher_accuracy"])]
    metrics += [{"group": "student cnn-16 test accuracy (%), seed/student seed", "name": name, "unit": "%",
                 "values": per_student(name)} for name in DIGITS_STUDENTS]
    cake, noise = per_student("CAKE (data-free)"), per_student("noise (data-free)")
    metrics.append({"group": "student cnn-16 test accuracy (%), seed/student seed", "unit": "points",
                    "name": "CAKE minus noise (same seed and student seed)",
                    "values": {k: cake[k] - noise[k] for k in cake}})
    for w_tv in next(iter(runs.values()))["sweep"]:
        done = {seed: r["sweep"][w_tv] for seed, r in runs.items() if r["sweep"][w_tv] is not None}
        metrics.append({"group": "w_TV sweep: student test accuracy (%)", "name": f"w_tv = {w_tv}", "unit": "%",
                        "values": {seed: 100 * v["accuracy"] for seed, v in done.items()},
                        **({"no_value": {"why": "diverged", "seeds": sorted(set(runs) - set(done))}}
                           if len(done) < len(runs) else {})})
        metrics.append({"group": "w_TV sweep: mean total variation of the samples", "name": f"w_tv = {w_tv}",
                        "unit": "", "values": {seed: v["tv"] for seed, v in done.items()}})
        metrics.append({"group": "w_TV sweep: classes that are the top class of > 2 % of the samples",
                        "name": f"w_tv = {w_tv}", "unit": "", "values": {seed: v["classes"] for seed, v in done.items()}})
    metrics.append(_metric("w_TV sweep: mean total variation of the samples", "real training digits", "", runs,
                           lambda r: r["real_tv"]))
    return metrics


# ----------------------------------------------------------------------------- chapter 6


CH6 = {  # notebooks/06_scales_and_models.py at default size
    "default": dict(teacher_epochs=30, num_samples=2_000, steps=100, student_epochs=30,
                    widths=(0.25, 0.5, 1.0, 2.0), types=("MLP", "CNN", "ResNet", "ViT")),
    "smoke": dict(teacher_epochs=2, num_samples=200, steps=20, student_epochs=15, widths=(0.5, 1.0),
                  types=("MLP", "CNN")),
}
MODEL_TYPES = {  # (teacher, student) as the chapter's TYPES
    "MLP": (("mlp", {"hidden": 256, "depth": 3}), ("mlp", {"hidden": 128, "depth": 2})),
    "CNN": (("lenet5", {}), ("lenet5-half", {})),
    "ResNet": (("resnet34", {}), ("resnet18", {})),
    "ViT": (("vit8", {}), ("vit4", {})),
}
CPU_TYPES = ("MLP", "CNN")  # ResNet and ViT: minutes per step on this CPU, see probe_large_models
DIGITS_TRAIN = 1437  # digits "full-train": 70 + 10 % of 1,797


def digits32(split: str) -> TensorDataset:
    x, y = load_dataset("digits", split).tensors
    return TensorDataset(F.interpolate(x, size=32, mode="bilinear", align_corners=False), y)


def chapter6(seed: int, s: dict) -> dict:
    train, test = digits32("full-train"), digits32("test")
    teacher_recipe = DistillConfig(epochs=s["teacher_epochs"], lr=0.1, batch_size=64, augment="shift",
                                   shift_pixels=2, seed=seed)
    student_recipe = DistillConfig(epochs=s["student_epochs"], lr=0.1, batch_size=128, seed=seed)
    synthesis = SynthesisConfig(num_samples=s["num_samples"], steps=s["steps"], batch_size=100, w_cls=1e3,
                                w_contr=1e-3, w_tv=1e6, seed=seed)
    trained: dict[str, torch.nn.Module] = {}  # the chapter's TRAINED: one model per spec and seed
    samples: dict[str, cm.SyntheticSet] = {}  # per teacher: its students share the samples, as in the chapter

    def build(spec, model_seed: int):
        return book.new_model(spec[0], 10, seed=model_seed, in_channels=1, image_size=32, **spec[1])

    def key_of(spec) -> str:  # LeNet-5 x1 of the scales grid is the CNN teacher of the models grid: the same model
        return json.dumps([spec[0], {k: v for k, v in spec[1].items() if (k, v) != ("width", 1.0)}], sort_keys=True)

    def on_data(spec):
        key = key_of(spec)
        if key not in trained:
            trained[key] = build(spec, seed)
            cm.train_classifier(trained[key], train, teacher_recipe, progress=False)
            trained[key].eval()
        return trained[key]

    def grid(teachers: dict, students: dict) -> dict:
        out = {"teachers": list(teachers), "students": list(students), "accuracy": [], "teacher_accuracy": [],
               "with_data": [evaluate(on_data(spec), test) for spec in students.values()], "synthesis_seconds": []}
        for spec in teachers.values():
            teacher = on_data(spec)
            out["teacher_accuracy"].append(evaluate(teacher, test))
            t0 = time.perf_counter()
            try:
                if key_of(spec) not in samples:
                    samples[key_of(spec)] = synthesize(teacher, (1, 32, 32), 10, synthesis, progress=False)
                synthetic = samples[key_of(spec)]
            except NonFiniteLossError:
                out["accuracy"].append([None] * len(students))
                out["synthesis_seconds"].append(None)
                continue
            out["synthesis_seconds"].append(time.perf_counter() - t0)
            row = []
            for s_spec in students.values():
                student = build(s_spec, seed + 1)
                distill(student, synthetic, student_recipe, progress=False)
                row.append(evaluate(student, test))
            out["accuracy"].append(row)
        return out

    scales = {f"LeNet-5 x{w:g}": ("lenet5", {"width": w}) for w in s["widths"]}
    run_types = [t for t in s["types"] if t in CPU_TYPES]
    types_t = {t: MODEL_TYPES[t][0] for t in run_types}
    types_s = {t: MODEL_TYPES[t][1] for t in run_types}
    return {"scales": grid(scales, scales), "types": grid(types_t, types_s)}


def probe_large_models(s: dict) -> list[dict]:
    """Time one training step and a few synthesis steps of the types that are not run; extrapolate."""
    x, y = digits32("full-train").tensors
    probes = []
    for name in s["types"]:
        if name in CPU_TYPES:
            continue
        (t_name, t_opts), (s_name, _) = MODEL_TYPES[name]
        teacher = book.new_model(t_name, 10, seed=0, in_channels=1, image_size=32, **t_opts)
        t0 = time.perf_counter()
        cm.train_classifier(teacher, TensorDataset(x[:65], y[:65]),
                            DistillConfig(epochs=1, lr=0.1, batch_size=64, augment="shift", shift_pixels=2),
                            progress=False)  # 64 training images: one step of batch 64
        step_seconds = time.perf_counter() - t0
        teacher.eval()
        t0 = time.perf_counter()
        synthesize(teacher, (1, 32, 32), 10, SynthesisConfig(num_samples=10, batch_size=10, steps=2,
                                                             parallel_batches=1, w_cls=1e3, w_contr=1e-3, w_tv=1e6),
                   progress=False)
        rate = 20 / (time.perf_counter() - t0)  # sample-steps per second
        teacher_hours = s["teacher_epochs"] * math.ceil(DIGITS_TRAIN / 64) * step_seconds / 3600
        probes.append({"what": f"{name} row and column of the across-models grid ({t_name} -> {s_name})",
                       "why": "too slow for this CPU: the teacher's training and its synthesis alone take the "
                              "hours of estimate_hours_per_seed (its students not counted); a GPU runs it",
                       "measured": {"teacher_training_step_seconds": step_seconds,
                                    "synthesis_sample_steps_per_second": rate},
                       "estimate_hours_per_seed": {"teacher": teacher_hours,
                                                   "synthesis": s["num_samples"] * s["steps"] / rate / 3600}})
    return probes


def chapter6_metrics(runs: dict[str, dict]) -> list[dict]:
    metrics = []
    for part, title in (("scales", "across scales"), ("types", "across models")):
        first = next(iter(runs.values()))[part]
        for i, teacher in enumerate(first["teachers"]):
            metrics.append(_metric(f"{title}: teacher test accuracy (%)", teacher, "%", runs,
                                   lambda r, p=part, i=i: 100 * r[p]["teacher_accuracy"][i]))
        for j, student in enumerate(first["students"]):
            metrics.append(_metric(f"{title}: student trained on the real data (%)", student, "%", runs,
                                   lambda r, p=part, j=j: 100 * r[p]["with_data"][j]))
        for i, teacher in enumerate(first["teachers"]):
            for j, student in enumerate(first["students"]):
                metrics.append(_metric(f"{title}: CAKE student test accuracy (%)", f"{teacher} -> {student}", "%",
                                       runs, lambda r, p=part, i=i, j=j: _percent(r[p]["accuracy"][i][j])))
    return metrics


# ----------------------------------------------------------------------------- chapter 8


CH8 = {  # notebooks/08_samples_and_privacy.py at default size
    "default": dict(num_samples=5_000, steps=256, batch_size=500, num_queries=2_000, teacher_size="default"),
    "smoke": dict(num_samples=500, steps=20, batch_size=100, num_queries=200, teacher_size="smoke"),
}
QUERIES = ("synthetic", "test", "noise")


def fmnist_teacher(size: str):
    """The LeNet-5 of ``benchmarks/fashion_mnist.py`` (recipe ``authors``), trained once into benchmarks/cache."""
    bench = _load(HERE / "fashion_mnist.py", "fashion_mnist_benchmark")
    teacher, info = bench.teacher_for("authors", bench.SIZES[size], torch.device("cpu"))
    return teacher, info


def nearest_images(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 512) -> dict[str, torch.Tensor]:
    """Nearest reference row of each query: L2 distance and cosine similarity, with indices."""
    ref = reference.flatten(1)
    ref_unit = F.normalize(ref, dim=1)
    parts = []
    for block in queries.flatten(1).split(chunk):
        l2 = torch.cdist(block, ref).min(1)
        cos = (F.normalize(block, dim=1) @ ref_unit.T).max(1)
        parts.append(torch.stack([l2.values, l2.indices.double(), cos.values, cos.indices.double()], 1))
    found = torch.cat(parts)
    return {"l2": found[:, 0], "l2_index": found[:, 1].long(), "cos": found[:, 2], "cos_index": found[:, 3].long()}


def chapter8(seed: int, s: dict, teacher, train, test) -> dict:
    config = SynthesisConfig.preset("fashion-mnist", num_samples=s["num_samples"], steps=s["steps"],
                                    batch_size=s["batch_size"], seed=seed)
    key = hashlib.sha256(json.dumps([dataclasses.asdict(config), fingerprint(teacher)]).encode()).hexdigest()[:12]
    t0 = time.perf_counter()
    synthetic = synthesize(teacher, (1, 32, 32), 10, config, progress=False,
                           checkpoint_dir=HERE / "cache" / "chapter08" / f"{s['teacher_size']}-{key}")
    synthesis_seconds = time.perf_counter() - t0
    x_train, y_train = train.tensors
    by_step = []
    for eta in torch.unique(synthetic.step_size).flip(0).tolist():
        sel = synthetic.step_size == eta
        by_step.append({"step_size": eta, "samples": int(sel.sum()), "mean_abs_x": synthetic.x[sel].abs().mean().item(),
                        "agreement": (synthetic.soft_labels[sel].argmax(1) == synthetic.labels[sel]).float().mean().item(),
                        "confidence": synthetic.soft_labels[sel].max(1).values.mean().item()})
    n = s["num_queries"]
    g = torch.Generator().manual_seed(seed)  # drawn in the chapter's order
    syn_index = torch.randperm(len(synthetic), generator=g)[:n]
    test_index = torch.randperm(len(test), generator=g)[:n]
    queries = {"synthetic": synthetic.x[syn_index], "test": test.tensors[0][test_index],
               "noise": torch.randn((n, 1, 32, 32), generator=g)}
    found = {name: nearest_images(q, x_train) for name, q in queries.items()}
    a, b = torch.randint(len(x_train), (2, n), generator=g)
    pairs = {"l2": (x_train[a] - x_train[b]).flatten(1).norm(dim=1),
             "cos": F.cosine_similarity(x_train[a].flatten(1), x_train[b].flatten(1))}
    labels = {"synthetic": synthetic.labels[syn_index], "test": test.tensors[1][test_index],
              "noise": torch.randint(10, (n,), generator=g)}

    def tails(d: dict) -> dict:
        return {"l2_median": d["l2"].median().item(), "l2_5%": d["l2"].quantile(0.05).item(),
                "cos_median": d["cos"].median().item(), "cos_95%": d["cos"].quantile(0.95).item()}

    query_eta = synthetic.step_size[syn_index]
    closeness_by_step = []
    for eta in torch.unique(query_eta).flip(0).tolist():
        sel = query_eta == eta
        closeness_by_step.append({"step_size": eta, "queries": int(sel.sum()),
                                  "l2_median": found["synthetic"]["l2"][sel].median().item(),
                                  "cos_median": found["synthetic"]["cos"][sel].median().item(),
                                  "cos_max": found["synthetic"]["cos"][sel].max().item()})
    same_class = {name: {metric: (y_train[found[name][f"{metric}_index"]] == labels[name]).float().mean().item()
                         for metric in ("l2", "cos")} for name in QUERIES}
    return {"synthesis": dataclasses.asdict(config), "synthesis_seconds": synthesis_seconds,
            "by_step_size": by_step, "real_mean_abs_x": x_train.abs().mean().item(),
            "nearest": {name: tails(found[name]) for name in QUERIES} | {"random train pairs": tails(pairs)},
            "closeness_by_step_size": closeness_by_step, "same_class": same_class,
            "closest_cosines": {name: found[name]["cos"].topk(8).values.tolist() for name in ("synthetic", "test")}}


def chapter8_metrics(runs: dict[str, dict]) -> list[dict]:
    first = next(iter(runs.values()))
    metrics = []
    for i, row in enumerate(first["by_step_size"]):
        name = f"step size {row['step_size']:.1e}"
        for field, group, scale in (("mean_abs_x", "samples by step size: mean |x|", 1),
                                    ("agreement", "samples by step size: teacher's top class = assigned class (%)",
                                     100)):
            metrics.append(_metric(group, name, "%" if scale == 100 else "", runs,
                                   lambda r, i=i, f=field, k=scale: k * r["by_step_size"][i][f]))
    metrics.append(_metric("samples by step size: mean |x|", "real training images", "", runs,
                           lambda r: r["real_mean_abs_x"]))
    for name in (*QUERIES, "random train pairs"):
        for field in ("l2_median", "l2_5%", "cos_median", "cos_95%"):
            label = name if name == "random train pairs" else f"{name} -> train"
            metrics.append(_metric("nearest training image (L2 distance, cosine similarity)", f"{label}: {field}",
                                   "", runs, lambda r, n=name, f=field: r["nearest"][n][f]))
    for i, row in enumerate(first["closeness_by_step_size"]):
        for field in ("l2_median", "cos_median", "cos_max"):
            metrics.append(_metric("synthetic -> train by step size", f"step size {row['step_size']:.1e}: {field}",
                                   "", runs, lambda r, i=i, f=field: r["closeness_by_step_size"][i][f]))
    for name in QUERIES:
        for metric in ("l2", "cos"):
            metrics.append(_metric("nearest training image has the query's class (%)", f"{name} ({metric})", "%",
                                   runs, lambda r, n=name, m=metric: 100 * r["same_class"][n][m]))
    for name in ("synthetic", "test"):
        metrics.append(_metric("closest pairs: largest cosine similarity", name, "", runs,
                               lambda r, n=name: r["closest_cosines"][n][0]))
    return metrics


# ----------------------------------------------------------------------------- chapter 3: gradient norms


GRADIENT_CASES = {  # (teacher, weights and budget); 4 mini-batches: step sizes eta0 * 10^(-d m / 4)
    "LeNet-5 FashionMNIST, preset default": ("fmnist", lambda: SynthesisConfig.preset("default")),
    "LeNet-5 FashionMNIST, preset fashion-mnist (= mnist)": ("fmnist", lambda: SynthesisConfig.preset("fashion-mnist")),
    "LeNet-5 FashionMNIST, preset cifar10": ("fmnist", lambda: SynthesisConfig.preset("cifar10")),
    "digits CNN, the digits experiment's settings": (
        "digits", lambda: SynthesisConfig(steps=EXPERIMENTS["digits"].budgets["default"].steps,
                                          **EXPERIMENTS["digits"].synthesis)),
}
CH3 = {"default": dict(batches=4, snapshots=4, teacher_size="default"),
       "smoke": dict(batches=2, snapshots=2, teacher_size="smoke", steps=8)}


def term_gradients(teacher, x: torch.Tensor, labels: torch.Tensor, config: SynthesisConfig) -> dict[str, torch.Tensor]:
    """Per-sample gradient norms of each weighted term of one mini-batch's objective at ``x``."""
    x = x.detach().clone().requires_grad_(True)
    logits = teacher(x).float()
    terms = {"cls": config.w_cls * classification_loss(logits, labels, 10),
             "contr": config.w_contr * contrastive_loss(logits, labels, 10),
             "tv": config.w_tv * total_variation(x)}
    return {name: torch.autograd.grad(value, x, retain_graph=True)[0].flatten(1).norm(dim=1)
            for name, value in terms.items()}


def chapter3(seed: int, s: dict, teachers: dict) -> dict:
    out = {}
    for case, (teacher_name, make) in GRADIENT_CASES.items():
        base = make()
        config = base.replace(num_samples=s["batches"] * base.batch_size, snapshots=s["snapshots"], seed=seed,
                              **({"steps": s["steps"]} if "steps" in s else {}))
        teacher, shape = teachers[teacher_name]
        synthetic = synthesize(teacher, shape, 10, config, progress=False)
        points = []
        for m, eta in enumerate(torch.unique(synthetic.step_size).flip(0).tolist()):
            start, labels = initial_batch(m, config, shape, 10, 10)
            in_batch = synthetic.step_size == eta
            for t in [0, *config.snapshot_steps]:
                x = start if t == 0 else synthetic.x[in_batch & (synthetic.step == t)]
                norms = term_gradients(teacher, x, labels, config)
                ratio = norms["contr"] / norms["cls"].clamp_min(1e-30)
                points.append({"step_size": eta, "step": t,
                               "batch_ratio_contr_cls": (norms["contr"].norm() / norms["cls"].norm()).item(),
                               "batch_ratio_tv_cls": (norms["tv"].norm() / norms["cls"].norm()).item(),
                               "sample_ratio_contr_cls": {q: ratio.quantile(p).item()
                                                          for q, p in (("10%", 0.1), ("median", 0.5), ("90%", 0.9))},
                               "mean_abs_x": x.abs().mean().item()})
        out[case] = {"synthesis": dataclasses.asdict(config), "points": points}
    return out


def chapter3_metrics(runs: dict[str, dict]) -> list[dict]:
    metrics = []
    for case, entry in next(iter(runs.values())).items():
        for i, p in enumerate(entry["points"]):
            if p["step"] not in (0, entry["synthesis"]["steps"]):
                continue
            name = f"step size {p['step_size']:.0e}, after {p['step']} steps"
            metrics.append(_metric(f"{case}: |grad contrastive| / |grad classification| (batch)", name, "", runs,
                                   lambda r, c=case, i=i: r[c]["points"][i]["batch_ratio_contr_cls"]))
            metrics.append(_metric(f"{case}: |grad TV| / |grad classification| (batch)", name, "", runs,
                                   lambda r, c=case, i=i: r[c]["points"][i]["batch_ratio_tv_cls"]))
    return metrics


# ----------------------------------------------------------------------------- files


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _metric(group: str, name: str, unit: str, runs: dict[str, dict], get: Callable[[dict], float | None],
            none_means: str = "diverged") -> dict:
    """One number per seed (``get`` of each seed's run); seeds where it is None are listed as ``none_means``."""
    values = {seed: get(run) for seed, run in runs.items()}
    none = [k for k, v in values.items() if v is None]
    return {"group": group, "name": name, "unit": unit, "values": {k: v for k, v in values.items() if v is not None},
            **({"no_value": {"why": none_means, "seeds": none}} if none else {})}


@dataclasses.dataclass(frozen=True)
class Chapter:
    number: int
    slug: str
    title: str
    sizes: dict[str, dict]
    metrics: Callable[[dict], list[dict]]
    seeds_mean: str  # what a seed varies

    @property
    def notebook(self) -> str:
        return next(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob(f"{self.number:02d}_*.py"))


CHAPTERS = {
    2: Chapter(2, "toy2d", "CAKE in two dimensions: students from CAKE, classification-only, LAKE and noise samples",
               CH2, chapter2_metrics, "the chapter's SEED: toy data, teacher, synthesis, noise, student initialisation"),
    3: Chapter(3, "gradient-norms", "How large each loss term's gradient is, per preset, on trained teachers",
               CH3, chapter3_metrics, "synthesis seed (noise starts and labels); the teachers are fixed"),
    4: Chapter(4, "digits", "Digits: CAKE, noise and real-data students, and the w_TV sweep",
               CH4, chapter4_metrics, "the chapter's SEED (teacher, synthesis, noise); student seeds 1 and 2 "
                                      "for each, as the chapter's STUDENT_SEEDS"),
    6: Chapter(6, "grids", "Digits 32x32: teacher x student grids across scales and across models",
               CH6, chapter6_metrics, "the chapter's seed: teachers, synthesis, students"),
    8: Chapter(8, "samples", "FashionMNIST: CAKE samples by step size and their nearest training images",
               CH8, chapter8_metrics, "the chapter's SEED for synthesis and the query draws; one teacher (seed 0)"),
}


def size_label(chapter: Chapter, size: str) -> tuple[str, str]:
    """The size named in the file, and what differs from the chapter's ``default``."""
    if size == "smoke":
        return "smoke", "pipeline check; the numbers mean nothing"
    return {
        3: ("4 mini-batches per preset", "not a chapter run: for each preset its batch size, steps and weights, "
                                         "4 mini-batches with step sizes eta0 * 10^(-d m / 4), m = 0..3"),
        6: ("default, across-models grid MLP and CNN only",
            "the chapter's default budgets; the across-models grid without its ResNet and ViT rows and columns "
            "(not_run: measured step times and the hours they extrapolate to)"),
        8: ("default, one teacher for all seeds",
            "the chapter's default budgets, data and teacher (book.fashion_mnist_teacher at default size); the "
            "teacher is the chapter's seed-0 teacher for every seed: its 30 epochs of RandAugment cost more CPU "
            "time than all seeds' synthesis together. A seed varies the synthesis and the query draws."),
    }.get(chapter.number, ("default", "the chapter's default values, all of them"))


def output_path(chapter: Chapter, size: str, out_dir: Path) -> Path:
    return out_dir / f"chapter{chapter.number:02d}-{chapter.slug}-{size}-cpu-{torch.get_num_threads()}threads.json"


def write(path: Path, results: dict, chapter: Chapter) -> None:
    """The JSON (the runs first: a failing summary loses no run; --table-only redoes it) and its .md."""
    results["wall_seconds"] = sum(r["seconds"] for r in results["runs"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(results, indent=1) + "\n").encode())
    runs = {str(r["seed"]): r["result"] for r in results["runs"]}
    teachers = [{"group": "teacher test accuracy (%)", "name": results[key].get("model", key), "unit": "%",
                 "values": {"-": 100 * results[key]["test_accuracy"]}}
                for key in ("teacher", "digits_teacher") if "test_accuracy" in results.get(key, {})]
    results["metrics"] = teachers + chapter.metrics(runs) if runs else []
    atomic_write_bytes(path, (json.dumps(results, indent=1) + "\n").encode())
    page = _load(ROOT / "scripts" / "results_page.py", "results_page")
    atomic_write_bytes(path.with_suffix(".md"), (page.file_section(path.name, results) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapter", type=int, nargs="+", required=True, choices=sorted(CHAPTERS))
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--table-only", action="store_true", help="rewrite the JSON's metrics and the .md")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    command = "python benchmarks/chapter_experiments.py " + shlex.join(sys.argv[1:])
    for number in args.chapter:
        chapter = CHAPTERS[number]
        path = output_path(chapter, args.size, args.out_dir)
        results = json.loads(path.read_text()) if path.exists() else {"runs": []}
        if args.table_only:
            write(path, results, chapter)
            continue
        settings = chapter.sizes[args.size]
        size, note = size_label(chapter, args.size)
        results |= {"chapter": number, "notebook": chapter.notebook, "title": chapter.title, "size": size,
                    "size_note": note, "settings": settings, "seeds": sorted({*results.get("seeds", []), *args.seeds}),
                    "seed_varies": chapter.seeds_mean, "machine": MACHINE,
                    "hardware": hardware("cpu"),
                    "versions": versions() | {"sklearn": _sklearn_version()},
                    "commands": sorted({*results.get("commands", []), command})}
        context = prepare(chapter, args.size, settings, results)
        for seed in args.seeds:
            if any(r["seed"] == seed for r in results["runs"]):
                print(f"chapter {number} seed {seed}: done before, skipped")
                continue
            t0, started, load = time.perf_counter(), _now(), os.getloadavg()
            result = context(seed)
            results["runs"].append({"seed": seed, "seconds": time.perf_counter() - t0, "started": started,
                                    "finished": _now(), "load_average_start": load,
                                    "load_average_end": os.getloadavg(), "result": result})
            results["runs"].sort(key=lambda r: r["seed"])
            results["date"] = results["runs"][-1]["finished"][:10]
            write(path, results, chapter)
            print(f"chapter {number} seed {seed}: {time.perf_counter() - t0:.0f} s -> {path.name}", flush=True)
        write(path, results, chapter)


def prepare(chapter: Chapter, size: str, settings: dict, results: dict) -> Callable[[int], dict]:
    """What the chapter needs once (teachers, data, probes); returns the per-seed run."""
    if chapter.number == 2:
        return lambda seed: chapter2(seed, settings)
    if chapter.number == 4:
        return lambda seed: chapter4(seed, settings)
    if chapter.number == 6:
        if size != "smoke" and "not_run" not in results:
            results["not_run"] = probe_large_models(settings)
        return lambda seed: chapter6(seed, settings)
    if chapter.number == 8:  # the chapter's data (padded 28 -> 32) and its teacher, trained once into runs/
        train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
        t0 = time.perf_counter()
        teacher = book.fashion_mnist_teacher(train, size=settings["teacher_size"], seed=0, progress=False)
        results["teacher"] = {"model": "lenet5", "made_by": "cake_mini.book.fashion_mnist_teacher, seed 0",
                              "seconds_to_train_or_load": time.perf_counter() - t0,
                              "test_accuracy": evaluate(teacher, test)}
        return lambda seed: chapter8(seed, settings, teacher, train, test)
    teacher, info = fmnist_teacher(settings["teacher_size"])
    results["teacher"] = info
    exp = EXPERIMENTS["digits"]
    digits = book.new_model("cnn", 10, seed=0, in_channels=1, image_size=8, **exp.teacher_options)
    epochs = exp.budgets[settings["teacher_size"]].teacher_epochs
    cm.train_classifier(digits, load_dataset("digits", "train"), DistillConfig(epochs=epochs, seed=0,
                                                                               **exp.teacher_recipe), progress=False)
    results["digits_teacher"] = {"model": "cnn", "options": exp.teacher_options, "epochs": epochs,
                                 "test_accuracy": evaluate(digits.eval(), load_dataset("digits", "test"))}
    teachers = {"fmnist": (teacher, (1, 32, 32)), "digits": (digits, (1, 8, 8))}
    return lambda seed: chapter3(seed, settings, teachers)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


if __name__ == "__main__":
    main()
