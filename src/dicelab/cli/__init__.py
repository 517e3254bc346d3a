"""The ``dicelab`` command line.

Exit codes: 0 success, 1 a run that failed (diverged), 2 a usage, configuration, data or file
(I/O) error.
A user mistake prints one message naming the field, the value and what is allowed, never a
traceback. Commands are listed in ``_COMMANDS``; each adds its arguments to a sub-parser and
returns an exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dicelab.cli import _analysis, _search
from dicelab.exceptions import ConfigError, DicelabError, UnknownNameError
from dicelab.version import __version__


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c/--config``, ``--set``, bare ``KEY=VALUE`` and ``--device``: the run configuration
    of a command.

    Every ``-c`` file lands in ``args.config_files`` (merged in order) and ``args.config`` is
    what :func:`main` makes of them for the library: ``None``, the one file, or the merged
    data of several. ``--set`` and bare settings go into ``args.overrides`` in command-line
    order, applied after the files.
    """
    parser.add_argument(
        "-c",
        "--config",
        dest="config_files",
        type=Path,
        action="append",
        default=[],
        help="YAML run configuration; repeat to merge several in order (later files win, "
        "sections merge key by key)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one configuration value, e.g. --set optimizer.lr=0.01 (repeatable)",
    )
    parser.add_argument(
        "settings",
        nargs="*",
        action=_BareSettings,
        metavar="KEY=VALUE",
        help="the same as --set KEY=VALUE, e.g. optimizer.lr=0.01",
    )
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides the config)")


