"""A plan's runs as Ray tasks, on this machine or on a cluster (`atlas-bayes train --plan P --ray`).

    from atlas_bayes.trainers.ray_plan import run_plan_on_ray
    rows = run_plan_on_ray(configs, "/shared/runs")                   # Ray started here
    rows = run_plan_on_ray(configs, "/shared/runs", address="auto")   # a running cluster

- One task per run, asking for its shape's resources (`resources.run_resources`).
- A finetune's task takes its base's task as an argument: Ray starts it once the base has
  finished (and fails it, naming the base, when the base failed).
- A task whose worker process dies (killed, out of memory, its node lost) is retried, up to
  `max_retries` times; the retry resumes from the run's last checkpoint, as a rerun of
  `train` does. Errors the trainer raises (a bad config, a missing corpus) are not retried.
- Tasks write only into their run's folder: checkpoints, config.json and the run's own table
  OUT/<run_id>/runs.csv. This process (the driver) alone writes the plan's table OUT/runs.csv:
  each finished run's rows replace any earlier rows of that run in one atomic rewrite
  (`train.update_run_table`), so a retried run is never counted twice; and
  OUT/plan-status.json, each run's state, seconds, node and the step it resumed from.
- OUT must be a path that every node reaches under the same name (a shared file system).
- Running the same plan again skips finished runs (their last checkpoint is final) and
  resumes the others.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from atlas_bayes.tables.atomic_files import atomic_write
from atlas_bayes.tables.runs import RunTableWarning, read_runs
from atlas_bayes.trainers.config import RunConfig
from atlas_bayes.trainers.ray_session import session
from atlas_bayes.trainers.resources import gpu_env, run_resources
from atlas_bayes.trainers.train import check_plan, update_run_table

STATUS = "plan-status.json"
MAX_RETRIES = 3


class PlanFailed(RuntimeError):
    """Runs of a plan that failed, each named with its error (the others were written)."""


def run_plan_on_ray(configs: list[RunConfig | dict], out: str | Path, *, address: str | None = None,
                    progress: bool = True, cpus_per_run: float = 1.0, gpus_per_run: float | None = None,
                    max_retries: int = MAX_RETRIES, num_cpus: int | None = None, on_finished=None,
                    _kill_after: dict | None = None) -> pd.DataFrame:
    """Train the plan's runs as Ray tasks into `out`; returns their rows in plan order.

    The plan is checked whole first (`train.check_plan`). `on_finished(run_id, rows)` is
    called in this process as each run finishes, after its rows are in OUT/runs.csv.
    PlanFailed after the other runs are written when some failed. `_kill_after` {run_id:
    steps}: that run's first worker is killed (SIGKILL) after so many steps (tests)."""
    parsed = check_plan(configs, out)
    out = Path(out).resolve()
    with session(address, num_cpus) as ray:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(_train_task)
        refs = {}
        for config in parsed:
            need = run_resources(config, gpus, gpus_per_run, cpus_per_run)
            _warn_if_no_node_fits(ray, config.run_id, need)
            env = gpu_env(need["num_gpus"])
            bases = [refs[config.init]] if config.init in refs else []
            refs[config.run_id] = task.options(
                name=f"train {config.run_id}", max_retries=max_retries, retry_exceptions=False,
                **need, **({"runtime_env": {"env_vars": env}} if env else {}),
            ).remote(config.to_dict(), str(out), (_kill_after or {}).get(config.run_id), *bases)
        return _collect(ray, refs, {c.run_id: c for c in parsed}, out, progress, on_finished,
                        max_retries)


def _train_task(config: dict, out: str, kill_after: int | None, *bases) -> dict:
    """One run in a Ray worker (`bases`: the finished base run's result, awaited by Ray)."""
    import ray

    from atlas_bayes.trainers.train import train
    started, started_at = time.perf_counter(), time.time()
    _carry_rows(Path(out), config["run_id"])
    if kill_after is not None:
        marker = Path(out) / config["run_id"] / "killed-by-test"
        if not marker.exists():
            train(config, out, progress=False, own_table=True, _stop_after=kill_after)
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    rows = train(config, out, progress=False, own_table=True)
    return {"rows": rows, "resumed_from_step": int(rows.attrs.get("resumed_from_step", 0)),
            "seconds": time.perf_counter() - started, "started_at": started_at,
            "finished_at": time.time(), "node": ray.util.get_node_ip_address(), "pid": os.getpid()}


