"""Per-rank technique streams under torchrun: each rank draws its own per-example randomness
(input noise, dropout) and every rank the same model-defining and step draws (frozen-weight
masks, weight noise), so the replicas stay identical; one process draws exactly as before.

The two-process tests launch this file itself under torchrun (gloo on the CPU): each rank
trains parallel m-RWP with the techniques on, then saves what it drew for the tests to compare;
a run resumed from its checkpoint continues every rank's streams exactly.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dicelab.config import load_config
from dicelab.data import to_float
from dicelab.exceptions import RunError
from dicelab.rng import RandomStreams, derive_seed
from dicelab.techniques import Injector
from dicelab.train import Trainer
from dicelab.train.trainer import CHECKPOINT

#: One run of the trainer tests' size, with a per-example technique of every kind the rank
#: changes (DATA, MODEL, LOSS) and the model-defining and step techniques it must not change.
SETTINGS = (
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=256",
    "train.batch_size=32",
    "train.epochs=2",
    "optimizer.name=momentum",
    "optimizer.lr=0.01",
    "train.reduction=mean",
    "optimizer.perturbation=mrwp",
    "techniques.input_noise.std=0.1",
    "techniques.dropout.p=0.2",
    "techniques.loss_noise.std=0.2",
    "techniques.shuffle.enabled=true",
    "techniques.frozen_weights.p=0.3",
    "techniques.gradient_noise.eta=0.3",
    "techniques.weight_noise.eta=0.001",
)
TECHNIQUES = {"input_noise": 0.1, "dropout": 0.2, "frozen_weights": 0.3, "weight_noise": 0.001}


def _worker(data_root: str, out: str, epochs: str, resume: str) -> None:
    """One rank: train ``epochs`` epochs (continuing the run folder's checkpoint if
    ``resume``), then save the weights, the frozen masks and fresh per-example draws."""
    torch.set_num_threads(1)
    config = load_config(None, [*SETTINGS, f"data.root={data_root}", f"train.epochs={epochs}"])
    trainer = Trainer(config, run_dir=Path(out) / "run")
    trainer.fit(resume=resume == "resume")
    frozen = next(t for t in trainer.injector.active if t.name == "frozen_weights")
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}  # before BN moves
    x = to_float(trainer.data.train.x[:8])
    y = trainer.data.train.y[:8]
    trainer.model.train()
    noisy, _ = trainer.injector.data(x, y, torch.arange(8))
    dropped = trainer.model(x)
    torch.save(
        {
            "weights": weights,
            "frozen": frozen.state_dict()["masks"],
            "input_noise": noisy - x,
            "dropout_logits": dropped.detach(),
        },
        Path(out) / f"rank{trainer.rank}.pt",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(data_root: Path, out: Path, epochs: int, resume: bool = False) -> None:
    """Run :func:`_worker` on two gloo ranks."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        __file__,
        str(data_root),
        str(out),
        str(epochs),
        "resume" if resume else "new",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def two_ranks(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a two-epoch run on two ranks (shared by the tests that read it)."""
    out = tmp_path_factory.mktemp("two_ranks")
    _torchrun(data_root, out, epochs=2)
    return out


def test_two_ranks_share_model_draws_and_differ_in_per_example_draws(two_ranks: Path) -> None:
    rank0, rank1 = (torch.load(two_ranks / f"rank{r}.pt") for r in (0, 1))
    # Model-defining and step draws agree, so the replicas end with the same weights.
    for mask0, mask1 in zip(rank0["frozen"], rank1["frozen"], strict=True):
        assert torch.equal(mask0, mask1)
    assert any(not mask.all() for mask in rank0["frozen"])
    for name, tensor in rank0["weights"].items():
        assert torch.equal(tensor, rank1["weights"][name]), name
    # Per-example draws differ: the same inputs get other noise and other dropout masks.
    assert not torch.equal(rank0["input_noise"], rank1["input_noise"])
    assert not torch.equal(rank0["dropout_logits"], rank1["dropout_logits"])
    # The checkpoint keeps each rank's streams, rank 0's as one process names them.
    saved = torch.load(two_ranks / "run" / CHECKPOINT, weights_only=False)["techniques"]
    streams0, streams1 = saved["rank_streams"]
    assert streams0.keys() == saved["streams"].keys()
    assert "technique/dropout@cpu" in streams0
    assert "technique/dropout/rank1@cpu" in streams1
    assert "technique/frozen_weights/rank1@cpu" not in streams1  # drawn replicated only


def test_a_two_rank_run_resumed_from_its_checkpoint_ends_as_the_uninterrupted_one(
    two_ranks: Path, data_root: Path, tmp_path: Path
) -> None:
    """One epoch, then a resume to two: each rank continues its own streams (rank 1 from the
    checkpoint's ``rank_streams``), so the weights are those of the two-epoch run."""
    _torchrun(data_root, tmp_path, epochs=1)
    _torchrun(data_root, tmp_path, epochs=2, resume=True)
    resumed = torch.load(tmp_path / "rank1.pt")["weights"]
    uninterrupted = torch.load(two_ranks / "rank1.pt")["weights"]
    for name, tensor in uninterrupted.items():
        assert torch.equal(tensor, resumed[name]), name


def test_rank_zero_and_one_process_draw_from_the_unranked_streams() -> None:
    """Rank 0 keeps the stream keys of a run without ranks (one process is unchanged); rank 1
    draws its own per-example values and the shared ones at setup and before the step."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = torch.rand(5, 6), torch.zeros(5, dtype=torch.long)

    def draws(rank: int) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        model = Injector.from_config(TECHNIQUES, seed=7, rank=rank)
        model.setup(net, num_classes=3, train_size=5)
        frozen = next(t for t in model.active if t.name == "frozen_weights").state_dict()["masks"]
        noisy, _ = model.data(x, y)
        weights = [p.detach().clone() for p in net.parameters()]
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        model.before_step(net.parameters())
        moved = [p.detach() - w for p, w in zip(net.parameters(), weights, strict=True)]
        with torch.no_grad():
            for p, w in zip(net.parameters(), weights, strict=True):
                p.copy_(w)  # the next rank starts from the same weights
        model.detach()
        return noisy, frozen + moved, model.streams.generator("technique/dropout").initial_seed()

    noisy0, shared0, seed0 = draws(0)
    noisy1, shared1, seed1 = draws(1)
    expected = torch.randn(5, 6, generator=RandomStreams(7).generator("technique/input_noise"))
    assert torch.equal(noisy0, x + 0.1 * expected)
    assert seed0 == derive_seed(7, "technique/dropout", "cpu")
    assert seed1 == derive_seed(7, "technique/dropout/rank1", "cpu")
    assert not torch.equal(noisy0, noisy1)
    assert all(torch.equal(a, b) for a, b in zip(shared0, shared1, strict=True))


def test_a_checkpoint_of_one_process_is_refused_under_another_count(
    data_root: Path, tmp_path: Path
) -> None:
    """One process's checkpoint holds no per-rank streams; a two-rank run cannot continue it
    exactly, and says so (checked here without launching ranks)."""
    config = load_config(None, [*SETTINGS[:6], f"data.root={data_root}"])
    trainer = Trainer(config)
    state = trainer.state_dict()
    assert "rank_streams" not in state["techniques"]
    trainer.world_size = 2
    with pytest.raises(RunError, match="written by 1 process"):
        trainer.load_state_dict(state)


if __name__ == "__main__":
    _worker(*sys.argv[1:])
