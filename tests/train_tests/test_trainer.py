"""The trainer: run-folder files, bit-identical reruns and resumes, divergence, protection of
existing runs, the split and loss options, and BatchNorm recalibration."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dicelab.config import RunConfig, config_hash, load_config
from dicelab.data import to_float
from dicelab.exceptions import RunError
from dicelab.train import Trainer
from dicelab.train.trainer import CHECKPOINT, CONFIG, FINAL_WEIGHTS, METRICS, RESULT

MakeConfig = Callable[..., RunConfig]

#: Fields of a metrics row that measure time and so differ between identical runs.
TIME_FIELDS = frozenset({"epoch_time_s", "time_s"})

METRIC_KEYS = {
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "updates",
    "examples_seen",
    "epoch_time_s",
    "time_s",
}


# -- helpers ------------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run folder's metrics.jsonl."""
    text = (run_dir / METRICS).read_text()
    return [json.loads(line) for line in text.splitlines()]


def without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics rows without the fields that measure time."""
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in rows]


def load_tensors(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Every tensor of two state dicts is bit-identical."""
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"tensors differ: {different}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or infinity."""
    return [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


# -- 1. the run folder --------------------------------------------------------------------


def test_run_folder_records_the_run(make_config: MakeConfig, tmp_path: Path) -> None:
    """A run writes exactly config, metrics (one full row per epoch), checkpoint, final weights
    and result, and each agrees with the configuration and the trainer's state."""
    config = make_config("train.epochs=3")
    run = tmp_path / "run"
    trainer = Trainer(config, run_dir=run)
    result = trainer.fit()

    assert sorted(p.name for p in run.iterdir()) == sorted(
        [CONFIG, METRICS, CHECKPOINT, FINAL_WEIGHTS, RESULT]
    )
    assert load_config(run / CONFIG) == config

    rows = read_metrics(run)
    assert len(rows) == 3
    for epoch, row in enumerate(rows, 1):
        assert set(row) == METRIC_KEYS
        assert row["epoch"] == epoch
        assert row["updates"] == 8 * epoch  # 256 examples in batches of 32
        assert row["examples_seen"] == 256 * epoch
        assert row["lr"] == config.optimizer.lr
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1
        assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
        assert row["epoch_time_s"] > 0
    assert [r["time_s"] for r in rows] == pytest.approx(
        list(np.cumsum([r["epoch_time_s"] for r in rows]))
    )

    stored = json.loads((run / RESULT).read_text())
    assert stored == asdict(result)
    assert stored["status"] == "completed"
    assert stored["message"] == ""
    assert 0 <= stored["test_acc"] <= 1
    assert stored["config_hash"] == config_hash(config)
    assert stored["epochs_completed"] == 3
    assert stored["updates"] == 24 and stored["examples_seen"] == 768
    assert stored["last_val_acc"] == rows[-1]["val_acc"]
    assert stored["best_val_acc"] == max(r["val_acc"] for r in rows)
    assert rows[stored["best_epoch"] - 1]["val_acc"] == stored["best_val_acc"]

    weights = load_tensors(run / FINAL_WEIGHTS)
    assert_same_weights(weights, trainer.model.state_dict())
    checkpoint = load_tensors(run / CHECKPOINT)
    assert checkpoint["epoch"] == 3
    assert checkpoint["config_hash"] == config_hash(config)
    assert_same_weights(checkpoint["model"], weights)


# -- 2. and 3. reproducibility --------------------------------------------------------------


def test_rerun_is_bit_identical_and_seed_matters(make_config: MakeConfig) -> None:
    """Two runs of one configuration give identical metrics and weights; another seed gives
    other weights."""
    config = make_config("train.epochs=3")
    first, second = Trainer(config), Trainer(config)
    result_a, result_b = first.fit(), second.fit()
    assert without_times(first.history) == without_times(second.history)
    assert result_a.test_acc == result_b.test_acc and result_a.test_loss == result_b.test_loss
    assert_same_weights(first.model.state_dict(), second.model.state_dict())

    other = Trainer(make_config("train.epochs=3", "seed=1"))
    other.fit()
    a, b = first.model.state_dict(), other.model.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)


