"""Data commands: `adapt` (public data sets to run tables) and `train` (the companion trainer)."""

import os
from pathlib import Path

from atlas_bayes.cli import common


def add_commands(commands) -> None:
    """Register `adapt` and `train`."""
    from atlas_bayes.tables.adapters import ADAPTERS
    add = common.command(commands, "adapt", run_adapt).add_argument
    add("dataset", choices=sorted(ADAPTERS), help="the data set's name")
    add("path", help="the data set's file, or its folder")
    add("--out", type=Path, required=True, help="run table to write (.csv or .parquet)")

    train = common.command(commands, "train", run_train)
    source = train.add_mutually_exclusive_group(required=True).add_argument
    source("--config", type=Path, help="one run's config (.json, .yaml or .yml)")
    source("--plan", type=Path, help="a JSONL file of run configs, run in order")
    add = train.add_argument
    add("--out", type=Path, default=Path("runs"), help="output folder: runs.csv and a folder per run "
        "(default: runs)")
    add("--no-progress", action="store_true", help="no progress bar")
    common.ray_option(train, "each run as a Ray task")
    add("--cpus-per-run", type=common.positive_float, default=1.0,
        help="with --ray: CPUs each run asks for (default 1)")
    add("--gpus-per-run", type=common.positive_float, help="with --ray: GPUs each run asks for, "
        "a fraction to share one (default, where the cluster has GPUs: 1, or 1/8 for t0-t2)")
    add("--coordinator", help="one run across processes: process 0's HOST:PORT (or "
        "JAX_COORDINATOR_ADDRESS; inside srun, SLURM's variables)")
    add("--num-processes", type=common.positive_int, help="the run's processes (or JAX_NUM_PROCESSES)")
    add("--process-id", type=common.nonnegative_int, help="this process's id, 0 to N-1 "
        "(or JAX_PROCESS_ID)")


def run_adapt(args) -> int:
    """Convert a public data set (e.g. in ../shared/data) into a run table."""
    from atlas_bayes.tables.adapters import ADAPTERS
    from atlas_bayes.tables.atomic_files import atomic_file
    from atlas_bayes.tables.runs import write_runs
    table_path(args.out)
    runs = common.read_runs_or_fail(args.path, ADAPTERS[args.dataset], always=Warning)
    with atomic_file(args.out) as tmp:
        write_runs(runs, tmp)
    print(f"wrote {len(runs)} rows ({runs['run_id'].nunique()} runs) to {args.out}")
    return 0


def table_path(out: Path) -> None:
    """Check that a run table can be written at `out` (creating its folder); BadInput if not."""
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise common.BadInput(f"--out {out}: cannot write a run table as '{out.suffix or out.name}'; "
                              "expected a path ending in .csv or .parquet")
    if out.is_dir():
        raise common.BadInput(f"--out {out}: found a folder, expected a .csv or .parquet file path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise common.BadInput(f"--out {out}: cannot create its folder {out.parent} "
                              f"({err.strerror or err})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise common.BadInput(f"--out {out}: its folder {out.parent} is not writable")


def run_train(args) -> int:
    """Train byte-level models and write their learning curves to a run table.

    Runs the companion Flax trainer and appends the curves (bits per byte per evaluation language)
    to OUT/runs.csv; a rerun resumes from the last checkpoint. Needs the 'train' extra."""
    try:
        from atlas_bayes.trainers import distributed
        from atlas_bayes.trainers.data import CorpusError
        from atlas_bayes.trainers.train import ConfigError, plan_summary, read_configs, run_plan
    except ImportError as err:
        raise common.BadInput(f"training needs the 'train' extra ({err}); install it with "
                              "pip install -e '.[train]'") from None
    path = args.config or args.plan
    if args.out.exists() and not args.out.is_dir():
        raise common.BadInput(f"--out {args.out}: found a file, expected the output folder")
    spans = (args.coordinator, args.num_processes, args.process_id) != (None, None, None)
    if args.ray is None and (args.gpus_per_run is not None or args.cpus_per_run != 1.0):
        raise common.BadInput("--cpus-per-run and --gpus-per-run go with --ray")
    if args.ray is not None and spans:
        raise common.BadInput("--ray runs each run in one process; --coordinator, --num-processes "
                              "and --process-id are for one run across processes, without --ray")
    with common.bad_input(path, errors=(ConfigError, CorpusError)):
        configs = read_configs(path, plan=bool(args.plan))
        if args.ray is not None:
            rows = train_on_ray(configs, args)
        else:
            with common.bad_input():
                distributed.initialize(args.coordinator, args.num_processes, args.process_id)
            rows = run_plan(configs, args.out, progress=not args.no_progress)
    if distributed.is_writer():
        print(plan_summary(rows, len(configs), args.out))
    return 0


def train_on_ray(configs, args):
    """The plan's runs as Ray tasks (`trainers.ray_plan`); failed runs are bad input, named."""
    try:
        from atlas_bayes.trainers.ray_session import import_ray
        from atlas_bayes.trainers.ray_plan import PlanFailed, run_plan_on_ray
        import_ray()
    except ImportError as err:
        raise common.BadInput(str(err)) from None
    with common.bad_input(errors=PlanFailed), common.bad_input(f"--ray {args.ray}", errors=ConnectionError):
        return run_plan_on_ray(configs, args.out, address=args.ray, progress=not args.no_progress,
                               cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
