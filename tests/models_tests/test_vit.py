"""The small Vision Transformer: shapes, option checks, attention, the modules techniques
find, determinism, training from the CLI on mnist5k, and every perturbation optimizer on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dicelab.cli import main
from dicelab.config import OptimizerConfig, load_config
from dicelab.data import DataBundle, load_data
from dicelab.exceptions import ConfigError
from dicelab.models import ViT, build_model
from dicelab.models.vit import Attention
from dicelab.optim import PERTURBATIONS, RWP, PerturbedOptimizer, build_optimizer
from dicelab.stages import Context
from dicelab.techniques.model.dropconnect import Dropconnect
from dicelab.techniques.model.dropout import Dropout

#: A ViT small enough for many optimizer steps in a test.
TINY = {"dim": 16, "depth": 2, "heads": 2}


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.fixture(scope="module")
def mnist5k_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the mnist5k cache (built from the copy shipped with dicelab)."""
    root = tmp_path_factory.mktemp("mnist5k")
    load_data("mnist5k", root=root, split="final")
    return root


@pytest.fixture(scope="module")
def mnist5k(mnist5k_root: Path) -> DataBundle:
    """The first 128 training images of mnist5k (all ten classes, the split is stratified)."""
    return load_data("mnist5k", root=mnist5k_root, split="final", train_limit=128)


# -- shapes and structure -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "patch", "tokens"), [((1, 28, 28), 7, 16), ((3, 32, 32), 4, 64), ((1, 8, 8), 4, 4)]
)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_shapes(shape: tuple[int, ...], patch: int, tokens: int, pool: str) -> None:
    """28×28 images get 7×7 patches and 32×32 (and 8×8) 4×4 by default; logits have the
    number of classes and every parameter gets a gradient."""
    model = build_model("vit", input_shape=shape, num_classes=7, options={**TINY, "pool": pool})
    assert isinstance(model, ViT)
    assert model.embed.patch == patch
    assert model.embed.pos_embed.shape == (1, tokens + (pool == "cls"), 16)
    assert (model.embed.cls_token is not None) == (pool == "cls")
    logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 7) and logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_explicit_patch_size() -> None:
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=10, options={"patch_size": 4})
    assert model.embed.pos_embed.shape == (1, 50, 64)
    assert model.embed.proj.in_features == 16
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_default_size_and_modules() -> None:
    """Defaults: dim 64, depth 4, 4 heads, MLP 128; 138,250 parameters on 1×28×28 with 10
    classes. Module counts as the docstring states; the head is the last Linear."""
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 138_250
    assert len(model.blocks) == 4
    assert model.blocks[0].attn.heads == 4 and model.blocks[0].mlp.fc1.out_features == 128
    assert _count(model, nn.Linear) == 4 * 4 + 2
    assert _count(model, nn.GELU) == 4
    assert _count(model, nn.LayerNorm) == 2 * 4 + 1
    assert _count(model, nn.Dropout) == 3 * 4 + 1
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    for kind in (nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.MultiheadAttention):
        assert _count(model, kind) == 0
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1] is model.head


def test_gelu_is_a_distinct_module_called_once() -> None:
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=3, options=TINY)
    gelus = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.GELU)]
    calls: list[nn.Module] = []
    for gelu in gelus:
        gelu.register_forward_hook(lambda module, args, output: calls.append(module))
    model(torch.rand(2, 1, 28, 28))
    assert len({id(m) for m in gelus}) == len(gelus) == 2
    assert sorted(map(id, calls)) == sorted(map(id, gelus))


def test_attention_is_scaled_dot_product_attention() -> None:
    """The explicit attention equals torch's fused attention on the same projections."""
    torch.manual_seed(0)
    attn = Attention(dim=12, heads=3)
    x = torch.randn(2, 5, 12)
    q, k, v = (
        t.reshape(2, 5, 3, 4).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1)
    )  # (B, heads, T, d_head)
    expected = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), expected)


