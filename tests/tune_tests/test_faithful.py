"""The faithful choices of paper 1's protocol: all-zero kernels at weight-init 0, Keras
BatchNorm, the authors' screening resets, and the schedule genes rescaled for the final runs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from dicelab import paper_space
from dicelab.config import config_hash, load_config, to_dict
from dicelab.exceptions import ConfigError
from dicelab.models.build import build_model
from dicelab.reproduce.paper1 import FAITHFUL, PAPER1_FULL, PAPER1_SCALES
from dicelab.stages import Context
from dicelab.techniques.model.weight_init import WeightInit
from dicelab.tune.evaluate import _final, rescale_schedule
from dicelab.tune.objective import SearchSpace
from dicelab.tune.search import (
    AUTHORS_SCREEN_RESET,
    SearchOptions,
    _screen_population,
    open_study,
    options_from_study,
    run_search,
    swarm_starts,
    validate,
)
from dicelab.tune.storage import open_storage

TINY = ("data.name=digits", "device=cpu", "model.width=8", "data.train_limit=120")


# -- weight init 0 -------------------------------------------------------------------------


def test_zeros_gives_all_zero_kernels_and_biases_with_a_warning() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 3))
    with pytest.warns(UserWarning, match="sets every kernel to zero"):
        WeightInit(std=0.0, zeros=True).setup(model, Context())
    assert all(p.abs().max().item() == 0 for p in model.parameters())


def test_default_std_zero_keeps_the_models_own_init_and_its_hash() -> None:
    model = nn.Linear(5, 3)
    before = model.weight.detach().clone()
    technique = WeightInit(std=0.0)
    assert technique.is_noop and not WeightInit(std=0.0, zeros=True).is_noop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        technique.setup(model, Context())
    assert torch.equal(model.weight, before) and model.bias.abs().max().item() > 0
    # `zeros` appears only when set, so older configurations keep their hash
    plain = load_config(None, ["techniques.weight_init.std=0.05"])
    spelled = load_config(
        None, ["techniques.weight_init.std=0.05", "techniques.weight_init.zeros=false"]
    )
    assert config_hash(plain) == config_hash(spelled)
    assert to_dict(plain)["techniques"] == {"weight_init": {"std": 0.05}}
    # std 0 without zeros is off and dropped; with zeros it stays in the configuration
    assert load_config(None, ["techniques.weight_init.std=0"]).techniques == {}
    faithful = load_config(None, list(FAITHFUL))
    assert faithful.techniques == {"weight_init": {"std": 0.0, "zeros": True}}


def test_faithful_gene_decoding_keeps_zeros_under_the_searched_std() -> None:
    """The search lays the gene's std over the base: 0 there is all-zero kernels."""
    from dicelab.tune.objective import configure

    base = load_config(None, [*TINY, *FAITHFUL, "data.split=search"])
    space = SearchSpace.paper(["weight_init"])
    assert configure(base, space, {"weight_init": 0.0}).techniques["weight_init"] == {
        "std": 0.0,
        "zeros": True,
    }
    assert configure(base, space, {"weight_init": 0.03}).techniques["weight_init"]["std"] == 0.03


def test_faithful_zeros_never_reach_a_space_that_does_not_search_weight_init() -> None:
    """The faithful base holds weight_init at std 0 with zeros, which stands for the searched
    gene at 0. A search of other genes must not train every trial with all-zero kernels (a
    network at chance): there the base's std 0 means PyTorch's default init, as without
    faithful, while the evaluation baseline (the gene's baseline, 0.05) is untouched."""
    from dicelab.tune.objective import configure

    base = load_config(None, [*TINY, *FAITHFUL, "data.split=search"])
    plain = load_config(None, [*TINY, "model.batchnorm=keras", "data.split=search"])
    space = SearchSpace.paper(["dropout", "lr"])
    params = {"dropout": 0.2, "lr": 2.0}
    trial = configure(base, space, params)
    assert "weight_init" not in trial.techniques
    assert config_hash(trial) == config_hash(configure(plain, space, params))
    searched = SearchSpace.paper(["weight_init", "dropout"])
    baseline = configure(base, searched, searched.baseline_params())
    assert baseline.techniques["weight_init"]["std"] == 0.05


def test_bad_zeros_value_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="techniques.weight_init.zeros"):
        load_config(None, ["techniques.weight_init.zeros=maybe"])


# -- Keras BatchNorm -----------------------------------------------------------------------


