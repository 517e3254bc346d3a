"""The weight-perturbation optimizers: parity with the base optimizer, the formulas of SAM,
RWP, ARWP and the mixed methods, checkpoints, and the errors of a misused update cycle."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.models import frozen_bn_stats
from dicelab.optim import ARWP, MARWP, MRWP, RWP, SAM, PerturbationError, PerturbedOptimizer

Batch = tuple[torch.Tensor, torch.Tensor]


def toy_model(seed: int = 0) -> nn.Module:
    """A small CNN with BatchNorm (2-D weights, 1-D biases and BN parameters)."""
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
    return model


def batches(n: int, seed: int = 1) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen))
        for _ in range(n)
    ]


def backward(model: nn.Module, batch: Batch) -> torch.Tensor:
    loss = F.cross_entropy(model(batch[0]), batch[1])
    loss.backward()
    return loss


def train_base(model: nn.Module, data: list[Batch], make: Callable[..., torch.optim.Optimizer]):
    opt = make(model.parameters())
    for batch in data:
        opt.zero_grad()
        backward(model, batch)
        opt.step()
    return model


def train_perturbed(model: nn.Module, data: list[Batch], opt: PerturbedOptimizer) -> nn.Module:
    """The manual cycle: [backward at w] → perturb → backward → step, one round per batch,
    BatchNorm statistics frozen on a perturbed pass when the update has a clean one."""
    for batch in data:
        opt.zero_grad()
        if opt.needs_gradient_to_perturb:
            backward(model, batch)
        opt.perturb()
        with frozen_bn_stats(model) if opt.perturbed and opt.takes_clean_pass else nullcontext():
            backward(model, batch)
        opt.step()
    return model


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


BASES: dict[str, tuple[type[torch.optim.Optimizer], dict[str, float]]] = {
    "sgd": (torch.optim.SGD, {"lr": 0.1}),
    "momentum": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    "adam": (torch.optim.Adam, {"lr": 0.01}),
}


# -- parity with the base optimizer -------------------------------------------------------


@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize(
    "make",
    [
        lambda p, b, kw: RWP(p, b, sigma=0.0, **kw),
        lambda p, b, kw: ARWP(p, b, sigma=0.0, **kw),
        lambda p, b, kw: SAM(p, b, rho=0.0, **kw),
        lambda p, b, kw: SAM(p, b, rho=0.0, adaptive=True, **kw),
        lambda p, b, kw: MRWP(p, b, sigma=0.0, batches="same", **kw),
    ],
    ids=["rwp_sigma0", "arwp_sigma0", "sam_rho0", "asam_rho0", "mrwp_same_sigma0"],
)
def test_zero_perturbation_is_the_base_optimizer_bit_for_bit(base: str, make) -> None:
    """σ = 0 (RWP, ARWP, same-batch m-RWP) and ρ = 0 (SAM, ASAM) take exactly the base
    optimizer's steps: weights, BatchNorm statistics and all."""
    cls, kwargs = BASES[base]
    data = batches(6)
    expected = train_base(toy_model(), data, lambda p: cls(p, **kwargs))
    model = toy_model()
    got = train_perturbed(model, data, make(model.parameters(), cls, kwargs))
    assert_same(got, expected)


@pytest.mark.parametrize("base", list(BASES))
def test_mrwp_with_lambda_zero_is_the_base_optimizer_on_the_clean_batches(base: str) -> None:
    """λ = 0 on consecutive batches: the update is the clean batch's gradient, so the weights
    follow the base optimizer run on batches 0, 2, 4, ... (BatchNorm statistics too: the
    perturbed batches are taken with them frozen)."""
    cls, kwargs = BASES[base]
    data = batches(8)
    expected = train_base(toy_model(), data[::2], lambda p: cls(p, **kwargs))
    model = toy_model()
    opt = MRWP(model.parameters(), cls, lam=0.0, sigma=0.05, **kwargs)
    for batch in data:
        opt.zero_grad()
        opt.perturb()
        with frozen_bn_stats(model) if opt.perturbed else nullcontext():
            backward(model, batch)
        opt.step()
    assert opt.updates == 4
    assert_same(model, expected)