def test_deterministic_and_draws_nothing() -> None:
    """The same torch seed builds the same model; a forward pass in training mode draws no
    random number (the dropout placeholders have p = 0) and repeats exactly."""
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(build_model("vit", input_shape=(3, 32, 32), num_classes=10).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    torch.manual_seed(4)
    other = build_model("vit", input_shape=(3, 32, 32), num_classes=10).state_dict()
    assert not torch.equal(other["embed.pos_embed"], states[0]["embed.pos_embed"])

    model = build_model("vit", input_shape=(3, 32, 32), num_classes=10, options=TINY).train()
    x = torch.rand(2, 3, 32, 32)
    before = torch.get_rng_state()
    first = model(x)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(model(x), first)


# -- option checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "options", "field", "message"),
    [
        ((1, 30, 30), {}, "model.patch_size", "the default tries 7, then 4): 1, 2, 3, 5, 6, 10"),
        ((1, 28, 28), {"patch_size": 5}, "model.patch_size", "28×28 inputs: 1, 2, 4, 7, 14, 28"),
        ((3, 32, 32), {"patch_size": 7}, "model.patch_size", "32×32 inputs: 1, 2, 4, 8, 16, 32"),
        ((1, 28, 28), {"patch_size": 0}, "model.patch_size", "integer ≥ 1, or null"),
        ((1, 28, 28), {"heads": 3}, "model.heads", "divisor of model.dim=64"),
        ((1, 28, 28), {"heads": 0}, "model.heads", "≥ 1"),
        ((1, 28, 28), {"dim": 0}, "model.dim", "≥ 1"),
        ((1, 28, 28), {"depth": 0}, "model.depth", "≥ 1"),
        ((1, 28, 28), {"mlp_ratio": 0.0}, "model.mlp_ratio", "MLP width"),
        ((1, 28, 28), {"pool": "avg"}, "model.pool", "allowed: cls, mean"),
        ((1, 28, 28), {"dim": "wide"}, "model.dim", ""),
        ((1, 40), {}, "model.name", "channels, height, width"),
    ],
)
def test_option_checks(
    shape: tuple[int, ...], options: dict[str, object], field: str, message: str
) -> None:
    """Each bad option is one ConfigError naming the field, the value and what is allowed."""
    with pytest.raises(ConfigError) as info:
        build_model("vit", input_shape=shape, num_classes=10, options=options)
    assert info.value.field == field
    assert message in str(info.value)


# -- technique sites ------------------------------------------------------------------------


def test_techniques_find_their_sites() -> None:
    """Dropout's default rule masks each block's GELU output (it feeds mlp.fc2); DropConnect
    masks the input of every Linear layer but the head; both change a training forward."""
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=10, options=TINY)
    x = torch.rand(4, 1, 28, 28)
    clean = model(x)
    dropout = Dropout(p=0.5)
    handles = dropout.attach(model, Context())
    assert len(handles) == 2
    assert not torch.equal(model(x), clean)
    for handle in handles:
        handle.remove()
    handles = Dropconnect(p=0.3).attach(model, Context())
    assert len(handles) == 4 * 2 + 1  # embed.proj and qkv, proj, fc1, fc2 per block
    assert not torch.equal(model(x), clean)
    for handle in handles:
        handle.remove()
    assert torch.equal(model(x), clean)


# -- training -------------------------------------------------------------------------------


