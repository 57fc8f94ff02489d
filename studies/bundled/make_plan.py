"""Write the bundled study's trainer plan (plan.jsonl, one RunConfig per line; issue 8).

    python studies/bundled/make_plan.py [--out studies/bundled/plan.jsonl] [--mini]

Kinds of runs (run_id prefix): `mono` (one language; a `-U<bytes>` suffix caps its unique
bytes so the budget repeats data), `bi` (50/50 pairs), `ml<K>` (K languages in equal shares,
for the curse law) and `ft` (finetunes of one language from an `ml8` checkpoint, named by
run_id, for the crossover). Every run is evaluated about `EVALS` times (learning curves).
Order = priority: the finetune bases, then every t0/t1 run, then the t2 runs; longest first
within a tier, finetunes last in theirs (Ray starts a finetune once its base is done: a
task's base is one of its arguments). `--mini` writes a tiny CPU check of the same kinds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SEQ_LEN, BATCH = 256, 32                       # 8,192 tokens per step
EVALS = 8
M = 2 ** 20
LR = {"t0": 3e-3, "t1": 2e-3, "t2": 1e-3}      # peak LR per shape (not tuned; stated on the card)
# Guessed GPU milliseconds per 8,192-token step (for ordering and the printed estimate only).
STEP_MS = {"t0": 0.6, "t1": 1.2, "t2": 3.5}

MONO = ["en", "es", "pt", "it", "fr", "ar", "vi"]
MONO_BUDGETS = {"t0": [2, 4, 8, 16], "t1": [4, 8, 16, 32], "t2": [8, 32]}         # M tokens
T2_MONO = ["es", "pt", "en", "vi"]                                                # t2: fewer languages
CAPPED = {"langs": ["ar", "vi"], "caps": [M // 2, 2 * M], "budgets": [4, 16], "shapes": ["t0", "t1"]}
PAIRS = [("es", "pt"), ("es", "it"), ("fr", "it"),        # related
         ("es", "ar"), ("en", "vi"), ("fr", "ar")]         # unrelated
BI_BUDGET = {"t0": 16, "t1": 32}
T2_PAIRS = [("es", "pt"), ("en", "vi")]
ML = {4: ["en", "es", "ar", "vi"], 8: ["en", "es", "ar", "vi", "fr", "it", "de", "ru"]}
ML_BUDGETS = {"t0": [8, 16], "t1": [16, 32], "t2": [32]}
FT_TARGETS = ["es", "pt"]                                 # es is in the ml8 mixture, pt is not
FT_BUDGETS = {"t1": [4, 16], "t2": [8, 16]}


def run(run_id: str, shape: str, tokens: int, mixture, eval_languages, tier: int, **extra) -> dict:
    steps = math.ceil(tokens / (SEQ_LEN * BATCH))
    config = {"run_id": run_id, "model": shape, "tokens": tokens, "mixture": mixture,
              "eval_languages": list(eval_languages), "seq_len": SEQ_LEN, "batch_size": BATCH,
              "lr": LR[shape], "warmup_steps": 50, "eval_every": max(1, steps // EVALS),
              "eval_bytes": 32768, "checkpoint_every": steps, "seed": 0, **extra}
    return {"tier": tier, "config": config}


def study() -> list[dict]:
    runs = []
    for k, langs in ML.items():                          # ml8 at t1/t2 is also the finetune base
        for shape, budgets in ML_BUDGETS.items():
            for b in budgets:
                mixture = {"kind": "custom", "weights": {lang: 1.0 for lang in langs}}
                base = k == 8 and b == max(budgets) and shape in FT_BUDGETS
                runs.append(run(f"ml{k}-{shape}-D{b}M", shape, b * M, mixture, langs, 0 if base else 1))
    for shape, budgets in MONO_BUDGETS.items():
        for lang in (T2_MONO if shape == "t2" else MONO):
            for b in budgets:
                runs.append(run(f"mono-{lang}-{shape}-D{b}M", shape, b * M, lang, [lang],
                                2 if shape == "t2" else 1))
    for shape in CAPPED["shapes"]:
        for lang in CAPPED["langs"]:
            for cap in CAPPED["caps"]:
                for b in CAPPED["budgets"]:
                    runs.append(run(f"mono-{lang}-{shape}-D{b}M-U{cap}", shape, b * M, lang, [lang], 1,
                                    max_unique_tokens=cap))
    for shape, b in BI_BUDGET.items():
        for a, c in PAIRS:
            runs.append(run(f"bi-{a}-{c}-{shape}-D{b}M", shape, b * M,
                            {"kind": "bilingual", "languages": [a, c]}, [a, c], 1))
    for a, c in T2_PAIRS:
        runs.append(run(f"bi-{a}-{c}-t2-D32M", "t2", 32 * M, {"kind": "bilingual", "languages": [a, c]},
                        [a, c], 2))
    for shape, budgets in FT_BUDGETS.items():
        base = f"ml8-{shape}-D{max(ML_BUDGETS[shape])}M"
        for lang in FT_TARGETS:
            for b in budgets:
                runs.append(run(f"ft-{lang}-{shape}-D{b}M-from-{base}", shape, b * M, lang, [lang],
                                2 if shape == "t2" else 1, init=base))
    return runs


def mini() -> list[dict]:
    """Four tiny runs of the same kinds (a base, a capped mono, a bilingual, a finetune)."""
    small = dict(seq_len=32, batch_size=4, eval_every=4, eval_bytes=512, warmup_steps=2,
                 checkpoint_every=12)
    mixture = {"kind": "custom", "weights": {"en": 1.0, "es": 1.0, "ar": 1.0}}
    runs = [run("ml3-t0-mini", "t0", 32 * 4 * 12, mixture, ["en", "es", "ar"], 0),
            run("mono-vi-t0-mini-U4096", "t0", 32 * 4 * 12, "vi", ["vi"], 1, max_unique_tokens=4096),
            run("bi-es-pt-t0-mini", "t0", 32 * 4 * 12, {"kind": "bilingual", "languages": ["es", "pt"]},
                ["es", "pt"], 1),
            run("ft-es-t0-mini-from-ml3-t0-mini", "t0", 32 * 4 * 8, "es", ["es"], 2, init="ml3-t0-mini")]
    for r in runs:
        r["config"].update(small, checkpoint_every=math.ceil(r["config"]["tokens"] / (32 * 4)))
    return runs


def ordered(runs: list[dict]) -> list[dict]:
    """Tier, then finetunes after the other runs of the tier, then longest first."""
    def cost(r):
        c = r["config"]
        return c["tokens"] / (SEQ_LEN * BATCH) * STEP_MS[c["model"]] if c["model"] in STEP_MS else 0
    return sorted(runs, key=lambda r: (r["tier"], "init" in r["config"], -cost(r)))


def languages(configs: list[dict]) -> list[str]:
    """Every language a plan trains or evaluates on."""
    found = set()
    for c in configs:
        m = c["mixture"]
        found |= {m} if isinstance(m, str) else set(m.get("languages") or m.get("weights") or [])
        found |= set(c.get("eval_languages") or [])
    return sorted(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("plan.jsonl"))
    parser.add_argument("--mini", action="store_true", help="the tiny CPU check instead")
    args = parser.parse_args(argv)
    runs = ordered(mini() if args.mini else study())
    configs = [r["config"] for r in runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(c) + "\n" for c in configs))
    by_kind: dict[str, list] = {}
    for c in configs:
        by_kind.setdefault(c["run_id"].split("-")[0], []).append(c)
    steps = {s: sum(math.ceil(c["tokens"] / (c["seq_len"] * c["batch_size"])) for c in configs
                    if c["model"] == s) for s in LR}
    print(f"{args.out}: {len(configs)} runs ({', '.join(f'{k} {len(v)}' for k, v in by_kind.items())}); "
          f"{sum(c['tokens'] for c in configs) / 1e9:.2f}e9 tokens; steps by shape {steps}; "
          f"guessed GPU time {sum(steps[s] * STEP_MS[s] for s in steps) / 1e3:.0f} s; "
          f"languages {','.join(languages(configs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
