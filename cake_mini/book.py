"""What the book's chapters share, in one place (like ``d2l/torch.py``); each docstring names its chapters.

    setup                   size, seed and device of a chapter, and the run label it prints
    new_model               a model of ``cake_mini.models``, initialised from a seed
    train_or_load_teacher   train a teacher once into a file, load it after (also ``cake-mini run``)
    fashion_mnist_teacher   the LeNet-5 teacher of chapters 5 and 8
    noise_set               N(0, I) inputs labelled by the teacher: the baseline without optimisation
    run_id, runs_dir        where a chapter keeps what it computed, by its settings
    load_results            the benchmark files in ``benchmarks/results/`` (``cake_mini.results``)
    show_results            one of them as the tables a chapter shows (``cake_mini.results.show``)
    show_or_say_why         the same, or None after saying why the file is missing (Colab offline)
    chapter_timings         how long a chapter runs at each size, on this CPU and on a Colab T4

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
from .results import ResultsNotFoundError, load_results, show as show_results, show_or_say_why  # noqa: F401
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
    ``size``; at ``smoke`` size it sees only the first 10,000 training images. The teacher's
    file is named by those settings and by how ``train_set`` was brought to 32 x 32 (zero
    padding, or the experiment's bilinear resize, ``EXPERIMENTS["fashion-mnist"].data_options``),
    so chapters that prepare the images differently never share a teacher.
    """
    from .experiments import EXPERIMENTS

    exp = EXPERIMENTS["fashion-mnist"]
    images = train_set.tensors[0]
    border = torch.cat([images[..., :2, :].flatten(1), images[..., -2:, :].flatten(1),
                        images[..., :, :2].flatten(1), images[..., :, -2:].flatten(1)], 1)
    resize = "pad" if bool((border == images.amin()).all()) else "bilinear"
    epochs = exp.budgets[size].teacher_epochs
    subset = 10_000 if size == "smoke" else None
    if subset is not None:
        train_set = TensorDataset(*(t[:subset] for t in train_set.tensors))
    settings = run_id(epochs, subset, exp.teacher_recipe, resize)
    path = runs_dir() / f"book-fmnist-teacher-{size}-s{seed}-{settings}.pt"
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


# ----------------------------------------------------------------------------- run times

TIMINGS_FILE = "chapter-timings.json"
TIMING_SIZES = ("smoke", "default", "paper")
TIMING_COLUMNS = (("cpu", "this project's CPU (2 cores)"), ("t4", "Colab T4"))


def format_duration(seconds: float) -> str:
    """A run time as a reader reads it: seconds, minutes, hours or days.

    >>> [format_duration(s) for s in (0.4, 40, 725, 12_600, 90_000, 400_000)]
    ['<1 s', '40 s', '12 min', '3.5 h', '25 h', '4.6 d']
    """
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 10 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.1f} d"


class ChapterTimings:
    """How long one chapter runs at each size (:func:`chapter_timings`); markdown in a notebook."""

    def __init__(self, chapter: str, name: str | None = None, data: dict | None = None,
                 entry: dict | None = None, reason: str | None = None):
        self.chapter, self.name, self.data, self.entry, self.reason = chapter, name, data or {}, entry, reason

    @property
    def available(self) -> bool:
        return self.entry is not None

    def seconds(self, size: str, where: str = "cpu") -> float | None:
        """The time in seconds of ``size`` on ``where`` ("cpu" or "t4"), None if not known."""
        cell = ((self.entry or {}).get(where) or {}).get(size) or {}
        return cell.get("seconds")

    def kind(self, size: str, where: str = "cpu") -> str | None:
        """"measured", "estimate" or "not estimated" (None if the file has no such cell)."""
        return (((self.entry or {}).get(where) or {}).get(size) or {}).get("kind")

    def markdown(self) -> str:
        if not self.available:
            return f"Run times of chapter {self.chapter} are not available: {self.reason}"
        notes: list[str] = []
        rows = []
        for size in TIMING_SIZES:
            row = [f"`{size}`"]
            for where, _ in TIMING_COLUMNS:
                cell = (self.entry.get(where) or {}).get(size)
                if not cell:
                    row.append("not in the file")
                    continue
                kind = cell.get("kind", "estimate")
                seconds = cell.get("seconds")
                text = "–" if seconds is None else format_duration(seconds)
                basis = cell.get("basis")
                if kind == "measured" and seconds is not None:
                    text += " (measured" + (f", note {self._note(notes, basis)})" if basis else ")")
                elif seconds is None:
                    text = f"{kind} (note {self._note(notes, basis or 'no basis given')})"
                else:
                    text += f" ({kind}, note {self._note(notes, basis or 'no basis given')})"
                row.append(text)
            rows.append(row)
        from .results import md_table

        title = self.entry.get("title")
        lines = [f"**Run time of chapter {self.chapter}**" + (f" ({title})" if title else "")
                 + f", from `{self.name}`:", "",
                 *md_table(["size", *(label for _, label in TIMING_COLUMNS)], rows), ""]
        lines += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
        machine = self.data.get("machine")
        lines += ["", f"CPU: {machine or 'not described'}; recorded {self.data.get('date') or 'on an unknown date'}."]
        if self.data.get("t4_basis"):
            lines.append(f"Colab T4: {self.data['t4_basis']}")
        return "\n".join(lines)

    @staticmethod
    def _note(notes: list[str], text: str) -> int:
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return self.markdown()


def chapter_timings(chapter: str | int, directory: str | os.PathLike | None = None) -> ChapterTimings:
    """How long chapter ``chapter`` ("04", "4" or 4) runs at each size, on this CPU and on a Colab T4.

    Read from ``benchmarks/results/chapter-timings.json`` (``benchmarks/chapter_timings.py``)
    through :func:`load_results` (downloaded outside the repository). Each time says
    whether it was measured or estimated, and every estimate has a note with its basis.
    Never raises for a missing file or chapter: it then renders one line saying why.

    Returns:
        :class:`ChapterTimings`; the last expression of a cell renders it as a markdown table.
    """
    text = str(chapter).strip()
    chapter_id = f"{int(text):02d}" if text.isdigit() else text
    try:
        (name, data), = load_results(TIMINGS_FILE, directory)[:1]
    except ResultsNotFoundError as err:
        return ChapterTimings(chapter_id, reason=f"{TIMINGS_FILE} was not found ({err})")
    chapters = data.get("chapters") if isinstance(data.get("chapters"), dict) else {}
    entry = chapters.get(chapter_id)
    if not isinstance(entry, dict):
        return ChapterTimings(chapter_id, name, data, reason=f"{name} has no entry for chapter {chapter_id} "
                                                             f"(it has {', '.join(sorted(chapters)) or 'none'}).")
    return ChapterTimings(chapter_id, name, data, entry)
