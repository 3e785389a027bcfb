"""Train a student on a teacher's soft labels, or a teacher on real labels.

Nothing here is specific to CAKE: :func:`distill` takes any data set of ``(x, target)``
where the target is a probability vector (a :class:`~cake_mini.SyntheticSet`, or real
data relabelled by a teacher) and :func:`train_classifier` takes hard labels. Both run the
same loop: the reference recipe of the CAKE authors, SGD with momentum 0.9, weight decay
5e-4, batch 256 and a one-cycle learning-rate schedule, with 1 % of the training set held
out. Chapter 1 of the book walks through it.

Optionally ``teacher=`` relabels every (augmented) batch online with the teacher's
softmax, so augmentation never trains the student towards a stale label.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from . import distributed
from .checkpoint import RunDirectory, fingerprint, tensor_fingerprint
from .layout import channel_last, takes_channel_last
from .precision import PRECISIONS, autocast, uses_fp16
from .progress import progress_bar
from .losses import soft_cross_entropy


@dataclass
class DistillConfig:
    """The student's training recipe (also used for teachers by :func:`train_classifier`).

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per SGD step.
        lr: peak learning rate of the one-cycle schedule.
        momentum, weight_decay: SGD settings.
        div_factor, final_div_factor: one-cycle starts at ``lr / div_factor`` and ends at
            ``lr / div_factor / final_div_factor``.
        val_fraction: share of the training set held out to report validation loss.
        augment: ``None``, ``"shift"`` (random translation by up to ``shift_pixels``),
            ``"flip-shift"`` (also horizontal flips) or ``"randaugment"`` (torchvision's
            ``RandAugment`` on each normalised image, as the CAKE authors train their
            FashionMNIST teacher); images only.
        shift_pixels: largest translation of ``augment``.
        mixup: mix each sample with another of its batch, ``x = u x_i + (1 - u) x_j`` with
            ``u ~ U(0, 1)`` per sample; targets mix the same way, or are the teacher's
            softmax on the mixed input when ``teacher=`` relabels online.
        temperature: divides the teacher's logits when ``teacher=`` relabels online.
        seed: data order, hold-out split and augmentation.
        precision: ``"auto"`` (bf16 autocast on CUDA cards of compute capability >= 8, fp16
            with loss scaling on 7.x such as the T4, fp32 elsewhere; see ``precision.py``),
            ``"fp32"``, ``"bf16"``, ``"fp16"``.
        channels_last: on a CPU, hand one-channel image batches to the student and the online
            teacher with channel-last strides, as :func:`~cake_mini.synthesize` does: oneDNN's
            NHWC convolutions (a RandAugment + online-teacher LeNet-5-Half step: 78 -> 64 ms,
            ``benchmarks/student_step.py``). Same values, other rounding, so
            off by default and runs made without it keep their numbers. Ignored where it does
            not apply (GPU, several channels, no ``Conv2d``, a model that fails on such strides).
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    val_fraction: float = 0.01
    augment: str | None = None
    shift_pixels: int = 2
    mixup: bool = False
    temperature: float = 1.0
    seed: int = 0
    precision: str = "auto"
    channels_last: bool = False

    AUGMENTS: ClassVar[tuple] = (None, "shift", "flip-shift", "randaugment")

    def replace(self, **changes: Any) -> "DistillConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (the teacher's logits are divided by it), "
                             f"got {self.temperature}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.augment not in self.AUGMENTS:
            raise ValueError(f"augment must be one of {self.AUGMENTS}, got {self.augment!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class DistillResult:
    """What training produced.

    Attributes:
        model: the trained model (the same object that was passed in), in eval mode.
        history: one dict per epoch: ``epoch``, ``lr``, ``train_loss``, ``val_loss``,
            ``val_agreement`` (student's argmax equals the target's), ``eval_accuracy``
            (on ``eval_set``, when given), ``seconds``.
    """

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def eval_accuracy(self) -> float | None:
        """Accuracy on ``eval_set`` after the last epoch, or ``None``."""
        return self.history[-1].get("eval_accuracy") if self.history else None


# ----------------------------------------------------------------------------- data


def as_tensors(dataset) -> tuple[Tensor, Tensor]:
    """``(x, target)`` tensors of a data set; cheap for SyntheticSet and TensorDataset."""
    from .synthesis import SyntheticSet

    if isinstance(dataset, SyntheticSet):
        return dataset.x, dataset.soft_labels
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and isinstance(dataset[0], Tensor):
        return dataset[0], dataset[1]
    loader = torch.utils.data.DataLoader(dataset, batch_size=1024)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def augment_batch(x: Tensor, kind: str | None, shift: int, generator: torch.Generator,
                  keep: Tensor | None = None) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero padding) and, for ``"flip-shift"``,
    horizontal flips; or ``"randaugment"``. A different draw per sample. ``x``: ``(N, C, H, W)``.

    ``keep``: indices of the samples to return, e.g. one rank's slice of a global batch; the
    same images, and the same generator state afterwards, as augmenting all ``N`` and then
    indexing, without the work on the others.
    """
    if kind is None:
        return x if keep is None else x[keep]
    if x.ndim != 4:
        raise ValueError(f"augment={kind!r} needs images (N, C, H, W), got shape {tuple(x.shape)}")
    if kind == "randaugment":
        return rand_augment(x, generator, keep)
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * shift + 1, (2, n), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device) if kind == "flip-shift" else None
    if keep is not None:
        x, offsets, flip = x[keep], offsets[:, keep], None if flip is None else flip[keep]
        n = len(x)
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    if flip is not None:
        cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def rand_augment(x: Tensor, generator: torch.Generator, keep: Tensor | None = None) -> Tensor:
    """torchvision's ``RandAugment`` (2 operations of magnitude 9) on each image of ``(N, C, H, W)``.

    Applied to the images as they are, after normalisation, like the CAKE authors'
    ``Compose([..., Normalize(0.5, 0.5), RandAugment()])``: the colour operations then clamp
    to [0, 1], so most augmented images lose their -1 background. The draws come from
    ``generator``, so every rank of a distributed run augments alike.

    Bit for bit what ``v2.RandAugment()`` called on each image in turn gives under the same
    seed: the operations are drawn image by image in torchvision's order, then each
    (operation, magnitude) is applied once to every image that drew it (a RandAugment student
    step at batch 256: 137 -> 78 ms on a CPU, ``benchmarks/student_step.py``), on ``x``'s device. ``keep``: as in :func:`augment_batch`.
    """
    from torchvision.transforms import v2

    policy = v2.RandAugment()
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = _draw_operations(policy, len(x), tuple(x.shape[-2:]))
    if keep is not None:
        x, draws = x[keep], [draws[i] for i in keep.tolist()]
    for k in range(policy.num_ops):
        groups: dict[tuple[str, float], list[int]] = {}
        for i, operations in enumerate(draws):
            groups.setdefault(operations[k], []).append(i)
        out = torch.empty_like(x)
        for (name, magnitude), members in groups.items():
            idx = torch.tensor(members, device=x.device)

            def apply(images: Tensor) -> Tensor:
                return policy._apply_image_or_video_transform(images, name, magnitude,
                                                              interpolation=policy.interpolation, fill=policy._fill)

            # Sharpness blurs with a convolution whose batched result differs in the last bit
            out[idx] = torch.stack([apply(image) for image in x[idx]]) if name == "Sharpness" else apply(x[idx])
        x = out
    return x


def _draw_operations(policy, n: int, size: tuple[int, int]) -> list[list[tuple[str, float]]]:
    """``n`` images' operations and signed magnitudes, as ``n`` calls of ``RandAugment.forward``
    draw them from the global RNG.

    Each of its draws (an operation's index, a magnitude's sign) takes one value of the
    generator's stream, so both are read from two bulk draws of the same stream, not from
    ~700 scalar calls a batch of 256 (``test_randaugment_equals_torchvision_image_by_image``
    checks the stream against torchvision).
    """
    names = tuple(policy._AUGMENTATION_SPACE)
    most = 2 * policy.num_ops * n
    state = torch.get_rng_state()
    index = torch.randint(len(names), (most,)).tolist()
    torch.set_rng_state(state)
    uniform = torch.rand(most).tolist()
    draws, i = [], 0
    for _ in range(n):
        operations = []
        for _ in range(policy.num_ops):
            name = names[index[i]]
            magnitude, signed = _magnitude(type(policy), name, policy.num_magnitude_bins, policy.magnitude, *size)
            i += 1
            if signed:
                magnitude = -magnitude if uniform[i] <= 0.5 else magnitude
                i += 1
            operations.append((name, magnitude))
        draws.append(operations)
    return draws


@functools.lru_cache(maxsize=None)
def _magnitude(policy_type, name: str, bins: int, level: int, height: int, width: int) -> tuple[float, bool]:
    """RandAugment's unsigned magnitude of ``name`` at ``level`` and whether it takes a random sign."""
    magnitudes_fn, signed = policy_type._AUGMENTATION_SPACE[name]
    magnitudes = magnitudes_fn(bins, height, width)
    return (0.0, False) if magnitudes is None else (float(magnitudes[level]), signed)


