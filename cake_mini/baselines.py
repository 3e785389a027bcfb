"""Two data-free methods CAKE is compared with: DeepInversion and DAFL.

Both make a training set for the student from a frozen teacher and nothing else, like
:func:`cake_mini.synthesize`, and both return a :class:`~cake_mini.SyntheticSet`, so
:func:`cake_mini.distill` trains a student on either. What they assume about the teacher
differs (chapter 10 of the book compares all three):

* **DeepInversion** (Yin et al., CVPR 2020) optimises inputs, as CAKE does, but its main
  term reads the teacher's BatchNorm layers: every layer should see batch statistics equal
  to its running statistics,

      L = w_ce * CE(y, f(jitter(x))) + w_bn * sum_l bn_statistics_loss_l + w_tv * TV(x) + w_l2 * mean(x^2)

  (+ ``w_competition`` * ADI's competition term, which needs a student). A teacher without
  BatchNorm leaves only cross-entropy and the image priors.
* **DAFL** (Chen et al., ICCV 2019) trains a generator ``G(z)`` whose images make the teacher
  confident (one-hot loss), strongly activated (activation loss) and balanced over classes
  (information entropy loss); the student then learns from ``G``'s images.

Data flow of each: noise (``x`` or ``z``) -> gradient steps through the frozen teacher ->
samples -> the teacher's softmax on them as soft labels. The teacher is never modified:
gradients are taken with ``torch.autograd.grad`` with respect to the inputs (or the
generator), hooks are removed when synthesis ends, and nothing switches its mode.

References: Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion",
CVPR 2020 (arXiv:1912.08795); Chen et al., "Data-Free Learning of Student Networks",
ICCV 2019 (arXiv:1904.01186).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import _reduce, total_variation
from .synthesis import SynthesisConfig, SyntheticSet, _resolve_device, batch_seed, check_teacher, initial_batch

__all__ = [
    "bn_statistics_loss", "competition_loss", "one_hot_loss", "activation_loss", "information_entropy_loss",
    "DeepInversionConfig", "deep_inversion", "batchnorm_layers",
    "DAFLConfig", "DAFLGenerator", "train_dafl_generator", "dafl",
]

# ----------------------------------------------------------------------------- losses


def bn_statistics_loss(features: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    r"""DeepInversion's feature-statistics term for one BatchNorm layer.

    .. math:: \lVert \mu_B - \mu_\text{run} \rVert_2 + \lVert \sigma^2_B - \sigma^2_\text{run} \rVert_2

    where :math:`\mu_B, \sigma^2_B` are the per-channel mean and biased variance of the
    batch, over every dimension but the channel dimension 1 (the statistics BatchNorm
    normalises with in training mode). Norms, not squared norms, as in the authors' code.

    Args:
        features: the layer's input, shape :math:`(N, C, *)` (e.g. :math:`(N, C, H, W)`).
        running_mean, running_var: the layer's running statistics, shape :math:`(C,)`.

    Returns:
        a scalar, zero exactly when the batch's statistics equal the running ones.

    Examples:
        >>> x = torch.tensor([[[1.0], [0.0]], [[3.0], [4.0]]])  # (N=2, C=2, L=1): means 2, 2; variances 1, 4
        >>> bn_statistics_loss(x, torch.tensor([2.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(0.)
        >>> bn_statistics_loss(x, torch.tensor([0.0, 0.0]), torch.tensor([1.0, 4.0]))  # ||(2, 2)||
        tensor(2.8284)
    """
    if features.ndim < 2 or running_mean.shape != (features.shape[1],) or running_var.shape != running_mean.shape:
        raise ValueError(f"need features (N, C, *) and running statistics (C,), got {tuple(features.shape)}, "
                         f"{tuple(running_mean.shape)} and {tuple(running_var.shape)}")
    dims = [0, *range(2, features.ndim)]
    mean = features.mean(dims)
    var = features.var(dims, unbiased=False)
    return torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(var - running_var)


def competition_loss(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 3.0) -> Tensor:
    r"""Adaptive DeepInversion's competition term: small where teacher and student disagree.

    :math:`1 - \mathrm{clamp}(\tfrac12 \mathrm{KL}(M \Vert P) + \tfrac12 \mathrm{KL}(M \Vert Q), 0, 1)`
    with :math:`P, Q` the student's and teacher's softmax at ``temperature``, :math:`M` their
    average, every probability clamped to :math:`[0.01, 0.99]` and the KL divergences averaged
    over the batch: the authors' code (a Jensen-Shannon-like divergence; the textbook JS
    divergence has the arguments the other way round). Minimising it moves samples to where
    the student does not yet agree with the teacher.

    Args:
        teacher_logits, student_logits: shape :math:`(N, C)`.
        temperature: divides both logits.

    Examples:
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> competition_loss(z, z)  # full agreement: nothing to gain
        tensor(1.)
    """
    if teacher_logits.shape != student_logits.shape or teacher_logits.ndim != 2:
        raise ValueError(f"teacher and student logits must both be (N, C), got {tuple(teacher_logits.shape)} "
                         f"and {tuple(student_logits.shape)}")
    p = F.softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    m = (0.5 * (p + q)).clamp(0.01, 0.99)
    p, q = p.clamp(0.01, 0.99), q.clamp(0.01, 0.99)
    divergence = 0.5 * F.kl_div(p.log(), m, reduction="batchmean") + 0.5 * F.kl_div(q.log(), m, reduction="batchmean")
    return 1.0 - divergence.clamp(0.0, 1.0)


def one_hot_loss(logits: Tensor, reduction: str = "mean") -> Tensor:
    r"""DAFL's one-hot loss: cross-entropy of the teacher's logits to their own argmax.

    Pushes generated images to be classified confidently, as real images are.

    Args:
        logits: teacher logits, shape :math:`(N, C)`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape :math:`(N,)`).

    Examples:
        >>> round(one_hot_loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]])).item(), 4)  # CE to labels (0, 1)
        0.1269
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    return F.cross_entropy(logits, logits.detach().argmax(-1), reduction=reduction)


