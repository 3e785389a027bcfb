"""What the book's chapters share, in one place (like ``d2l/torch.py``); each docstring names its chapters.

    setup                   size, seed and device of a chapter, and the run label it prints
    new_model               a model of ``cake_mini.models``, initialised from a seed
    train_or_load_teacher   train a teacher once into a file, load it after (also ``cake-mini run``)
    fashion_mnist_teacher   the LeNet-5 teacher of chapters 5 and 8
    noise_set               N(0, I) inputs labelled by the teacher: the baseline without optimisation
    run_id, runs_dir        where a chapter keeps what it computed, by its settings
    load_results            the benchmark files in ``benchmarks/results/`` (``cake_mini.results``)
    show_results            one of them as the tables a chapter shows (``cake_mini.results.show``)

Every chapter runs on its own, also on Colab, where ``cake_mini`` is pip-installed and the
repository's folders (``runs/``, ``benchmarks/results/``) are not there: results are then
missing, and :func:`load_results` says so and where to get them. Not imported by
``import cake_mini``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from . import distributed
from .checkpoint import atomic_save, safe_load
from .distill import DistillConfig, train_classifier
from .models import make_model
from .results import ResultsNotFoundError, load_results, show as show_results  # noqa: F401 (the chapters' names)
from .sizes import get_size

# ----------------------------------------------------------------------------- setup


class Setup(NamedTuple):
    """What a chapter runs with; unpack it as ``SIZE, SEED, DEVICE, RUN = book.setup()``."""

    size: str  # "smoke", "default" or "paper" (CAKE_MINI_SIZE)
    seed: int | tuple[int, ...]
    device: torch.device
    label: str  # printed next to every number the chapter shows


def setup(seed: int | Sequence[int] = 0, device: str | torch.device | None = None) -> Setup:
    """Read the size, seed torch, pick the device, and print the run label (every chapter).

    The label, e.g. ``size=smoke seed=0 device=cpu (2 threads) torch=2.5.1``, goes next to
    every number a chapter prints or plots, so that each number says what made it.

    Args:
        seed: the chapter's seed, or the seeds it loops over (chapter 6); torch is seeded
            with the first.
        device: ``None`` picks CUDA when available; chapters 2 and 3 pass ``"cpu"``.

    Returns:
        :class:`Setup` ``(size, seed, device, label)``.
    """
    size = get_size()
    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    torch.manual_seed(seeds[0])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        hardware = f"{threads} thread{'s' if threads > 1 else ''}"
    seed_text = f"seed={seed}" if isinstance(seed, int) else f"seeds={','.join(map(str, seeds))}"
    label = f"size={size} {seed_text} device={device.type} ({hardware}) torch={torch.__version__}"
    print(label)
    return Setup(size, seed if isinstance(seed, int) else seeds, device, label)


def new_model(name: str, num_classes: int = 10, *, seed: int, device: str | torch.device | None = None,
              **options: Any) -> nn.Module:
    """``make_model(name, num_classes, **options)`` initialised from ``seed`` (chapters 1-9).

    Seeding right before the build makes the initial weights depend on ``seed`` alone, not
    on what ran before in the notebook; the model is moved to ``device`` when given.

    >>> a, b = new_model("lenet5", seed=0), new_model("lenet5", seed=0)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    torch.manual_seed(seed)
    model = make_model(name, num_classes, **options)
    return model if device is None else model.to(device)


# ----------------------------------------------------------------------------- teachers


