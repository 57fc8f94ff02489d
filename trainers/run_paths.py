"""Where a run writes, checked before it starts: its folder inside the output folder (resolved,
so neither `..` nor a symbolic link leads out of it), the run table beside it, and the lock that
keeps two processes from training the same run into the same folder at once."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atlas_bayes.trainers.config import ConfigError, run_id_problem

LOCK_NAME = "train.lock"


@dataclass(frozen=True)
class RunPaths:
    """A run's outputs: OUT/<run_id>/{config.json, checkpoints/, train.lock} and OUT/<runs file>."""
    out: Path
    run_id: str
    run_dir: Path
    table: Path

    @property
    def config(self) -> Path:
        return self.run_dir / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"


def run_paths(out: str | Path, run_id: str, runs_file: str = "runs.csv", *, own_table: bool = False,
              create: bool = True) -> RunPaths:
    """The checked paths of run `run_id` under the output folder `out` (created if missing,
    unless not `create`: a process that only reads); ConfigError naming the path when one
    would leave `out` or is of the wrong kind. `own_table`: the run table is the run's own,
    OUT/<run_id>/<runs_file> (a Ray task's: the plan's table is the driver's alone)."""
    out = Path(out)
    if (problem := run_id_problem(run_id, runs_file)) is not None:
        raise ConfigError(f"run_id: {problem}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out}: found a file, expected a folder")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"output folder {out}: cannot be created ({err.strerror or err})") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"output folder {out}: not writable")
    root = out.resolve()
    run_dir = _inside(root, out / run_id, "run_id")
    table = (_inside(run_dir, out / run_id / runs_file, "runs_file") if own_table
             else _inside(root, out / runs_file, "runs_file"))
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_id {run_id!r}: {run_dir} is a file, expected the run's folder")
    if table.is_dir():
        raise ConfigError(f"{table} is a folder, expected the run table file")
    return RunPaths(out, run_id, out / run_id, (out / run_id if own_table else out) / runs_file)


@contextmanager
def claim_run(paths: RunPaths):
    """Hold OUT/<run_id>/train.lock while the block runs; ConfigError at once when another
    process holds it (it is training the same run into the same folder)."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = paths.run_dir / LOCK_NAME
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            raise ConfigError(f"run {paths.run_id!r} is being trained into {paths.out} by another "
                              f"process{f' (pid {holder})' if holder else ''}, which holds {lock_path}; "
                              "wait for it to finish, or choose another run_id or output folder") from None
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield paths
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _inside(root: Path, path: Path, what: str) -> Path:
    """`path` resolved; ConfigError unless it is a direct child of `root` (resolved)."""
    resolved, root = path.resolve(), root.resolve()
    if resolved.parent != root:
        raise ConfigError(f"{what} {path.name!r}: {path} resolves to {resolved}, outside the output "
                          f"folder {root}; expected a path inside it")
    return resolved