def test_arwp_with_eta_zero_is_rwp() -> None:
    """ARWP with η = 0 draws the same noise and takes the same steps as RWP."""
    data = batches(6)
    a, b = toy_model(), toy_model()
    train_perturbed(a, data, ARWP(a.parameters(), eta=0.0, sigma=0.05, lr=0.1, seed=3))
    train_perturbed(b, data, RWP(b.parameters(), sigma=0.05, lr=0.1, seed=3))
    assert_same(a, b)


def test_noise_comes_from_the_seeded_stream_not_the_global_rng() -> None:
    """Same seed ⇒ same trajectory; another seed ⇒ another; the global RNG is untouched."""
    data = batches(4)
    models = [toy_model() for _ in range(3)]  # building layers draws from the global RNG
    state = torch.get_rng_state()
    runs = [
        train_perturbed(model, data, RWP(model.parameters(), lr=0.1, seed=seed))
        for model, seed in zip(models, (0, 0, 1), strict=True)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert_same(runs[0], runs[1])
    assert not torch.equal(runs[0][0].weight, runs[2][0].weight)


# -- the formulas ---------------------------------------------------------------------------


def test_sam_step_on_a_quadratic_is_the_closed_form() -> None:
    """L(w) = ½ wᵀAw: g = Aw, ŵ = w + ρ g/‖g‖, w' = w − η Aŵ (and ASAM with w²g/‖|w|g‖)."""
    a = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    rho, lr = 0.1, 0.05
    for adaptive in (False, True):
        w = nn.Parameter(w0.clone())
        opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr)

        def closure(w: nn.Parameter = w, opt: SAM = opt) -> torch.Tensor:
            opt.zero_grad()
            loss = 0.5 * w @ a @ w
            loss.backward()
            return loss

        loss = opt.step(closure)
        g = a @ w0
        if adaptive:
            e = rho * w0**2 * g / torch.linalg.vector_norm(w0.abs() * g)
        else:
            e = rho * g / torch.linalg.vector_norm(g)
        expected = w0 - lr * (a @ (w0 + e))
        assert torch.allclose(w.detach(), expected, atol=1e-12, rtol=0)
        assert loss.item() == pytest.approx(0.5 * float(w0 @ a @ w0))


def _perturbation(opt: PerturbedOptimizer, model: nn.Module) -> list[torch.Tensor]:
    before = [p.detach().clone() for p in model.parameters()]
    opt.perturb()
    eps = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    opt.restore()
    return eps


def test_rwp_noise_is_filter_wise_gaussian() -> None:
    """ε_j ~ N(0, (σ‖w_j‖)²) per filter of a ≥2-D weight, N(0, (σ‖w‖)²) for a 1-D one."""
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(6, 4000, generator=gen) * torch.arange(1, 7.0)[:, None])
    bias = nn.Parameter(torch.randn(20000, generator=gen))
    sigma = 0.02
    opt = RWP([weight, bias], sigma=sigma, lr=0.1)
    eps_w, eps_b = _perturbation(opt, nn.ParameterList([weight, bias]))
    filter_std = eps_w.std(dim=1) / (sigma * weight.detach().norm(dim=1))
    assert torch.allclose(filter_std, torch.ones(6), atol=0.05)  # 4000 draws: se 1.1%
    assert eps_w.mean(dim=1).abs().max() < 4 * sigma * weight.norm(dim=1).max() / 4000**0.5
    assert eps_b.std() / (sigma * bias.detach().norm()) == pytest.approx(1.0, abs=0.03)


def test_weights_are_restored_exactly_from_the_saved_copy() -> None:
    """Even with a huge perturbation, restore() gives back the weights bit for bit."""
    model = toy_model()
    before = copy.deepcopy(model.state_dict())
    opt = RWP(model.parameters(), sigma=1e4, lr=0.1)
    opt.perturb()
    assert opt.perturbed
    assert not torch.equal(model[0].weight, before["0.weight"])
    backward(model, batches(1)[0])
    assert opt.restore()
    for name, value in model.state_dict().items():
        if name.endswith(("weight", "bias")):
            assert torch.equal(value, before[name]), name


