"""dicelab.integrations.lightning with a real Lightning Trainer on CPU (tiny model and data).

Statistical checks use a few thousand draws, and each tolerance is stated beside it.
"""

from __future__ import annotations

import copy
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dicelab.exceptions import ConfigError
from dicelab.integrations.lightning import RandomnessCallback, RandomnessModule
from dicelab.models.batchnorm import frozen_bn_stats
from dicelab.optim import MARWP, MRWP, RWP, SAM, PerturbedOptimizer
from dicelab.techniques import Injector
from dicelab.techniques._anneal import annealed_std

FEATURES, CLASSES, BATCH, BATCHES = 32, 10, 64, 4


@pytest.fixture(autouse=True)
def _restore_determinism() -> Iterator[None]:
    """Trainer(deterministic=True) turns deterministic algorithms on process-wide."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def dataset(batches: int = BATCHES) -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batches * BATCH, FEATURES, generator=gen)
    y = torch.randint(0, CLASSES, (batches * BATCH,), generator=gen)
    return TensorDataset(x, y)


def network(batchnorm: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    norm: list[nn.Module] = [nn.BatchNorm1d(64)] if batchnorm else []
    return nn.Sequential(nn.Linear(FEATURES, 64), *norm, nn.ReLU(), nn.Linear(64, CLASSES))


class Net(RandomnessModule):
    """Records what the network sees; optimizer built by ``make_optimizer``."""

    num_classes = CLASSES

    def __init__(
        self,
        make_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
        *,
        manual: bool = False,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        self.net = network(batchnorm)
        self.make_optimizer = make_optimizer or (
            lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)
        )
        self.automatic_optimization = not manual
        self.forwards = 0
        self.seen: list[torch.Tensor] = []  # inputs of forward
        self.records: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        self.seen.append(x.detach().clone())
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        x, y = self.randomness.data(*batch)
        if not self.automatic_optimization:
            self.perturbation_step(x, y)
            return None
        logits = self(x)
        per_example = self.randomness.loss(logits, y)
        self.records.append((logits.detach(), y, per_example.detach()))
        return per_example.mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.parameters())


class PlainNet(L.LightningModule):
    """The same network in plain Lightning: no dicelab at all."""

    def __init__(self) -> None:
        super().__init__()
        self.net = network()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def fit(
    module: L.LightningModule,
    callbacks: list[L.Callback] | None = None,
    *,
    epochs: int = 1,
    batches: int = BATCHES,
) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks or [],
        accelerator="cpu",
        devices=1,
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(dataset(batches), batch_size=BATCH))
    return trainer


def weights(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# -- (c) off is exactly off --------------------------------------------------------------


def test_all_off_equals_plain_lightning_bit_for_bit() -> None:
    plain = PlainNet()
    fit(plain, epochs=2)
    without = Net()
    fit(without, epochs=2)
    empty = Net()
    fit(empty, [RandomnessCallback({}, seed=3)], epochs=2)
    defaults = Net()
    off = {"input_noise": 0.0, "dropout": 0.0, "loss_noise": 0.0, "gradient_noise": 0.0}
    callback = RandomnessCallback(off, seed=3)
    fit(defaults, [callback], epochs=2)
    reference = weights(plain)
    assert not torch.equal(reference[0], weights(network())[0])  # it trained
    for module in (without, empty, defaults):
        assert all(torch.equal(a, b) for a, b in zip(weights(module), reference, strict=True))
    assert callback.injector.active == []
    assert isinstance(defaults.randomness, type(Net.randomness))  # detached at teardown


def test_manual_plain_optimizer_equals_automatic() -> None:
    automatic, manual = Net(), Net(manual=True)
    fit(automatic, epochs=2)
    fit(manual, [RandomnessCallback({"gradient_noise": 0.0})], epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(weights(manual), weights(automatic), strict=True))


# -- (a) the techniques act ----------------------------------------------------------------


def test_input_noise_reaches_the_forward_pass_with_its_std() -> None:
    module = Net()
    fit(module, [RandomnessCallback({"input_noise": 0.3}, seed=0)])
    clean = dataset().tensors[0]
    diff = torch.cat(module.seen) - clean
    # 4 batches x 64 x 32 = 8192 draws: the sample std's error is about 0.3/sqrt(2*8192) =
    # 0.0023; 0.015 is six of those.
    assert abs(diff.std().item() - 0.3) < 0.015
    assert abs(diff.mean().item()) < 0.015


def test_activation_noise_reaches_the_relu_with_its_std() -> None:
    module = Net()
    pre: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    module.net[0].register_forward_hook(lambda m, a, out: pre.append(out.detach().clone()))
    module.net[1].register_forward_hook(lambda m, a, out: seen.append(a[0].detach().clone()))
    fit(module, [RandomnessCallback({"activation_noise": 0.05}, seed=0)])
    noise = torch.cat(seen) - torch.cat(pre)
    # 4 x 64 x 64 = 16384 draws: std error about 0.05/181 = 0.0003; tolerance 0.002.
    assert abs(noise.std().item() - 0.05) < 0.002
    module.eval()
    x = dataset().tensors[0][:8]
    assert torch.equal(module.net(x), module.net(x))  # identity in evaluation


def test_label_smoothing_changes_the_loss_as_torch_smoothing_does() -> None:
    module = Net()
    fit(module, [RandomnessCallback({"label_smoothing": 0.2})])
    labels = dataset().tensors[1].split(BATCH)
    for (logits, targets, per_example), y in zip(module.records, labels, strict=True):
        assert targets.shape == (BATCH, CLASSES)
        expected = F.cross_entropy(logits, y, label_smoothing=0.2, reduction="none")
        torch.testing.assert_close(per_example, expected)
        assert not torch.allclose(per_example, F.cross_entropy(logits, y, reduction="none"))


def test_loss_noise_scales_each_example_loss() -> None:
    module = Net()
    fit(module, [RandomnessCallback({"loss_noise": 0.5}, seed=0)], batches=16)
    factors = torch.cat(
        [per / F.cross_entropy(logits, y, reduction="none") for logits, y, per in module.records]
    )
    # 16 x 64 = 1024 factors ~ N(1, 0.25): std error about 0.5/45 = 0.011; tolerance 0.06.
    assert abs(factors.std().item() - 0.5) < 0.06
    assert abs(factors.mean().item() - 1.0) < 0.06


class GradientRecorder(L.Callback):
    """Gradients after backward and as the optimizer is about to apply them."""

    def __init__(self) -> None:
        self.after_backward: list[list[torch.Tensor]] = []
        self.before_step: list[list[torch.Tensor]] = []

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.after_backward.append([p.grad.clone() for p in pl_module.parameters()])

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        self.before_step.append([p.grad.clone() for p in pl_module.parameters()])


def test_gradient_noise_changes_the_applied_gradients_with_its_std() -> None:
    recorder = GradientRecorder()
    callback = RandomnessCallback({"gradient_noise": {"eta": 0.01}}, seed=0)
    fit(Net(), [callback, recorder])  # the recorder's hook runs after the callback's
    assert callback.injector.ctx.step == BATCHES
    for step, (clean, applied) in enumerate(
        zip(recorder.after_backward, recorder.before_step, strict=True)
    ):
        noise = torch.cat([(b - a).flatten() for a, b in zip(clean, applied, strict=True)])
        # 2762 draws: std error about 1.3 %; tolerance 8 %.
        expected = annealed_std(0.01, 0.55, step)
        assert abs(noise.std().item() / expected - 1) < 0.08


class Validated(Net):
    def __init__(self) -> None:
        super().__init__()
        self.val_losses: list[tuple[torch.Tensor, torch.Tensor]] = []

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self.randomness.data(*batch)
        logits = self(x)
        plain = F.cross_entropy(logits, y, reduction="none")
        self.val_losses.append((self.randomness.loss(logits, y), plain))


def test_techniques_are_identities_in_validation_and_sanity_checks() -> None:
    module = Validated()
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[RandomnessCallback({"input_noise": 0.3, "loss_noise": 0.5})],
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    loader = DataLoader(dataset(), batch_size=BATCH)
    trainer.fit(module, loader, loader)  # 2 sanity-check batches, then 4 validation batches
    assert len(module.val_losses) == 2 + BATCHES
    for per_example, plain in module.val_losses:
        assert torch.equal(per_example, plain)
    inputs = torch.cat(module.seen[BATCHES + 2 :])  # validation after the training batches
    assert torch.equal(inputs, dataset().tensors[0])


# -- what the callback refuses -----------------------------------------------------------


@pytest.mark.parametrize("technique", ["shuffle", "batch_schedule"])
def test_loader_techniques_are_refused(technique: str) -> None:
    strength = True if technique == "shuffle" else 0.5
    with pytest.raises(ConfigError, match="belongs to your DataLoader"):
        RandomnessCallback({technique: strength})


def test_a_stage_the_module_never_calls_stops_the_run() -> None:
    class Forgetful(PlainNet):
        pass

    with pytest.raises(RuntimeError, match=r"input_noise .*self\.randomness\.data"):
        fit(Forgetful(), [RandomnessCallback({"input_noise": 0.1})])


def test_perturbation_optimizer_needs_manual_optimization() -> None:
    module = Net(lambda params: RWP(params, torch.optim.SGD, lr=0.1))
    with pytest.raises(RuntimeError, match="automatic_optimization = False"):
        fit(module, [RandomnessCallback({})])


# -- (b) perturbation optimizers -----------------------------------------------------------

OPTIMIZERS: dict[str, tuple[Callable[[Any], PerturbedOptimizer], int]] = {
    # name: (optimizer, forward passes per update)
    "sam": (lambda ps: SAM(ps, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9), 2),
    "asam": (lambda ps: SAM(ps, torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1), 2),
    "rwp": (lambda ps: RWP(ps, torch.optim.SGD, sigma=0.01, lr=0.1, seed=4), 1),
    "mrwp": (lambda ps: MRWP(ps, torch.optim.SGD, lr=0.1, seed=4), 2),
    "mrwp_same": (lambda ps: MRWP(ps, torch.optim.SGD, batches="same", lr=0.1, seed=4), 2),
    "marwp": (lambda ps: MARWP(ps, torch.optim.SGD, lr=0.1, seed=4), 2),
}
TECHNIQUES = {"input_noise": 0.05, "loss_noise": 0.2, "dropout": 0.1, "gradient_noise": 0.01}


def dicelab_loop(
    net: nn.Module, opt: PerturbedOptimizer, injector: Injector, epochs: int = 1
) -> int:
    """What dicelab's Trainer does per batch (train/trainer.py: _gradient, _update_ready,
    _step); the number of forward passes."""
    passes = 0
    injector.setup(net, num_classes=CLASSES, train_size=BATCHES * BATCH, epochs=epochs)
    for epoch in range(epochs):
        injector.start_epoch(epoch, opt)
        net.train()
        for x, y in DataLoader(dataset(), batch_size=BATCH):
            inputs, targets = injector.data(x, y)

            def backward(
                freeze: bool = False, inputs: Any = inputs, targets: Any = targets
            ) -> None:
                nonlocal passes
                passes += 1
                with frozen_bn_stats(net) if freeze else nullcontext():
                    loss = injector.loss(net(inputs), targets).mean()
                loss.backward()

            opt.zero_grad(set_to_none=True)
            if opt.needs_gradient_to_perturb:
                backward()
            opt.perturb()
            backward(freeze=opt.perturbed and opt.takes_clean_pass)
            if opt.restore():
                injector.before_step(net.parameters())
                opt.step()
                injector.end_step()
    return passes


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_perturbation_step_takes_the_passes_and_update_of_dicelab(name: str) -> None:
    make, passes_per_update = OPTIMIZERS[name]
    module = Net(make, manual=True, batchnorm=True)
    reference = copy.deepcopy(module.net)
    callback = RandomnessCallback(TECHNIQUES, seed=7)
    fit(module, [callback])
    opt = module.trainer.optimizers[0]
    assert isinstance(opt, PerturbedOptimizer)
    assert opt.updates * passes_per_update == module.forwards
    assert opt.updates == (BATCHES // 2 if name in ("mrwp", "marwp") else BATCHES)

    ref_opt = make(reference.parameters())
    passes = dicelab_loop(reference, ref_opt, Injector.from_config(TECHNIQUES, seed=7))
    assert passes == module.forwards
    assert ref_opt.updates == opt.updates == callback.injector.ctx.step
    for a, b in zip(
        module.net.state_dict().values(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)  # weights and BatchNorm statistics, bit for bit


# -- importing ---------------------------------------------------------------------------


def test_dicelab_imports_without_lightning() -> None:
    code = (
        "import sys, dicelab, dicelab.integrations, dicelab.optim, dicelab.techniques; "
        "assert 'lightning' not in sys.modules, 'lightning was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_lightning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "dicelab.integrations.lightning")
    with pytest.raises(ImportError, match=r'pip install "dicelab\[lightning\]"'):
        import dicelab.integrations.lightning  # noqa: F401


def test_the_lightning_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "lightning_example.py"
    namespace = runpy.run_path(str(example))
    with torch.random.fork_rng():  # the example seeds its own (global) model initialisation
        accuracy = namespace["main"](epochs=2)
    assert 0.5 < accuracy <= 1.0
