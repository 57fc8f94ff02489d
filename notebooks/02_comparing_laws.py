# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing laws: held-out splits (the paper's way) and PSIS-LOO
#
# Which law describes the runs, and which one should you trust to predict a run you have not
# trained? This guide answers both for one target language of the bundled real study
# (`data/bundled_study.csv`, Spanish) with two complementary tools:
#
# - **Held-out R²**, as in the ATLAS paper's Table 1: fit each law on part of the rows and
#   predict the rest, where "the rest" is chosen to test a kind of extrapolation (larger
#   models, more tokens, more compute, unseen mixtures). Each R² comes with its posterior
#   interval, and we also check whether the law's 90% predictive intervals hold 90% of the
#   held-out losses.
# - **PSIS-LOO**: each law fitted to all rows, scored by how well it predicts each row left
#   out in turn (Pareto-smoothed importance sampling, no refitting). A within-design check:
#   it rewards laws that describe the runs you have, not laws that extrapolate.
#
# Every number below is printed by the code; at `ATLAS_BAYES_QUICK=1` the guide runs two
# laws on one split with short chains, enough to see the mechanics, not to conclude.

# %%
import os
from pathlib import Path

import pandas as pd

from atlas_bayes.decisions.comparison import format_comparison, held_out_table, loo_table, plot_held_out, plot_loo
from atlas_bayes.fitting.inference import Sampler
from atlas_bayes.tables.runs import read_runs, split_continued
from atlas_bayes.tables.splits import SPLITS, describe, split_runs

if Path.cwd().name == "notebooks":  # opened in Jupyter: paths below are from the repository root
    os.chdir("..")
QUICK = os.environ.get("ATLAS_BAYES_QUICK") == "1"
# Quick mode: two short chains (compiling the sampler dominates short runs), too short to trust.
SAMPLER = Sampler(chains=2, warmup=200, draws=200) if QUICK else Sampler(chains=4, warmup=1000, draws=1000)
LAWS = ["chinchilla", "atlas"] if QUICK else ["chinchilla", "dcsl", "msl", "atlas"]
CHOSEN_SPLITS = ["D"] if QUICK else list(SPLITS)
TARGET = "es"
OUT = Path(os.environ.get("ATLAS_BAYES_NOTEBOOK_OUT", "results/notebooks")) / "02_comparing_laws"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)

# %% [markdown]
# ## 1. The rows and the laws
#
# Finetuned runs are left out first (their `n_tokens` include the checkpoint's tokens; guide
# 01 explains). The laws, all fitted to the Spanish rows only:
#
# | law | what it reads |
# |---|---|
# | `chinchilla` | `E + A/N^alpha + B/D^beta`, D = the target's own tokens |
# | `dcsl` | Muennighoff et al.: Chinchilla with repeated tokens and excess parameters decaying (needs `unique_tokens`) |
# | `msl` | He et al.: Chinchilla on all tokens, times the target family's share of the mixture to a power |
# | `atlas` | the target's tokens with repetition saturation, plus `tau` x each transfer language's tokens, plus `tau_other` x the rest |

# %%
scratch, finetunes = split_continued(read_runs("data/bundled_study.csv"))
target_rows = scratch[scratch["language"] == TARGET]
print(f"{len(target_rows)} {TARGET} rows from {target_rows['run_id'].nunique()} runs; "
      f"left out: {', '.join(finetunes)}")
print("laws:", LAWS, "  splits:", CHOSEN_SPLITS)

# %% [markdown]
# ## 2. What each split holds out
#
# The paper's five held-out sets (`atlas_bayes.tables.splits`), made precise for any run table:
# `random` (20% of rows), `N` (whole model sizes, the largest included), `D` and `C` (per
# language, the top 20% of tokens or of compute 6ND), and `M` (every run on a mixture of 3 or
# more languages, other than Unimax). The split is built on the whole table, as
# `atlas-bayes compare` does; `languages=[TARGET]` asks only that Spanish keeps training rows.
# Read the counts before the scores: a split that leaves few training rows, or one model
# size, asks for a long extrapolation.

# %%
for split in SPLITS:
    train, test = split_runs(scratch, split, languages=[TARGET])
    print(describe(scratch, split, languages=[TARGET]))
    print(f"    {TARGET}: {(train['language'] == TARGET).sum()} rows to fit, "
          f"{(test['language'] == TARGET).sum()} to predict")

# %% [markdown]
# ## 3. Held-out R²
#
# `held_out_table` fits every law on each split's training rows and predicts the held-out
# ones (one line per fit as it goes). Columns to read, per law and split:
#
# - `r2`: R² of the held-out losses against the posterior-median prediction (the paper's
#   number; with one target, the mean over languages is just that language's);
# - `r2_q05`, `r2_q95`: the 90% interval of R² over posterior draws. Where the intervals of
#   two laws overlap widely, the data do not rank them. Single draws scatter more than their
#   median, so `r2` can sit at the top of its interval, or above it;
# - `coverage_90`: the share of held-out losses inside the 90% predictive interval. Well
#   below 0.9, the law is overconfident where it extrapolates;
# - `converged`: whether every fit passed R-hat, ESS and divergence checks.
#
# With all four laws and five splits this is 20 fits (plus 4 for LOO below): minutes, not
# seconds, at the honest sampler settings.

