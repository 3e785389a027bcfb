"""Classifier architectures used as teachers and students, built by name.

    model = make_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    logits = model(x)        # x: (N, in_channels, image_size, image_size) -> (N, num_classes)

Names (``MODEL_NAMES``):

* ``mlp``           fully connected ReLU net; flattens any input (N, ...). Toy 2D data:
                    ``make_model("mlp", num_classes=3, in_features=2, hidden=64, depth=3)``.
* ``lenet5``        LeNet-5 with ReLU and max pooling: conv 6@5x5, pool, conv 16@5x5, pool,
                    conv 120@5x5, fc 84, fc C. Option ``width`` scales every width.
* ``lenet5-half``   LeNet-5 at width 0.5 (3, 8, 60, 42), the paper's student.
* ``lenet5-bn``     LeNet-5 with BatchNorm after each conv: a small teacher whose running
                    statistics DeepInversion can match (chapter 10). Option ``width``.
* ``cnn``           small generic CNN for any image size >= 8 (e.g. sklearn digits 8x8).
* ``resnet18``, ``resnet34``   torchvision ResNets with a CIFAR stem (3x3 conv, no max pool).
* ``vit``, ``vit8``, ``vit4``  torchvision VisionTransformer; vit8/vit4 are the paper's
                    ViT-8 / ViT-4 (depth 8 / 4, otherwise the ``vit`` defaults).

torchvision is imported only when a ResNet or ViT is built.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MODEL_NAMES: tuple[str, ...] = (
    "mlp", "lenet5", "lenet5-half", "lenet5-bn", "cnn", "resnet18", "resnet34", "vit", "vit8", "vit4",
)


# -----------------------------------------------------------------------------
# small models written here


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` that, on a CPU without autograd, takes the max of four strided views.

    The same values as ``F.max_pool2d(x, 2)``, bit for bit; with autograd (training, the
    synthesis's input gradients) it is ``nn.MaxPool2d(2)``. PyTorch's CPU kernel is slow on
    the few-channel maps of LeNet: relabelling a batch of 128 FashionMNIST images with the
    LeNet-5 teacher spends ~3 ms in its first pooling layer, ~0.4 ms here
    (``benchmarks/student_step.py``).
    """

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.ndim != 4 or (x.requires_grad and torch.is_grad_enabled()):
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        return torch.maximum(torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]),
                             torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


class MLP(nn.Module):
    """``depth`` hidden layers of ``hidden`` ReLU units; input (N, ...) -> logits (N, C)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.in_features = in_features
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expected {self.in_features} input features per sample, got input of shape "
                f"{tuple(x.shape)} after flattening; build it with in_features={x.shape[1]}."
            )
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 (ReLU, max pooling) for (N, in_channels, H, W) with H, W >= 16 -> (N, C).

    At 32x32 the feature map before the 120-channel 5x5 conv is exactly 5x5 (classic LeNet-5).
    For other sizes an adaptive average pool resizes that map to 5x5 (an identity at 32x32),
    so e.g. raw 28x28 MNIST also works; the paper pads 28x28 images to 32x32 instead.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
                 batchnorm: bool = False):
        super().__init__()
        c1, c2, c3, f1 = (max(1, round(w * width)) for w in (6, 16, 120, 84))
        self.widths = (c1, c2, c3, f1)

        def bn(channels: int) -> list[nn.Module]:  # ``batchnorm``: BatchNorm2d between conv and ReLU
            return [nn.BatchNorm2d(channels)] if batchnorm else []

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), *bn(c1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(c1, c2, 5), *bn(c2), nn.ReLU(), MaxPool2x2(),
            nn.AdaptiveAvgPool2d(5),
            nn.Conv2d(c2, c3, 5), *bn(c3), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c3, f1), nn.ReLU(), nn.Linear(f1, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """conv3x3(w)-ReLU-maxpool2, conv3x3(2w)-ReLU, global average pool, linear.

    Input (N, in_channels, H, W) with H, W >= 8 (e.g. sklearn digits 1x8x8) -> (N, C).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -----------------------------------------------------------------------------
# torchvision models, adapted