def test_arwp_divides_each_filters_noise_by_its_summed_history() -> None:
    """After one update F = g²; the next noise of filter j has std σ‖w_j‖/sqrt(1 + η Σ F_j)."""
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(4, 5000, generator=gen))
    eta, sigma = 0.5, 0.01
    opt = ARWP([weight], eta=eta, sigma=sigma, lr=0.0)  # lr 0: w stays put
    opt.perturb()
    scales = torch.tensor([0.0, 0.01, 0.03, 0.1])
    weight.grad = scales[:, None] * torch.ones(4, 5000)
    opt.restore()
    opt.step()
    eps = _perturbation(opt, nn.ParameterList([weight]))[0]
    fisher = (scales**2) * 5000  # Σ over the filter of g²
    expected = sigma * weight.detach().norm(dim=1) / torch.sqrt(1 + eta * fisher)
    assert torch.allclose(eps.std(dim=1) / expected, torch.ones(4), atol=0.06)
    state = opt.state_dict()["perturbation"]["fisher"][0]
    assert torch.allclose(state[:, 0], scales**2)  # F ← β·0 + g², no (1 − β) factor


def test_mixed_gradient_is_lambda_perturbed_plus_rest_clean() -> None:
    """m-RWP on consecutive batches steps with λ·g(w + ε; B₂) + (1 − λ)·g(w; B₁), ε drawn
    exactly as RWP with the same seed draws it."""
    lam, sigma, lr = 0.3, 0.05, 0.1
    data = batches(2)
    model = toy_model()
    opt = MRWP(model.parameters(), lam=lam, sigma=sigma, lr=lr, seed=7)
    train_perturbed(model, data, opt)

    ref = toy_model()
    clean = [torch.autograd.grad(F.cross_entropy(ref(data[0][0]), data[0][1]), ref.parameters())]
    twin = RWP(ref.parameters(), sigma=sigma, lr=lr, seed=7)  # same stream, same first draw
    twin.perturb()
    with frozen_bn_stats(ref):
        perturbed = torch.autograd.grad(
            F.cross_entropy(ref(data[1][0]), data[1][1]), ref.parameters()
        )
    twin.restore()
    with torch.no_grad():
        for p, g0, g1 in zip(ref.parameters(), clean[0], perturbed, strict=True):
            p -= lr * (lam * g1 + (1 - lam) * g0)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)


def test_cosine_sigma_schedule_rises_from_sigma0_to_sigma0_times_one_plus_inc() -> None:
    model = nn.Linear(2, 2)
    opt = RWP(
        model.parameters(), sigma=0.001, sigma_schedule="cosine", sigma_inc=10, total_steps=4
    )
    sigmas = []
    for _ in range(6):
        sigmas.append(opt.current_sigma())
        opt.perturb()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
    expected = [0.001 * (1 + 10 * (1 - math.cos(math.pi * min(t, 4) / 4)) / 2) for t in range(6)]
    assert sigmas == pytest.approx(expected)
    assert sigmas[0] == 0.001 and sigmas[4] == pytest.approx(0.011)


def test_learning_rate_schedulers_drive_the_base_optimizer() -> None:
    """param_groups are shared, so a scheduler on the wrapper sets the base optimizer's lr."""
    model = nn.Linear(2, 2)
    opt = MARWP(model.parameters(), torch.optim.SGD, lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        opt.perturb()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.5


def test_frozen_bn_stats_keeps_running_statistics_and_normalises_by_the_batch() -> None:
    model = toy_model()
    x = batches(1)[0][0]
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    free = model(x)
    bn.load_state_dict(before)
    with frozen_bn_stats(model):
        frozen = model(x)
    assert torch.equal(free, frozen)
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert bn.track_running_stats


# -- checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "cut"),
    [
        (lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9), 3),
        (lambda p: ARWP(p, torch.optim.Adam, lr=0.01, seed=5), 3),
        (lambda p: MARWP(p, torch.optim.SGD, lr=0.1, momentum=0.9, seed=5), 3),  # clean kept
        (lambda p: MARWP(p, torch.optim.SGD, lr=0.1, momentum=0.9, seed=5), 4),
    ],
    ids=["sam", "arwp_adam", "marwp_mid_pair", "marwp_between_pairs"],
)
def test_state_dict_round_trip_resumes_identically(make, cut: int) -> None:
    """Stopping after ``cut`` batches, saving model and optimizer, loading both into fresh
    objects and continuing gives the uninterrupted run's weights bit for bit (base-optimizer
    state, noise stream, ARWP's F and a kept clean gradient all survive)."""
    data = batches(8)
    model = toy_model()
    train_perturbed(model, data, make(model.parameters()))

    first = toy_model()
    opt = make(first.parameters())
    train_perturbed(first, data[:cut], opt)
    saved = copy.deepcopy((first.state_dict(), opt.state_dict()))
    resumed = toy_model(seed=9)
    resumed.load_state_dict(saved[0])
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(saved[1])
    train_perturbed(resumed, data[cut:], opt2)
    assert_same(resumed, model)