def test_faithful_batchnorm_is_keras() -> None:
    config = load_config(None, list(PAPER1_FULL["cifar10"].resolved_settings))
    assert config.model.batchnorm == "keras"
    model = build_model(
        "vgg", input_shape=(3, 32, 32), num_classes=10, batchnorm=config.model.batchnorm
    )
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert layers and all(m.momentum == pytest.approx(0.01) for m in layers)
    assert all(m.eps == pytest.approx(1e-3) for m in layers)
    # dicelab's default stays PyTorch's, and the CPU benchmark does not ask for faithful
    assert load_config(None, []).model.batchnorm == "pytorch"
    assert not PAPER1_SCALES["cpu"].faithful


# -- screening resets ----------------------------------------------------------------------


def _options(tmp_path: Path, **changes: object) -> SearchOptions:
    config = load_config(None, [*TINY, "train.epochs=1", "data.split=search"])
    fields: dict[str, object] = {
        "out": str(tmp_path),
        "particles": 2,
        "generations": 1,
        "screen": 30,
        "threads": 1,
        "quiet": True,
        "config": to_dict(config),
        **changes,
    }
    return SearchOptions(**fields)  # type: ignore[arg-type]


def test_screen_population_holds_the_authors_reset_genes_at_baseline(tmp_path: Path) -> None:
    options = _options(tmp_path, screen_reset=list(AUTHORS_SCREEN_RESET))
    space = SearchSpace.paper(None, images=True)
    population = _screen_population(options, space)
    assert len(population) == 30
    assert population == _screen_population(options, space)  # the same for every worker
    baseline = space.baseline_params()
    optional = {paper_space.GENES[i].param for i in paper_space.OPTIONAL}
    always = [paper_space.GENES[i].param for i in (0, 8, 14, 15, 17)]
    for params in population:
        assert params["lr_schedule"] == params["batch_schedule"] == 0.0
        on = [n for n in optional if not math.isclose(params[n], baseline[n])]
        assert len(on) <= options.sparse
        assert all(
            space.distributions()[n].low <= params[n] <= space.distributions()[n].high
            for n in params
        )
    for name in always:  # shuffle, weight init, optimizer, lr, batch: random
        assert len({p[name] for p in population}) == 30
    # dicelab's default screening keeps the schedule genes random (the plain PSO cell)
    assert AUTHORS_SCREEN_RESET == ("lr_schedule", "batch_schedule")


def test_screening_study_trains_the_reset_population_and_remembers_it(tmp_path: Path) -> None:
    options = _options(tmp_path, screen=4, screen_reset=["lr_schedule", "batch_schedule"])
    run_search(options)
    storage = open_storage(str(tmp_path / "study.journal"))
    screen = optuna.load_study(study_name="search-screen", storage=storage)
    trials = screen.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    assert all(t.params["lr_schedule"] == t.params["batch_schedule"] == 0 for t in trials)
    assert open_study(options).user_attrs["dicelab"]["screen_reset"] == [
        "batch_schedule",
        "lr_schedule",
    ]
    assert options_from_study(str(tmp_path), None, "search").screen_reset == [
        "batch_schedule",
        "lr_schedule",
    ]
    # another reset list is another search: refused with the difference named
    with pytest.raises(ConfigError, match="screen_reset"):
        open_study(_options(tmp_path, screen=4, screen_reset=["lr_schedule"]))


