"""Do the laws rank as in the ATLAS paper's Table 1? Two studies, not run in CI.

(a) A simulated multilingual study whose truth is joint ATLAS with transfer ("atlas-h"):
    `paper_study`, the paper-shaped design restricted to the paper's 8 multilingual targets
    (en fr ru zh hi sw es de), per-language truths from `simulate.language_parameters` with
    each target's transfer weights on its three most co-sampled languages. `held_out_table`
    scores CSL, MSL, ATLAS (D_t), ATLAS (D_t + other) and ATLAS (+ transfer) on the chosen
    splits; the paper's R²(M) ranking is CSL < MSL < ATLAS(D_t) < ATLAS(+other) < ATLAS(+transfer)
    (Table 1: 0.61, 0.70, 0.64, 0.66, 0.82, so the paper itself has ATLAS(D_t) below MSL).
(b) Muennighoff et al.'s real data-constrained runs (datablations, the 182 runs of their fit):
    Chinchilla vs DCSL vs ATLAS (D_t), in-sample R² (posterior-median fit on all rows),
    held-out R²(D) and PSIS-LOO. Skipped when ../shared/data is absent.

    .venv/bin/python benchmarks/compare_laws.py [--part a|b|all] [--splits M,D,...]
                     [--chains 4 --draws 500 --warmup 500] [--shared ../shared/data] [--out DIR]
"""

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from atlas_bayes.tables.adapters import datablations
from atlas_bayes.decisions.comparison import fit_quietly, held_out_table, loo_table, predict_rows, scores
from atlas_bayes.fitting.inference import Sampler
from atlas_bayes.simulation.paper_design import paper_study

TARGETS = ("en", "fr", "ru", "zh", "hi", "sw", "es", "de")
MULTILINGUAL_LAWS = ("csl", "msl", "atlas-dt", "atlas-other", "atlas")   # the paper's order
PAPER_R2_M = {"csl": 0.61, "msl": 0.70, "atlas-dt": 0.64, "atlas-other": 0.66, "atlas": 0.82}
REAL_LAWS = ("chinchilla", "dcsl", "atlas-dt")
REPO = Path(__file__).resolve().parents[1]


def part_a(splits, sampler, seed, out: Path | None) -> None:
    runs, truth = paper_study(seed=seed, eval_languages=TARGETS)
    print(f"(a) simulated study: {len(runs)} rows, {runs['run_id'].nunique()} runs, "
          f"targets {', '.join(TARGETS)}; truth atlas-h, lambda {truth['lambda']}")
    table = held_out_table(runs, MULTILINGUAL_LAWS, splits, sampler=sampler, seed=seed,
                           progress=_stderr)
    _save(table, out, "simulated_held_out.csv")
    overall = table[table["language"] == "all"]
    print("\nHeld-out R² (mean over the 8 targets) [90% interval over posterior draws]:")
    print(_cells(overall, lambda r: f"{r.r2:.3f} [{r.r2_q05:.2f}, {r.r2_q95:.2f}]"))
    print("\nR² of the pooled held-out rows / coverage of the 90% predictive interval:")
    print(_cells(overall, lambda r: f"{r.r2_pooled:.3f} / {r.coverage_90:.2f}"))
    if "M" in splits:
        _ranking(overall[overall["split"] == "M"].set_index("law"))
    per_language = table[(table["split"] == "M") & (table["language"] != "all")]
    if len(per_language):
        print("\nR²(M) per target:")
        print(per_language.pivot(index="law", columns="language", values="r2")
              .reindex(index=list(MULTILINGUAL_LAWS), columns=list(TARGETS)).round(3).to_string())


def _ranking(rows: pd.DataFrame) -> None:
    r2 = rows["r2"].reindex(list(MULTILINGUAL_LAWS))
    print("\nR²(M): " + ", ".join(f"{law} {r2[law]:.3f} (paper {PAPER_R2_M[law]:.2f})"
                                  for law in MULTILINGUAL_LAWS))
    strict = bool((r2.diff().dropna() > 0).all())
    print(f"CSL < MSL < ATLAS(D_t) < ATLAS(+other) < ATLAS(+transfer): "
          f"{'holds' if strict else 'does not hold'}; observed order (low to high): "
          + " < ".join(r2.sort_values().index))


def part_b(shared: Path, sampler, seed, out: Path | None) -> None:
    path = shared / "datablations"
    if not path.is_dir():
        print(f"(b) skipped: {path} not found")
        return
    runs = datablations(path)
    epochs = runs["n_tokens"] / runs["unique_tokens"]
    print(f"\n(b) datablations fit182: {len(runs)} runs, {runs['n_params'].nunique()} sizes, "
          f"up to {epochs.max():.0f} epochs")
    rows = []
    for law in REAL_LAWS:
        start = time.perf_counter()
        tree, messages = fit_quietly(runs, law, sampler=sampler)
        fitted = scores(predict_rows(tree, runs, seed=seed))
        rows.append({"law": law, "r2_in_sample": fitted["r2"], "coverage_90_in_sample":
                     fitted["coverage_90"], "converged": not messages,
                     "seconds": time.perf_counter() - start})
        _stderr(f"in-sample {law}: R² {fitted['r2']:.3f}, {rows[-1]['seconds']:.1f} s")
    in_sample = pd.DataFrame(rows).set_index("law")
    held = held_out_table(runs, REAL_LAWS, ["D"], sampler=sampler, seed=seed, progress=_stderr)
    held = held[held["language"] == "all"].set_index("law")
    loo = loo_table(runs, REAL_LAWS, sampler=sampler, progress=_stderr)
    summary = in_sample.join(held[["r2", "r2_q05", "r2_q95", "coverage_90", "converged"]]
                             .add_prefix("D_")).join(loo[["elpd", "se", "elpd_diff", "dse",
                                                          "n_bad_k"]])
    _save(summary.reset_index(), out, "datablations.csv")
    print(summary.round(3).to_string())


def _cells(overall: pd.DataFrame, cell) -> str:
    frame = overall.assign(cell=[cell(r) if pd.isna(r.error) else "error"
                                 for r in overall.itertuples()])
    return (frame.pivot(index="law", columns="split", values="cell")
            .reindex(index=list(dict.fromkeys(frame["law"])),
                     columns=list(dict.fromkeys(frame["split"]))).to_string())


def _save(table: pd.DataFrame, out: Path | None, name: str) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / name, index=False)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--splits", default="M", help="splits for part (a), comma separated")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="folder for the CSV tables")
    args = parser.parse_args()
    print("command: .venv/bin/python benchmarks/compare_laws.py " + " ".join(sys.argv[1:]))
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed)
    start = time.perf_counter()
    if args.part in ("a", "all"):
        part_a(args.splits.split(","), sampler, args.seed, args.out)
    if args.part in ("b", "all"):
        part_b(args.shared, sampler, args.seed, args.out)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
