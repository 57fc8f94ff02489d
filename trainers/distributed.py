"""One run across several processes (hosts): `jax.distributed` set up from flags or the
environment, and which process writes.

A run spans hosts when the same `atlas-bayes train` command runs once per process, each told
the coordinator's address (host:port of process 0), the number of processes and its own id:

    atlas-bayes train --config run.json --out /shared/runs \\
        --coordinator node0:12345 --num-processes 2 --process-id 0     # on node0; 1 on node1

Where a flag is not given, the environment says: `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (what a launcher such as a Ray task group sets), or,
inside `srun`, SLURM's own variables (JAX detects them: `SLURM_NTASKS` > 1). Every process then
sees every process's devices in one mesh (`train.make_mesh`); the batch for a step is the same
pure function of the step everywhere and each process contributes its slice. Process 0 alone
writes the run table, the run's config and its lock; checkpoints are written through Orbax,
which writes replicated state from process 0 only, and every process reads them to resume.
On CPUs the processes' collectives go through gloo.
"""

from __future__ import annotations

import os

import jax

ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ=os.environ) -> dict | None:
    """The distributed settings from the arguments, else the environment (`ENV`); None when
    neither asks for more than one process (SLURM's variables count: `SLURM_NTASKS` > 1).
    ValueError when they are incomplete or out of range."""
    given = {"coordinator": coordinator or environ.get(ENV["coordinator"]) or None,
             "num_processes": num_processes, "process_id": process_id}
    for key in ("num_processes", "process_id"):
        if given[key] is None and environ.get(ENV[key], "").strip():
            try:
                given[key] = int(environ[ENV[key]])
            except ValueError:
                raise ValueError(f"{ENV[key]}: expected a whole number, found "
                                 f"{environ[ENV[key]]!r}") from None
    if all(v is None for v in given.values()):
        slurm = environ.get("SLURM_NTASKS", "")
        return {"slurm": True} if slurm.isdigit() and int(slurm) > 1 and "SLURM_PROCID" in environ \
            else None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"a run across processes needs the coordinator's address, the number of "
                         f"processes and this process's id; missing {', '.join(missing)} (flags "
                         f"--coordinator, --num-processes, --process-id or "
                         f"{', '.join(ENV[k] for k in missing)})")
    if given["num_processes"] < 1 or not 0 <= given["process_id"] < given["num_processes"]:
        raise ValueError(f"expected 0 <= process id < number of processes, found process id "
                         f"{given['process_id']} of {given['num_processes']}")
    if ":" not in given["coordinator"]:
        raise ValueError(f"coordinator: expected host:port, found {given['coordinator']!r}")
    return given


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join the run's processes (`jax.distributed.initialize`) when `settings` asks for more
    than one; returns whether it did. Call before JAX starts (before any computation).
    Where something else has joined them already (Ray Train's `JaxTrainer` does, in each of its
    workers), nothing is done: `train()` uses the processes as they are."""
    if jax.distributed.is_initialized():
        return False
    found = settings(coordinator, num_processes, process_id)
    if found is None or found.get("num_processes") == 1:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")   # CPU devices' collectives
    if found.get("slurm"):
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(found["coordinator"], found["num_processes"], found["process_id"])
    return True


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0; the only one without
    `jax.distributed`, where asking starts no JAX backend: a Ray driver never starts one)."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process of the run gets here (nothing to wait for with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
