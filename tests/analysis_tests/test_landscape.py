"""Loss landscapes: filter-normalised directions, slices against direct computation, batched
(vmap) against looped evaluation, interpolation end points, untouched weights, plots."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from dicelab.analysis.landscape import (
    Landscape1D,
    Landscape2D,
    from_dict,
    interpolate,
    plot_1d,
    plot_2d,
    random_direction,
    slice_1d,
    slice_2d,
)
from dicelab.cli import main
from dicelab.config import load_config
from dicelab.exceptions import ConfigError
from dicelab.models import build_model
from dicelab.train import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]


def cnn(seed: int = 0) -> nn.Module:
    """A small CNN with BatchNorm: 4-D, 2-D and 1-D parameters, non-trivial running stats."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        bn = model[1]
        bn.running_mean.copy_(torch.randn(4, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
        bn.num_batches_tracked.fill_(7 + seed)
    return model


def images(sizes: tuple[int, ...] = (12, 20), seed: int = 1) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 1, 6, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen))
        for n in sizes
    ]


def plain_loss(model: nn.Module, batches: list[Batch]) -> tuple[float, float]:
    """Example-weighted loss and accuracy in eval mode, computed directly."""
    model.eval()
    with torch.no_grad():
        total = sum(len(x) for x, _ in batches)
        loss = sum(float(F.cross_entropy(model(x), y)) * len(x) for x, y in batches) / total
        hits = sum(float((model(x).argmax(1) == y).sum()) for x, y in batches) / total
    return loss, hits


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


