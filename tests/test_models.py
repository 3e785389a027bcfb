"""Tests for cake_mini.models: every architecture builds and maps inputs to (N, C) logits."""

import pytest
import torch
from torch import nn

from cake_mini.models import MODEL_NAMES, count_parameters, make_model

# name -> (in_channels, image_size) used to build and feed it
SHAPES = {
    "mlp": (1, 32), "lenet5": (1, 32), "lenet5-half": (3, 32), "lenet5-bn": (1, 32), "cnn": (1, 8),
    "resnet18": (3, 32), "resnet34": (3, 32), "vit": (1, 32), "vit8": (3, 32), "vit4": (3, 32),
}


def test_shapes_cover_all_names():
    assert set(SHAPES) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builds_and_gives_logits(name):
    torch.manual_seed(0)
    channels, size = SHAPES[name]
    model = make_model(name, num_classes=7, in_channels=channels, image_size=size)
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["lenet5", "lenet5-half", "cnn", "resnet18", "mlp"])
def test_input_gradients_flow(name):
    # synthesis optimises the inputs, so d logits / d x must be non-zero
    torch.manual_seed(0)
    channels, size = SHAPES[name]
    model = make_model(name, in_channels=channels, image_size=size).eval()
    x = torch.randn(2, channels, size, size, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mlp_for_toy_2d():
    model = make_model("mlp", num_classes=3, in_features=2, hidden=64, depth=3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 64), (64, 64), (64, 64), (64, 3)]
    assert model(torch.randn(5, 2)).shape == (5, 3)


def test_mlp_depth_zero_is_linear():
    model = make_model("mlp", num_classes=2, in_features=2, depth=0)
    assert count_parameters(model) == 2 * 2 + 2


def test_mlp_wrong_input_size_says_what_to_do():
    model = make_model("mlp", num_classes=3, in_features=2)
    with pytest.raises(ValueError, match="in_features=3"):
        model(torch.randn(4, 3))


def test_lenet5_half_widths_and_size():
    full, half = make_model("lenet5"), make_model("lenet5-half")
    assert full.widths == (6, 16, 120, 84)
    assert half.widths == (3, 8, 60, 42)
    convs = [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m.out_features for m in half.modules() if isinstance(m, nn.Linear)]
    assert convs == [3, 8, 60] and fcs == [42, 10]
    assert count_parameters(half) < count_parameters(full)
    assert count_parameters(make_model("lenet5", width=0.5)) == count_parameters(half)


def test_lenet5_width_sweep_grows():
    sizes = [count_parameters(make_model("lenet5", width=w)) for w in (0.25, 0.5, 1.0, 2.0)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_lenet5_other_image_sizes():
    model = make_model("lenet5", image_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="cnn"):
        make_model("lenet5", image_size=8)


def test_resnet_cifar_stem():
    model = make_model("resnet18", in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.in_channels == 1 and model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert count_parameters(make_model("resnet34", in_channels=3)) > count_parameters(model)


def test_vit_presets_and_options():
    assert len(make_model("vit8", in_channels=3).encoder.layers) == 8
    assert len(make_model("vit4", in_channels=3).encoder.layers) == 4
    small = make_model("vit", in_channels=1, depth=2, hidden_dim=32, num_heads=2, patch_size=8)
    assert small.conv_proj.in_channels == 1 and len(small.encoder.layers) == 2
    assert small(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(TypeError, match="depth"):
        make_model("vit8", depth=2)
    with pytest.raises(ValueError, match="patch_size"):
        make_model("vit", patch_size=5)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        make_model("alexnet")
    for name in MODEL_NAMES:
        assert name in str(info.value)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="widht"):
        make_model("lenet5", widht=2.0)


def test_count_parameters_trainable_only():
    model = make_model("lenet5-half")
    total = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 0
    assert count_parameters(model) == total


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(28, 28), (10, 10), (27, 13)])
def test_max_pool_2x2_matches_max_pool2d(size, channels_last):
    from cake_mini.models import MaxPool2x2

    torch.manual_seed(0)
    x = torch.relu(torch.randn(4, 6, *size).mul(2).round())  # ReLU zeros and many ties
    x[0, 0, 0, 0] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = nn.functional.max_pool2d(x, 2)
    with torch.no_grad():
        out = MaxPool2x2()(x)
    assert torch.equal(out.nan_to_num(-1.0), expected.nan_to_num(-1.0))
    assert out[0, 0, 0, 0].isnan()
    assert out.stride() == expected.stride()

    a, b = x.nan_to_num(0.0).requires_grad_(), x.nan_to_num(0.0).requires_grad_()
    grad = torch.randn_like(expected)
    MaxPool2x2()(a).backward(grad)
    nn.functional.max_pool2d(b, 2).backward(grad)
    assert torch.equal(a.grad, b.grad)


def test_lenet_teachers_relabel_with_the_fast_pool():
    from cake_mini.models import MaxPool2x2

    for name in ("lenet5", "lenet5-half", "cnn"):
        pools = [m for m in make_model(name, 10).modules() if isinstance(m, nn.MaxPool2d)]
        assert pools and all(isinstance(m, MaxPool2x2) for m in pools)
