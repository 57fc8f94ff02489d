"""Data commands: `adapt` (public data sets to run tables) and `train` (the companion trainer)."""

from __future__ import annotations

from pathlib import Path

from atlas_bayes.cli.common import BadInput, command, read_runs_or_fail


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    from atlas_bayes.tables.adapters import ADAPTERS
    adapt = command(commands, "adapt", "convert a public data set into a run table", "Convert one "
                    "of the public data sets (e.g. in ../shared/data) into a run table file.",
                    run_adapt)
    adapt.add_argument("dataset", choices=sorted(ADAPTERS))
    adapt.add_argument("path", help="the data set's file, or its folder")
    adapt.add_argument("--out", type=Path, required=True, help="run table to write (.csv or .parquet)")

    train = command(
        commands, "train", "train byte-level models and write their learning curves to a run table",
        "Train a run (or a plan of runs) with the companion Flax trainer and append its learning "
        "curves (bits per byte per evaluation language) to OUT/runs.csv. Rerunning resumes from "
        "the last checkpoint. Needs the 'train' extra.", run_train)
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="one run's config (.json, .yaml or .yml)")
    source.add_argument("--plan", type=Path, help="a JSONL file of run configs, run in order")
    train.add_argument("--out", type=Path, default=Path("runs"),
                       help="output folder: runs.csv plus one folder per run (default: runs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_adapt(args) -> int:
    """`adapt`: convert a public data set into a run table file."""
    from atlas_bayes.tables.adapters import ADAPTERS
    from atlas_bayes.tables.runs import write_runs

    runs = read_runs_or_fail(args.path, ADAPTERS[args.dataset], always=Warning)
    write_runs(runs, args.out)
    print(f"wrote {len(runs)} rows ({runs['run_id'].nunique()} runs) to {args.out}")
    return 0


def run_train(args) -> int:
    """`train`: run one config or a plan with the companion trainer; print each run's final loss."""
    try:
        from atlas_bayes.trainers.data import CorpusError
        from atlas_bayes.trainers.train import ConfigError, read_configs, run_plan
    except ImportError as err:
        raise BadInput(f"training needs the 'train' extra ({err}); install it with "
                       "pip install -e '.[train]'") from None
    path = args.config or args.plan
    try:
        configs = read_configs(path, plan=bool(args.plan))
        rows = run_plan(configs, args.out, progress=not args.no_progress)
    except (ConfigError, CorpusError) as err:
        raise BadInput(f"{path}: {err}") from None
    final = rows.sort_values("n_tokens").groupby(["run_id", "language"]).tail(1)
    for record in final.itertuples():
        print(f"{record.run_id} [{record.language}]: {record.loss:.4f} bits/byte after "
              f"{record.n_tokens:.4g} tokens")
    print(f"wrote {len(rows)} rows ({len(configs)} run(s)) to {args.out / 'runs.csv'}")
    return 0
