"""CAKE, the method, in one file. Read this first.

CAKE copies a trained classifier (the teacher) without its training data by synthesising
inputs on the teacher's decision boundaries. One mini-batch ``m`` goes through:

    initial_batch        noise x ~ N(0, I), shape (B, *input_shape), and labels (B,) in groups
                         of K distinct classes
    cake_steps           T gradient steps on x, not on the frozen teacher, with step size eta_m,
                         minimising synthesis_objective =
                         w_cls * classification_loss + w_contr * contrastive_loss + w_tv * total_variation
                         (LAKE adds Langevin noise sqrt(2 eta_m) * N(0, I) after each step)
    softmax(f(x_T))      the soft labels the student learns from (cake_mini.distill)

:func:`synthesize_reference` runs this for every mini-batch, with ``eta_m`` falling across
the batches (:func:`cake_mini.schedules.step_sizes`). The loss terms are in ``losses.py``.
``synthesis.py`` holds the configuration (:class:`SynthesisConfig`), the result
(:class:`SyntheticSet`) and :func:`cake_mini.synthesize`, the same computation for many
mini-batches at once, resumable and split over processes; the tests hold it to this file.
Chapters 2 and 3 of the book take each step apart.

Reference: Braun, Mundt, Kersting, "Deep Classifier Mimicry without Data Access",
AISTATS 2024 (arXiv:2306.02090).
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import Tensor

from .losses import classification_loss, contrastive_loss, total_variation
from .schedules import step_sizes

if TYPE_CHECKING:
    from .synthesis import SynthesisConfig, SyntheticSet


def batch_seed(seed: int, batch: int, stream: str = "init") -> int:
    """A 63-bit seed for batch ``batch`` of a run with ``seed``; independent across streams."""
    digest = hashlib.sha256(f"cake_mini:{seed}:{batch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def initial_batch(batch: int, config: SynthesisConfig, input_shape: tuple[int, ...],
                  num_classes: int, group_size: int) -> tuple[Tensor, Tensor]:
    """Noise start and labels of mini-batch ``batch``: ``(B, *input_shape)``, ``(B,)``.

    Labels come in groups of ``K``: each group is the first ``K`` entries of a random
    permutation of the classes, so all samples of a group have distinct classes.
    """
    g = torch.Generator().manual_seed(batch_seed(config.seed, batch))
    x = torch.randn((config.batch_size, *input_shape), generator=g)
    groups = config.batch_size // group_size
    labels = torch.stack([torch.randperm(num_classes, generator=g)[:group_size] for _ in range(groups)])
    return x, labels.reshape(-1)


def synthesis_objective(logits: Tensor, x: Tensor, labels: Tensor, group_size: int,
                        config: SynthesisConfig, num_batches: int = 1) -> Tensor:
    """The CAKE loss of each of ``num_batches`` equal, consecutive mini-batches: shape ``(num_batches,)``.

    With ``num_batches=1`` this is ``w_cls * classification_loss + w_contr * contrastive_loss
    + w_tv * total_variation`` with the reference reductions (means). Each value depends on
    its own mini-batch only, which lets the engine optimise several batches as one.

    Args:
        logits: the teacher's logits at ``x``, shape :math:`(N, C)`, ``N = num_batches * B``.
        x: the samples, shape :math:`(N, *input_shape)`; images :math:`(N, C_{in}, H, W)` when ``w_tv > 0``.
        labels: assigned classes, shape :math:`(N,)`, in groups of ``group_size`` distinct classes.
    """
    logits = logits.float()
    total = config.w_cls * classification_loss(logits, labels, group_size, "none").view(num_batches, -1).mean(1)
    if config.w_contr:
        contr = contrastive_loss(logits, labels, group_size, "none").view(num_batches, -1).mean(1)
        total = total + config.w_contr * contr
    if config.w_tv:
        total = total + config.w_tv * total_variation(x, "none").reshape(num_batches, -1).mean(1)
    return total


def cake_steps(teacher: Callable[[Tensor], Tensor], x: Tensor, labels: Tensor, eta: float,
               config: SynthesisConfig, *, batch: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Optimise one mini-batch, yielding every iterate: ``(t, x_t, f(x_t))`` for ``t = 0, ..., T``.

    ``x_0`` is ``x`` (clipped to ``config.bounds``); each step is one ``torch.optim`` step on
    the samples with step size ``eta`` (``config.optimizer``: SGD, the reference, or Adam),
    then, for LAKE, Langevin noise ``sqrt(2 eta) * N(0, I)`` drawn from the stream of
    mini-batch ``batch``. The teacher is only called, never changed: no parameter, ``.grad``
    or mode. Draw a trajectory with ``[x_t for t, x_t, _ in cake_steps(...)]``.

    Args:
        teacher: a differentiable classifier, ``(B, *input_shape) -> (B, C)`` logits.
        x: the start, shape :math:`(B, *input_shape)`; not modified.
        labels: assigned classes, shape :math:`(B,)`, in groups of ``K`` (``config.group_size``,
            all ``C`` classes when ``None``).
        eta: the step size of this mini-batch.
        config: steps ``T``, method, optimizer, loss weights and bounds; its engine settings
            (``parallel_batches``, ``precision``) are ignored: this loop runs as given, in eager mode.
        batch: the mini-batch's index, which seeds its Langevin noise (LAKE).

    Yields:
        ``t``, a copy of ``x_t`` :math:`(B, *input_shape)` and the teacher's logits
        :math:`(B, C)` at ``x_t``, detached.
    """
    x = x.detach().clone()
    if config.bounds is not None:
        x.clamp_(*config.bounds)
    x.requires_grad_(True)
    optimizer = torch.optim.SGD([x], lr=eta) if config.optimizer == "sgd" else torch.optim.Adam([x], lr=eta)
    noise = torch.Generator(x.device).manual_seed(batch_seed(config.seed, batch, "langevin"))
    for t in range(config.steps):
        logits = teacher(x)
        yield t, x.detach().clone(), logits.detach()
        group_size = logits.shape[-1] if config.group_size is None else config.group_size
        loss = synthesis_objective(logits, x, labels, group_size, config).sum()
        (x.grad,) = torch.autograd.grad(loss, x)  # leaves the teacher's .grad alone
        optimizer.step()
        with torch.no_grad():
            if config.method == "lake":
                x.add_(math.sqrt(2 * eta) * torch.randn(x.shape, generator=noise, device=x.device))
            if config.bounds is not None:
                x.clamp_(*config.bounds)
    with torch.no_grad():
        logits = teacher(x)
    yield config.steps, x.detach().clone(), logits  # outside no_grad: the caller's loop body keeps its mode