def test_run_does_not_depend_on_global_rng(make_config: MakeConfig) -> None:
    """The caller's global seed has no effect: every random stream comes from the run seed."""
    config = make_config()
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        trainer = Trainer(config)
        trainer.fit()
        states.append(trainer.model.state_dict())
    assert_same_weights(*states)


def test_global_rng_is_untouched(make_config: MakeConfig, tmp_path: Path) -> None:
    """Building and fitting a trainer leaves torch's, NumPy's and Python's global generators
    exactly as they were."""
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    torch_before = torch.get_rng_state()
    np_before = np.random.get_state()
    py_before = random.getstate()

    Trainer(make_config(), run_dir=tmp_path / "run").fit()

    assert torch.equal(torch.get_rng_state(), torch_before)
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0]
    assert np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before


# -- 4. and 5. resume ---------------------------------------------------------------------


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, train_batches: int) -> None:
    """Make training raise KeyboardInterrupt when it asks for batch ``train_batches + 1``."""
    original = Trainer._batches
    served = 0

    def batches(
        self: Trainer, split: Any, batch_size: int, order: torch.Tensor | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        nonlocal served
        for batch in original(self, split, batch_size, order):
            if split is self.data.train and self.injector.ctx.training:  # a training pass
                if served == train_batches:
                    raise KeyboardInterrupt
                served += 1
            yield batch

    monkeypatch.setattr(Trainer, "_batches", batches)


#: A CIFAR-style recipe: Nesterov momentum, weight decay sparing biases and BatchNorm,
#: clipping, a per-update cosine with warm-up, and paper 1's lr gene on top.
RECIPE = (
    "optimizer.nesterov=true",
    "optimizer.weight_decay=5e-4",
    "optimizer.decay_exclude=[bias, norm]",
    "optimizer.clip_grad_norm=50",
    "schedule.name=cosine",
    "schedule.warmup=10",
    "techniques.lr_schedule.s=0.5",
)


#: Mixed precision with loss scaling: the GradScaler's state must be checkpointed too.
FP16 = ("train.precision=fp16", "train.channels_last=true")


@pytest.mark.parametrize("steps_into_epoch3", [0, 3], ids=["epoch_boundary", "mid_epoch"])
@pytest.mark.parametrize("recipe", [(), RECIPE, FP16], ids=["momentum", "recipe", "fp16"])
def test_resume_after_interrupt_matches_uninterrupted(
    make_config: MakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    steps_into_epoch3: int,
    recipe: tuple[str, ...],
) -> None:
    """A run interrupted in epoch 3 (before its first update or after three) and resumed from
    its checkpoint ends bit-identical to an uninterrupted run, with one metrics row per epoch
    (and, under a schedule, the same learning rates)."""
    config = make_config("train.epochs=4", "optimizer.name=momentum", *recipe)  # has state
    reference = Trainer(config, run_dir=tmp_path / "a")
    reference_result = reference.fit()

    run = tmp_path / "b"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2 * 8 + steps_into_epoch3)
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, run_dir=run).fit()
    assert not (run / RESULT).exists()
    before = read_metrics(run)
    assert [row["epoch"] for row in before] == [1, 2]
    assert load_tensors(run / CHECKPOINT)["epoch"] == 2

    result = Trainer(config, run_dir=run).fit(resume=True)

    rows = read_metrics(run)
    assert len(rows) == 4
    assert rows[:2] == before  # kept from the checkpoint (timings included), not retrained
    assert without_times(rows) == without_times(read_metrics(tmp_path / "a"))
    assert len({row["lr"] for row in rows}) == (4 if recipe is RECIPE else 1)
    assert_same_weights(
        load_tensors(run / FINAL_WEIGHTS), load_tensors(tmp_path / "a" / FINAL_WEIGHTS)
    )
    assert result.status == "completed"
    assert (result.test_acc, result.test_loss) == (
        reference_result.test_acc,
        reference_result.test_loss,
    )
    assert (result.updates, result.examples_seen) == (32, 1024)