def _resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    """torchvision ResNet-18/34 with a CIFAR stem: 3x3 stride-1 conv1, no max pool."""
    from torchvision.models import resnet18, resnet34

    model = {18: resnet18, 34: resnet34}[depth](num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    model.maxpool = nn.Identity()
    return model


def _vit(num_classes: int, in_channels: int, image_size: int, depth: int = 8, patch_size: int = 4,
         hidden_dim: int = 192, num_heads: int = 3, mlp_dim: int | None = None,
         dropout: float = 0.0) -> nn.Module:
    """torchvision VisionTransformer whose patch embedding takes ``in_channels`` channels."""
    from torchvision.models import VisionTransformer

    if image_size % patch_size:
        raise ValueError(f"vit: image_size {image_size} is not divisible by patch_size {patch_size}; "
                         f"pick a patch_size that divides it (e.g. 4 for 32x32 images).")
    if hidden_dim % num_heads:
        raise ValueError(f"vit: hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
                         f"pick num_heads among the divisors of hidden_dim.")
    model = VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=depth, num_heads=num_heads,
        hidden_dim=hidden_dim, mlp_dim=4 * hidden_dim if mlp_dim is None else mlp_dim,
        dropout=dropout, num_classes=num_classes,
    )
    proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
    nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / (in_channels * patch_size**2)))  # as torchvision
    nn.init.zeros_(proj.bias)
    model.conv_proj = proj
    return model


# -----------------------------------------------------------------------------
# public API


def _check_options(name: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"make_model({name!r}) got unexpected options {unknown}; "
                        f"it accepts {list(allowed) or 'no options'}.")


def make_model(name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 32,
               **options) -> nn.Module:
    """Build a fresh, randomly initialised classifier by name.

    Args:
        name: one of ``MODEL_NAMES``.
        num_classes: C, the number of logits.
        in_channels, image_size: input is (N, in_channels, image_size, image_size);
            ``mlp`` takes any (N, ...) with ``in_features`` values per sample.
        options: per model --
            mlp: ``in_features`` (default in_channels * image_size**2), ``hidden`` (64), ``depth`` (2);
            lenet5, lenet5-bn: ``width`` (float multiplier, 1.0); lenet5-half: none (it is width 0.5);
            cnn: ``width`` (32); resnet18/34: none;
            vit: ``depth`` (8), ``patch_size`` (4), ``hidden_dim`` (192), ``num_heads`` (3),
            ``mlp_dim`` (4 * hidden_dim), ``dropout`` (0.0); vit8/vit4: the same except ``depth``.

    Returns:
        an ``nn.Module`` mapping inputs to logits of shape (N, num_classes).
    """
    key = name.lower().replace("_", "-")
    if key not in MODEL_NAMES:
        raise ValueError(f"Unknown model name {name!r}; valid names are {', '.join(MODEL_NAMES)}.")

    if key == "mlp":
        _check_options(key, options, ("in_features", "hidden", "depth"))
        in_features = options.pop("in_features", in_channels * image_size**2)
        return MLP(in_features, num_classes, **options)

    if key in ("lenet5", "lenet5-half", "lenet5-bn", "cnn") and image_size < (8 if key == "cnn" else 16):
        hint = "" if key == "cnn" else " Use 'cnn' for small images such as 8x8 digits."
        raise ValueError(f"{key} needs image_size >= {8 if key == 'cnn' else 16}, got {image_size}.{hint}")
    if key == "lenet5":
        _check_options(key, options, ("width",))
        return LeNet5(num_classes, in_channels, **options)
    if key == "lenet5-half":
        _check_options(key, options, ())
        return LeNet5(num_classes, in_channels, width=0.5)
    if key == "lenet5-bn":
        _check_options(key, options, ("width",))
        return LeNet5(num_classes, in_channels, batchnorm=True, **options)
    if key == "cnn":
        _check_options(key, options, ("width",))
        return SmallCNN(num_classes, in_channels, **options)

    if key in ("resnet18", "resnet34"):
        _check_options(key, options, ())
        return _resnet(int(key[-2:]), num_classes, in_channels)

    vit_options = ("patch_size", "hidden_dim", "num_heads", "mlp_dim", "dropout")
    if key == "vit":
        _check_options(key, options, ("depth",) + vit_options)
        return _vit(num_classes, in_channels, image_size, **options)
    _check_options(key, options, vit_options)  # vit8 / vit4: depth is the preset
    return _vit(num_classes, in_channels, image_size, depth=int(key[3:]), **options)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (only those with requires_grad if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