# %%
held = held_out_table(scratch, LAWS, CHOSEN_SPLITS, sampler=SAMPLER, languages=[TARGET],
                      progress=print)
overall = held[held["language"] == "all"]
print(overall[["law", "split", "n_train", "n_test", "r2", "r2_q05", "r2_q95", "coverage_90",
               "converged", "error"]].round(3).to_string(index=False))

# %% [markdown]
# Which law predicts best on each split, and is the lead larger than the uncertainty? The
# best law's interval against the runner-up's point estimate is a rough check (the two
# laws' draws are independent fits, so there is no paired difference to read).

# %%
ranked = overall.dropna(subset=["r2"]).sort_values("r2", ascending=False)
for split, rows in ranked.groupby("split", sort=False):
    best, *rest = rows.itertuples()
    runner = f"; next {rest[0].law} {rest[0].r2:.2f}" if rest else ""
    print(f"{split}: best {best.law} R² {best.r2:.2f} [{best.r2_q05:.2f}, {best.r2_q95:.2f}]{runner}")

# %% [markdown]
# `plot_held_out` draws the same table: R² with its interval per law and split (values
# below -1 are drawn at the floor with their value written), and the 90% intervals'
# coverage against the nominal 0.9.

# %%
plot_held_out(held, OUT / "held_out.png")
print("wrote", OUT / "held_out.png")

# %% [markdown]
# ## 4. PSIS-LOO on all rows
#
# `loo_table` fits each law to all Spanish rows and runs `az.loo` / `az.compare`. Read:
#
# - `elpd`: expected log predictive density of a left-out row (higher is better), `se` its
#   standard error;
# - `elpd_diff` and `dse`: each law's gap to the best and the standard error of that gap.
#   A gap of several `dse` is a real difference; within about 2 `dse` it is not;
# - `weight`: stacking weights; `p`: the effective number of parameters;
# - `n_bad_k`: rows whose Pareto k exceeds 0.7, where the LOO estimate itself is unreliable
#   (a few such rows make a law's elpd questionable, not the others').

# %%
loo = loo_table(scratch, LAWS, sampler=SAMPLER, languages=[TARGET], progress=print)
print(loo[["rank", "elpd", "se", "elpd_diff", "dse", "weight", "p", "n_bad_k", "converged"]]
      .round(2).to_string())
print()
print("gap to the best, in standard errors of the gap:")
print((loo["elpd_diff"].abs() / loo["dse"]).iloc[1:].round(1).to_string())

# %% [markdown]
# `plot_loo` is ArviZ's comparison plot: each law's elpd difference to the best, with the
# standard error of that difference as its bar. A bar that reaches 0 means no clear
# difference.

# %%
plot_loo(loo, OUT / "loo.png")
print("wrote", OUT / "loo.png")

# %% [markdown]
# ## 5. Everything in one text report, and the CLI
#
# `format_comparison` prints both tables as `atlas-bayes compare` does:

# %%
print(format_comparison(held, loo))

# %% [markdown]
# The command line runs the same comparison and writes `held_out.csv`, `held_out.png`,
# `loo.csv` and `loo.png` (with `--json`, one JSON object on stdout). Its input is a file, so
# write the scratch rows first (the study's `analyse.sh` does the same with `grep -v '^ft-'`):
#
#     .venv/bin/atlas-bayes compare scratch_runs.csv --laws chinchilla,dcsl,msl,atlas --lang es \
#         --out results/compare-es
#
# `--split D,C` restricts the splits, `--no-loo` skips LOO, and `--chains/--warmup/--draws`
# set the sampler as here.

# %%
scratch.to_csv(OUT / "scratch_runs.csv", index=False)
print("wrote", OUT / "scratch_runs.csv")

# %% [markdown]
# ## 6. What the comparison means here
#
# The two tools answer different questions and need not agree. LOO asks how well a law
# describes rows like the ones it was fitted to; the held-out splits ask how it carries over
# to bigger models (`N`), longer runs (`D`), more compute (`C`) and new mixtures (`M`). A
# law with more terms can win LOO by describing the design's details and still extrapolate
# worse, and coverage tells whether its intervals warn you when it does.
#
# At this study's scale, keep in mind (the card's "What holds at this scale" section has the
# full analysis, with 2 chains x 500 + 500 draws):
#
# - Spanish has monolingual runs at two model sizes only, so the `N` split trains on the
#   smallest size alone and predicts the other; its R² intervals are very wide, and a point
#   R² there says little.
# - Every run already repeats its few megabytes of text, and learning-curve rows before the
#   learning-rate decay sit above where a finished run of that length would be.
# - In the card's analysis, ATLAS came first by LOO (by several `dse`) and shared the lead
#   on the random split with MSL, but it was not the best extrapolator in tokens or compute:
#   Chinchilla was, and ATLAS's intervals under-covered there. On the unseen 4- and
#   8-language mixtures (`M`) only MSL kept a positive R², with intervals that missed most
#   held-out losses; ATLAS's transfer terms cannot help there, because those mixtures' other
#   languages never appear with Spanish in the training rows. The paper's headline, ATLAS
#   best on every split, is not something runs this small can confirm.
#
# Compare those statements with the tables printed above; where your run differs, the
# intervals say whether it matters. To go further: more model sizes, one run per size without
# repetition, and 4 chains.