class _BareSettings(argparse.Action):
    """Bare ``KEY=VALUE`` arguments, appended to ``--set``'s list where they stand."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        settings = [str(value) for value in values or ()]
        for setting in settings:
            if "=" not in setting or setting.startswith("="):
                parser.error(f"unrecognized argument {setting!r}: a setting is KEY=VALUE")
        overrides = list(getattr(namespace, "overrides", None) or [])
        namespace.overrides = overrides + settings


def config_source(files: list[Path]) -> Path | dict[str, Any] | None:
    """What ``-c`` files give the library's ``config`` argument: nothing, the one file, or the
    data of several merged in order."""
    from dicelab.config import read_yamls

    if not files:
        return None
    return files[0] if len(files) == 1 else read_yamls(files)


def _add_train(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", help="run folder (default: runs/<data>-<model>-s<seed>-<hash>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run folder's last checkpoint"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from dicelab.config import config_hash, load_config
    from dicelab.train import Trainer

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    config = load_config(args.config_files, overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads", args.threads, "must be >= 1")
        torch.set_num_threads(args.threads)
    run_dir = folder_argument("--out", args.out) or Path("runs") / _default_run_name(
        config.data.name, config.model.name, config.seed, config_hash(config)
    )
    # Under torchrun (parallel m-RWP) every rank trains; rank 0 alone reports and writes.
    speaks = not args.quiet and os.environ.get("RANK", "0") == "0"
    progress = speaks and sys.stderr.isatty()
    log = _stderr if speaks else None
    try:
        result = Trainer(config, run_dir=run_dir, progress=progress, log=log).fit(
            resume=args.resume
        )
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if os.environ.get("RANK", "0") != "0":
        return 0 if result.status == "completed" else 1
    if result.status != "completed":
        print(f"run {result.status}: {result.message}. Results kept in {run_dir}", file=sys.stderr)
        return 1
    parts = [f"test accuracy {result.test_acc:.4f}"]
    if result.last_val_acc is not None:
        parts.append(f"last val accuracy {result.last_val_acc:.4f}")
    parts.append(f"{result.epochs_completed} epochs in {result.wall_time_s:.1f} s")
    print(f"{', '.join(parts)}; results in {run_dir}")
    return 0


def folder_argument(flag: str, value: str | None) -> Path | None:
    """A folder given on the command line, or None when the flag was not given.

    An empty value is refused: ``Path("")`` is the current directory, so ``--out ""`` (an
    unset shell variable, say) would write into wherever the command runs.
    """
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(
            flag, value, "must name a folder", hint=f"Use {flag} . for the current folder."
        )
    return Path(value)


def _default_run_name(data: str, model: str, seed: int, digest: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{data}-{model}")
    return f"{safe}-s{seed}-{digest[:8]}"


def _add_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what", help="datasets, models, techniques or space (the paper's 22 genes)"
    )


def _run_list(args: argparse.Namespace) -> int:
    if args.what == "datasets":
        from dicelab.data import list_datasets

        for info in list_datasets():
            where = "offline" if info.offline else "files or download"
            print(f"{info.name:<15} {where:<17} {info.description}")
    elif args.what == "models":
        from dicelab.models import list_models

        for model in list_models():
            print(f"{model.name:<12} {model.description}")
    elif args.what == "techniques":
        _list_techniques()
    elif args.what == "space":
        _list_space()
    else:
        raise UnknownNameError(
            "list", args.what, ["datasets", "models", "techniques", "space"], kind="listing"
        )
    return 0


def _list_techniques() -> None:
    from dicelab.space import hparams
    from dicelab.techniques import list_techniques

    print(f"{'technique':<18} {'category':<13} {'hyperparameter':<15} {'off':<8} range")
    for cls in list_techniques():
        for i, (field, spec) in enumerate(hparams(cls).items()):
            name, category = (cls.name, cls.category.value) if i == 0 else ("", "")
            off = spec.default if field == cls.strength else "-"
            print(f"{name:<18} {category:<13} {field:<15} {off!s:<8} {spec.describe()}")


def _list_space() -> None:
    from dicelab.paper_space import GENES

    print(f"{'#':>2} {'gene':<17} {'bounds':<14} {'baseline':<9} {'sets':<32} decoding")
    for i, gene in enumerate(GENES):
        span = f"[{gene.low:g}, {gene.high:g}]"
        rule = f"{gene.rule} (the authors' {gene.authors!r})" if gene.authors else gene.rule
        print(f"{i:>2} {gene.name:<17} {span:<14} {gene.baseline:<9g} {gene.target:<32} {rule}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_search_command = (_search.add_search, _search.run_search)
_evaluate_command = (_search.add_evaluate, _search.run_evaluate)
_report_command = (_search.add_report, _search.run_report)

_COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "train": ("train one configuration", _add_train, _run_train),
    "list": ("list datasets, models, techniques or the search space", _add_list, _run_list),
    "search": ("search where and how much randomness helps (PSO on Optuna)", *_search_command),
    "evaluate": (
        "retrain a search's best configuration and the baseline; test-error reduction",
        *_evaluate_command,
    ),
    "ablate": (
        "retrain the best configuration without each technique and each category",
        _search.add_ablate,
        _search.run_ablate,
    ),
    "analyze": (
        "correlations by optimizer, importance and error-reduction tables of a search",
        _search.add_analyze,
        _search.run_analyze,
    ),
    "report": ("write a self-contained HTML report of a results folder", *_report_command),
    "landscape": (
        "loss along filter-normalised random directions around a trained run",
        _analysis.add_landscape,
        _analysis.run_landscape,
    ),
    "hessian": (
        "top Hessian eigenvalues and trace of a trained run's training loss",
        _analysis.add_hessian,
        _analysis.run_hessian,
    ),
    "reproduce": (
        "run a paper's whole pipeline: paper1 or paper3, --scale smoke|cpu|full",
        _analysis.add_reproduce,
        _analysis.run_reproduce,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="dicelab", description="Randomness engineering for deep-network training."
    )
    parser.add_argument("--version", action="version", version=f"dicelab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, add_arguments, _run) in _COMMANDS.items():
        add_arguments(commands.add_parser(name, help=summary, description=summary))
    return parser


def _import_from_current_folder() -> None:
    try:
        here = os.getcwd()
    except OSError:  # the folder was removed under us: nothing to import from it
        return
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dicelab`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    # A `module:function` model or dataset in the current folder imports as it would under
    # `python -m`; appended, so it never shadows an installed package of the same name.
    _import_from_current_folder()
    try:
        if hasattr(args, "config_files"):
            args.config = config_source(args.config_files)
        return _COMMANDS[args.command][2](args)
    except DicelabError as err:
        print(f"dicelab {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # the reader went away (`dicelab list space | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # last resort: a file problem no command reported itself
        where = err.filename if err.filename is not None else "a file"
        print(f"dicelab {args.command}: error: {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = " and --resume" if args.command == "train" else ""
        print(f"interrupted; continue with the same command{again}", file=sys.stderr)
        return 130
