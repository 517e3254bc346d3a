"""The perturbation optimizers in the trainer and the CLI: every method trains, the update and
example accounting, BatchNorm statistics on perturbed passes, exact resume, parallel m-RWP
under torchrun equal to the sequential run, and configuration errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.optim import ARWP, MARWP, MRWP, RWP, SAM
from dicelab.train import Trainer
from dicelab.train.trainer import CHECKPOINT, FINAL_WEIGHTS, RESULT

from .conftest import SMALL
from .test_trainer import (
    MakeConfig,
    _interrupt_after,
    assert_same_weights,
    load_tensors,
    read_metrics,
    without_times,
)

TRAINABLE = ("optimizer.name=momentum", "optimizer.lr=0.01", "train.reduction=mean")


@pytest.mark.parametrize(
    ("name", "cls", "updates"),
    [
        ("sam", SAM, 24),
        ("asam", SAM, 24),
        ("rwp", RWP, 24),
        ("arwp", ARWP, 24),
        ("mrwp", MRWP, 12),  # two batches per update
        ("marwp", MARWP, 12),
    ],
)
def test_each_perturbation_trains_and_counts_updates_and_examples(
    make_config: MakeConfig, name: str, cls: type, updates: int
) -> None:
    """Each wrapper is built around the configured base optimizer, lowers the training loss
    over three epochs, and the result reports updates and examples seen (8 batches of 32 per
    epoch)."""
    config = make_config(*TRAINABLE, f"optimizer.perturbation={name}", "train.epochs=3")
    trainer = Trainer(config)
    assert type(trainer.optimizer) is cls
    assert type(trainer.optimizer.base_optimizer) is torch.optim.SGD
    assert trainer.planned_updates() == updates
    result = trainer.fit()
    assert result.status == "completed"
    assert (result.updates, result.examples_seen) == (updates, 3 * 256)
    losses = [row["train_loss"] for row in trainer.history]
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize(
    ("name", "tracked"),
    [("none", 16), ("rwp", 16), ("sam", 16), ("mrwp", 8), ("marwp", 8)],
)
def test_batchnorm_statistics_follow_the_clean_passes(
    make_config: MakeConfig, name: str, tracked: int
) -> None:
    """Over 16 batches the BatchNorm layers count one update per batch, except that the
    perturbed pass of SAM and of the mixed methods leaves them alone (SAM's clean pass counts;
    m-RWP's perturbed batches do not). RWP has no clean pass and counts its perturbed one.
    Recalibration is off: it recomputes the statistics (and their count) from its own batches."""
    trainer = Trainer(
        make_config(*TRAINABLE, f"optimizer.perturbation={name}", "train.recalibrate_bn=false")
    )
    trainer.fit()
    counts = {
        int(m.num_batches_tracked)
        for m in trainer.model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    }
    assert counts == {tracked}


def test_run_with_perturbation_is_reproducible(make_config: MakeConfig) -> None:
    """Same configuration ⇒ the same weights bit for bit; the noise does change them (the
    same run without perturbation ends elsewhere)."""
    runs = []
    for name in ("marwp", "marwp", "none"):
        trainer = Trainer(make_config(*TRAINABLE, f"optimizer.perturbation={name}"))
        trainer.fit()
        runs.append(trainer.model.state_dict())
    assert_same_weights(runs[0], runs[1])
    first = next(iter(runs[0]))
    assert not torch.equal(runs[0][first], runs[2][first])


@pytest.mark.parametrize("batches_into_epoch2", [0, 3])
def test_resume_with_marwp_matches_uninterrupted(
    make_config: MakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batches_into_epoch2: int,
) -> None:
    """m-ARWP with the cosine σ schedule and techniques at every stage, interrupted in epoch 2
    and resumed from epoch 1's checkpoint (taken in the middle of a clean/perturbed pair, so
    it holds the kept clean gradient), ends bit-identical to an uninterrupted run."""
    config = make_config(
        *TRAINABLE,
        "train.epochs=4",
        "train.batch_size=52",  # 5 batches an epoch: epoch 1's checkpoint keeps a clean gradient
        "optimizer.perturbation=marwp",
        "optimizer.sigma_schedule=cosine",
        "techniques.shuffle=true",  # with randomness techniques at every stage
        "techniques.translation=0.1",
        "techniques.dropout=0.1",
        "techniques.gradient_noise=1e-4",
        "techniques.loss_noise=0.1",
    )
    reference = Trainer(config, run_dir=tmp_path / "a").fit()
    run = tmp_path / "b"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 5 + batches_into_epoch2)
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, run_dir=run).fit()
    assert not (run / RESULT).exists()
    result = Trainer(config, run_dir=run).fit(resume=True)
    assert without_times(read_metrics(run)) == without_times(read_metrics(tmp_path / "a"))
    assert_same_weights(
        load_tensors(run / FINAL_WEIGHTS), load_tensors(tmp_path / "a" / FINAL_WEIGHTS)
    )
    assert (result.test_acc, result.updates) == (reference.test_acc, reference.updates)
    assert result.updates == 10  # 20 batches, two per update


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("optimizer.perturbation=rwpp", "optimizer.perturbation"),
        ("optimizer.lam=1.5", "optimizer.lam"),
        ("optimizer.sigma=-0.01", "optimizer.sigma"),
        ("optimizer.beta=1", "optimizer.beta"),
        ("optimizer.mix_batches=split", "optimizer.mix_batches"),
    ],
)
def test_bad_perturbation_settings_are_configuration_errors(
    make_config: MakeConfig, setting: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: got"):
        make_config(setting)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(data_root: Path, out: Path, *settings: str, procs: int = 2):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={procs}",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        "-m",
        "dicelab",
        "train",
        "--threads=1",
        "--quiet",
        "--out",
        str(out),
    ]
    for setting in (*PARALLEL, f"data.root={data_root}", *settings):
        command += ["--set", setting]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


PARALLEL = (*SMALL, *TRAINABLE)  # the sequential runs' settings, as dicelab train sees them


@pytest.mark.parametrize("name", ["mrwp", "marwp"])
def test_parallel_mrwp_on_two_processes_equals_the_sequential_run(
    data_root: Path, tmp_path: Path, make_config: MakeConfig, name: str
) -> None:
    """torchrun with 2 gloo processes (rank 0 clean on the even batches, rank 1 perturbed on
    the odd ones, one all-reduce per update) ends with the weights and BatchNorm statistics of
    the sequential m-(A)RWP on consecutive batches, bit for bit, and the same accounting."""
    done = _torchrun(data_root, tmp_path / "par", f"optimizer.perturbation={name}")
    assert done.returncode == 0, done.stderr
    sequential = Trainer(
        make_config(*TRAINABLE, f"optimizer.perturbation={name}"), run_dir=tmp_path / "seq"
    )
    result = sequential.fit()
    assert_same_weights(
        load_tensors(tmp_path / "par" / FINAL_WEIGHTS), sequential.model.state_dict()
    )
    parallel, alone = read_metrics(tmp_path / "par"), read_metrics(tmp_path / "seq")
    # Validation and counters are equal; the training loss is summed over ranks in another
    # order, so it may differ in the last bits.
    for row, other in zip(without_times(parallel), without_times(alone), strict=True):
        assert row.pop("train_loss") == pytest.approx(other.pop("train_loss"), rel=1e-6)
        assert row == other
    assert (result.updates, result.examples_seen) == (8, 512)
    assert (tmp_path / "par" / CHECKPOINT).is_file()


def test_torchrun_with_a_method_that_does_not_parallelise_is_refused(
    data_root: Path, tmp_path: Path
) -> None:
    """Each rank exits with the configuration error's code and one clear line (torchrun's own
    launcher then reports the failed children in its format)."""
    done = _torchrun(data_root, tmp_path / "par", "optimizer.perturbation=sam")
    assert done.returncode != 0
    assert "dicelab train: error: optimizer.perturbation: got 'sam'" in done.stderr
    assert "exitcode  : 2" in done.stderr
    assert not (tmp_path / "par" / CHECKPOINT).exists()
