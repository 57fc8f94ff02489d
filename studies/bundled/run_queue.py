"""Run a trainer plan with several concurrent workers sharing one output folder, and collect it.

    python run_queue.py work --plan plan.jsonl --out /tmp/bundled --deadline EPOCH [--worker 0]
    python run_queue.py collect --plan plan.jsonl --out /tmp/bundled --table runs.csv --summary s.json

Each worker takes the first run of the plan that nobody has claimed (an exclusive file in
`OUT/.queue/`), whose finetune base (`init`, a run_id of the plan) has finished, and which it
expects to finish before the deadline (seconds per step measured on this study's finished runs
of the same shape, from workers that had compiled it already when there are such, +25%, +10 s,
+20 s if this worker has not compiled the shape yet); it trains it with `trainers.train.train` into OUT/<run_id>/
(its own `runs.csv`, so workers never wait on one table), then marks it done with its timing.
`collect` keeps only runs whose curve reaches their planned tokens and writes one run table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

MARGIN, SLACK_S, COMPILE_S = 1.25, 10.0, 20.0


def read_plan(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps_of(config: dict) -> int:
    return math.ceil(config["tokens"] / (config.get("seq_len", 256) * config.get("batch_size", 32)))


class Queue:
    """Claims and results as files in OUT/.queue (atomic across processes)."""

    def __init__(self, out: Path):
        self.dir = out / ".queue"
        self.dir.mkdir(parents=True, exist_ok=True)

    def claim(self, run_id: str) -> bool:
        try:
            os.close(os.open(self.dir / f"{run_id}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False

    def claimed(self, run_id: str) -> bool:
        return (self.dir / f"{run_id}.claim").exists()

    def result(self, run_id: str) -> dict | None:
        for state in ("done", "failed"):
            path = self.dir / f"{run_id}.{state}"
            if path.exists():
                return {"state": state, **json.loads(path.read_text())}
        return None

    def finish(self, run_id: str, state: str, record: dict) -> None:
        tmp = self.dir / f"{run_id}.{state}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(self.dir / f"{run_id}.{state}")


def seconds_per_step(queue: Queue, plan: list[dict], shape: str) -> float | None:
    """Median wall seconds per step of this shape's finished runs, those without a compile
    when there are any (None before the first)."""
    done = [r for c in plan if c["model"] == shape
            and (r := queue.result(c["run_id"])) and r["state"] == "done"]
    rates = [r["wall_s"] / r["steps"] for r in done if r.get("warm")] or \
        [r["wall_s"] / r["steps"] for r in done]
    return statistics.median(rates) if rates else None


def next_run(queue: Queue, plan: list[dict], deadline: float,
             warm: set = frozenset()) -> tuple[dict | None, bool]:
    """(the run to train now or None, whether some run still waits for its base)."""
    ids, waiting = {c["run_id"] for c in plan}, False
    for config in plan:
        run_id = config["run_id"]
        if queue.claimed(run_id):
            continue
        base = config.get("init")
        if base in ids:
            state = (queue.result(base) or {}).get("state")
            if state == "failed" and queue.claim(run_id):
                queue.finish(run_id, "failed", {"error": f"base run {base} failed"})
            if state != "done":
                waiting = waiting or state is None
                continue
        rate = seconds_per_step(queue, plan, config["model"])
        needs = MARGIN * rate * steps_of(config) + SLACK_S + (0 if config["model"] in warm else COMPILE_S) \
            if rate is not None else 0.0
        if time.time() + needs > deadline:
            continue
        if queue.claim(run_id):
            return config, waiting
    return None, waiting


def work(args) -> int:
    from atlas_bayes.trainers.train import train      # imports JAX: only in workers
    plan, out = read_plan(args.plan), args.out
    queue, warm = Queue(out), set()
    log = lambda msg: print(f"[worker {args.worker} {time.strftime('%H:%M:%S')}] {msg}", flush=True)
    while time.time() < args.deadline:
        config, waiting = next_run(queue, plan, args.deadline, warm)
        if config is None:
            if not waiting:
                break
            time.sleep(2.0)
            continue
        run_id, steps, start = config["run_id"], steps_of(config), time.time()
        log(f"start {run_id} ({config['model']}, {steps} steps)")
        try:
            train(config, out, progress=False, runs_file=f"{run_id}/runs.csv")
        except Exception as err:                                     # noqa: BLE001 (recorded)
            queue.finish(run_id, "failed", {"error": repr(err), "traceback": traceback.format_exc()})
            log(f"FAILED {run_id}: {err!r}")
            continue
        wall = time.time() - start
        queue.finish(run_id, "done", {"wall_s": wall, "steps": steps, "model": config["model"],
                                      "worker": args.worker, "warm": config["model"] in warm,
                                      "finished_at": time.time()})
        warm.add(config["model"])
        log(f"done {run_id}: {wall:.1f} s ({1e3 * wall / steps:.2f} ms/step)")
    left = [c["run_id"] for c in plan if not queue.claimed(c["run_id"])]
    log(f"stop: {len(left)} runs unclaimed" + (" (none fits before the deadline)" if left else ""))
    return 0


def collect(args) -> int:
    import pandas as pd
    from atlas_bayes.tables.runs import read_runs, validate_runs, write_runs
    plan, queue = read_plan(args.plan), Queue(args.out)
    frames, summary = [], {"complete": [], "incomplete": [], "failed": {}, "not_started": [], "timing": {}}
    for config in plan:
        run_id, result = config["run_id"], queue.result(config["run_id"])
        table = args.out / run_id / "runs.csv"
        if result and result["state"] == "failed":
            summary["failed"][run_id] = result["error"]
            continue
        if not table.exists():
            summary["not_started"].append(run_id)
            continue
        rows = read_runs(table)
        own = rows["n_tokens"] - rows["init_tokens"].fillna(0.0)
        planned = steps_of(config) * config.get("seq_len", 256) * config.get("batch_size", 32)
        if result is None or not (own >= planned).any():
            summary["incomplete"].append(run_id)
            continue
        frames.append(rows)
        summary["complete"].append(run_id)
        summary["timing"][run_id] = {k: result[k] for k in ("wall_s", "steps", "model", "worker", "warm")}
    if not frames:
        print("no run finished", file=sys.stderr)
        return 1
    table = validate_runs(pd.concat(frames, ignore_index=True), source="bundled study")
    write_runs(table, args.table)
    args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{args.table}: {len(summary['complete'])} complete runs, {len(table)} rows; "
          f"incomplete {len(summary['incomplete'])}, failed {len(summary['failed'])}, "
          f"not started {len(summary['not_started'])}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("work", help="train runs from the plan until none is left or time is up")
    w.add_argument("--deadline", type=float, required=True, help="Unix time to be finished by")
    w.add_argument("--worker", type=int, default=0)
    c = sub.add_parser("collect", help="one run table of the complete runs, and a summary")
    c.add_argument("--table", type=Path, required=True)
    c.add_argument("--summary", type=Path, required=True)
    for p in (w, c):
        p.add_argument("--plan", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return work(args) if args.command == "work" else collect(args)


if __name__ == "__main__":
    raise SystemExit(main())
