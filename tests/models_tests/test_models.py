"""Every registered model: shapes, gradients, and the module structure hooks rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.models import VGG, ConvNet1D, ModelInfo, build_model, list_models

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
SEQUENCE_SHAPES = [(1, 40)]
#: Input shapes each model must accept; a new model has to be added here.
SHAPES: dict[str, list[tuple[int, ...]]] = {
    "vgg": IMAGE_SHAPES,
    "fc": IMAGE_SHAPES + SEQUENCE_SHAPES,
    "resnet18": IMAGE_SHAPES,
    "wideresnet": IMAGE_SHAPES,
    "cnn1d": SEQUENCE_SHAPES + [(40,)],
    "mlp1d": SEQUENCE_SHAPES + [(40,)],
    "vit": IMAGE_SHAPES,
}
#: Small options for the big networks, to keep the tests fast.
FAST_OPTIONS: dict[str, dict[str, object]] = {
    "resnet18": {"width": 8},
    "wideresnet": {"depth": 10, "widen": 1},
}
#: (nn.ReLU, convolutions, nn.Linear) at the default options, as the docstrings state.
MODULE_COUNTS = {
    "vgg": (7, 6, 2),
    "fc": (2, 0, 3),
    "resnet18": (17, 20, 1),
    "wideresnet": (13, 16, 1),
    "cnn1d": (3, 3, 1),
    "mlp1d": (2, 0, 3),
}
#: Parameter counts at the default options for 10 classes and each model's typical input.
PARAMETERS = {
    "vgg": ((1, 28, 28), 436_202),
    "fc": ((1, 28, 28), 118_282),
    "resnet18": ((3, 32, 32), 11_173_962),
    "wideresnet": ((3, 32, 32), 10_961_370),
    "cnn1d": ((1, 40), 5_210),
    "mlp1d": ((1, 40), 15_210),
}
CASES = [(info.name, shape) for info in list_models() for shape in SHAPES[info.name]]


def _count(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_every_model_has_a_shape_table_entry() -> None:
    names = [info.name for info in list_models()]
    assert names == sorted(SHAPES)
    assert all(isinstance(info, ModelInfo) and info.description for info in list_models())


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_forward_and_backward(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, input_shape=shape, num_classes=7, options=FAST_OPTIONS.get(name))
    x = torch.randn(3, *shape)
    logits = model(x)
    assert logits.shape == (3, 7)
    assert logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODULE_COUNTS))
def test_module_counts_and_parameters(name: str) -> None:
    shape, parameters = PARAMETERS[name]
    model = build_model(name, input_shape=shape, num_classes=10)
    convolutions = _count(model, (nn.Conv1d, nn.Conv2d))
    assert (_count(model, nn.ReLU), convolutions, _count(model, nn.Linear)) == MODULE_COUNTS[name]
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_relu_is_a_distinct_module_called_once(name: str) -> None:
    shape = SHAPES[name][0]
    model = build_model(name, input_shape=shape, num_classes=3, options=FAST_OPTIONS.get(name))
    relus = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus})
    calls: list[nn.Module] = []
    for relu in relus:
        relu.register_forward_hook(lambda module, args, output: calls.append(module))
    model(torch.randn(2, *shape))
    assert sorted(map(id, calls)) == sorted(map(id, relus))


def test_vgg_filters_and_layer_order() -> None:
    model = build_model("vgg", input_shape=(1, 28, 28), num_classes=10)
    assert isinstance(model, VGG)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    order: list[type[nn.Module]] = []
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, args, out: order.append(type(m)))
    model(torch.randn(2, 1, 28, 28))
    block = [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d]
    assert order == block * 3 + [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert model.classifier.fc1.in_features == 128 * 3 * 3


def test_vgg_width_is_capped_at_512() -> None:
    model = build_model("vgg", input_shape=(1, 8, 8), num_classes=2, options={"width": 300})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [300, 300, 512, 512, 512, 512]


def test_vgg_too_many_blocks() -> None:
    with pytest.raises(ConfigError, match=r"model\.blocks.*at most 3") as info:
        build_model("vgg", input_shape=(1, 8, 8), num_classes=10, options={"blocks": 4})
    assert info.value.field == "model.blocks"
    assert build_model("vgg", input_shape=(1, 8, 8), num_classes=10)(torch.randn(1, 1, 8, 8)).shape


@pytest.mark.parametrize("name", ["vgg", "resnet18", "wideresnet"])
def test_image_models_reject_sequences(name: str) -> None:
    with pytest.raises(ConfigError, match="channels, height, width") as info:
        build_model(name, input_shape=(1, 40), num_classes=10)
    assert info.value.field == "model.name"


@pytest.mark.parametrize("depth", [4, 12, 15, 0])
def test_wideresnet_depth(depth: int) -> None:
    with pytest.raises(ConfigError, match=r"model\.depth"):
        build_model("wideresnet", input_shape=(3, 8, 8), num_classes=10, options={"depth": depth})


def test_wideresnet_structure() -> None:
    model = build_model(
        "wideresnet", input_shape=(3, 8, 8), num_classes=10, options={"depth": 22, "widen": 2}
    )
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][0] == 16
    assert model.linear.in_features == 128
    assert len(model.group1) == len(model.group2) == len(model.group3) == 3
    assert _count(model, nn.Dropout) == 0


def test_resnet18_stem_and_width() -> None:
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, options={"width": 16})
    assert model.conv1.out_channels == 16 and model.conv1.stride == (1, 1)
    assert model.linear.in_features == 128
    assert _count(model, nn.MaxPool2d) == 0


def test_cnn1d_flattened_size() -> None:
    model = build_model("cnn1d", input_shape=(1, 40), num_classes=10)
    assert isinstance(model, ConvNet1D)
    assert model.flat_features == 125 == model.linear.in_features
    with pytest.raises(ConfigError, match="length"):
        build_model("cnn1d", input_shape=(1, 28, 28), num_classes=10)


def test_mlp1d_residual() -> None:
    model = build_model("mlp1d", input_shape=(1, 40), num_classes=10, options={"hidden": 16})
    with torch.no_grad():
        model.linear2.weight.zero_()
        model.linear2.bias.fill_(-1.0)  # relu2(linear2(h1)) == 0, so h2 == h1
    x = torch.randn(4, 1, 40)
    expected = model.linear3(model.relu1(model.linear1(x.flatten(1))))
    torch.testing.assert_close(model(x), expected)