def mix_batch(x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mixup with a uniform weight per sample: each sample blends with a random partner.

    ``target`` may be class indices ``(N,)`` (made one-hot) or probabilities ``(N, C)``.
    """
    n = len(x)
    u = torch.rand(n, generator=generator).to(x.device)
    partner = torch.randperm(n, generator=generator).to(x.device)
    if target.ndim == 1:
        target = torch.nn.functional.one_hot(target, num_classes).float()
    weight = u.view(-1, *[1] * (x.ndim - 1))
    mixed_x = weight * x + (1 - weight) * x[partner]
    return mixed_x, u[:, None] * target + (1 - u[:, None]) * target[partner]


def _default_device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    params = list(model.parameters())
    return params[0].device if params else torch.device("cpu")


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], dataset, *, device: str | torch.device | None = None,
             batch_size: int = 1024, precision: str = "auto") -> float:
    """Top-1 accuracy in ``[0, 1]`` of ``model`` on ``dataset`` (labels or probability targets).

    The model is evaluated in eval mode and its previous mode restored; ``precision`` as in
    :class:`DistillConfig` (``distill`` passes its own).
    """
    x, y = as_tensors(dataset)
    if y.ndim == 2:
        y = y.argmax(-1)
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
        device = _default_device(model, device)
    device = torch.device(device or "cpu")
    correct = 0
    for i in range(0, len(x), batch_size):
        with autocast(device, precision):
            logits = model(x[i:i + batch_size].to(device))
        correct += (logits.argmax(-1).cpu() == y[i:i + batch_size].cpu()).sum().item()
    if was_training:
        model.train()
    return correct / len(x)


# ----------------------------------------------------------------------------- training


def distill(
    student: nn.Module,
    train_set,
    config: DistillConfig | None = None,
    *,
    teacher: Callable[[Tensor], Tensor] | None = None,
    eval_set=None,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> DistillResult:
    """Train ``student`` to predict like the teacher on ``train_set``.

    Args:
        student: any classifier returning logits ``(N, C)``; trained in place.
        train_set: a :class:`~cake_mini.SyntheticSet`, a ``TensorDataset`` or any data set
            of ``(x, target)``; targets are probabilities ``(C,)`` (soft labels) or class indices.
        config: :class:`DistillConfig`; defaults to the reference recipe.
        teacher: if given, targets are recomputed as the teacher's softmax (with
            ``config.temperature``) on every augmented batch; ``train_set``'s targets are unused.
        eval_set: real labelled data to report accuracy on after every epoch.
        device: defaults to the student's device.
        progress: tqdm bar over epochs.
        checkpoint_dir: save after every epoch, resume from the last finished one.

    Under ``torchrun`` (see :mod:`cake_mini.distributed`) the student is wrapped in
    ``DistributedDataParallel``: every rank draws the same global batches and trains on its
    slice of each, rank 0 writes the checkpoints, and all ranks end with the same weights
    and buffers. BatchNorm layers normalise per rank during training (convert them with
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` on GPUs to normalise over the global
    batch); their running statistics are averaged over the ranks after every epoch, so the
    model every rank evaluates, saves and returns is the same.
    """
    config = config or DistillConfig()
    config.validate()
    device = _default_device(student, device)
    x, target = as_tensors(train_set)
    if len(x) < 2:
        raise ValueError(f"need at least 2 training samples, got {len(x)}")
    x, target = x.to(device), target.to(device)
    num_classes = target.shape[1] if target.ndim == 2 else int(target.max()) + 1

    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(x), generator=generator)
    n_val = int(round(config.val_fraction * len(x)))
    val_idx, train_idx = order[:n_val].to(device), order[n_val:].to(device)

    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_idx) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        div_factor=config.div_factor, final_div_factor=config.final_div_factor)
    result = DistillResult(student)
    scaler = torch.amp.GradScaler(device.type, enabled=uses_fp16(device, config.precision))

    rank, world = distributed.rank_and_world()
    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    run_dir, start_epoch = None, 0
    if checkpoint_dir is not None:
        identity = {"config": dataclasses.asdict(config), "train_data": tensor_fingerprint(x, target),
                    "student": type(student).__name__, "student_init": fingerprint(student),
                    "teacher": fingerprint(teacher) if teacher is not None else None}
        run_dir = RunDirectory(checkpoint_dir, identity, kind="distill")
        distributed.barrier()  # rank 0 writes only once every rank has opened the directory
        state = run_dir.load("state.pt")
        if state is not None:
            student.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            result.history = state["history"]
            start_epoch = len(result.history)

    channels_last = config.channels_last and all(
        takes_channel_last(m, tuple(x.shape[1:]), device) for m in (student, teacher) if m is not None)

    def targets_for(xb: Tensor, stored: Tensor) -> Tensor:
        if teacher is None:
            return stored
        with torch.no_grad(), autocast(device, config.precision):
            return (teacher(xb).float() / config.temperature).softmax(-1)

    epochs = progress_bar(range(start_epoch, config.epochs), enabled=progress and rank == 0,
                          desc="training", unit="epoch", total=config.epochs, initial=start_epoch)
    for epoch in epochs:
        t0 = time.perf_counter()
        student.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=generator).to(device)]
        total, count = torch.zeros((), device=device), 0
        for i in range(0, len(perm), config.batch_size):
            idx = perm[i:i + config.batch_size]
            # every rank draws the same global batch and trains on its slice; it augments only that
            # slice, unless mixup pairs samples across the whole batch
            mine = torch.arange(len(idx)).tensor_split(world)[rank] if world > 1 else None
            if config.mixup:
                xb = augment_batch(x[idx], config.augment, config.shift_pixels, generator)
                xb, yb = mix_batch(xb, target[idx], num_classes, generator)
                if mine is not None:
                    xb, yb = xb[mine], yb[mine]
            else:
                xb = augment_batch(x[idx], config.augment, config.shift_pixels, generator, mine)
                yb = target[idx] if mine is None else target[idx][mine]
            if channels_last:
                xb = channel_last(xb)
            yb = targets_for(xb, yb)
            with autocast(device, config.precision):
                logits = model(xb).float()
            if world == 1:
                loss = soft_cross_entropy(logits, yb)
            else:  # DDP averages gradients over ranks: this makes it the global batch's mean
                loss = soft_cross_entropy(logits, yb, reduction="sum") * (world / len(idx))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # skipped, and the scale lowered, when fp16 gradients overflowed
            scaler.update()
            scheduler.step()
            total += loss.detach() * (len(idx) / world)
            count += len(idx)
        train_loss = (distributed.all_reduce_sum(total) / count).item()
        if world > 1:
            distributed.average_buffers(student)
        if not torch.isfinite(torch.tensor(train_loss)):
            raise FloatingPointError(
                f"training loss became {train_loss} in epoch {epoch}; lower config.lr "
                f"(now {config.lr}) or check the inputs for NaN/Inf")
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": train_loss}
        if n_val:
            row |= _validate(student, x[val_idx], targets_for(x[val_idx], target[val_idx]), device,
                             config.precision)
        if eval_set is not None:
            row["eval_accuracy"] = evaluate(student, eval_set, device=device, precision=config.precision)
        row["seconds"] = time.perf_counter() - t0
        result.history.append(row)
        epochs.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if run_dir is not None and rank == 0:
            run_dir.save("state.pt", {
                "model": student.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "history": result.history})
    student.eval()
    return result


@torch.no_grad()
def _validate(model: nn.Module, x: Tensor, target: Tensor, device, precision) -> dict[str, float]:
    model.eval()
    losses, agree = [], []
    for i in range(0, len(x), 1024):
        with autocast(device, precision):
            logits = model(x[i:i + 1024]).float()
        t = target[i:i + 1024]
        losses.append(soft_cross_entropy(logits, t, reduction="sum"))
        labels = t.argmax(-1) if t.ndim == 2 else t
        agree.append((logits.argmax(-1) == labels).sum())
    return {"val_loss": (torch.stack(losses).sum() / len(x)).item(),
            "val_agreement": (torch.stack(agree).sum() / len(x)).item()}


def train_classifier(
    model: nn.Module,
    train_set,
    config: DistillConfig | None = None,
    *,
    eval_set=None,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> DistillResult:
    """Train a classifier (e.g. a teacher) on real labelled data with the same recipe.

    ``train_set`` yields ``(x, class_index)``. See :func:`distill` for the arguments.
    """
    return distill(model, train_set, config, eval_set=eval_set, device=device,
                   progress=progress, checkpoint_dir=checkpoint_dir)