def _carry_rows(out: Path, run_id: str) -> None:
    """Before a run's first task: the rows the plan's table already holds for it (trained by
    `train --plan` without Ray into the same folder) become its own table's, so resuming it
    from its checkpoint keeps the curve's earlier points."""
    own, shared = out / run_id / "runs.csv", out / "runs.csv"
    if own.exists() or not shared.exists():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        table = read_runs(shared)
    rows = table[table["run_id"] == run_id]
    if not rows.empty:
        update_run_table(own, run_id, rows.to_dict("records"), -math.inf)


def _warn_if_no_node_fits(ray, run_id: str, need: dict) -> None:
    """A warning (stderr) when no live node has the resources a run asks for: Ray would wait
    for one (an autoscaling cluster may add it)."""
    keys = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(node.get(keys[k], 0) >= v for k, v in need.items() if v) for node in nodes):
        print(f"atlas-bayes: warning: run {run_id} asks for {need}; no node of the cluster has "
              "that much, so it waits until one does", file=sys.stderr)


def _collect(ray, refs: dict, configs: dict, out: Path, progress: bool, on_finished,
             max_retries: int) -> pd.DataFrame:
    """Wait for the tasks as they finish: write each run's rows and the status, report it."""
    table, run_of = out / "runs.csv", {ref: run_id for run_id, ref in refs.items()}
    status = {run_id: {"state": "queued"} for run_id in refs}
    frames, failed, pending = {}, {}, list(refs.values())
    bar = _bar(progress, len(refs))
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            run_id = run_of[ready[0]]
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                base = configs[run_id].init
                failed[run_id] = (f"its base run {base} failed" if base in failed
                                  else f"{type(err.cause).__name__}: {err.cause}")
            except ray.exceptions.RayError as err:          # its worker died too often
                failed[run_id] = (f"{type(err).__name__} after {max_retries} retries: "
                                  f"{str(err).splitlines()[0]}")
            else:
                rows = result.pop("rows")
                if rows.empty:
                    failed[run_id] = f"its task returned no rows; see {out / run_id}"
                else:
                    update_run_table(table, run_id, rows.to_dict("records"), -math.inf)
                    frames[run_id] = rows
                    status[run_id] = {"state": "done", **result}
                    if on_finished is not None:
                        on_finished(run_id, rows)
            if run_id in failed:
                status[run_id] = {"state": "failed", "error": failed[run_id]}
            atomic_write(out / STATUS, json.dumps(status, indent=1) + "\n")
            _say(bar, _line(run_id, status[run_id], frames.get(run_id), len(refs) - len(pending),
                            len(refs)))
    finally:
        if bar is not None:
            bar.close()
    if failed:
        raise PlanFailed(f"{len(failed)} of {len(refs)} runs failed (the others are in {table}): "
                         + "; ".join(f"{run_id}: {why}" for run_id, why in failed.items()))
    return pd.concat([frames[run_id] for run_id in configs], ignore_index=True)


def _line(run_id: str, state: dict, rows: pd.DataFrame | None, done: int, total: int) -> str:
    """One finished run as a line: its final loss per language, time, node, resume step."""
    if state["state"] != "done":
        return f"[{done}/{total}] {run_id} FAILED: {state['error']}"
    final = rows.sort_values("n_tokens").groupby("language").tail(1)
    losses = ", ".join(f"{r.language} {r.loss:.4f}" for r in final.itertuples())
    resumed = state["resumed_from_step"]
    return (f"[{done}/{total}] {run_id}: {losses} bits/byte after {rows['n_tokens'].max():.4g} "
            f"tokens; {state['seconds']:.1f} s on {state['node']}"
            + (f", resumed from step {resumed}" if resumed else ""))


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="plan", unit="run", dynamic_ncols=True)


def _say(bar, line: str) -> None:
    """A run's line above the plan's bar (stderr), and the bar one run further (no bar: quiet)."""
    if bar is not None:
        bar.write(line, file=sys.stderr)
        bar.update(1)
