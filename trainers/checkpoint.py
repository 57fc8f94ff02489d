"""Orbax checkpoints of a run: the train state (params, optimizer state) plus JSON metadata.

`<run folder>/checkpoints/<step>/` holds `state` (arrays) and `meta` (step, tokens seen, the
run's config). Saves are asynchronous on accelerators; `close()` waits for them.

In a run across processes (`trainers/distributed.py`) the state is replicated, so process 0
alone writes it (a host copy) and every process reads it back on its own: each process's
manager is a one-process Orbax manager (`active_processes` = itself), and the others never
write into the folder.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, folder: str | Path, max_to_keep: int = 2):
        self.folder = Path(folder).resolve()
        self.processes = jax.process_count()
        me = jax.process_index()
        if self.processes > 1 and me == 0:
            self.folder.mkdir(parents=True, exist_ok=True)   # Orbax's create is for all processes
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if me else max_to_keep, save_interval_steps=0 if me else 1,
            create=self.processes == 1, read_only=me != 0,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me} if self.processes > 1 else None))
        self.manager = ocp.CheckpointManager(self.folder, options=options)

    def latest_step(self) -> int | None:
        if self.processes > 1:
            self.manager.reload()        # process 0 may have written since
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Save `state` at `step` (process 0 only when the run spans processes)."""
        if self.processes > 1:
            if jax.process_index():
                return
            state = jax.tree.map(np.asarray, state)      # replicated: the host copy is all of it
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, like_state, step: int | None = None):
        """(state, meta) at `step` (default: the latest), shaped and sharded like `like_state`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.folder}")
        if self.processes > 1:
            template = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), like_state)
        else:
            template = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
        state = out["state"]
        if self.processes > 1:
            state = jax.device_put(state, jax.tree.map(lambda a: a.sharding, like_state))
        return state, dict(out["meta"])

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.folder}")
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
