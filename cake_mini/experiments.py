"""The whole pipeline for one named experiment: teacher -> synthesize -> distill -> evaluate.

Each experiment names its data, its teacher and student, the paper's synthesis preset and
a budget per size (``smoke``, ``default``, ``paper``; see :mod:`cake_mini.sizes`). A run
writes into one directory, and every stage resumes from what is already there:

    out/teacher.pt          the teacher's weights (trained once, then reused)
    out/synthesis/          shards of synthetic samples + manifest (resumable)
    out/distill/            the student's per-epoch checkpoint (resumable)
    out/student.pt          the student's final weights
    out/samples.png         a grid of synthetic samples (images) or the 2D picture
    out/results.json        accuracies, sizes, seed, wall time, hardware, versions
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__, distributed
from .book import train_or_load_teacher
from .checkpoint import atomic_write_bytes, atomic_save
from .distill import DistillConfig, distill, evaluate
from .sizes import get_size
from .synthesis import SynthesisConfig, synthesize


@dataclass(frozen=True)
class Budget:
    """How much work one size does."""

    teacher_epochs: int
    num_samples: int
    steps: int
    student_epochs: int


@dataclass(frozen=True)
class StudentVariant:
    """A way to train the student beyond the paper's recipe, with the measurement behind it.

    Attributes:
        description: what changes, and where it was measured.
        recipe: :class:`~cake_mini.DistillConfig` fields that change.
        online_teacher: relabel every (augmented) batch with the teacher's softmax.
        snapshots: the synthesis keeps this many iterates of every sample, and the student
            trains on all of them (the same synthesis cost).
        synthesis: :class:`~cake_mini.SynthesisConfig` fields that change (other samples, the
            same budget: never ``num_samples`` or ``steps``).
    """

    description: str
    recipe: dict[str, Any] = field(default_factory=dict)
    online_teacher: bool = False
    snapshots: int = 1
    synthesis: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        budget = {"num_samples", "steps", "snapshots"} & set(self.synthesis)
        if budget:
            raise ValueError(f"a variant keeps the experiment's budget; remove {sorted(budget)} from its synthesis "
                             "(snapshots has a field of its own)")


@dataclass(frozen=True)
class Experiment:
    """One row of the book and of ``cake-mini run``: data, models, recipes, budgets."""

    dataset: str
    teacher: str
    student: str
    preset: str
    budgets: dict[str, Budget]
    teacher_options: dict[str, Any] = field(default_factory=dict)
    student_options: dict[str, Any] = field(default_factory=dict)
    synthesis: dict[str, Any] = field(default_factory=dict)
    teacher_recipe: dict[str, Any] = field(default_factory=dict)
    student_recipe: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)  # passed to data.load_dataset
    description: str = ""
    student_variants: dict[str, StudentVariant] = field(default_factory=dict)  # beyond the paper


EXPERIMENTS: dict[str, Experiment] = {
    "toy2d": Experiment(
        dataset="toy2d:spirals", teacher="mlp", student="mlp", preset="default",
        teacher_options=dict(in_features=2, hidden=64, depth=3),
        student_options=dict(in_features=2, hidden=32, depth=2),
        synthesis=dict(batch_size=30, w_cls=10.0, w_contr=0.1, w_tv=0.0, lr=0.1, lr_decades=3),
        teacher_recipe=dict(lr=0.05, batch_size=64, val_fraction=0.0),
        student_recipe=dict(lr=0.05, batch_size=64),
        budgets={"smoke": Budget(30, 600, 100, 30), "default": Budget(60, 6000, 300, 60),
                 "paper": Budget(60, 25_600, 500, 60)},
        description="three interleaved spirals; MLP teacher -> smaller MLP student",
    ),
    "digits": Experiment(
        dataset="digits", teacher="cnn", student="cnn", preset="default",
        teacher_options=dict(width=32), student_options=dict(width=16),
        # chapter 4's sweep: the reference weights diverge on this teacher; only eta * w matters
        synthesis=dict(batch_size=100, w_cls=1e2, w_contr=1.0, w_tv=1e4, lr_decades=2),
        teacher_recipe=dict(lr=0.1, batch_size=64, augment="shift", shift_pixels=1),
        student_recipe=dict(lr=0.1, batch_size=128),
        budgets={"smoke": Budget(3, 500, 30, 3), "default": Budget(30, 5_000, 50, 60),
                 "paper": Budget(30, 25_600, 500, 30)},
        description="scikit-learn's 8x8 digits (bundled); small CNN teacher -> half-width CNN",
    ),
    "fashion-mnist": Experiment(
        # the CAKE authors' recipes: images resized 28 -> 32, the teacher trained with RandAugment
        # after normalisation, the student with batches of 256 (benchmarks/fashion_mnist.py measures why)
        dataset="fashion-mnist", teacher="lenet5", student="lenet5-half", preset="fashion-mnist",
        data_options=dict(resize="bilinear"),
        teacher_recipe=dict(lr=0.1, augment="randaugment"),
        student_recipe=dict(lr=0.1, batch_size=256),
        budgets={"smoke": Budget(1, 500, 20, 2), "default": Budget(30, 25_600, 256, 30),
                 "paper": Budget(30, 256_000, 256, 30)},
        description="the paper's FashionMNIST row: LeNet-5 -> LeNet-5-Half",
        student_variants={
            # default size, 3 seeds (chapter 5): 76.4 +- 1.1 % against the paper's recipe's 51.2 +- 16.0 %
            "randaugment-snapshots": StudentVariant(
                "beyond the paper: the 4 kept iterates of every sample, RandAugment on each, every batch "
                "relabelled by the teacher (benchmarks/fashion_mnist_search.py, chapter 5)",
                recipe=dict(augment="randaugment"), online_teacher=True, snapshots=4),
            # default size, 3 seeds, kept teacher (chapter 5): 79.3 +- 1.0 % against 75.6 +- 1.4 % for
            # randaugment-snapshots on the paper's step sizes, ahead on every seed
            "low-eta-randaugment-snapshots": StudentVariant(
                "beyond the paper: randaugment-snapshots on samples synthesised with step sizes from 1e-2 "
                "down to 1e-4 instead of 1e-1 down to 1e-5, as many samples and steps "
                "(benchmarks/fashion_mnist_search.py, chapter 5)",
                recipe=dict(augment="randaugment"), online_teacher=True, snapshots=4,
                synthesis=dict(lr=1e-2, lr_decades=2)),
            # the same, final iterates only: 72.4 +- 2.3 %, a quarter of the student's steps
            "randaugment-online": StudentVariant(
                "beyond the paper: RandAugment on every synthetic sample, every batch relabelled by the "
                "teacher (benchmarks/fashion_mnist_search.py, chapter 5)",
                recipe=dict(augment="randaugment"), online_teacher=True),
        },
    ),
    "mnist": Experiment(
        dataset="mnist", teacher="lenet5", student="lenet5-half", preset="mnist",
        teacher_recipe=dict(lr=0.1, augment="shift"),
        student_recipe=dict(lr=0.1, batch_size=128),
        budgets={"smoke": Budget(1, 500, 20, 2), "default": Budget(10, 25_600, 256, 30),
                 "paper": Budget(30, 256_000, 256, 30)},
        description="the paper's MNIST row: LeNet-5 -> LeNet-5-Half",
    ),
    "cifar10-resnet": Experiment(
        dataset="cifar10", teacher="resnet34", student="resnet18", preset="cifar10",
        teacher_recipe=dict(lr=0.1, augment="flip-shift", shift_pixels=4),
        student_recipe=dict(),
        # default: about an hour on a free Colab T4 in fp16 (chapter 7 shows the estimate)
        budgets={"smoke": Budget(1, 100, 5, 1), "default": Budget(30, 25_600, 256, 30),
                 "paper": Budget(200, 250_000, 256, 30)},
        description="the paper's CIFAR-10 row: ResNet-34 -> ResNet-18",
    ),
}


def _load_data(exp: Experiment, seed: int, stand_in: bool, size: str):
    from . import data

    if exp.dataset.startswith("toy2d:"):
        name = exp.dataset.split(":", 1)[1]
        x, y = data.toy2d(name, 3000, noise=0.05, seed=seed)
        xt, yt = data.toy2d(name, 2000, noise=0.05, seed=seed + 10_000)
        train, test = torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(xt, yt)
        return train, test, (2,), int(y.max()) + 1
    info = data.DATASET_INFO[exp.dataset]
    if stand_in:
        n = 256 if size == "smoke" else None  # smoke: a pipeline check in seconds
        train, test = data.stand_in(exp.dataset, "train", n), data.stand_in(exp.dataset, "test", n)
    else:
        train, test = (data.load_dataset(exp.dataset, split, **exp.data_options) for split in ("train", "test"))
    return train, test, (info.in_channels, info.image_size, info.image_size), info.num_classes


def _make(name: str, num_classes: int, input_shape: tuple[int, ...], options: dict):
    from .models import make_model

    if len(input_shape) == 1:
        return make_model(name, num_classes, **options)
    return make_model(name, num_classes, in_channels=input_shape[0], image_size=input_shape[-1], **options)


def run_experiment(name: str, *, size: str | None = None, seed: int = 0, out: str | Path = "runs/cake",
                   device: str | None = None, stand_in: bool = False, progress: bool = True,
                   student_variant: str | None = None, channels_last: bool = False,
                   log=print) -> dict[str, Any]:
    """Run experiment ``name`` end to end into ``out``; returns what ``results.json`` holds.

    ``student_variant`` names one of the experiment's ``student_variants`` (beyond the
    paper's recipe); None: the paper's recipe. ``channels_last`` sets
    :attr:`~cake_mini.DistillConfig.channels_last` for the student (a CPU speed-up).

    Under ``torchrun`` (after :func:`cake_mini.distributed.init_from_env`) every stage runs
    on all ranks and rank 0 writes the files; ``out`` must be on a file system all ranks see.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    exp, size = EXPERIMENTS[name], get_size(size)
    if student_variant is not None and student_variant not in exp.student_variants:
        raise ValueError(f"{name} has no student variant {student_variant!r}; its variants: "
                         f"{sorted(exp.student_variants) or 'none'}")
    variant = exp.student_variants.get(student_variant, StudentVariant("the paper's recipe"))
    budget = exp.budgets[size]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    main_process = distributed.is_main()
    if not main_process:
        progress, log = False, lambda *args, **kwargs: None
    t_start = time.perf_counter()
    train, test, input_shape, num_classes = _load_data(exp, seed, stand_in, size)

    # teacher: trained once per directory, then loaded (under torchrun every rank loads rank 0's file)
    torch.manual_seed(seed)
    teacher = _make(exp.teacher, num_classes, input_shape, exp.teacher_options).to(device)
    teacher_recipe = DistillConfig(epochs=budget.teacher_epochs, seed=seed, **exp.teacher_recipe)
    train_or_load_teacher(teacher, out / "teacher.pt", train, teacher_recipe, device=device, progress=progress,
                          checkpoint_dir=out / "teacher-training", log=log)
    teacher_acc = evaluate(teacher, test, device=device)
    log(f"teacher {exp.teacher}: test accuracy {teacher_acc:.2%}")

    # synthesis: no training data from here on
    config = SynthesisConfig.preset(exp.preset, **{**exp.synthesis, **variant.synthesis,
                                                   "num_samples": budget.num_samples, "steps": budget.steps,
                                                   "seed": seed, "snapshots": variant.snapshots})
    if config.batch_size > config.num_samples:  # small budgets: one batch, not a mostly discarded one
        config = config.replace(batch_size=-(-config.num_samples // num_classes) * num_classes)
    t0 = time.perf_counter()
    synthetic = synthesize(teacher, input_shape, num_classes, config, device=device, progress=progress,
                           checkpoint_dir=out / "synthesis")
    synthesis_seconds = time.perf_counter() - t0
    log(f"synthesised {len(synthetic)} samples x {config.steps} steps in {synthesis_seconds:.1f} s")

    # student
    torch.manual_seed(seed + 1)
    student = _make(exp.student, num_classes, input_shape, exp.student_options).to(device)
    recipe = DistillConfig(epochs=budget.student_epochs, seed=seed, channels_last=channels_last,
                           **{**exp.student_recipe, **variant.recipe})
    t0 = time.perf_counter()
    distill(student, synthetic, recipe, teacher=teacher if variant.online_teacher else None, device=device,
            progress=progress, checkpoint_dir=out / "distill")
    distill_seconds = time.perf_counter() - t0
    student_acc = evaluate(student, test, device=device)
    log(f"student {exp.student}: test accuracy {student_acc:.2%} (data-free; teacher {teacher_acc:.2%})")
    if main_process:
        atomic_save(student.state_dict(), out / "student.pt")
        _save_figure(exp, teacher, synthetic, train, out / "samples.png")

    results = {
        "experiment": name, "description": exp.description, "size": size, "seed": seed,
        "student_variant": student_variant, "student_variant_description": variant.description,
        "online_teacher": variant.online_teacher,
        "stand_in_data": stand_in,
        "teacher": {"model": exp.teacher, "test_accuracy": teacher_acc},
        "student": {"model": exp.student, "test_accuracy": student_acc},
        "budget": dataclasses.asdict(budget), "synthesis": dataclasses.asdict(config),
        "distill": dataclasses.asdict(recipe),
        "seconds": {"synthesis": synthesis_seconds, "distill": distill_seconds,
                    "total": time.perf_counter() - t_start},
        "hardware": hardware(device), "versions": versions(), "processes": distributed.rank_and_world()[1],
    }
    if main_process:
        atomic_write_bytes(out / "results.json", json.dumps(results, indent=2).encode())
    return results


def _save_figure(exp: Experiment, teacher, synthetic, train, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import data
    from .viz import image_grid, plot_decision_regions

    if synthetic.x.ndim == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        plot_decision_regions(teacher, ax, points=synthetic.x[:600].cpu(), labels=synthetic.labels[:600],
                              title="teacher's regions and CAKE samples")
    else:
        fig = image_grid(synthetic.x[:400], synthetic.labels[:400], nrow=8,
                         class_names=data.DATASET_INFO[exp.dataset].class_names,
                         title=f"CAKE samples from the {exp.teacher} teacher")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def hardware(device: torch.device | str) -> dict[str, Any]:
    """Where a run happened, for results files.

    On Linux also the CPU's model (two hosts both called "AMD EPYC" differed by 1.6x in
    student time: one had AVX-512) and the memory allocator the process runs on.
    """
    device = torch.device(device)
    info = {"device": str(device), "cpu": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(), **cpu_details(), **allocator()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_details(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """``cpu_model`` (name, family, model) and ``avx512`` from Linux's cpuinfo; ``{}`` elsewhere."""
    try:
        first = Path(cpuinfo).read_text().split("\n\n")[0]
    except OSError:
        return {}
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}
    if "model name" not in fields:
        return {}
    model = fields["model name"]
    if "cpu family" in fields and "model" in fields:
        model += f", family {fields['cpu family']} model {fields['model']}"
    return {"cpu_model": model, "avx512": "avx512f" in fields.get("flags", "").split()}


def allocator(maps: str | Path = "/proc/self/maps") -> dict[str, str]:
    """``{"allocator": "jemalloc" | "tcmalloc" | "default"}`` of this process on Linux; ``{}`` elsewhere."""
    try:
        text = Path(maps).read_text()
    except OSError:
        return {}
    return {"allocator": next((name for name in ("jemalloc", "tcmalloc") if f"lib{name}" in text), "default")}


def versions() -> dict[str, str]:
    import sys

    return {"cake_mini": __version__, "torch": torch.__version__, "python": sys.version.split()[0]}
