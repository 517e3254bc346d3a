"""Search benchmarks: samplers on a real dicelab objective, worker throughput, sampler cost.

    python benchmarks/bench_search.py samplers --trials 60 --seeds 0 1 2
    python benchmarks/bench_search.py throughput --trials 24
    python benchmarks/bench_search.py ask
    python benchmarks/bench_search.py append

``samplers``: PSO (with the authors' sparse start, with the first particle at the baseline
too, and with neither), CMA-ES (from the baseline, a population of ``--particles``), random
and TPE with the same budget on a cheap
objective: the paper's 22
genes, a narrow VGG, 3 epochs on 1,000 digits, BatchNorm recalibrated. It prints the best
validation accuracy after every tenth of the budget, mean ± std over the seeds.
``throughput``: trials per hour of one worker with every core, against 2 single-thread
workers, on the same search. The two runs go one after the other in this process.
``ask``: milliseconds for the PSO sampler to hand out a trial with 100, 1,000 and 10,000
trials already in a journal file and in memory.
``append``: microseconds per journal record written by dicelab's journal backend (which
checks the last record under the lock and rolls a failed write back) and by Optuna's own,
alternating between the two on files of the same size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from dicelab.config import load_config, to_dict
from dicelab.tune import PSOSampler
from dicelab.tune._journal import SafeJournalBackend
from dicelab.tune._pso.sampler import GENERATION, PARTICLE, POSITION
from dicelab.tune.objective import SearchSpace
from dicelab.tune.search import SearchOptions, run_search
from dicelab.tune.storage import open_storage

CHEAP = [
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=1000",
    "train.epochs=3",
    "train.recalibrate_bn=true",
]


def search_options(out: Path, settings: list[str], **kwargs: object) -> SearchOptions:
    config = to_dict(load_config(None, settings))
    return SearchOptions(out=str(out), config=config, quiet=True, **kwargs)  # type: ignore[arg-type]


def samplers(args: argparse.Namespace) -> None:
    marks = [max(1, args.trials * k // 10) for k in range(1, 11)]
    curves: dict[str, list[list[float]]] = {}
    for contestant in args.samplers:
        sampler = "pso" if contestant.startswith("pso") else contestant
        sparse = 0 if contestant == "pso-uniform" else 4  # the authors' sparse start, or not
        baseline_start = contestant == "pso-baseline"  # dicelab's default, CMA-ES's centre
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                options = search_options(
                    Path(out),
                    CHEAP,
                    sampler=sampler,
                    sparse=sparse,
                    baseline_start=baseline_start,
                    seed=seed,
                    trials=args.trials,
                    particles=args.particles,
                    workers=args.workers,
                    threads=1,
                )
                run_search(options)
                study = optuna.load_study(
                    study_name="search", storage=open_storage(Path(out) / "study.journal")
                )
                values = [
                    t.value if t.state == TrialState.COMPLETE and t.value is not None else 0.0
                    for t in sorted(study.trials, key=lambda t: t.number)
                ][: args.trials]
            best = np.maximum.accumulate(values)
            curves.setdefault(contestant, []).append([float(best[m - 1]) for m in marks])
    print(f"best validation accuracy after N trials, mean ± std over seeds {args.seeds}")
    print("| sampler | " + " | ".join(f"{m}" for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for sampler, runs in curves.items():
        cells = []
        for k in range(len(marks)):
            column = [run[k] for run in runs]
            spread = statistics.stdev(column) if len(column) > 1 else 0.0
            cells.append(f"{statistics.mean(column):.3f} ± {spread:.3f}")
        print(f"| {sampler} | " + " | ".join(cells) + " |")


def throughput(args: argparse.Namespace) -> None:
    settings = [
        "data.name=mnist5k",
        "device=cpu",
        "model.width=8",
        "train.epochs=2",
        "train.recalibrate_bn=true",
    ]
    rates = {}
    for workers, threads in ((1, 2), (2, 1)):
        with tempfile.TemporaryDirectory() as out:
            options = search_options(
                Path(out),
                settings,
                sampler="random",
                trials=args.trials,
                workers=workers,
                threads=threads,
            )
            start = time.perf_counter()
            run_search(options)
            seconds = time.perf_counter() - start
        rates[(workers, threads)] = args.trials / seconds * 3600
        print(f"{workers} worker(s) x {threads} thread(s): {seconds:.1f} s, {args.trials} trials")
    one, two = rates[(1, 2)], rates[(2, 1)]
    print(f"trials per hour: 1 worker {one:.0f}, 2 workers {two:.0f}, ratio {two / one:.2f}")


def ask(args: argparse.Namespace) -> None:
    space = SearchSpace.paper().distributions()
    rng = np.random.default_rng(0)
    particles = 22
    print("| trials in storage | storage | first ask (ms) | median ask (ms) |")
    print("|---|---|---|---|")
    for n in (100, 1_000, 10_000):
        trials = []
        for k in range(n):
            g, i = divmod(k, particles)
            params = {name: float(rng.uniform(d.low, d.high)) for name, d in space.items()}
            trials.append(
                create_trial(
                    params=params,
                    distributions=space,
                    value=float(rng.random()),
                    system_attrs={GENERATION: g, PARTICLE: i, POSITION: list(params.values())},
                )
            )
        for kind in ("journal", "memory"):
            with tempfile.TemporaryDirectory() as folder:
                storage = open_storage(Path(folder) / "s.journal") if kind == "journal" else None
                study = optuna.create_study(storage=storage, direction="maximize")
                study.add_trials(trials)
                study.sampler = PSOSampler(space, n_particles=particles, seed=0)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    trial = study.ask()
                    for name, d in space.items():
                        trial.suggest_float(name, d.low, d.high)
                    times.append(time.perf_counter() - start)
                    study.tell(trial, 0.5)
                first, rest = times[0] * 1e3, statistics.median(times[1:]) * 1e3
                print(f"| {n} | {kind} | {first:.1f} | {rest:.2f} |")


def append(args: argparse.Namespace) -> None:
    record = {
        "op_code": 5,
        "worker_id": "0" * 48,
        "trial_id": 1,
        "param_name": "label_smoothing",
        "param_value_internal": 0.123456789,
        "distribution": '{"name": "FloatDistribution", "attributes": {"low": 0, "high": 1}}',
    }
    with tempfile.TemporaryDirectory() as folder:
        backends = {
            "dicelab": SafeJournalBackend(str(Path(folder) / "a.journal")),
            "optuna": JournalFileBackend(str(Path(folder) / "b.journal")),
        }
        for backend in backends.values():  # a journal of a few hundred trials' size
            for _ in range(args.records):
                backend.append_logs([record])
        times: dict[str, list[float]] = {name: [] for name in backends}
        for i in range(args.repeats):
            for name in sorted(backends, reverse=bool(i % 2)):  # alternate who goes first
                start = time.perf_counter()
                backends[name].append_logs([record])
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    print("| backend | median µs per record |")
    print("|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.0f} |")
    print(f"ratio dicelab / optuna: {median['dicelab'] / median['optuna']:.3f}")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("samplers")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--particles", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--samplers",
        nargs="+",
        default=["pso", "pso-baseline", "pso-uniform", "cmaes", "random", "tpe"],
        choices=["pso", "pso-baseline", "pso-uniform", "cmaes", "random", "tpe"],
        help="pso: the authors' sparse start; pso-baseline: also the first particle at the "
        "baseline (dicelab's default); pso-uniform: no sparse start",
    )
    p = commands.add_parser("throughput")
    p.add_argument("--trials", type=int, default=24)
    p = commands.add_parser("ask")
    p.add_argument("--repeats", type=int, default=21)
    p = commands.add_parser("append")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3000)
    args = parser.parse_args()
    run = {"samplers": samplers, "throughput": throughput, "ask": ask, "append": append}
    run[args.command](args)


if __name__ == "__main__":
    main()
