"""Hessian analysis: products, eigenvalues, trace and density checked against the exact Hessian
of a small MLP and against quadratic losses whose Hessian is a chosen matrix."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dicelab.analysis.hessian import (
    exact_hessian,
    hessian_report,
    hutchinson_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from dicelab.cli import main
from dicelab.exceptions import ConfigError

from .test_landscape import error_line, train_tiny_run, truncated_copy

Batch = tuple[torch.Tensor, torch.Tensor]


def mlp(seed: int = 0, *, batchnorm: bool = False) -> nn.Module:
    """10 → 16 → 3 with tanh (227 parameters; 259 with BatchNorm), weights from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(10, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.Tanh(), nn.Linear(16, 3)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if batchnorm:
            bn = model[1]
            bn.running_mean.copy_(torch.randn(16, generator=gen))
            bn.running_var.copy_(torch.rand(16, generator=gen) + 0.5)
    return model


def data(sizes: tuple[int, ...] = (64, 64, 32), seed: int = 1) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 10, generator=gen), torch.randint(0, 3, (n,), generator=gen))
        for n in sizes
    ]


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class Quadratic(nn.Module):
    """A "model" whose output is its parameter; with :func:`quadratic_loss` the Hessian is A."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(len(x), -1)


def quadratic_loss(matrix: torch.Tensor):
    def loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        theta = out[0]
        return 0.5 * theta @ matrix @ theta

    return loss


def symmetric(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    """``Q·diag(λ)·Qᵀ`` with a random orthogonal Q."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen))
    return q @ torch.diag(torch.tensor(eigenvalues)) @ q.T


def quadratic_batches() -> list[Batch]:
    return [(torch.zeros(4, 1), torch.zeros(4))]


@pytest.fixture
def exact() -> torch.Tensor:
    return exact_hessian(mlp(), F.cross_entropy, data()).double()


def test_exact_hessian_is_symmetric_with_mixed_signs(exact: torch.Tensor) -> None:
    assert exact.shape == (227, 227)
    assert torch.allclose(exact, exact.T, atol=1e-6)
    eigenvalues = torch.linalg.eigvalsh(exact)
    assert eigenvalues[0] < -1e-3 and eigenvalues[-1] > 1e-3  # an indefinite, nontrivial case


def test_exact_hessian_of_a_quadratic_is_its_matrix() -> None:
    matrix = symmetric([3.0, 1.0, -2.0, 0.5])
    got = exact_hessian(Quadratic(4), quadratic_loss(matrix), quadratic_batches())
    assert torch.allclose(got, matrix, atol=1e-6)


def test_hvp_equals_exact_hessian_times_vector(exact: torch.Tensor) -> None:
    model = mlp()
    gen = torch.Generator().manual_seed(5)
    v = [torch.randn(p.shape, generator=gen) for p in model.parameters()]
    got = hvp(model, F.cross_entropy, data(), v)
    assert [t.shape for t in got] == [p.shape for p in model.parameters()]
    assert torch.allclose(flat(got).double(), exact @ flat(v).double(), atol=1e-5)


def test_hvp_weights_batches_by_their_size() -> None:
    """Batches of 10 and 30 examples give the Hessian of the 40-example mean, not the mean of
    the two batch Hessians."""
    model = mlp()
    split = data((10, 30))
    whole = [(torch.cat([x for x, _ in split]), torch.cat([y for _, y in split]))]
    v = [torch.ones_like(p) for p in model.parameters()]
    assert torch.allclose(
        flat(hvp(model, F.cross_entropy, split, v)),
        flat(hvp(model, F.cross_entropy, whole, v)),
        atol=1e-6,
    )