def synthesize_reference(teacher: Callable[[Tensor], Tensor], input_shape: tuple[int, ...], num_classes: int,
                         config: SynthesisConfig | None = None, *,
                         device: str | torch.device | None = None) -> SyntheticSet:
    """CAKE on every mini-batch, one at a time: the readable definition of :func:`cake_mini.synthesize`.

    Takes the arguments of :func:`cake_mini.synthesize` and returns what it returns, a
    :class:`SyntheticSet` of ``num_samples * snapshots`` samples in batch order, up to float
    rounding; the tests check it, and ``benchmarks/throughput.py`` times this function as the
    straightforward baseline. Runs in fp32, in one process, without checkpoints.
    """
    # the config, the result type and the argument checks live in synthesis.py, which imports this file
    from .synthesis import SynthesisConfig, SyntheticSet, _resolve_device, check_teacher

    config = config or SynthesisConfig()
    group_size = config.validate(num_classes)
    device = _resolve_device(teacher, device)
    check_teacher(teacher, tuple(input_shape), num_classes, device)
    etas = step_sizes(config.num_batches, config.lr, config.lr_decades, config.schedule)  # (M,)
    parts = []
    for m, eta in enumerate(etas.float().tolist()):
        x, labels = initial_batch(m, config, input_shape, num_classes, group_size)
        kept = [(x_t, logits.softmax(-1))
                for t, x_t, logits in cake_steps(teacher, x.to(device), labels.to(device), eta, config, batch=m)
                if t in config.snapshot_steps]  # S iterates, the last at t = T
        n = min(config.batch_size, config.num_samples - m * config.batch_size)  # the last batch may be cut
        samples = torch.stack([x_t for x_t, _ in kept])[:, :n]  # (S, n, *input_shape)
        soft_labels = torch.stack([p for _, p in kept])[:, :n]  # (S, n, C)
        parts.append(SyntheticSet(
            x=samples.flatten(0, 1).cpu(), soft_labels=soft_labels.flatten(0, 1).cpu(),
            labels=labels[:n].repeat(len(kept)), step_size=torch.full((len(kept) * n,), eta),
            step=torch.tensor(config.snapshot_steps).repeat_interleave(n),
        ))
    return SyntheticSet.cat(parts)