def activation_loss(features: Tensor, reduction: str = "mean") -> Tensor:
    r"""DAFL's activation loss: :math:`-\frac{1}{D} \lVert f_\text{feat}(x) \rVert_1` per sample.

    Real images excite the teacher's features strongly; minimising this makes generated
    images do the same.

    Args:
        features: the teacher's features, shape :math:`(N, *)` with :math:`D` values per sample.
        reduction: ``"mean"`` (DAFL's value, ``-features.abs().mean()``), ``"sum"`` or
            ``"none"`` (shape :math:`(N,)`).

    Examples:
        >>> activation_loss(torch.tensor([[1.0, -3.0], [0.0, 0.0]]), reduction="none")
        tensor([-2., -0.])
    """
    return _reduce(-features.flatten(1).abs().mean(1), reduction)


def information_entropy_loss(logits: Tensor) -> Tensor:
    r"""DAFL's information entropy loss: minus the entropy of the batch's mean prediction.

    .. math:: \sum_c \bar p_c \log \bar p_c, \qquad \bar p = \frac{1}{N} \sum_i \mathrm{softmax}(z_i)

    Smallest (:math:`-\log C`) when the batch uses every class equally often, so minimising it
    balances the classes. Natural logarithm; DAFL's code takes ``log10``, i.e. this value
    divided by :math:`\ln 10` (see ``DAFLConfig.w_entropy``).

    Args:
        logits: teacher logits, shape :math:`(N, C)`.

    Returns:
        a scalar in :math:`[-\log C, 0]`.

    Examples:
        >>> round(information_entropy_loss(torch.eye(4) * 50).item(), 4)  # 4 confident samples, 4 classes: -log 4
        -1.3863
        >>> round(information_entropy_loss(torch.tensor([[50.0, 0.0], [50.0, 0.0]])).item(), 4)  # one class only
        -0.0
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    mean = F.softmax(logits, dim=1).mean(0)
    return torch.special.xlogy(mean, mean).sum()


# ----------------------------------------------------------------------------- DeepInversion


@dataclass
class DeepInversionConfig:
    """DeepInversion's budget and weights.

    Defaults are the CIFAR-10 "paper parameters" of the authors' code (Adam, lr 0.05, BN
    weight 10, no L2 prior, jitter of 2 pixels) except the budget, which is the caller's.

    Attributes:
        num_samples: samples to synthesise (rounded up to whole batches, then cut).
        batch_size: samples per batch; the BatchNorm term compares *this batch's* statistics,
            so batches are optimised one at a time. A multiple of the number of classes:
            labels come, as in CAKE, in groups with every class once.
        steps: Adam steps per batch (the authors: 2,000 on CIFAR-10).
        lr: Adam's learning rate on the inputs.
        w_ce: cross-entropy to each sample's target class.
        w_bn: the sum of :func:`bn_statistics_loss` over the teacher's BatchNorm layers.
        w_tv: :func:`cake_mini.losses.total_variation` (CAKE's prior, mean absolute differences).
            The authors' prior is an L2 norm of differences in 4 directions at weight 2.5e-5;
            0.05 gives the same gradient norm on N(0, I) inputs of CIFAR's shape, batch 256.
        w_l2: the mean square of the inputs (the authors' CIFAR setting: 0).
        jitter: each step rolls the batch by up to this many pixels in both directions.
        flip: each step flips the batch horizontally with probability 1/2 (the authors'
            ImageNet code; their CIFAR-10 code does not flip).
        w_competition: Adaptive DeepInversion's :func:`competition_loss`; needs ``student=``.
        competition_temperature: its temperature (the authors: 3).
        bounds: ``(low, high)``: clip samples after every step (the authors' ImageNet code clips
            to the pixel range); ``None`` leaves them unbounded (their CIFAR-10 code).
        seed: the noise, labels and jitter of batch ``m`` derive from ``(seed, m)``; the noise
            and labels equal CAKE's for the same seed and batch size.
    """

    num_samples: int = 1000
    batch_size: int = 100
    steps: int = 2000
    lr: float = 0.05
    w_ce: float = 1.0
    w_bn: float = 10.0
    w_tv: float = 0.05
    w_l2: float = 0.0
    jitter: int = 2
    flip: bool = True
    w_competition: float = 0.0
    competition_temperature: float = 3.0
    bounds: tuple[float, float] | None = None
    seed: int = 0

    @property
    def num_batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def validate(self, num_classes: int) -> None:
        """Check every field; raise ``ValueError`` saying what to change."""
        for name in ("num_samples", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % num_classes:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of num_classes={num_classes} "
                             f"(every class once per group); e.g. batch_size={max(1, self.batch_size // num_classes) * num_classes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("w_ce", "w_bn", "w_tv", "w_l2", "w_competition", "jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.competition_temperature <= 0:
            raise ValueError(f"competition_temperature must be > 0, got {self.competition_temperature}")
        if self.bounds is not None and not (len(self.bounds) == 2 and self.bounds[0] < self.bounds[1]):
            raise ValueError(f"bounds must be (low, high) with low < high, got {self.bounds!r}")


def batchnorm_layers(model: Callable) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (what DeepInversion reads)."""
    if not isinstance(model, nn.Module):
        return []
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


def _jitter(x: Tensor, config: DeepInversionConfig, generator: torch.Generator) -> Tensor:
    """Roll ``x`` (N, C, H, W) by random offsets of at most ``jitter`` pixels; with ``flip``, flip it half of the time."""
    if x.ndim != 4:
        return x
    dy, dx = (torch.randint(-config.jitter, config.jitter + 1, (2,), generator=generator) if config.jitter
              else torch.zeros(2, dtype=torch.long)).tolist()
    flip = bool(torch.rand((), generator=generator) < 0.5)
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return x.flip(3) if config.flip and flip else x


def deep_inversion(
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    config: DeepInversionConfig | None = None,
    *,
    student: nn.Module | None = None,
    allow_no_batchnorm: bool = False,
    device: str | torch.device | None = None,
) -> SyntheticSet:
    """Synthesise samples with DeepInversion (Yin et al., CVPR 2020).

    Every batch starts from ``N(0, I)`` noise and target classes (:func:`initial_batch`, as
    CAKE) and takes ``steps`` Adam steps on the inputs. Each step feeds the teacher a
    jittered (and maybe flipped) copy of the batch; forward hooks on the BatchNorm layers
    collect :func:`bn_statistics_loss` of that forward pass. The hooks are removed when the
    function returns or raises.

    Args:
        teacher: a classifier in eval mode returning logits ``(N, C)``; never modified.
        input_shape: one input without the batch dimension, e.g. ``(1, 32, 32)``.
        num_classes: ``C``.
        config: :class:`DeepInversionConfig`.
        student: for Adaptive DeepInversion (``config.w_competition > 0``): the current
            student, in eval mode, never modified. ADI alternates rounds of synthesis and
            student training; call this function once per round with the student so far.
        allow_no_batchnorm: run on a teacher without BatchNorm with cross-entropy and the
            priors only; ``meta["variant"]`` then says ``"priors-only"``.
        device: defaults to the teacher's.

    Returns:
        :class:`SyntheticSet` of ``num_samples``: ``x`` the final samples, ``soft_labels`` the
        teacher's softmax on them (unjittered), ``labels`` the target classes, ``step_size`` the
        Adam learning rate (the same for all), ``step`` = ``steps``; ``meta`` holds the method,
        variant, config, the number of BatchNorm layers and the mean of each loss term at the
        last step.

    Raises:
        ValueError: a bad config; a teacher in training mode or rejecting ``input_shape``; a
            teacher without BatchNorm (unless ``allow_no_batchnorm``); competition without a student.
    """
    config = config or DeepInversionConfig()
    config.validate(num_classes)
    layers = batchnorm_layers(teacher)
    if not layers and not allow_no_batchnorm:
        raise ValueError(
            "the teacher has no BatchNorm layers with running statistics, so DeepInversion's main term "
            "(batch statistics = running statistics) has nothing to match. Pass allow_no_batchnorm=True "
            "to run it with cross-entropy and the image priors only (labelled 'priors-only' in the "
            "result's meta), or use cake_mini.synthesize, which needs no BatchNorm.")
    if config.w_competition > 0 and student is None:
        raise ValueError("w_competition > 0 (Adaptive DeepInversion) needs the student: pass student=..., "
                         "or set w_competition=0 for plain DeepInversion")
    if student is not None and student.training:
        raise ValueError("the student is in training mode; call student.eval() first (synthesis must not "
                         "update its BatchNorm statistics)")
    input_shape = tuple(input_shape)
    device = _resolve_device(teacher, device)
    check_teacher(teacher, input_shape, num_classes, device)
    start = SynthesisConfig(num_samples=config.num_samples, batch_size=config.batch_size, seed=config.seed)

    bn_terms: list[Tensor] = []

    def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        bn_terms.append(bn_statistics_loss(inputs[0].float(), module.running_mean.float(), module.running_var.float()))

    weights = {"ce": config.w_ce, "bn": config.w_bn, "tv": config.w_tv, "l2": config.w_l2,
               "competition": config.w_competition}
    xs, ys = [], []
    last: dict[str, float] = {}  # mean over batches of each term at the last step
    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        for m in range(config.num_batches):
            x0, y = initial_batch(m, start, input_shape, num_classes, num_classes)
            if config.bounds is not None:
                x0.clamp_(*config.bounds)
            x = x0.to(device).requires_grad_(True)
            y = y.to(device)
            optimizer = torch.optim.Adam([x], lr=config.lr)
            jitter_gen = torch.Generator().manual_seed(batch_seed(config.seed, m, "jitter"))
            for _ in range(config.steps):
                xj = _jitter(x, config, jitter_gen)
                bn_terms.clear()
                logits = teacher(xj)
                terms = {"ce": F.cross_entropy(logits, y)}
                if layers:
                    terms["bn"] = torch.stack(bn_terms).sum()
                if config.w_tv and x.ndim >= 3:
                    terms["tv"] = total_variation(xj)
                if config.w_l2:
                    terms["l2"] = xj.pow(2).mean()
                if config.w_competition:
                    terms["competition"] = competition_loss(logits, student(xj), config.competition_temperature)
                loss = sum(weights[k] * v for k, v in terms.items())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"DeepInversion loss became {loss.item()} in batch {m}; lower lr "
                                             f"(now {config.lr}) or w_bn (now {config.w_bn})")
                (x.grad,) = torch.autograd.grad(loss, x)  # leaves the teacher's .grad alone
                optimizer.step()
                if config.bounds is not None:
                    with torch.no_grad():
                        x.clamp_(*config.bounds)
            for k, v in terms.items():
                last[k] = last.get(k, 0.0) + v.item() / config.num_batches
            xs.append(x.detach())
            ys.append(y)
    finally:
        for handle in handles:
            handle.remove()

    x = torch.cat(xs)[:config.num_samples]
    y = torch.cat(ys)[:config.num_samples]
    with torch.no_grad():
        soft = torch.cat([teacher(x[i:i + config.batch_size]).float().softmax(-1) for i in range(0, len(x), config.batch_size)])
    n = len(x)
    meta = {"method": "deepinversion", "variant": "batchnorm+priors" if layers else "priors-only",
            "batchnorm_layers": len(layers), "adaptive": config.w_competition > 0,
            "config": dataclasses.asdict(config), "input_shape": list(input_shape), "num_classes": num_classes,
            "final_losses": last}
    return SyntheticSet(x.cpu(), soft.cpu(), y.cpu(), torch.full((n,), config.lr), torch.full((n,), config.steps),
                        meta=meta)


# ----------------------------------------------------------------------------- DAFL


@dataclass
class DAFLConfig:
    """DAFL's generator, its training and how many samples to draw.

    Defaults are the authors' MNIST settings (latent 100, batch 512, Adam lr 0.2, loss
    weights 1 / 0.1 / 5) except the number of generator steps (theirs: 200 epochs x 120
    iterations = 24,000), which is the caller's budget.

    Attributes:
        num_samples: images drawn from the trained generator for the student.
        steps: generator updates.
        batch_size: images per generator update (and per drawing batch).
        latent_dim: size of ``z ~ N(0, I)``.
        channels: width of the generator (128 in DAFL); its cost grows with the square.
        lr: Adam's learning rate on the generator.
        w_one_hot, w_activation: weights of :func:`one_hot_loss`, :func:`activation_loss`.
        w_entropy: weight of :func:`information_entropy_loss` (natural log). DAFL's 5 multiplies
            an entropy in base 10, which is 5 / ln 10 here.
        feature_layer: name (as in ``teacher.named_modules()``) of the module whose output
            are the features for the activation loss; ``None`` takes the input of the
            teacher's last ``nn.Linear`` (the penultimate features). DAFL's LeNet-5 takes the
            120 outputs of its last conv, which is ``"features"`` for ``make_model("lenet5")``.
        seed: the generator's initialisation and every ``z``.
    """

    num_samples: int = 1000
    steps: int = 1000
    batch_size: int = 512
    latent_dim: int = 100
    channels: int = 128
    lr: float = 0.2
    w_one_hot: float = 1.0
    w_activation: float = 0.1
    w_entropy: float = 5 / math.log(10)
    feature_layer: str | None = None
    seed: int = 0

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` saying what to change."""
        for name in ("num_samples", "steps", "batch_size", "latent_dim", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the generator's BatchNorm and the entropy loss "
                             f"need a batch), got {self.batch_size}")
        if self.channels % 2:
            raise ValueError(f"channels must be even (the last hidden layer has channels / 2), got {self.channels}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("w_one_hot", "w_activation", "w_entropy"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class DAFLGenerator(nn.Module):
    """DAFL's generator: ``z`` ``(N, latent_dim)`` -> images ``(N, C, H, W)``, ``H, W`` divisible by 4.

    Linear to ``channels`` maps of ``H/4 x W/4``, BatchNorm, then twice: upsample x2,
    3x3 conv, BatchNorm, LeakyReLU(0.2) (``channels``, then ``channels / 2``); a 3x3 conv
    to ``C``, tanh, and a BatchNorm without affine parameters, so every batch comes out
    with mean 0 and variance 1 per channel. As in the authors' code, the hidden BatchNorms
    have ``eps=0.8`` (an argument meant as momentum in the DCGAN code this came from).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, channels: int = 128):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"DAFLGenerator needs image sides divisible by 4, got {tuple(image_shape)}")
        self.latent_dim, self.start = latent_dim, (channels, h // 4, w // 4)
        self.project = nn.Linear(latent_dim, channels * (h // 4) * (w // 4))
        self.net = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels, eps=0.8), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(channels, channels // 2, 3, padding=1), nn.BatchNorm2d(channels // 2, eps=0.8),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels // 2, c, 3, padding=1), nn.Tanh(), nn.BatchNorm2d(c, affine=False),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(-1, *self.start))  # (N, ch, H/4, W/4) -> (N, C, H, W)


def _feature_hook(teacher: nn.Module, layer: str | None, store: list[Tensor]):
    """Register a hook that appends the teacher's features to ``store``; returns its handle."""
    if layer is not None:
        modules = dict(teacher.named_modules())
        if layer not in modules:
            raise ValueError(f"feature_layer={layer!r} is not a module of the teacher; choose one of "
                             f"{[n for n in modules if n]}")
        return modules[layer].register_forward_hook(lambda mod, inp, out: store.append(out))
    linears = [m for m in teacher.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the teacher has no nn.Linear whose input could serve as features for DAFL's "
                         "activation loss; name a layer with DAFLConfig(feature_layer=...)")
    return linears[-1].register_forward_pre_hook(lambda mod, inp: store.append(inp[0]))


def train_dafl_generator(
    teacher: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    config: DAFLConfig | None = None,
    *,
    device: str | torch.device | None = None,
    log_every: int = 0,
) -> tuple[DAFLGenerator, list[dict[str, float]]]:
    """Train DAFL's generator against the frozen teacher; return it and a loss history.

    Each step draws ``batch_size`` latents, generates images, and minimises
    ``w_one_hot * one_hot_loss + w_activation * activation_loss + w_entropy * information_entropy_loss``
    of the teacher's outputs with Adam on the generator's parameters.

    DAFL trains the student in the same loop, on each step's images. The generator's loss
    does not involve the student (its images are detached for the student's loss), so the
    generator trains exactly as it would here; what differs is the student's data: here it
    learns afterwards from a fixed set drawn from the final generator (:func:`dafl`), with
    the same recipe as every other method, instead of from every intermediate generator.

    Args:
        log_every: record the loss terms every this many steps (and at the last); 0: only the last.

    Returns:
        ``(generator, history)``: the generator in training mode (DAFL draws its images with
        batch statistics); ``history`` has dicts with ``step``, ``one_hot``, ``activation``,
        ``entropy`` and ``total``.
    """
    config = config or DAFLConfig()
    config.validate()
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"DAFL generates images: input_shape must be (C, H, W), got {input_shape}")
    device = _resolve_device(teacher, device)
    check_teacher(teacher, input_shape, num_classes, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(batch_seed(config.seed, 0, "dafl-init"))
        generator = DAFLGenerator(input_shape, config.latent_dim, config.channels).to(device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr)
    params = list(generator.parameters())
    z_gen = torch.Generator().manual_seed(batch_seed(config.seed, 0, "dafl-z"))
    features: list[Tensor] = []
    history: list[dict[str, float]] = []
    handle = _feature_hook(teacher, config.feature_layer, features)
    try:
        for step in range(1, config.steps + 1):
            z = torch.randn((config.batch_size, config.latent_dim), generator=z_gen).to(device)
            features.clear()
            logits = teacher(generator(z)).float()
            terms = {"one_hot": one_hot_loss(logits), "activation": activation_loss(features[-1].float()),
                     "entropy": information_entropy_loss(logits)}
            loss = (config.w_one_hot * terms["one_hot"] + config.w_activation * terms["activation"]
                    + config.w_entropy * terms["entropy"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"DAFL generator loss became {loss.item()} at step {step}; lower lr "
                                         f"(now {config.lr})")
            grads = torch.autograd.grad(loss, params)  # leaves the teacher's .grad alone
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
            if step == config.steps or (log_every and step % log_every == 0):
                history.append({"step": step, **{k: v.item() for k, v in terms.items()}, "total": loss.item()})
    finally:
        handle.remove()
    return generator, history


def dafl(
    teacher: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    config: DAFLConfig | None = None,
    *,
    device: str | torch.device | None = None,
) -> SyntheticSet:
    """Train DAFL's generator (:func:`train_dafl_generator`), then draw ``num_samples`` images.

    Images are drawn ``batch_size`` at a time with the generator in training mode, as DAFL's
    student sees them, each labelled with the teacher's softmax.

    Returns:
        :class:`SyntheticSet`: ``x`` the generated images, ``soft_labels`` the teacher's
        softmax, ``labels`` its argmax (DAFL's one-hot target), ``step_size`` the generator's
        learning rate, ``step`` its number of updates; ``meta`` holds the method, config and
        the last loss terms.
    """
    config = config or DAFLConfig()
    generator, history = train_dafl_generator(teacher, input_shape, num_classes, config, device=device)
    device = next(generator.parameters()).device
    z_gen = torch.Generator().manual_seed(batch_seed(config.seed, 0, "dafl-sample"))
    xs, soft = [], []
    with torch.no_grad():
        for i in range(0, config.num_samples, config.batch_size):
            z = torch.randn((config.batch_size, config.latent_dim), generator=z_gen).to(device)
            x = generator(z)[:config.num_samples - i]
            xs.append(x.cpu())
            soft.append(teacher(x).float().softmax(-1).cpu())
    x, soft = torch.cat(xs), torch.cat(soft)
    n = len(x)
    meta: dict[str, Any] = {"method": "dafl", "config": dataclasses.asdict(config), "input_shape": list(input_shape),
                            "num_classes": num_classes, "final_losses": history[-1]}
    return SyntheticSet(x, soft, soft.argmax(-1), torch.full((n,), config.lr), torch.full((n,), config.steps),
                        meta=meta)