def test_batchnorm_model_uses_running_statistics_and_is_restored() -> None:
    model = mlp(batchnorm=True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v = [torch.ones_like(p) for p in model.parameters()]
    got = hvp(model, F.cross_entropy, data(), v)
    want = exact_hessian(model, F.cross_entropy, data()) @ flat(v)
    assert torch.allclose(flat(got), want, atol=1e-5)
    top_eigenvalues(model, F.cross_entropy, data(), 2)
    hutchinson_trace(model, F.cross_entropy, data(), samples=4)
    spectral_density(model, F.cross_entropy, data(), iterations=5)
    assert model.training and all(m.training for m in model.modules())
    for name, value in model.state_dict().items():  # eval mode: running stats untouched
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_match_the_exact_spectrum(exact: torch.Tensor, method: str) -> None:
    want = torch.linalg.eigvalsh(exact).flip(0)[:3].tolist()
    # The power method's stopping rule (relative change of λ) needs a tight tol to be accurate.
    tol, iterations = (1e-3, 100) if method == "lanczos" else (1e-7, 1000)
    one, _ = top_eigenvalues(
        mlp(), F.cross_entropy, data(), 1, iterations=iterations, tol=tol, method=method
    )
    assert one[0] == pytest.approx(want[0], rel=0.01)
    three, vectors = top_eigenvalues(
        mlp(), F.cross_entropy, data(), 3, iterations=iterations, tol=tol, method=method
    )
    assert three == pytest.approx(want, rel=0.01)
    assert three == sorted(three, reverse=True)
    for value, vector in zip(three, vectors, strict=True):
        v = flat(vector).double()
        assert float(v.norm()) == pytest.approx(1.0, abs=1e-5)
        assert float((exact @ v - value * v).norm()) < 0.05 * abs(value)


def test_lanczos_returns_the_largest_algebraic_eigenvalues() -> None:
    """A negative eigenvalue of larger magnitude is not the top one; power iteration (as in
    PyHessian) returns the largest magnitudes instead."""
    matrix = symmetric([-5.0, 3.0, 2.0, 1.0, 0.5, 0.1, -0.3, 0.2])
    loss, batches = quadratic_loss(matrix), quadratic_batches()
    values, _ = top_eigenvalues(Quadratic(8), loss, batches, 2)
    assert values == pytest.approx([3.0, 2.0], rel=1e-4)
    values, _ = top_eigenvalues(Quadratic(8), loss, batches, 2, method="power", tol=1e-8)
    assert values == pytest.approx([3.0, -5.0], rel=1e-3)


def test_lanczos_continues_past_an_invariant_krylov_space() -> None:
    """A rank-1 Hessian: the Krylov space is invariant after two steps, and the zero
    eigenvalues come from restarts orthogonal to it (converged, so no warning)."""
    u = torch.nn.functional.normalize(torch.arange(1.0, 7.0), dim=0)
    matrix = 3.0 * torch.outer(u, u)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, vectors = top_eigenvalues(
            Quadratic(6), quadratic_loss(matrix), quadratic_batches(), 3
        )
    assert values == pytest.approx([3.0, 0.0, 0.0], abs=1e-5)
    assert abs(float(flat(vectors[0]) @ u)) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(flat(vectors[1]) @ flat(vectors[2]))) < 1e-4


def test_power_method_finds_every_copy_of_a_repeated_eigenvalue() -> None:
    matrix = symmetric([4.0, 4.0, 2.0, 0.5, 0.25, -1.0])
    values, _ = top_eigenvalues(
        Quadratic(6), quadratic_loss(matrix), quadratic_batches(), 3, method="power", tol=1e-8
    )
    assert values == pytest.approx([4.0, 4.0, 2.0], rel=1e-3)


def test_unconverged_eigenvalues_warn() -> None:
    with pytest.warns(RuntimeWarning, match="iterations=2"):
        top_eigenvalues(mlp(), F.cross_entropy, data(), 1, iterations=2)


def test_hutchinson_trace_is_within_three_standard_errors(exact: torch.Tensor) -> None:
    estimate = hutchinson_trace(mlp(), F.cross_entropy, data(), samples=200)
    assert len(estimate.samples) == 200
    assert estimate.stderr > 0
    assert estimate.mean == pytest.approx(sum(estimate.samples) / 200)
    assert abs(estimate.mean - float(torch.trace(exact))) < 3 * estimate.stderr
    sd = torch.tensor(estimate.samples, dtype=torch.float64).std()
    assert estimate.stderr == pytest.approx(float(sd) / math.sqrt(200))


def test_hutchinson_stops_at_the_requested_relative_error() -> None:
    estimate = hutchinson_trace(mlp(), F.cross_entropy, data(), samples=500, tol=0.2)
    assert 10 <= len(estimate.samples) < 500
    assert estimate.stderr <= 0.2 * abs(estimate.mean)


