"""build_model: presets, option checks and custom ``module:function`` models."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.models import BATCHNORM_PRESETS, MODELS, build_model

DIGITS = (1, 8, 8)


def _batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("preset", sorted(BATCHNORM_PRESETS))
def test_batchnorm_preset_is_applied(preset: str) -> None:
    momentum, eps = BATCHNORM_PRESETS[preset]
    for name in ("vgg", "wideresnet"):
        options = {"depth": 10, "widen": 1} if name == "wideresnet" else None
        model = build_model(
            name, input_shape=DIGITS, num_classes=10, batchnorm=preset, options=options
        )
        layers = _batchnorms(model)
        assert layers and all(bn.momentum == momentum and bn.eps == eps for bn in layers)


def test_keras_preset_values() -> None:
    model = build_model("vgg", input_shape=DIGITS, num_classes=10, batchnorm="keras")
    bn = _batchnorms(model)[0]
    assert (bn.momentum, bn.eps) == (0.01, 1e-3)


def test_unknown_preset() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'keras'") as info:
        build_model("vgg", input_shape=DIGITS, num_classes=10, batchnorm="kears")
    assert info.value.field == "model.batchnorm"


def test_unknown_model_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet18'") as info:
        build_model("resnet81", input_shape=DIGITS, num_classes=10)
    assert info.value.field == "model.name"


def test_unknown_option_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'blocks'") as info:
        build_model("vgg", input_shape=DIGITS, num_classes=10, options={"blocs": 2})
    assert info.value.field == "model.blocs"
    assert "blocks, dense, width" in str(info.value)


@pytest.mark.parametrize("key", ["input_shape", "num_classes", "bn_momentum", "bn_eps"])
def test_builder_arguments_are_not_options(key: str) -> None:
    with pytest.raises(UnknownNameError, match=rf"model\.{key}"):
        build_model("vgg", input_shape=DIGITS, num_classes=10, options={key: 1})


@pytest.mark.parametrize("value", ["3", True, 2.0, None])
def test_wrong_option_type(value: object) -> None:
    with pytest.raises(ConfigError, match="must be an integer") as info:
        build_model("vgg", input_shape=DIGITS, num_classes=10, options={"blocks": value})
    assert info.value.field == "model.blocks"
    assert not isinstance(info.value, UnknownNameError)


@pytest.mark.parametrize(
    ("name", "option"),
    [("vgg", "dense"), ("fc", "layers"), ("mlp1d", "hidden"), ("wideresnet", "widen")],
)
def test_option_below_range(name: str, option: str) -> None:
    shape = (40,) if name == "mlp1d" else DIGITS
    with pytest.raises(ConfigError, match=rf"model\.{option}.*≥ 1"):
        build_model(name, input_shape=shape, num_classes=10, options={option: 0})


def test_options_are_forwarded() -> None:
    model = build_model(
        "fc", input_shape=DIGITS, num_classes=4, options={"layers": 3, "neurons": 9}
    )
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 9), (9, 9), (9, 9), (9, 4)]


def test_every_registered_model_is_listed_under_its_name() -> None:
    assert all(MODELS.get(name).name == name for name in MODELS.names())


@pytest.fixture()
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"custom_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent("""
        from __future__ import annotations

        import math

        import torch
        from torch import nn


        def tiny(*, input_shape, num_classes, hidden: int = 4, sizes: tuple[int, ...] = ()):
            net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                                nn.ReLU(), nn.Linear(hidden, num_classes))
            net.sizes = sizes
            return net


        def flexible(input_shape, num_classes, **options):
            net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
            net.options = options
            return net


        def needs_more(*, input_shape, num_classes, depth: int):
            return nn.Identity()


        def not_a_model(*, input_shape, num_classes):
            return "a string"


        def scaled(*, input_shape, num_classes, scale: float = 1.0):
            return tiny(input_shape=input_shape, num_classes=num_classes)


        def wrong_outputs(*, input_shape, num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 7))


        def no_parameters(*, input_shape, num_classes):
            return nn.Flatten()


        def frozen(*, input_shape, num_classes):
            net = tiny(input_shape=input_shape, num_classes=num_classes)
            net.requires_grad_(False)
            return net


        def raises(*, input_shape, num_classes):
            raise ValueError("only 3 channels")


        def exits(*, input_shape, num_classes):
            raise SystemExit(4)


        def bad_forward(*, input_shape, num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(10, num_classes))


        class Pair(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.linear = nn.Linear(1, num_classes)

            def forward(self, x):
                return self.linear(x.flatten(1)[:, :1]), x


        def returns_pair(*, input_shape, num_classes):
            return Pair(num_classes)


        class Counting(nn.Module):
            def __init__(self, input_shape, num_classes):
                super().__init__()
                self.bn = nn.BatchNorm2d(input_shape[0])
                self.drop = nn.Dropout(0.5)
                self.linear = nn.Linear(math.prod(input_shape), num_classes)
                self.noise = 0.0

            def forward(self, x):
                self.noise = float(torch.rand(()))  # draws from the global generator
                return self.linear(self.drop(self.bn(x)).flatten(1))


        def counting(*, input_shape, num_classes):
            return Counting(input_shape, num_classes)


        NOT_CALLABLE = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_custom_model_with_options(custom_module: str) -> None:
    model = build_model(
        f"{custom_module}:tiny",
        input_shape=DIGITS,
        num_classes=3,
        options={"hidden": 5, "sizes": [1, 2]},
    )
    assert model[1].out_features == 5 and model[3].out_features == 3
    assert model.sizes == (1, 2)


def test_custom_model_checks_options(custom_module: str) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'hidden'"):
        build_model(
            f"{custom_module}:tiny", input_shape=DIGITS, num_classes=3, options={"hiden": 5}
        )
    with pytest.raises(ConfigError, match="expected a list of integers"):
        build_model(
            f"{custom_module}:tiny", input_shape=DIGITS, num_classes=3, options={"sizes": [1, "2"]}
        )


def test_custom_model_with_var_keywords(custom_module: str) -> None:
    model = build_model(
        f"{custom_module}:flexible",
        input_shape=DIGITS,
        num_classes=3,
        options={"anything": 1, "bn_eps": 0.5},
    )
    assert model.options == {"anything": 1, "bn_eps": 0.5}


def test_custom_model_missing_argument(custom_module: str) -> None:
    with pytest.raises(ConfigError, match="depth") as info:
        build_model(f"{custom_module}:needs_more", input_shape=DIGITS, num_classes=3)
    assert info.value.field == "model.name"


@pytest.mark.parametrize(
    ("attribute", "message"),
    [("not_a_model", "returned a str"), ("NOT_CALLABLE", "not callable"), ("missing", "has no")],
)
def test_custom_model_errors(custom_module: str, attribute: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_model(f"{custom_module}:{attribute}", input_shape=DIGITS, num_classes=3)
    assert info.value.field == "model.name"
    assert "package.module:function" in str(info.value)


@pytest.mark.parametrize("spec", ["no_such_module_xyz:f", ":f", "os:"])
def test_custom_model_bad_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="package.module:function") as info:
        build_model(spec, input_shape=DIGITS, num_classes=3)
    assert info.value.field == "model.name"


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("wrong_outputs", "returns outputs of shape (1, 7); expected (N, 3) for this dataset's 3"),
        ("no_parameters", "trainable parameters; it has none"),
        ("frozen", "trainable parameters; it has none"),
        ("raises", "It raised ValueError: only 3 channels"),
        ("exits", "It exited (sys.exit(4))"),
        ("bad_forward", "its first forward pass on one example raised RuntimeError"),
        ("returns_pair", "returns one tensor of logits; it returns a tuple"),
    ],
)
def test_custom_model_that_cannot_train_here(
    custom_module: str, attribute: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(f"{custom_module}:{attribute}", input_shape=DIGITS, num_classes=3)
    assert info.value.field == "model.name"
    assert info.value.value == f"{custom_module}:{attribute}"
    assert message in str(info.value)


def test_custom_model_check_leaves_no_trace(custom_module: str) -> None:
    """The build-time forward pass changes neither the global generator, nor the model's
    mode, BatchNorm statistics or weights."""
    torch.manual_seed(5)
    model = build_model(f"{custom_module}:counting", input_shape=DIGITS, num_classes=3)
    after_build = torch.get_rng_state()
    torch.manual_seed(5)
    plain = importlib.import_module(custom_module).counting(input_shape=DIGITS, num_classes=3)
    assert torch.equal(after_build, torch.get_rng_state())
    assert model.training and model.noise != 0.0  # it did run once
    assert int(model.bn.num_batches_tracked) == 0
    state, expected = model.state_dict(), plain.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "-inf"])
def test_custom_float_option_must_be_finite(custom_module: str, value: object) -> None:
    with pytest.raises(ConfigError, match="must be a finite number") as info:
        build_model(
            f"{custom_module}:scaled", input_shape=DIGITS, num_classes=3, options={"scale": value}
        )
    assert info.value.field == "model.scale"
    build_model(f"{custom_module}:scaled", input_shape=DIGITS, num_classes=3, options={"scale": 2})
