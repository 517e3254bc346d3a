"""The optimizer factory: AdamW and Nesterov against torch, weight decay that spares biases and
normalisation layers, gradient clipping on the gradient the base optimizer applies, and every
option reaching the base optimizer through each perturbation wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.config import OptimizerConfig, load_config
from dicelab.optim import PERTURBATIONS, PerturbedOptimizer, build_optimizer
from dicelab.optim.factory import parameter_groups

from .test_perturbation import Batch, assert_same, batches, toy_model, train_base, train_perturbed

#: toy_model's parameters: conv (0), BatchNorm (1), linear (4).
BIASES = {"0.bias", "1.bias", "4.bias"}
NORM = {"1.weight", "1.bias"}


def optimizer_config(*settings: str) -> OptimizerConfig:
    """The resolved ``optimizer`` section with ``optimizer.<setting>`` overrides (on a
    batch-mean loss, which the adaptive perturbations require)."""
    overrides = [f"optimizer.{s}" for s in settings]
    return load_config(overrides=[*overrides, "train.reduction=mean"]).optimizer


def train_built(model: nn.Module, data: list[Batch], opt: torch.optim.Optimizer) -> nn.Module:
    if isinstance(opt, PerturbedOptimizer):
        return train_perturbed(model, data, opt)
    return train_base(model, data, lambda _params: opt)


def test_adamw_is_torchs_adamw() -> None:
    config = optimizer_config("name=adamw", "lr=0.01", "weight_decay=0.1", "beta1=0.8")
    model = toy_model()
    opt = build_optimizer(config, model)
    assert type(opt) is torch.optim.AdamW
    data = batches(4)
    expected = train_base(
        toy_model(),
        data,
        lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.999), eps=1e-7, weight_decay=0.1),
    )
    assert_same(train_built(model, data, opt), expected)


def test_nesterov_is_torchs_nesterov_sgd() -> None:
    settings = ("name=momentum", "lr=0.05", "momentum=0.8", "weight_decay=1e-3")
    data = batches(4)
    expected = train_base(
        toy_model(),
        data,
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True),
    )
    nesterov = toy_model()
    train_built(
        nesterov, data, build_optimizer(optimizer_config(*settings, "nesterov=true"), nesterov)
    )
    assert_same(nesterov, expected)
    heavy_ball = toy_model()
    train_built(heavy_ball, data, build_optimizer(optimizer_config(*settings), heavy_ball))
    assert not torch.equal(heavy_ball[0].weight, nesterov[0].weight)


@pytest.mark.parametrize(
    "settings", [("name=sgd",), ("name=adam",), ("name=momentum", "momentum=0")]
)
def test_nesterov_without_momentum_is_left_off(settings: tuple[str, ...]) -> None:
    """Nesterov is unused without momentum (a search may switch the optimizer between trials
    of one base configuration), instead of torch's refusal."""
    opt = build_optimizer(optimizer_config(*settings, "nesterov=true"), toy_model())
    assert opt.param_groups[0].get("nesterov", False) is False


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize(
    ("exclude", "exempt"),
    [("[bias, norm]", BIASES | NORM), ("[norm]", NORM), ("[bias]", BIASES), ("[]", set())],
)
def test_excluded_parameters_get_no_weight_decay(
    name: str, exclude: str, exempt: set[str]
) -> None:
    """With zero gradients a step is weight decay alone: the excluded parameters stay put, the
    others move (SGD: w·(1 − lr·wd))."""
    config = optimizer_config(
        f"name={name}", "lr=0.1", "weight_decay=0.5", f"decay_exclude={exclude}"
    )
    model = toy_model()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    opt = build_optimizer(config, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for key, p in model.named_parameters():
        if key in exempt:
            assert torch.equal(p, before[key]), key
        else:
            assert not torch.equal(p, before[key]), key
            if name == "sgd":
                torch.testing.assert_close(p, before[key] * (1 - 0.1 * 0.5))


def test_norm_means_every_normalisation_layer_and_groups_keep_model_order() -> None:
    model = nn.Sequential(
        nn.Linear(4, 4),
        nn.LayerNorm(4),
        nn.GroupNorm(2, 4),
        nn.RMSNorm(4),
        nn.BatchNorm1d(4),
        nn.Linear(4, 4, bias=False),
    )
    config = optimizer_config("weight_decay=0.1", "decay_exclude=[norm]")
    decay, exempt = parameter_groups(model, config)
    assert isinstance(decay, dict) and isinstance(exempt, dict)
    names = {id(p): k for k, p in model.named_parameters()}
    assert [names[id(p)] for p in decay["params"]] == ["0.weight", "0.bias", "5.weight"]
    assert [names[id(p)] for p in exempt["params"]] == [
        "1.weight",
        "1.bias",
        "2.weight",
        "2.bias",
        "3.weight",
        "4.weight",
        "4.bias",
    ]
    assert exempt["weight_decay"] == 0.0 and "weight_decay" not in decay


def test_without_decay_there_is_one_group_in_model_order() -> None:
    """Nothing to exclude from (weight_decay 0) keeps the single group of before, so the noise
    of a perturbation optimizer lands on the same parameters as without decay_exclude."""
    model = toy_model()
    params = parameter_groups(model, optimizer_config("decay_exclude=[bias, norm]"))
    assert params == list(model.parameters())


@pytest.mark.parametrize(
    ("name", "kind"), [("momentum", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
@pytest.mark.parametrize("perturbation", list(PERTURBATIONS))
def test_every_option_reaches_the_base_optimizer_of_every_wrapper(
    perturbation: str, name: str, kind: type
) -> None:
    config = optimizer_config(
        f"name={name}",
        "nesterov=true",
        "weight_decay=5e-4",
        "decay_exclude=[bias, norm]",
        f"perturbation={perturbation}",
    )
    model = toy_model()
    opt = build_optimizer(config, model, total_steps=10)
    assert isinstance(opt, PerturbedOptimizer)
    base = opt.base_optimizer
    assert type(base) is kind
    assert base.param_groups is opt.param_groups
    decay, exempt = base.param_groups
    names = {id(p): k for k, p in model.named_parameters()}
    assert {names[id(p)] for p in exempt["params"]} == BIASES | NORM
    assert decay["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0.0
    if name == "momentum":
        assert all(g["nesterov"] and g["momentum"] == 0.9 for g in base.param_groups)


def _one_update(
    perturbation: str, clip: float | None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One update of plain SGD (lr 0.1) under ``perturbation``: the gradient the base optimizer
    applied, and the weight change."""
    settings = ["lr=0.1", f"perturbation={perturbation}", "sigma=0.05"]
    if clip is not None:
        settings.append(f"clip_grad_norm={clip}")
    model = toy_model()
    opt = build_optimizer(optimizer_config(*settings), model, total_steps=4, seed=3)
    applied: list[torch.Tensor] = []
    stepper = opt.base_optimizer if isinstance(opt, PerturbedOptimizer) else opt
    stepper.register_step_pre_hook(  # runs after the clipping hook
        lambda _opt, _args, _kwargs: applied.extend(p.grad.clone() for p in model.parameters())
    )
    before = [p.detach().clone() for p in model.parameters()]
    consecutive = perturbation in ("mrwp", "marwp")  # one update spends two batches
    train_built(model, batches(2 if consecutive else 1), opt)
    return applied, [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([t.norm() for t in tensors])))


@pytest.mark.parametrize("perturbation", ["none", *PERTURBATIONS])
def test_clipping_scales_the_final_gradient_the_base_optimizer_applies(perturbation: str) -> None:
    """The clipped update is the unclipped run's final gradient (m-RWP's λ-mix of the two
    gradients, SAM's gradient at w + ε) scaled to norm c; clipping the perturbed gradient
    before the mix would give another direction."""
    raw, _ = _one_update(perturbation, None)
    clip = _norm(raw) / 2
    applied, change = _one_update(perturbation, clip)
    assert _norm(applied) == pytest.approx(clip, rel=1e-5)
    for a, g, dw in zip(applied, raw, change, strict=True):
        torch.testing.assert_close(a, g * (clip / _norm(raw)), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(dw, -0.1 * a, rtol=1e-5, atol=1e-7)


def test_clipping_below_the_norm_changes_nothing() -> None:
    raw, change = _one_update("none", None)
    applied, clipped_change = _one_update("none", 2 * _norm(raw))
    for a, g, dw, dw2 in zip(applied, raw, change, clipped_change, strict=True):
        assert torch.equal(a, g) and torch.equal(dw, dw2)
