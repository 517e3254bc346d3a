"""Analysis and report time for a large study: 10,000 trials over the paper's 22 genes.

The study is synthetic: trials with random gene values and a value that depends on a few of
them, written to a journal file. Nothing is trained. The benchmark times ``dicelab analyze``
(correlations and both importance evaluators) and ``dicelab report`` on it.

    python benchmarks/bench_report.py --trials 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import create_trial

from dicelab.analysis.analyze import analyze
from dicelab.config import load_config, to_dict
from dicelab.reports.html import build_report
from dicelab.tune.objective import SearchSpace
from dicelab.tune.search import SearchOptions, open_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = SearchSpace.paper().distributions()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        options = SearchOptions(
            out=folder, trials=1, config=to_dict(load_config(None, ["data.name=digits"]))
        )
        study = open_study(options)
        trials = []
        for _ in range(args.trials):
            params = {n: float(rng.uniform(d.low, d.high)) for n, d in space.items()}
            value = 0.9 - 0.05 * abs(params["lr"] - 2.5) + 0.1 * params["dropout"]
            trials.append(
                create_trial(params=params, distributions=space, value=value + rng.normal(0, 0.01))
            )
        start = time.perf_counter()
        study.add_trials(trials)
        print(f"writing {args.trials} trials to the journal: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        analyze(options)
        analysed = time.perf_counter() - start
        start = time.perf_counter()
        build_report(Path(folder))
        reported = time.perf_counter() - start
    print(f"analyze (correlations, PED-ANOVA, fANOVA): {analysed:.1f} s")
    print(f"report (reads the saved analysis, draws and embeds the figures): {reported:.1f} s")
    print(f"together: {analysed + reported:.1f} s (target < 30 s)")


if __name__ == "__main__":
    main()