def test_dicelab_train_on_mnist5k(mnist5k_root: Path, tmp_path: Path) -> None:
    """``dicelab train`` with the ViT on 2,000 mnist5k images, 2 epochs of Adam (lr 3e-3,
    batch 32, 126 updates, about 2 s on one thread) reaches well above chance (0.10) on the
    1,000 test images: measured 0.725, 0.716, 0.699, 0.679 for seeds 0-3."""
    run = tmp_path / "run"
    settings = [
        "data.name=mnist5k",
        f"data.root={mnist5k_root}",
        "data.split=final",
        "data.train_limit=2000",
        "device=cpu",
        "model.name=vit",
        "optimizer.name=adam",
        "optimizer.lr=0.003",
        "train.batch_size=32",
        "train.epochs=2",
    ]
    argv = ["train", *(a for s in settings for a in ("--set", s)), "--out", str(run), "--quiet"]
    assert main(argv) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["updates"] == 126
    assert result["test_acc"] >= 0.5


def _optimizer_config(perturbation: str) -> OptimizerConfig:
    return load_config(
        overrides=[
            "optimizer.name=momentum",
            "optimizer.lr=0.05",
            f"optimizer.perturbation={perturbation}",
            "train.reduction=mean",
        ]
    ).optimizer


@pytest.mark.parametrize("perturbation", sorted(PERTURBATIONS))
def test_perturbation_optimizers_train_it(perturbation: str, mnist5k: DataBundle) -> None:
    """Every perturbation optimizer takes updates on the ViT (LayerNorm scales and shifts,
    biases, the class token and the 3-D position table included): every parameter moves, the
    loss stays finite and the weights end restored (not perturbed)."""
    torch.manual_seed(0)
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=10, options=TINY)
    opt = build_optimizer(_optimizer_config(perturbation), model, total_steps=8, seed=1)
    assert isinstance(opt, PerturbedOptimizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = mnist5k.train.x.float() / 255
    y = mnist5k.train.y
    for i in range(4):
        xb, yb = x[32 * i : 32 * (i + 1)], y[32 * i : 32 * (i + 1)]

        def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        loss = opt.step(closure)
        assert loss is not None and torch.isfinite(loss)
    assert opt.updates == (2 if opt.mixes_consecutive_batches else 4)
    assert not opt.perturbed
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(p, before[name]), name


def test_rwp_noise_per_filter_on_vit_parameters() -> None:
    """What "filter-wise" means on the ViT: a Linear row gets N(0, (σ‖row‖)²) entries; each
    LayerNorm scale is one filter (σ‖γ‖ per entry, like BatchNorm γ); the position table
    (1, tokens, dim) is a single filter with σ‖table‖, not one per position (which would be
    about √17 ≈ 4 times smaller here).

    Tolerances: the estimated standard deviation of n normal draws has relative standard
    error ≈ 1/√(2n): 2.1 % for the table's 1,088 entries (checked to 10 %), 2.9 % for the 576
    pooled LayerNorm-scale entries (15 %), 0.3 % for the qkv rows' 49,152 (3 %); each bound
    is about five standard errors, and the generator is seeded, so the test is stable."""
    torch.manual_seed(0)
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=10)
    sigma = 0.01
    opt = RWP(model.parameters(), torch.optim.SGD, sigma=sigma, lr=0.1, seed=5)
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    opt.perturb()
    noise = {n: params[n].detach() - before[n] for n in params}

    table = before["embed.pos_embed"]
    ratio = noise["embed.pos_embed"].std() / (sigma * table.norm())
    assert abs(ratio - 1) < 0.10

    scales = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    pooled = torch.cat(
        [noise[f"{n}.weight"] / (sigma * before[f"{n}.weight"].norm()) for n in scales]
    )
    assert pooled.numel() == 576 and abs(pooled.std() - 1) < 0.15
    assert all(noise[f"{n}.bias"].abs().max() < 1e-12 for n in scales)  # shifts start at 0

    rows = torch.cat(
        [
            noise[f"blocks.{b}.attn.qkv.weight"]
            / (sigma * before[f"blocks.{b}.attn.qkv.weight"].norm(dim=1, keepdim=True))
            for b in range(4)
        ]
    )
    assert abs(rows.std() - 1) < 0.03
    opt.restore()
    assert all(torch.equal(p, before[n]) for n, p in params.items())