def train_or_load_teacher(model: nn.Module, path: str | os.PathLike, train_set: Dataset,
                          recipe: DistillConfig, *, device: str | torch.device | None = None,
                          progress: bool = True, checkpoint_dir: str | os.PathLike | None = None,
                          log: Callable[[str], Any] = print) -> nn.Module:
    """Train ``model`` on ``train_set`` once and save it to ``path``; later calls load ``path``.

    Used by chapters 5, 7 and 8 and by ``cake-mini run`` (:func:`cake_mini.experiments.run_experiment`).
    Under ``torchrun`` every rank trains (``train_classifier`` is data-parallel), rank 0
    writes ``path``, and after a barrier every rank loads that file: the ranks end with the
    very same teacher, BatchNorm statistics included, whatever each computed.

    Args:
        model: a freshly initialised model (see :func:`new_model`), on ``device``.
        path: the teacher's file, e.g. ``out / "teacher.pt"``; its directory must exist.
        train_set, recipe, device, progress, checkpoint_dir: as for
            :func:`cake_mini.train_classifier` (``checkpoint_dir`` makes the training resumable).
        log: where to say what happened (``print``; a no-op on ranks other than 0).

    Returns:
        ``model``, with the weights of ``path``, in eval mode.
    """
    path = Path(path)
    trained = not path.exists()
    distributed.barrier()  # every rank has looked before rank 0 may write the file
    if trained:
        train_classifier(model, train_set, recipe, device=device, progress=progress, checkpoint_dir=checkpoint_dir)
        if distributed.is_main():
            atomic_save(model.state_dict(), path)
        distributed.barrier()  # the file is complete before any rank reads it
    model.load_state_dict(safe_load(path))
    log(f"{'trained the teacher and saved it to' if trained else 'loaded teacher from'} {path}")
    return model.eval()


def fashion_mnist_teacher(train_set: TensorDataset, *, size: str, seed: int,
                          device: str | torch.device | None = None, progress: bool = True) -> nn.Module:
    """The LeNet-5 teacher of chapters 5 and 8, trained once per size and seed into ``runs/``.

    Recipe and epochs are those of the experiment ``fashion-mnist`` (``cake-mini run``) at
    ``size``; at ``smoke`` size it sees only the first 10,000 training images.
    """
    from .experiments import EXPERIMENTS

    exp = EXPERIMENTS["fashion-mnist"]
    epochs = exp.budgets[size].teacher_epochs
    subset = 10_000 if size == "smoke" else None
    if subset is not None:
        train_set = TensorDataset(*(t[:subset] for t in train_set.tensors))
    path = runs_dir() / f"book-fmnist-teacher-{size}-s{seed}-{run_id(epochs, subset, exp.teacher_recipe)}.pt"
    recipe = DistillConfig(epochs=epochs, seed=seed, **exp.teacher_recipe)
    return train_or_load_teacher(new_model("lenet5", 10, seed=seed, device=device), path, train_set, recipe,
                                 device=device, progress=progress)


def noise_set(teacher: Callable[[Tensor], Tensor], n: int, input_shape: tuple[int, ...], *, seed: int = 0,
              device: str | torch.device | None = None, chunk: int = 1024) -> TensorDataset:
    """``n`` samples of N(0, I) labelled with the teacher's softmax (chapters 1, 2, 4 and 9).

    The baseline that costs one teacher call per sample: CAKE's starting points, not optimised.

    Args:
        teacher: returns logits ``(N, C)`` (or log-probabilities, e.g. a black box).
        n, input_shape: the samples are ``(n, *input_shape)``, drawn from a generator seeded with ``seed``.
        device: where the teacher runs; defaults to its parameters' device (CPU without any).

    Returns:
        ``TensorDataset(x, soft_labels)``: shapes ``(n, *input_shape)`` and ``(n, C)``, on the CPU.
    """
    if device is None:
        params = list(teacher.parameters()) if isinstance(teacher, nn.Module) else []
        device = params[0].device if params else "cpu"
    x = torch.randn((n, *input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        soft = torch.cat([teacher(part.to(device)).float().softmax(-1).cpu() for part in x.split(chunk)])
    return TensorDataset(x, soft)


# ----------------------------------------------------------------------------- files


def run_id(*settings: Any) -> str:
    """A short name for a set of settings (chapters 5, 7, 8): other settings, other name.

    >>> run_id(15, None, {"lr": 0.1}) == run_id(15, None, {"lr": 0.1}) != run_id(16, None, {"lr": 0.1})
    True
    """
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:10]


def repo_root() -> Path:
    """The repository when a chapter runs inside it (from ``notebooks/`` or the root), else ``.``."""
    for candidate in (Path("."), Path("..")):
        if (candidate / "pyproject.toml").exists() and (candidate / "cake_mini").is_dir():
            return candidate
    return Path(".")


def runs_dir() -> Path:
    """``runs/`` in the repository, or next to the notebook elsewhere (Colab); created (chapters 5, 7, 8)."""
    path = repo_root() / "runs"
    path.mkdir(exist_ok=True)
    return path