def test_hutchinson_of_a_known_matrix() -> None:
    """Rademacher probes: zᵀAz = tr(A) + Σ_{i≠j} a_ij z_i z_j, exact for a diagonal A."""
    matrix = torch.diag(torch.tensor([1.0, 2.0, -0.5, 4.0]))
    estimate = hutchinson_trace(
        Quadratic(4), quadratic_loss(matrix), quadratic_batches(), samples=5
    )
    assert estimate.samples == pytest.approx([6.5] * 5)
    assert estimate.stderr == pytest.approx(0.0, abs=1e-9)


def test_density_of_a_known_matrix() -> None:
    """Eigenvalues −2 (×5), 1 (×10), 4 (×10): Lanczos resolves all three within a few steps,
    so the nodes sit on them, and averaged over 20 probes each carries about its share of the
    25 dimensions (weights (uᵀv)²/‖v‖² of a random v: std about 0.04 after 20 runs)."""
    eigenvalues = [-2.0] * 5 + [1.0] * 10 + [4.0] * 10
    matrix = symmetric(eigenvalues, seed=3)
    grid, density = spectral_density(
        Quadratic(25),
        quadratic_loss(matrix),
        quadratic_batches(),
        iterations=10,
        runs=20,
        sigma=0.1,
    )
    assert grid.dtype == density.dtype == torch.float64 and grid.shape == density.shape
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    for value, share in ((-2.0, 0.2), (1.0, 0.4), (4.0, 0.4)):
        near = (grid > value - 0.5) & (grid < value + 0.5)
        mass = float(torch.trapezoid(density[near], grid[near]))
        assert mass == pytest.approx(share, abs=0.12), value


def test_density_puts_its_mass_where_the_exact_eigenvalues_are(exact: torch.Tensor) -> None:
    """The density's CDF is close to that of the exact eigenvalues smoothed the same way."""
    eigenvalues = torch.linalg.eigvalsh(exact)
    sigma = 0.02
    grid, density = spectral_density(
        mlp(), F.cross_entropy, data(), iterations=60, runs=8, sigma=sigma
    )
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    assert float(grid[0]) < float(eigenvalues[0]) and float(grid[-1]) > float(eigenvalues[-1])
    z = (grid[:, None] - eigenvalues[None, :]) / sigma
    want = torch.special.ndtr(z).mean(1)
    got = torch.cumulative_trapezoid(density, grid)
    assert float((got - want[1:]).abs().max()) < 0.1


def test_density_on_a_given_grid() -> None:
    points = [-1.0, 0.0, 1.0]
    grid, density = spectral_density(mlp(), F.cross_entropy, data(), iterations=5, grid=points)
    assert grid.tolist() == points and len(density) == 3 and bool((density >= 0).all())


def test_global_rng_is_untouched() -> None:
    model = mlp()  # nn.Linear's constructor draws from the global RNG
    before = torch.get_rng_state()
    top_eigenvalues(model, F.cross_entropy, data(), 2)
    top_eigenvalues(model, F.cross_entropy, data(), 2, method="power")
    hutchinson_trace(model, F.cross_entropy, data(), samples=5)
    spectral_density(model, F.cross_entropy, data(), iterations=5)
    hessian_report(model, F.cross_entropy, data(), trace_samples=3, density=True)
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    model = mlp()
    a = hutchinson_trace(model, F.cross_entropy, data(), samples=5, seed=3)
    b = hutchinson_trace(model, F.cross_entropy, data(), samples=5, seed=3)
    c = hutchinson_trace(model, F.cross_entropy, data(), samples=5, seed=4)
    assert a == b and a.samples != c.samples
    va, _ = top_eigenvalues(model, F.cross_entropy, data(), 2, seed=3)
    vb, _ = top_eigenvalues(model, F.cross_entropy, data(), 2, seed=3)
    assert va == vb


def test_frozen_and_unused_parameters() -> None:
    """Frozen parameters are constants (not in the vectors); a parameter the loss never
    reaches has zero rows."""
    model = mlp()
    model.unused = nn.Parameter(torch.ones(2))
    model[0].bias.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    v = [torch.ones_like(p) for p in trainable]
    got = hvp(model, F.cross_entropy, data(), v)
    assert [t.shape for t in got] == [p.shape for p in trainable]
    index = next(i for i, p in enumerate(trainable) if p is model.unused)
    assert torch.equal(got[index], torch.zeros(2))
    assert exact_hessian(model, F.cross_entropy, data()).shape == (213, 213)  # 227 − 16 frozen + 2