class Linear1(nn.Module):
    """Regression ``x @ θ`` with a (1, P) parameter: the MSE is quadratic in θ."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.linspace(-1.0, 1.0, dim)[None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.theta[0]


# --- directions ------------------------------------------------------------------------------


def test_filter_normalisation_matches_each_weight_filter() -> None:
    model = cnn()
    direction = random_direction(model, seed=0)
    for (name, p), d in zip(model.named_parameters(), direction, strict=True):
        assert d.shape == p.shape and d.dtype == p.dtype, name
        if p.dim() > 1:
            want = p.detach().reshape(len(p), -1).norm(dim=1)
            got = d.reshape(len(d), -1).norm(dim=1)
            assert torch.allclose(got, want, rtol=1e-5), name
        else:
            assert torch.equal(d, torch.zeros_like(p)), name


def test_other_normalisations() -> None:
    model = cnn()
    layer = random_direction(model, seed=0, norm="layer", ignore="none")
    for p, d in zip(model.parameters(), layer, strict=True):
        assert float(d.norm()) == pytest.approx(float(p.detach().norm()), rel=1e-5)
    keep = random_direction(model, seed=0, ignore="none")  # 1-D: one filter
    bias = model[0].bias.detach()
    assert float(keep[1].norm()) == pytest.approx(float(bias.norm()), rel=1e-5)
    raw = random_direction(model, seed=0, norm="none", ignore="none")
    filtered = random_direction(model, seed=0)
    # The same Gaussian draw underlies every normalisation: the same sign pattern.
    assert torch.equal(torch.sign(raw[0]), torch.sign(filtered[0]))
    assert not torch.allclose(raw[0], filtered[0])


def test_directions_are_reproducible_and_differ_across_seeds() -> None:
    model = cnn()
    a, b = random_direction(model, seed=3), random_direction(model, seed=3)
    c = random_direction(model, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_frozen_parameters_are_not_moved() -> None:
    model = cnn()
    model[0].weight.requires_grad_(False)
    direction = random_direction(model, seed=0)
    assert [d.shape for d in direction] == [p.shape for p in model.parameters() if p.requires_grad]


# --- slices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vectorize", [True, False])
def test_slice_at_zero_is_the_plain_loss(vectorize: bool) -> None:
    model, batches = cnn(), images()
    line = slice_1d(
        model,
        F.cross_entropy,
        batches,
        random_direction(model, seed=0),
        steps=5,
        vectorize=vectorize,
    )
    assert line.alphas == [-1.0, -0.5, 0.0, 0.5, 1.0]
    loss, accuracy = plain_loss(model, batches)
    assert line.losses[2] == pytest.approx(loss, rel=1e-6)
    assert line.accuracies is not None and line.accuracies[2] == pytest.approx(accuracy)
    assert len(set(line.losses)) == 5  # the direction moves the loss


def test_1d_slice_of_a_quadratic_matches_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=gen), torch.randn(40, generator=gen)
    model = Linear1(5)
    d = torch.randn(1, 5, generator=gen)
    line = slice_1d(
        model, F.mse_loss, [(x[:15], y[:15]), (x[15:], y[15:])], [d], steps=7, span=(-2.0, 1.0)
    )
    theta = model.theta.detach()[0]
    for alpha, loss in zip(line.alphas, line.losses, strict=True):
        want = float(((x @ (theta + alpha * d[0]) - y) ** 2).mean())
        assert loss == pytest.approx(want, rel=1e-5), alpha
    assert line.accuracies is None  # regression: no accuracy
    # A quadratic in α: second differences are constant.
    second = [line.losses[i - 1] - 2 * line.losses[i] + line.losses[i + 1] for i in range(1, 6)]
    assert max(second) - min(second) < 1e-4 * max(abs(v) for v in second)


def test_2d_slice_matches_direct_computation_and_its_1d_slices() -> None:
    model, batches = cnn(), images()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    plane = slice_2d(model, F.cross_entropy, batches, d1, d2, steps=3, span=(-0.5, 0.5))
    assert plane.alphas == plane.betas == [-0.5, 0.0, 0.5]
    assert len(plane.losses) == 3 and all(len(row) == 3 for row in plane.losses)
    along_1 = slice_1d(model, F.cross_entropy, batches, d1, steps=3, span=(-0.5, 0.5))
    along_2 = slice_1d(model, F.cross_entropy, batches, d2, steps=3, span=(-0.5, 0.5))
    assert [row[1] for row in plane.losses] == pytest.approx(along_1.losses, rel=1e-6)
    assert plane.losses[1] == pytest.approx(along_2.losses, rel=1e-6)
    moved = cnn()
    with torch.no_grad():
        for p, a, b in zip(moved.parameters(), d1, d2, strict=True):
            p.add_(0.5 * a - 0.5 * b)
    assert plane.losses[2][0] == pytest.approx(plain_loss(moved, batches)[0], rel=1e-5)


def test_batched_and_looped_evaluation_agree() -> None:
    model, batches = cnn(), images()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # vmap must work here, without a fallback
        batched = slice_2d(
            model, F.cross_entropy, batches, d1, d2, steps=5, vectorize=True, chunk_size=7
        )
    looped = slice_2d(model, F.cross_entropy, batches, d1, d2, steps=5, vectorize=False)
    for a, b in zip(batched.losses, looped.losses, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    assert batched.accuracies == looped.accuracies


def test_batched_evaluation_of_the_vgg() -> None:
    """The built-in VGG (conv, ReLU, BatchNorm, max-pool, dense head) under vmap."""
    gen = torch.Generator().manual_seed(0)
    model = build_model("vgg", input_shape=(1, 8, 8), num_classes=10, options={"width": 4})
    batches = [
        (torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen))
    ]
    d = random_direction(model, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batched = slice_1d(model, F.cross_entropy, batches, d, steps=4, vectorize=True)
    looped = slice_1d(model, F.cross_entropy, batches, d, steps=4, vectorize=False)
    assert batched.losses == pytest.approx(looped.losses, rel=1e-5)


class ItemModel(nn.Module):
    """Calls ``.item()`` in forward, which vmap cannot batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.linear.weight.sum().item() > -1e9 else 0.0
        return self.linear(x) * scale


def test_falls_back_to_a_loop_when_vmap_fails() -> None:
    gen = torch.Generator().manual_seed(0)
    model = ItemModel()
    batches = [(torch.randn(8, 3, generator=gen), torch.randint(0, 2, (8,), generator=gen))]
    d = random_direction(model, seed=0)
    with pytest.warns(RuntimeWarning, match="one by one"):
        batched = slice_1d(model, F.cross_entropy, batches, d, steps=5, vectorize=True)
    looped = slice_1d(model, F.cross_entropy, batches, d, steps=5, vectorize=False)
    assert batched.losses == pytest.approx(looped.losses, rel=1e-6)


def test_weights_are_bit_identical_and_modes_restored() -> None:
    model, batches = cnn(), images()
    model.train()
    before = snapshot(model)
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    for vectorize in (True, False):
        slice_1d(model, F.cross_entropy, batches, d1, steps=3, vectorize=vectorize)
        slice_2d(model, F.cross_entropy, batches, d1, d2, steps=3, vectorize=vectorize)
        interpolate(
            cnn(1).state_dict(),
            cnn(2).state_dict(),
            model,
            F.cross_entropy,
            batches,
            steps=3,
            vectorize=vectorize,
        )
    assert_bit_identical(model, before)
    assert all(m.training for m in model.modules())