def test_summary_rebuilds_the_swarm_from_the_screened_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The summary's sampler starts from the screened positions as the workers' did: it
    recomputes the same swarm and does not warn that trials lie away from their particles."""
    options = _options(tmp_path, screen=4, generations=2, baseline_start=True)
    with caplog.at_level("WARNING", logger="dicelab.tune._pso.sampler"):
        summary = run_search(options)
    assert not [r for r in caplog.records if "away from its particle" in r.getMessage()]
    assert summary["generation"] == 2 and summary["counted"] == 4
    starts = swarm_starts(options, SearchSpace.paper(None, images=True))
    assert starts[0] == SearchSpace.paper(None, images=True).baseline_params()
    assert len(starts) == 1 + options.particles


def test_unknown_screen_reset_gene_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"screen_reset.*'lr_shedule'.*must name searched"):
        validate(_options(tmp_path, screen_reset=["lr_shedule"]))


def test_faithful_recipes_stop_after_three_generations_without_a_better_best() -> None:
    for recipe in PAPER1_FULL.values():
        assert recipe.faithful and recipe.patience == 3 and recipe.screen == 100
        assert recipe.screen_reset() == list(AUTHORS_SCREEN_RESET)
    assert PAPER1_SCALES["cpu"].screen_reset() == []  # not faithful: dicelab's screening


# -- the schedule genes in the longer final runs -------------------------------------------


@pytest.mark.parametrize("searched,final", [(20, 50), (20, 100), (20, 200), (10, 10)])
def test_rescaled_schedule_keeps_the_period_in_epochs(searched: int, final: int) -> None:
    for s in (-0.95, -0.5, -0.18, 0.05, 0.54, 0.99):
        period = int((1 - abs(s)) * searched) + 1
        rescaled = rescale_schedule(s, searched, final)
        assert math.copysign(1, rescaled) == math.copysign(1, s)
        # the rescaled gene's period in the final run (float rounding aside)
        assert int((1 - abs(rescaled)) * final + 1e-9) + 1 == period
    assert rescale_schedule(0.0, searched, final) == 0.0


def test_shorter_final_run_clips_the_schedule_gene() -> None:
    assert rescale_schedule(0.2, 20, 5) == 0.0  # period 17 > 5 epochs: no change in the run
    assert rescale_schedule(-1.0, 20, 5) == -1.0  # every epoch stays every epoch


def test_final_runs_rescale_the_schedule_genes_only_when_the_epochs_change() -> None:
    config = load_config(
        None,
        [
            "train.epochs=20",
            "techniques.lr_schedule.s=-0.5",
            "techniques.batch_schedule.s=0.6",
            "techniques.dropout.p=0.3",
        ],
    )
    longer = _final(config, 100, seed=3)
    assert longer["train"]["epochs"] == 100 and longer["seed"] == 3
    assert longer["data"]["split"] == "final"
    assert longer["techniques"]["lr_schedule"]["s"] == pytest.approx(-0.9)
    assert longer["techniques"]["batch_schedule"]["s"] == pytest.approx(0.92)
    assert longer["techniques"]["dropout"] == {"p": 0.3}
    same = _final(config, 20, seed=0)
    assert same["techniques"]["lr_schedule"]["s"] == -0.5
    assert _final(config, None, seed=0)["techniques"] == same["techniques"]


# -- the authors' swarm: asynchronous updates and the position cache -----------------------


def test_asynchronous_cached_search_never_trains_a_configuration_twice(tmp_path: Path) -> None:
    """A search over two coarse genes (shuffle and optimizer: six configurations in all) with
    the authors' swarm: after the first generation no trial trains a
    configuration an earlier trial trained; the study remembers both options."""
    options = _options(
        tmp_path,
        screen=0,
        particles=3,
        generations=4,
        genes=["shuffle", "optimizer"],
        update="asynchronous",
        cache=True,
    )
    summary = run_search(options)
    study = open_study(options)
    trials = sorted(
        (t for t in study.trials if "pso:generation" in t.system_attrs), key=lambda t: t.number
    )
    assert summary["generation"] == 4 and len(trials) < 12
    for k, trial in enumerate(trials):
        if trial.system_attrs["pso:generation"] > 0:
            earlier = {t.user_attrs["config_hash"] for t in trials[:k]}
            assert trial.user_attrs["config_hash"] not in earlier
    stored = options_from_study(str(tmp_path), None, "search")
    assert (stored.update, stored.cache) == ("asynchronous", True)
    assert open_study(stored).user_attrs["dicelab"]["update"] == "asynchronous"
    with pytest.raises(ConfigError, match="cache"):  # another swarm is another search
        open_study(_options(tmp_path, screen=0, particles=3, genes=options.genes))


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"cache": True, "generations": None, "trials": 5}, r"--cache.*--generations"),
        ({"sampler": "random", "update": "asynchronous", "trials": 5}, r"--update.*pso"),
        ({"update": "async"}, r"--update.*'async'.*synchronous or asynchronous"),
    ],
)
def test_bad_swarm_options_are_one_clear_error(
    tmp_path: Path, changes: dict[str, object], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate(_options(tmp_path, **changes))


def test_faithful_recipes_use_the_authors_swarm() -> None:
    from dicelab.reproduce.paper1 import _options as recipe_options
    from dicelab.reproduce.paper1 import dry_run

    full = recipe_options(PAPER1_FULL["mnist"], Path("x"), 1, None, 0)
    assert (full.update, full.cache) == ("asynchronous", True)
    cpu = recipe_options(PAPER1_SCALES["cpu"], Path("x"), 1, None, 0)
    assert (cpu.update, cpu.cache) == ("synchronous", False)
    assert "asynchronous swarm updates" in dry_run(PAPER1_FULL["mnist"])
