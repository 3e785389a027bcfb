"""CAKE and LAKE at scale: the configuration, the result, and the fast engine :func:`synthesize`.

The method itself is in ``cake.py`` (read it first): noise ``x ~ N(0, I)`` and labels in
groups of ``K`` distinct classes, then ``T`` gradient steps on ``x`` (not on the teacher) of

    L = w_cls * classification_loss + w_contr * contrastive_loss + w_tv * total_variation

with one step size per mini-batch from :func:`cake_mini.schedules.step_sizes`. CAKE relies
on SGD and the step-size schedule to scatter samples; LAKE adds Langevin noise
``sqrt(2 eta) * N(0, I)`` after each step. The student later learns the teacher's
softmax on the final samples. Chapters 2 and 3 of the book explain each part.

Speed without changing the result: mini-batches are independent given the teacher, so
``parallel_batches`` of them are optimised as one large batch with a per-sample step
size. The gradient each sample receives is the gradient of *its own* mini-batch's loss,
exactly as in the one-batch-at-a-time :func:`cake_mini.cake.synthesize_reference`, the
readable definition that the tests compare against.

Reference: Braun, Mundt, Kersting, AISTATS 2024 (arXiv:2306.02090).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn

from . import distributed
from .checkpoint import RunDirectory, atomic_save, fingerprint, safe_load
from .layout import channel_last, takes_channel_last
from .precision import PRECISIONS, InputGradScaler, autocast, uses_fp16
from .schedules import SCHEDULES, step_sizes
# the method's pieces live in cake.py; imported here for the engine and for old imports
from .cake import batch_seed, initial_batch, synthesis_objective, synthesize_reference  # noqa: F401

# ----------------------------------------------------------------------------- config


@dataclass
class SynthesisConfig:
    """How many samples, how they move, and what they minimise.

    Defaults are the reference implementation's defaults without a dataset preset.
    ``SynthesisConfig.preset(name)`` gives the paper's per-dataset settings.

    Two fields are engine settings, not part of the method: ``parallel_batches`` and
    ``precision`` say how :func:`synthesize` computes (speed, memory, float format), not what;
    the method in ``cake.py`` (:func:`~cake_mini.cake.cake_steps`,
    :func:`~cake_mini.cake.synthesize_reference`) ignores them and runs one batch at a time in fp32.

    Attributes:
        num_samples: samples to synthesise (rounded up to whole batches, then cut).
        batch_size: samples per mini-batch; a multiple of ``group_size``.
        steps: gradient steps ``T`` per mini-batch.
        group_size: ``K`` distinct classes per group; ``None`` means all classes.
        method: ``"cake"`` (implicit noise of SGD) or ``"lake"`` (explicit Langevin noise).
        optimizer: ``"sgd"`` (no momentum, the reference) or ``"adam"``.
        lr: ``eta_0``, the step size of the first mini-batch.
        lr_decades: ``d``, how many orders of magnitude the step size falls over all batches.
        schedule: ``"log-linear"``, ``"cosine"`` or ``"constant"`` (see ``schedules.py``).
        w_cls, w_contr, w_tv: weights of the three loss terms.
        seed: all randomness of batch ``m`` derives from ``(seed, m)``.
        parallel_batches: engine setting: mini-batches optimised together (speed and memory
            only; the result is the same up to float rounding).
        precision: engine setting: ``"auto"`` (bf16 autocast on CUDA cards of compute capability >= 8, fp16
            with loss scaling on 7.x such as the T4, fp32 elsewhere; see ``precision.py``),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        bounds: ``(low, high)``: clip samples to the data's range after every step (a domain
            prior, e.g. ``(-1, 1)`` for images normalised with mean 0.5, std 0.5); ``None``
            (the reference) leaves them unbounded.
        snapshots: keep each sample at this many evenly spaced steps (``T/S, 2T/S, ..., T``),
            each with the teacher's softmax at that step; ``1`` (the reference) keeps the
            final iterate only. The result then holds ``num_samples * snapshots`` samples
            at no extra teacher cost: those logits are computed for the steps anyway.
    """

    # budget
    num_samples: int = 25_600
    batch_size: int = 100
    steps: int = 500
    group_size: int | None = None
    # how samples move
    method: str = "cake"
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_decades: float = 4.0
    schedule: str = "log-linear"
    # what they minimise
    w_cls: float = 1e3
    w_contr: float = 1e1
    w_tv: float = 1e5
    # reproducibility
    seed: int = 0
    # engine settings: how synthesize() computes, not what (cake.py ignores them)
    parallel_batches: int = 8
    precision: str = "auto"
    # not in the reference; off by default
    bounds: tuple[float, float] | None = None
    snapshots: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # 256 steps x 512 batches of 500 = 256k samples; the MNIST-type weights. 4 x 500 samples
        # per step: on CPU 1-2k samples per step are fastest (benchmarks/throughput.py)
        "mnist": dict(num_samples=256_000, batch_size=500, steps=256, w_cls=1e3, w_contr=1e-3, w_tv=1e7,
                      parallel_batches=4),
        "fashion-mnist": dict(num_samples=256_000, batch_size=500, steps=256, w_cls=1e3, w_contr=1e-3, w_tv=1e7,
                              parallel_batches=4),
        # 256 steps x 500 batches of 500 = 250k samples; ResNet-34 holds ~10 MB per sample in fp32,
        # so 2 x 500 samples (~10 GB) still fit a 16 GB T4 (benchmarks/throughput.py)
        "cifar10": dict(num_samples=250_000, batch_size=500, steps=256, parallel_batches=2),
        "svhn": dict(num_samples=250_000, batch_size=500, steps=256, parallel_batches=2),
    }

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SynthesisConfig":
        """The paper's settings for ``name`` (see ``PRESETS``), with ``overrides`` applied.

        >>> SynthesisConfig.preset("mnist", num_samples=1000).w_tv
        10000000.0
        """
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> "SynthesisConfig":
        return dataclasses.replace(self, **changes)

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    @property
    def snapshot_steps(self) -> list[int]:
        """After how many steps each kept iterate is taken; the last is always ``steps``.

        >>> SynthesisConfig(steps=64, snapshots=4).snapshot_steps
        [16, 32, 48, 64]
        """
        return [self.steps * j // self.snapshots for j in range(1, self.snapshots + 1)]

    def validate(self, num_classes: int) -> int:
        """Check every field against ``num_classes``; returns the group size ``K``."""
        k = num_classes if self.group_size is None else self.group_size
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 2 <= k <= num_classes:
            raise ValueError(
                f"group_size={k} must be between 2 and num_classes={num_classes}: a group holds "
                f"samples of distinct classes. Use group_size <= {num_classes} (or None for all classes)."
            )
        if self.batch_size % k:
            raise ValueError(
                f"batch_size={self.batch_size} must be a multiple of group_size={k}; "
                f"e.g. batch_size={max(k, self.batch_size // k * k)}"
            )
        for name in ("num_samples", "batch_size", "steps", "parallel_batches", "snapshots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        choices = {"method": ("cake", "lake"), "optimizer": ("sgd", "adam"),
                   "schedule": SCHEDULES, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.snapshots > self.steps:
            raise ValueError(f"snapshots={self.snapshots} must be <= steps={self.steps}: one per step at most")
        if self.bounds is not None and not (len(self.bounds) == 2 and self.bounds[0] < self.bounds[1]):
            raise ValueError(f"bounds must be (low, high) with low < high, got {self.bounds!r}")
        if self.lr <= 0 or self.lr_decades < 0:
            raise ValueError(f"need lr > 0 and lr_decades >= 0, got {self.lr} and {self.lr_decades}")
        return k


# ----------------------------------------------------------------------------- result


@dataclass(eq=False)
class SyntheticSet(torch.utils.data.Dataset):
    """Synthetic samples and what the teacher says about them; a ``Dataset`` of ``(x, soft_label)``.

    Samples are ordered by mini-batch, and inside a mini-batch by snapshot (earliest first).

    Attributes:
        x: samples, shape ``(N, *input_shape)``.
        soft_labels: the teacher's softmax on ``x``, shape ``(N, C)``; the student's targets.
        labels: the class each sample was pushed towards, shape ``(N,)``.
        step_size: the step size of each sample's mini-batch, shape ``(N,)``.
        step: how many gradient steps each sample has taken, shape ``(N,)``; ``steps``
            unless ``snapshots > 1`` kept earlier iterates.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("x", "soft_labels", "labels", "step_size", "step")

    x: Tensor
    soft_labels: Tensor
    labels: Tensor
    step_size: Tensor
    step: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.soft_labels[i]

    def __eq__(self, other: object) -> bool:
        """Same values in every field (``torch.equal``) and the same ``meta``."""
        if not isinstance(other, SyntheticSet):
            return NotImplemented
        return self.meta == other.meta and all(
            torch.equal(a, b) for a, b in zip(self.tensors().values(), other.tensors().values()))

    __hash__ = None  # mutable tensors: not hashable, like a list

    def tensors(self) -> dict[str, Tensor]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def subset(self, index: Tensor | slice) -> "SyntheticSet":
        return SyntheticSet(**{f: t[index] for f, t in self.tensors().items()}, meta=dict(self.meta))

    def filter_step_size(self, min: float = 0.0, max: float = math.inf) -> "SyntheticSet":
        """Keep samples whose batch's step size lies in ``[min, max]``."""
        return self.subset((self.step_size >= min) & (self.step_size <= max))

    @classmethod
    def cat(cls, parts: list["SyntheticSet"]) -> "SyntheticSet":
        return cls(**{f: torch.cat([getattr(p, f) for p in parts]) for f in cls.FIELDS},
                   meta=dict(parts[0].meta) if parts else {})

    def to(self, device: str | torch.device) -> "SyntheticSet":
        return SyntheticSet(**{f: t.to(device) for f, t in self.tensors().items()}, meta=dict(self.meta))

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically; read back with :meth:`load` (no pickled objects)."""
        atomic_save(self.tensors() | {"meta": _jsonable(self.meta)}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SyntheticSet":
        d = safe_load(path)
        return cls(**{f: d[f] for f in cls.FIELDS}, meta=d.get("meta", {}))


def _jsonable(meta: dict) -> dict:
    import json

    return json.loads(json.dumps(meta, default=str))


class NonFiniteLossError(FloatingPointError):
    """The synthesis loss became NaN or Inf. ``partial`` holds the batches finished before."""

    def __init__(self, message: str, partial: SyntheticSet | None = None):
        super().__init__(message)
        self.partial = partial


# ----------------------------------------------------------------------------- helpers


def _resolve_device(teacher: Callable, device: str | torch.device | None) -> torch.device:
    params = list(teacher.parameters()) if isinstance(teacher, nn.Module) else []
    own = params[0].device if params else None
    if device is None:
        return own or torch.device("cpu")
    device = torch.device(device)
    if own is not None and own.type != device.type:
        raise ValueError(f"the teacher is on {own} but device={device}; "
                         f"move it first with teacher.to('{device}') or pass device=None")
    return device


def check_teacher(teacher: Callable[[Tensor], Tensor], input_shape: tuple[int, ...],
                  num_classes: int, device: torch.device) -> None:
    """Fail early, with the fix in the message, if the teacher cannot be used as given."""
    if isinstance(teacher, nn.Module) and teacher.training:
        raise ValueError(
            "the teacher is in training mode; call teacher.eval() first. In training mode "
            "BatchNorm and Dropout mix samples of a batch and BatchNorm would update its statistics."
        )
    probe = torch.zeros((2, *input_shape), device=device)
    try:
        with torch.no_grad():
            out = teacher(probe)
    except Exception as e:  # the teacher's own error says why; we add what to change
        raise ValueError(
            f"the teacher rejected inputs of shape (N, {', '.join(map(str, input_shape))}) "
            f"({type(e).__name__}: {e}). Pass the input_shape the teacher was trained on, "
            "without the batch dimension, e.g. (1, 32, 32) for LeNet-5 or (2,) for a 2D toy MLP."
        ) from e
    if not isinstance(out, Tensor) or out.shape != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the teacher must return logits of shape (N, num_classes) = (2, {num_classes}) "
                         f"for 2 inputs, got {got}; check num_classes")
    if not torch.isfinite(out).all():
        raise ValueError("the teacher's output contains NaN or Inf on an all-zero input; "
                         "check its weights (e.g. a failed training run) before distilling it")


# ----------------------------------------------------------------------------- algorithm


def synthesize(
    teacher: Callable[[Tensor], Tensor],
    input_shape: tuple[int, ...],
    num_classes: int,
    config: SynthesisConfig | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> SyntheticSet:
    """Synthesise a data set on the teacher's decision boundaries (CAKE, or LAKE).

    Args:
        teacher: any differentiable classifier returning logits ``(N, C)``; an ``nn.Module``
            must be in eval mode. It is never modified: no parameter, flag or mode changes.
        input_shape: shape of one input without the batch dimension, e.g. ``(1, 32, 32)``.
        num_classes: ``C``, the number of the teacher's outputs.
        config: :class:`SynthesisConfig`; defaults to the reference defaults.
        device: where to compute; defaults to the teacher's device.
        progress: show a tqdm bar over mini-batches.
        checkpoint_dir: write each finished group of mini-batches there as an atomic shard
            and resume from it when called again with the same arguments.

    Returns:
        :class:`SyntheticSet` with ``num_samples`` samples in batch order.

    Raises:
        ValueError: bad config, a teacher in training mode or one that rejects ``input_shape``.
        NonFiniteLossError: the loss became NaN/Inf; says at which batch and step.
    """
    config = config or SynthesisConfig()
    group_size = config.validate(num_classes)
    input_shape = tuple(input_shape)
    device = _resolve_device(teacher, device)
    check_teacher(teacher, input_shape, num_classes, device)
    etas = step_sizes(config.num_batches, config.lr, config.lr_decades, config.schedule)

    rank, world = distributed.rank_and_world()
    run_dir = None
    if checkpoint_dir is not None:
        identity = {"config": dataclasses.asdict(config), "input_shape": list(input_shape),
                    "num_classes": num_classes,
                    "teacher": fingerprint(teacher)}
        run_dir = RunDirectory(checkpoint_dir, identity, kind="synthesis",
                               writer=f"rank{rank}" if world > 1 else None)
    elif world > 1:
        raise ValueError(f"synthesize runs in {world} processes (torch.distributed): pass checkpoint_dir= "
                         "on a file system every rank sees; each rank writes its shards there and reads the others'")
    distributed.barrier()  # every rank has opened the directory before any rank writes to it

    channels_last = takes_channel_last(teacher, input_shape, device)
    groups = [list(range(start, min(start + config.parallel_batches, config.num_batches)))
              for start in range(0, config.num_batches, config.parallel_batches)]
    # With a checkpoint directory the finished shards stay on disk until the result is assembled:
    # holding them (2.1 GB a rank at the paper's FashionMNIST size) beside the heap the
    # optimisation leaves behind got a torchrun rank killed on a 24-GB machine.
    parts: dict[int, SyntheticSet] = {}
    finished: list[list[int]] = []
    for batches in _progress(groups[rank::world], progress and rank == 0, config):
        name = _shard_name(batches)
        if run_dir is not None and run_dir.load(name) is not None:  # finished and intact
            finished.append(batches)
            continue
        try:
            part = _optimize_batches(teacher, batches, etas, config, input_shape, num_classes,
                                     group_size, device, channels_last)
        except NonFiniteLossError as e:
            kept = f" Finished shards are kept in {checkpoint_dir}." if run_dir else ""
            done = [_cut(parts[b[0]] if b[0] in parts else SyntheticSet(**run_dir.load(_shard_name(b))),
                         b[0], config) for b in finished]
            raise NonFiniteLossError(str(e) + kept, SyntheticSet.cat(done) if done else None) from None
        if run_dir:
            run_dir.save(name, part.tensors())
        else:
            parts[batches[0]] = part
        finished.append(batches)
        del part
    if world > 1:  # the other ranks' shards are read one at a time below
        distributed.barrier()
        run_dir.refresh()

    def shard(batches: list[int]) -> SyntheticSet:
        part = parts.pop(batches[0], None)  # dropped once copied: the result is the only full copy
        if part is None:
            saved = run_dir.load(_shard_name(batches))
            if saved is None:
                raise RuntimeError(f"{checkpoint_dir}/{_shard_name(batches)} is missing or broken after "
                                   "every rank finished; run the same command again to recompute it")
            part = SyntheticSet(**saved)
        return _cut(part, batches[0], config)

    result = _cat_into((shard(b) for b in groups), config.num_samples * config.snapshots)
    result.meta = {"config": dataclasses.asdict(config), "input_shape": list(input_shape),
                   "num_classes": num_classes}
    return result


def _cat_into(parts: Iterator[SyntheticSet], total: int) -> SyntheticSet:
    """``SyntheticSet.cat`` into tensors of ``total`` samples allocated once, one part at a time.

    A paper-size run keeps 4.2 GB of samples; concatenating a list of them needs twice that in
    each torchrun process, which is more than two processes have on a 24-GB machine.
    """
    out: dict[str, Tensor] = {}
    filled = 0
    for part in parts:
        for f, t in part.tensors().items():
            if f not in out:
                out[f] = t.new_empty((total, *t.shape[1:]))
            out[f][filled:filled + len(t)] = t
        filled += len(part)
    if filled != total:
        raise RuntimeError(f"the shards hold {filled} samples, the run {total}; run the same command again")
    return SyntheticSet(**out)


def _shard_name(batches: list[int]) -> str:
    return f"batches-{batches[0]:06d}-{batches[-1]:06d}.pt"


def _cut(part: SyntheticSet, first_batch: int, config: SynthesisConfig) -> SyntheticSet:
    """Drop the samples of the last mini-batch beyond ``num_samples`` (from every snapshot)."""
    keep = config.num_samples - first_batch * config.batch_size  # samples of this part to keep
    if keep * config.snapshots >= len(part):
        return part
    index = torch.arange(len(part))  # laid out (batch, snapshot, sample)
    batch, sample = index // (config.snapshots * config.batch_size), index % config.batch_size
    return part.subset(batch * config.batch_size + sample < keep)


def _progress(starts: list, enabled: bool, config: SynthesisConfig):
    from .progress import progress_bar

    return progress_bar(starts, enabled=enabled, unit="group",
                        desc=f"{config.method.upper()} synthesis ({config.parallel_batches} mini-batches a group)")


def _optimize_batches(teacher, batches: list[int], etas: Tensor, config: SynthesisConfig,
                      input_shape: tuple[int, ...], num_classes: int, group_size: int,
                      device: torch.device, channels_last: bool = False) -> SyntheticSet:
    """Run ``T`` steps on several mini-batches at once, each with its own step size."""
    starts = [initial_batch(b, config, input_shape, num_classes, group_size) for b in batches]
    x = torch.cat([s[0] for s in starts]).to(device)  # (P*B, *input_shape)
    y = torch.cat([s[1] for s in starts]).to(device)  # (P*B,)
    if channels_last:
        x = channel_last(x)
    if config.bounds is not None:
        x.clamp_(*config.bounds)
    n, per_sample = len(batches), (-1,) + (1,) * len(input_shape)
    eta = etas[batches].float().repeat_interleave(config.batch_size).to(device).view(per_sample)
    langevin = config.method == "lake"
    if langevin:
        noise_gens = [torch.Generator(device).manual_seed(batch_seed(config.seed, b, "langevin"))
                      for b in batches]
        noise_scale = (2 * eta).sqrt()
    if config.optimizer == "adam":
        m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
    first_bad = torch.full((n,), -1, dtype=torch.long, device=device)
    record = set(config.snapshot_steps[:-1])
    kept: list[tuple[Tensor, Tensor]] = []  # (x_t, softmax f(x_t)) for t in record

    scaler = InputGradScaler(uses_fp16(device, config.precision))
    logits = None

    def objective(x: Tensor) -> Tensor:  # (P,): each mini-batch's own loss
        nonlocal logits
        with autocast(device, config.precision):
            logits = teacher(x)
        return synthesis_objective(logits, x, y, group_size, config, n)

    for t in range(config.steps):
        x.requires_grad_(True)
        losses, grad = scaler.grad(objective, x)
        x = x.detach()
        if t in record:
            kept.append((x.clone(), logits.detach().float().softmax(-1)))
        if config.optimizer == "sgd":
            x.sub_(eta * grad)
        else:  # Adam with a per-sample learning rate, same formula as torch.optim.Adam
            m1.lerp_(grad, 1 - beta1)
            m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1, bias2 = 1 - beta1 ** (t + 1), 1 - beta2 ** (t + 1)
            x.sub_((eta / bias1) * m1 / (m2.sqrt() / math.sqrt(bias2) + eps))
        if langevin:
            noise = torch.cat([torch.randn((config.batch_size, *input_shape), generator=g, device=device)
                               for g in noise_gens])
            x.add_(noise_scale * noise)
        if config.bounds is not None:
            x.clamp_(*config.bounds)
        bad = ~torch.isfinite(losses.detach())
        first_bad = torch.where((first_bad < 0) & bad, torch.full_like(first_bad, t), first_bad)

    # one host sync per group of batches, not per step
    with torch.no_grad():
        with autocast(device, config.precision):
            logits = teacher(x)
        final = synthesis_objective(logits, x, y, group_size, config, n)
    first_bad = torch.where((first_bad < 0) & ~torch.isfinite(final), config.steps, first_bad).cpu()
    if (first_bad >= 0).any():
        i = int(torch.nonzero(first_bad >= 0)[0])
        raise NonFiniteLossError(
            f"the synthesis loss became NaN/Inf in batch {batches[i]} (step size {etas[batches[i]]:.3g}) "
            f"at step {int(first_bad[i])} of {config.steps}. Lower lr or the loss weights "
            "(w_cls, w_contr, w_tv), or use precision='fp32'."
        )
    kept.append((x, logits.float().softmax(-1)))

    def batch_major(t: Tensor) -> Tensor:  # (S, P*B, ...) -> (P*S*B, ...): each batch's snapshots together
        return t.cpu().view(len(kept), n, config.batch_size, *t.shape[2:]).transpose(0, 1).reshape(-1, *t.shape[2:])

    steps = torch.tensor(config.snapshot_steps)
    return SyntheticSet(
        x=batch_major(torch.stack([k[0].clone(memory_format=torch.contiguous_format) for k in kept])),
        soft_labels=batch_major(torch.stack([k[1] for k in kept])),
        labels=batch_major(y.expand(len(kept), -1)),
        step_size=etas[batches].float().repeat_interleave(len(kept) * config.batch_size),
        step=steps.repeat_interleave(config.batch_size).repeat(n),
    )