def test_global_rng_is_untouched() -> None:
    model, batches = cnn(), images()
    state_b = cnn(1).state_dict()
    before = torch.get_rng_state()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    slice_1d(model, F.cross_entropy, batches, d1, steps=3)
    slice_2d(model, F.cross_entropy, batches, d1, d2, steps=3, vectorize=True)
    interpolate(model.state_dict(), state_b, model, F.cross_entropy, batches, steps=3)
    assert torch.equal(torch.get_rng_state(), before)


# --- interpolation ---------------------------------------------------------------------------


def test_interpolation_ends_at_both_models_and_mixes_the_whole_state() -> None:
    a, b, batches = cnn(1), cnn(2), images()
    runner = cnn(3)
    before = snapshot(runner)
    path = interpolate(
        a.state_dict(), b.state_dict(), runner, F.cross_entropy, batches, steps=3, span=(0.0, 1.0)
    )
    assert path.alphas == [0.0, 0.5, 1.0]
    loss_a, acc_a = plain_loss(a, batches)
    loss_b, acc_b = plain_loss(b, batches)
    assert path.losses[0] == pytest.approx(loss_a, rel=1e-6)
    assert path.losses[2] == pytest.approx(loss_b, rel=1e-6)
    assert path.accuracies is not None
    assert path.accuracies[0] == pytest.approx(acc_a) and path.accuracies[2] == pytest.approx(
        acc_b
    )
    # The midpoint is the model with every float entry (running statistics too) averaged.
    mid = cnn(0)
    state = {
        k: (v + b.state_dict()[k]) / 2 if v.is_floating_point() else v
        for k, v in a.state_dict().items()
    }
    mid.load_state_dict(state)
    assert path.losses[1] == pytest.approx(plain_loss(mid, batches)[0], rel=1e-5)
    assert_bit_identical(runner, before)
    assert path.xlabel.startswith("t ")


def test_interpolation_rejects_a_foreign_state() -> None:
    model = cnn()
    other = nn.Linear(3, 2).state_dict()
    with pytest.raises(ConfigError, match="model_b_state"):
        interpolate(model.state_dict(), other, model, F.cross_entropy, images())


# --- results, plots, errors ------------------------------------------------------------------


def test_to_dict_is_json_ready_and_round_trips() -> None:
    model, batches = cnn(), images()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    line = slice_1d(model, F.cross_entropy, batches, d1, steps=3)
    plane = slice_2d(model, F.cross_entropy, batches, d1, d2, steps=3)
    for landscape in (line, plane):
        loaded = json.loads(json.dumps(landscape.to_dict()))
        assert from_dict(loaded) == landscape
    assert isinstance(from_dict(plane.to_dict()), Landscape2D)
    with pytest.raises(ConfigError):
        from_dict({"alphas": "nope"})


def test_plots_return_labelled_figures() -> None:
    line = Landscape1D([-1.0, 0.0, 1.0], [2.0, 1.0, 2.5], [0.4, 0.6, 0.3])
    fig = plot_1d(line)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_xlabel() == "α (filter-normalised direction 1)"
    assert fig.axes[0].get_ylabel() == "loss" and fig.axes[0].get_title()
    plane = Landscape2D(
        [-1.0, 0.0, 1.0], [-1.0, 1.0], [[2.0, 1.5], [1.0, math.nan], [2.5, 3.0]], None
    )
    fig = plot_2d(plane)
    ax, bar = fig.axes
    assert ax.get_xlabel() == "α (filter-normalised direction 1)"
    assert ax.get_ylabel() == "β (filter-normalised direction 2)"
    assert bar.get_ylabel() == "loss" and ax.get_title()
    own = Figure()
    target = own.add_subplot()
    assert plot_1d(Landscape1D([0.0, 1.0], [1.0, 2.0], None), ax=target) is own
    fig.canvas.draw()  # renders without a pyplot backend