# -- misuse and bad hyperparameters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda p: RWP(p, sigma=-0.1, lr=0.1), "sigma"),
        (lambda p: RWP(p, sigma=float("nan"), lr=0.1), "sigma"),
        (lambda p: MRWP(p, lam=1.5, lr=0.1), "lam"),
        (lambda p: MRWP(p, lam=-0.1, lr=0.1), "lam"),
        (lambda p: ARWP(p, beta=1.0, lr=0.1), "beta"),
        (lambda p: ARWP(p, eta=-1, lr=0.1), "eta"),
        (lambda p: SAM(p, rho=-0.05, lr=0.1), "rho"),
        (lambda p: RWP(p, sigma_schedule="cosine", lr=0.1), "total_steps"),
        (lambda p: RWP(p, sigma_schedule="linear", lr=0.1), "sigma_schedule"),
        (lambda p: MRWP(p, batches="split", lr=0.1), "batches"),
        (lambda p: SAM(p, torch.optim.SGD(p, lr=0.1)), "base_optimizer"),
    ],
)
def test_bad_hyperparameters_name_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: got"):
        make(list(nn.Linear(2, 2).parameters()))


def test_sam_step_without_closure_or_perturb_is_refused() -> None:
    model = nn.Linear(2, 2)
    opt = SAM(model.parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    with pytest.raises(PerturbationError, match="needs a closure"):
        opt.step()


def test_sam_perturb_without_gradient_is_refused() -> None:
    opt = SAM(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(PerturbationError, match="loss.backward"):
        opt.perturb()


def test_perturbing_twice_and_saving_while_perturbed_are_refused() -> None:
    opt = RWP(nn.Linear(2, 2).parameters(), lr=0.1)
    opt.perturb()
    with pytest.raises(PerturbationError, match="already perturbed"):
        opt.perturb()
    with pytest.raises(PerturbationError, match="restore"):
        opt.state_dict()


def _closure_for(model: nn.Module, opt: torch.optim.Optimizer, batch: Batch) -> Callable:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        return backward(model, batch)

    return closure


@pytest.mark.parametrize(
    "make",
    [
        lambda p: SAM(p, lr=0.1, momentum=0.9),
        lambda p: RWP(p, lr=0.1, seed=2),
        lambda p: MRWP(p, lr=0.1, seed=2),
        lambda p: MRWP(p, lr=0.1, seed=2, batches="same"),
    ],
    ids=["sam", "rwp", "mrwp", "mrwp_same"],
)
def test_closure_step_matches_the_manual_cycle(make) -> None:
    data = batches(4)
    manual = toy_model()
    train_perturbed(manual, data, make(manual.parameters()))
    closed = toy_model()
    opt = make(closed.parameters())
    for batch in data:
        loss = opt.step(_closure_for(closed, opt, batch))
        assert torch.isfinite(loss)
    # BatchNorm statistics are the closure's business (it does not freeze them); the weights
    # depend only on batch statistics in training mode.
    for p, q in zip(closed.parameters(), manual.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_readme_perturbed_loop_example_runs() -> None:
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "perturbed_loop.py"
    namespace = runpy.run_path(str(example))
    with torch.random.fork_rng():  # the example seeds its own (global) model initialisation
        accuracy = namespace["main"](epochs=3)
    assert 0.7 < accuracy <= 1.0