def test_report_is_json_ready() -> None:
    report = hessian_report(mlp(), F.cross_entropy, data(), top_k=2, trace_samples=5, density=True)
    assert report.parameters == 227 and report.examples == 160
    assert len(report.eigenvalues) == 2 and report.eigenvalues[0] >= report.eigenvalues[1]
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["eigenvalues"] == report.eigenvalues
    assert loaded["trace"]["mean"] == report.trace.mean
    assert len(loaded["trace"]["samples"]) == 5
    assert len(loaded["density"]["grid"]) == len(loaded["density"]["density"]) > 100
    plain = hessian_report(mlp(), F.cross_entropy, data(), trace_samples=2)
    assert plain.to_dict()["density"] is None


def test_a_one_shot_iterator_of_batches_is_read_once() -> None:
    report = hessian_report(mlp(), F.cross_entropy, iter(data()), trace_samples=2)
    assert report.examples == 160


def test_bad_arguments_raise_config_error() -> None:
    model, batches = mlp(), data()
    calls = {
        "k": lambda: top_eigenvalues(model, F.cross_entropy, batches, 0),
        "k too large": lambda: top_eigenvalues(model, F.cross_entropy, batches, 228),
        "iterations": lambda: top_eigenvalues(model, F.cross_entropy, batches, iterations=0),
        "tol": lambda: top_eigenvalues(model, F.cross_entropy, batches, tol=0.0),
        "method": lambda: top_eigenvalues(model, F.cross_entropy, batches, method="qr"),
        "samples": lambda: hutchinson_trace(model, F.cross_entropy, batches, samples=0),
        "one sample": lambda: hutchinson_trace(model, F.cross_entropy, batches, samples=1),
        "trace tol": lambda: hutchinson_trace(model, F.cross_entropy, batches, tol=-1.0),
        "runs": lambda: spectral_density(model, F.cross_entropy, batches, runs=0),
        "sigma": lambda: spectral_density(model, F.cross_entropy, batches, sigma=0.0),
        "grid": lambda: spectral_density(model, F.cross_entropy, batches, grid=[]),
        "vector": lambda: hvp(model, F.cross_entropy, batches, [torch.ones(3)]),
        "no batches": lambda: hvp(model, F.cross_entropy, [], []),
        "max_params": lambda: exact_hessian(model, F.cross_entropy, batches, max_params=100),
        "report k": lambda: hessian_report(model, F.cross_entropy, batches, top_k=0),
        "loss_fn": lambda: hutchinson_trace(
            model, lambda z, y: F.cross_entropy(z, y, reduction="none"), batches, samples=2
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError):
            call()
        assert name  # for the traceback: which call failed to raise


def test_a_single_pair_instead_of_a_list_says_how_to_fix_it() -> None:
    x, y = data()[0]
    with pytest.raises(ConfigError, match=r"\[\(inputs, targets\)\]"):
        hutchinson_trace(mlp(), F.cross_entropy, (x, y), samples=2)  # type: ignore[arg-type]


def test_no_trainable_parameters() -> None:
    model = mlp().requires_grad_(False)
    with pytest.raises(ConfigError, match="requires_grad"):
        hutchinson_trace(model, F.cross_entropy, data(), samples=2)


def test_works_under_no_grad() -> None:
    """Called from an evaluation block, the products still build their graphs."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        values, _ = top_eigenvalues(mlp(), F.cross_entropy, data(), 1)
    assert values[0] > 0


# --- the hessian command on run folders -----------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("hessian") / "run", data_root)


def test_truncated_weights_are_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """hessian on a run whose model.pt is truncated exits 2 with one line saying the file is
    damaged and how to write it again, instead of a traceback."""
    damaged = truncated_copy(finished_run, tmp_path)
    assert main(["hessian", str(damaged), "--examples", "20", "--trace-samples", "2"]) == 2
    line = error_line(capsys.readouterr().err, "hessian")
    assert f"{damaged / 'model.pt'} is truncated or damaged" in line and "--resume" in line
    assert not (damaged / "hessian").exists()