def test_bad_arguments_raise_config_error() -> None:
    model, batches = cnn(), images()
    d = random_direction(model, seed=0)
    calls = {
        "ignore": lambda: random_direction(model, seed=0, ignore="bias"),
        "norm": lambda: random_direction(model, seed=0, norm="unit"),
        "direction": lambda: slice_1d(model, F.cross_entropy, batches, d[:-1]),
        "d2": lambda: slice_2d(model, F.cross_entropy, batches, d, [torch.ones(2)]),
        "steps": lambda: slice_1d(model, F.cross_entropy, batches, d, steps=1),
        "span": lambda: slice_1d(model, F.cross_entropy, batches, d, span=(1.0, -1.0)),
        "span inf": lambda: slice_1d(model, F.cross_entropy, batches, d, span=(0.0, math.inf)),
        "chunk": lambda: slice_1d(model, F.cross_entropy, batches, d, chunk_size=0),
        "vectorize": lambda: slice_1d(model, F.cross_entropy, batches, d, vectorize="yes"),
        "batches": lambda: slice_1d(model, F.cross_entropy, [], d),
        "loss_fn": lambda: slice_1d(
            model, lambda z, y: F.cross_entropy(z, y, reduction="none"), batches, d
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError):
            call()
        assert name


def test_non_finite_losses_are_written_as_null_and_read_back_as_nan() -> None:
    """Strict JSON has no NaN: a point where the network blows up is written as null."""
    import json
    import math

    from dicelab.analysis.landscape import Landscape1D, from_dict

    line = Landscape1D([0.0, 1.0, 2.0], [1.0, float("nan"), float("inf")], None)
    text = json.dumps(line.to_dict(), allow_nan=False)
    back = from_dict(json.loads(text))
    assert back.losses[0] == 1.0 and math.isnan(back.losses[1]) and math.isnan(back.losses[2])


# --- the landscape command on run folders ---------------------------------------------------


def train_tiny_run(folder: Path, data_root: Path) -> Path:
    """A finished run folder of a one-epoch, width-8 VGG on 64 digits (well under a second)."""
    config = load_config(
        None,
        [
            "data.name=digits",
            f"data.root={data_root}",
            "device=cpu",
            "model.width=8",
            "data.train_limit=64",
            "train.epochs=1",
        ],
    )
    Trainer(config, run_dir=folder).fit()
    return folder


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("landscape") / "run", data_root)


def truncated_copy(run: Path, folder: Path) -> Path:
    """A copy of ``run`` whose model.pt lost its second half (a copy cut short)."""
    copy = folder / "damaged"
    shutil.copytree(run, copy)
    weights = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(weights[: len(weights) // 2])
    return copy


def error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dicelab {command}: error: "), err
    return lines[0]


def test_truncated_weights_are_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """landscape on a run (or --towards a run) whose model.pt is truncated exits 2 with one
    line saying the file is damaged and how to write it again, instead of a traceback."""
    damaged = truncated_copy(finished_run, tmp_path)
    argv = ["landscape", "--examples", "20", "--steps", "3"]
    assert main([*argv, str(damaged)]) == 2
    line = error_line(capsys.readouterr().err, "landscape")
    assert f"{damaged / 'model.pt'} is truncated or damaged" in line and "--resume" in line
    assert main([*argv, str(finished_run), "--towards", str(damaged), "--out", str(tmp_path)]) == 2
    assert f"{damaged / 'model.pt'} is truncated or damaged" in error_line(
        capsys.readouterr().err, "landscape"
    )
    assert not (tmp_path / "landscape").exists()


@pytest.mark.parametrize("command", ["landscape", "hessian"])
@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "/tmp/x"])
def test_name_must_be_a_plain_file_name(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, command: str
) -> None:
    """--name is a file name inside OUT/landscape (OUT/hessian), never a path out of it."""
    out = tmp_path / "out"
    assert main([command, str(finished_run), "--out", str(out), "--name", name]) == 2
    assert f"--name: got {name!r}; must be a plain file name" in error_line(
        capsys.readouterr().err, command
    )
    assert list(tmp_path.iterdir()) == []


def test_plain_name_is_used(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain --name names the result files inside OUT/landscape."""
    argv = ["landscape", str(finished_run), "--out", str(tmp_path), "--name", "a.b"]
    assert main([*argv, "--examples", "20", "--steps", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "landscape").iterdir()) == ["a.b.json", "a.b.png"]


def test_unwritable_out_is_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --out under a file cannot be created: main()'s last resort prints the path and the
    reason on one line with exit status 2, instead of a traceback."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    argv = ["landscape", str(finished_run), "--out", str(blocker / "sub"), "--name", "n"]
    assert main([*argv, "--examples", "20", "--steps", "3"]) == 2
    line = error_line(capsys.readouterr().err, "landscape")
    assert str(blocker) in line and "Not a directory" in line
    assert blocker.read_text() == "keep me"