def _train_command(data_root: Path, out: Path, *extra: str) -> list[str]:
    """The ``dicelab train`` command line of the kill test (6 epochs of about 0.2 s each), with
    techniques whose state must survive the kill (data order, masks, step counters)."""
    settings = [
        "data.name=digits",
        f"data.root={data_root}",
        "device=cpu",
        "model.width=16",
        "train.batch_size=32",
        "train.epochs=6",
        "optimizer.name=adam",
        "techniques.shuffle=true",
        "techniques.translation=0.1",
        "techniques.dropout=0.1",
        "techniques.frozen_weights=0.2",
        "techniques.gradient_noise=1e-4",
    ]
    command = [sys.executable, "-m", "dicelab", "train", "--threads", "1", "--quiet"]
    for setting in settings:
        command += ["--set", setting]
    return [*command, "--out", str(out), *extra]


def _count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(data_root: Path, tmp_path: Path) -> None:
    """A training process killed with SIGKILL after two epochs and resumed with ``--resume``
    ends with weights and metrics identical to an uninterrupted run of the same command."""
    killed = tmp_path / "killed"
    # The uninterrupted reference runs alongside; it only has to finish some time.
    reference = subprocess.Popen(
        _train_command(data_root, tmp_path / "reference"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        process = subprocess.Popen(
            _train_command(data_root, killed),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while _count_lines(killed / METRICS) < 2:
                assert process.poll() is None, "training exited before its second epoch"
                assert time.monotonic() < deadline, "no second epoch within 60 s"
                time.sleep(0.005)
            finished_before_kill = (killed / RESULT).exists()
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
        assert not finished_before_kill, "the run finished before it could be killed"
        assert process.returncode == -signal.SIGKILL
        assert not (killed / RESULT).exists()
        checkpoint = load_tensors(killed / CHECKPOINT)
        assert 2 <= checkpoint["epoch"] < 6
        kept = checkpoint["history"]

        resumed = subprocess.run(
            [*_train_command(data_root, killed), "--resume"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stderr
        _, reference_err = reference.communicate(timeout=120)
        assert reference.returncode == 0, reference_err
    finally:
        reference.kill()
        reference.communicate()

    rows = read_metrics(killed)
    assert len(rows) == 6
    assert rows[: len(kept)] == kept  # the epochs before the kill were not retrained
    assert without_times(rows) == without_times(read_metrics(tmp_path / "reference"))
    assert_same_weights(
        load_tensors(killed / FINAL_WEIGHTS),
        load_tensors(tmp_path / "reference" / FINAL_WEIGHTS),
    )
    result = json.loads((killed / RESULT).read_text())
    assert result["status"] == "completed"
    assert (
        result["test_acc"] == json.loads((tmp_path / "reference" / RESULT).read_text())["test_acc"]
    )


# -- 6. divergence ------------------------------------------------------------------------


def test_divergence_is_reported_and_finite_epochs_kept(
    make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights that turn NaN in epoch 2 end the run as "diverged": epoch 1's checkpoint and
    metrics are kept, finite, and no final weights are written."""
    real_epoch = Trainer.train_epoch
    calls = {"n": 0}

    def poisoned_epoch(self: Trainer, bar: Any = None) -> dict[str, float] | None:
        metrics = real_epoch(self, bar)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return metrics

    monkeypatch.setattr(Trainer, "train_epoch", poisoned_epoch)
    config = make_config("train.epochs=3")
    run = tmp_path / "run"
    result = Trainer(config, run_dir=run).fit()

    assert result.status == "diverged"
    assert "weights became NaN" in result.message and "epoch 2" in result.message
    assert result.test_acc is None and result.test_loss is None
    assert result.epochs_completed == 1
    assert json.loads((run / RESULT).read_text()) == asdict(result)
    assert not (run / FINAL_WEIGHTS).exists()

    rows = read_metrics(run)
    assert [row["epoch"] for row in rows] == [1]
    assert result.updates == rows[0]["updates"]  # counters of the kept state, not the lost epoch
    checkpoint = load_tensors(run / CHECKPOINT)
    assert checkpoint["epoch"] == 1
    assert json.dumps(checkpoint["history"]) == json.dumps(rows)
    assert non_finite(checkpoint["model"]) == []


def test_huge_learning_rate_diverges_and_keeps_only_finite_state(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A learning rate of 1e6 diverges; whatever the run keeps (checkpoint, metrics) is finite,
    and the message says which epoch was the last finite one."""
    config = make_config("optimizer.lr=1e6", "train.batch_size=128", "train.epochs=4")
    run = tmp_path / "run"
    result = Trainer(config, run_dir=run).fit()
    assert result.status == "diverged"
    assert f"(epoch {result.epochs_completed}) is kept" in result.message
    assert len(read_metrics(run)) == result.epochs_completed
    if result.epochs_completed:
        checkpoint = load_tensors(run / CHECKPOINT)
        assert checkpoint["epoch"] == result.epochs_completed
        assert non_finite(checkpoint["model"]) == []
    else:
        assert not (run / CHECKPOINT).exists()


def test_metrics_are_strict_json(make_config: MakeConfig, tmp_path: Path) -> None:
    """metrics.jsonl holds standard JSON (no NaN/Infinity tokens) even when an evaluation
    loss overflows, so that any JSON reader can parse it."""
    config = make_config("optimizer.lr=1e6", "train.batch_size=128", "train.epochs=3")
    run = tmp_path / "run"
    Trainer(config, run_dir=run).fit()

    def reject(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    for line in (run / METRICS).read_text().splitlines():
        json.loads(line, parse_constant=reject)
    json.loads((run / RESULT).read_text(), parse_constant=reject)


# -- 7. protection of existing runs -------------------------------------------------------


def test_second_fit_without_resume_is_refused(make_config: MakeConfig, tmp_path: Path) -> None:
    """A fresh fit in a folder that holds a run raises RunError pointing to --resume and
    changes no file."""
    config = make_config()
    run = tmp_path / "run"
    Trainer(config, run_dir=run).fit()
    before = snapshot(run)
    with pytest.raises(RunError, match="--resume"):
        Trainer(config, run_dir=run).fit()
    assert snapshot(run) == before


def test_resume_with_other_configuration_is_refused(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """Resuming a checkpoint with another configuration (another seed) raises RunError and
    changes no file."""
    run = tmp_path / "run"
    Trainer(make_config(), run_dir=run).fit()
    before = snapshot(run)
    with pytest.raises(RunError, match="different configuration"):
        Trainer(make_config("seed=1"), run_dir=run).fit(resume=True)
    assert snapshot(run) == before


def test_resume_with_other_configuration_is_refused_without_checkpoint(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A run that diverged in its first epoch leaves config, metrics and result but no
    checkpoint; resuming that folder with another configuration must not overwrite it."""
    diverging = ("optimizer.lr=1e6", "train.batch_size=16")
    run = tmp_path / "run"
    first = Trainer(make_config(*diverging), run_dir=run).fit()
    assert first.status == "diverged" and first.epochs_completed == 0
    assert not (run / CHECKPOINT).exists()
    before = snapshot(run)
    with pytest.raises(RunError):
        Trainer(make_config(*diverging, "seed=1"), run_dir=run).fit(resume=True)
    assert snapshot(run) == before


# -- 8. and 9. split and loss options -----------------------------------------------------


def test_final_split_has_no_validation(make_config: MakeConfig, tmp_path: Path) -> None:
    """``data.split=final`` trains without a validation set: no val metrics, no val results,
    but a test accuracy."""
    run = tmp_path / "run"
    trainer = Trainer(make_config("data.split=final"), run_dir=run)
    result = trainer.fit()
    assert trainer.data.val is None
    rows = read_metrics(run)
    assert len(rows) == 2
    assert all(set(row) == METRIC_KEYS - {"val_loss", "val_acc"} for row in rows)
    assert result.last_val_acc is None and result.best_val_acc is None
    assert result.best_epoch is None
    assert result.test_acc is not None and 0 <= result.test_acc <= 1
    assert json.loads((run / RESULT).read_text())["last_val_acc"] is None


def test_reduction_changes_the_trajectory(make_config: MakeConfig) -> None:
    """``train.reduction`` is wired: sum and mean give different losses and weights."""
    runs = {}
    for reduction in ("sum", "mean"):
        trainer = Trainer(make_config(f"train.reduction={reduction}"))
        trainer.fit()
        runs[reduction] = trainer
    assert [r["train_loss"] for r in runs["sum"].history] != [
        r["train_loss"] for r in runs["mean"].history
    ]
    a, b = runs["sum"].model.state_dict(), runs["mean"].model.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize(
    ("name", "kind", "momentum"),
    [
        ("sgd", torch.optim.SGD, 0.0),
        ("momentum", torch.optim.SGD, 0.9),
        ("adam", torch.optim.Adam, None),
    ],
)
def test_each_optimizer_trains(
    make_config: MakeConfig, name: str, kind: type, momentum: float | None
) -> None:
    """sgd, momentum and adam build the optimizer they name and lower the training loss over
    three epochs."""
    trainer = Trainer(make_config(f"optimizer.name={name}", "train.epochs=3"))
    assert type(trainer.optimizer) is kind
    if momentum is not None:
        assert trainer.optimizer.param_groups[0]["momentum"] == momentum
    result = trainer.fit()
    assert result.status == "completed"
    losses = [row["train_loss"] for row in trainer.history]
    assert losses[-1] < 0.9 * losses[0], losses


# -- 10. BatchNorm recalibration ----------------------------------------------------------


def test_recalibration_rescues_keras_batchnorm(make_config: MakeConfig) -> None:
    """With the keras preset the running statistics lag far behind on a short run; the same
    weights evaluated with recalibrated statistics score far higher."""
    trainers = {}
    for recalibrate in (False, True):
        trainer = Trainer(
            make_config(
                "model.batchnorm=keras", f"train.recalibrate_bn={str(recalibrate).lower()}"
            )
        )
        trainer.fit()
        trainers[recalibrate] = trainer
    plain, recalibrated = trainers[False], trainers[True]
    # Recalibration touches only statistics, never the training trajectory.
    for (name, p), q in zip(
        plain.model.named_parameters(), recalibrated.model.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    plain_acc = plain.evaluate(plain.data.test)[1]
    recalibrated_acc = recalibrated.evaluate(recalibrated.data.test)[1]
    assert recalibrated_acc >= plain_acc + 0.3, (plain_acc, recalibrated_acc)


def test_recalibrated_statistics_are_exact_training_averages(make_config: MakeConfig) -> None:
    """After a run with ``train.recalibrate_bn``, every BatchNorm layer's running mean and
    variance are the plain average over the training batches (stored order) of each batch's
    mean and unbiased variance of that layer's input, computed with the final weights."""
    trainer = Trainer(make_config("model.batchnorm=keras", "train.recalibrate_bn=true"))
    trainer.fit()
    model = trainer.model
    layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert layers

    probe = copy.deepcopy(model).train()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}

    def record(name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double()
            seen[name].append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)))

        return hook

    for name, module in probe.named_modules():
        if name in layers:
            module.register_forward_pre_hook(record(name))
    train = trainer.data.train
    batch_size = trainer.config.train.batch_size
    with torch.no_grad():
        for start in range(0, len(train), batch_size):
            probe(to_float(train.x[start : start + batch_size]))

    for name, layer in layers.items():
        means = torch.stack([m for m, _ in seen[name]]).mean(0)
        variances = torch.stack([v for _, v in seen[name]]).mean(0)
        assert int(layer.num_batches_tracked) == len(seen[name]) == 8
        torch.testing.assert_close(layer.running_mean.double(), means, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.running_var.double(), variances, rtol=1e-4, atol=1e-5)
        assert layer.momentum == 0.01  # the preset's momentum is restored afterwards


def test_resuming_a_finished_run_reports_it_without_rewriting(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """`fit(resume=True)` on a completed run returns the saved result and writes no weights."""
    config = make_config()
    first = Trainer(config, run_dir=tmp_path).fit()
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in (FINAL_WEIGHTS, RESULT)}
    again = Trainer(config, run_dir=tmp_path).fit(resume=True)
    assert again == first
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in stamps} == stamps
