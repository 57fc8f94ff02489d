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
# # Quick start: from a run table to a posterior
#
# This guide fits two scaling laws to a real study and reads what they say, with credible
# intervals: load a run table, fit ATLAS (Longpre et al. 2025) and Chinchilla for one target
# language, read the summary and the labelled posterior, plot the fit, save and reload it, and
# do the same from the command line.
#
# The data are `data/bundled_study.csv`: 98 training runs of small byte-level transformers that
# the package's own trainer ran on a GPU, on Bible translations in nine languages (the study's
# card, `studies/bundled/README.md`, says how). Losses are in bits per byte, evaluated several
# times during each run, so each run contributes a learning curve.
#
# Run it as a script (`.venv/bin/python notebooks/01_quick_start.py`) or open it in Jupyter.
# With `ATLAS_BAYES_QUICK=1` the sampler runs short chains: fine to see how things work, too
# short for conclusions (expect convergence warnings).

# %%
import os
from pathlib import Path

import pandas as pd

from atlas_bayes.fitting.inference import Sampler, fit, load, save
from atlas_bayes.fitting.plots import plot_fit
from atlas_bayes.tables.runs import read_runs, split_continued
from atlas_bayes.fitting.summary import format_summary, parameter_table

if Path.cwd().name == "notebooks":  # opened in Jupyter: paths below are from the repository root
    os.chdir("..")
QUICK = os.environ.get("ATLAS_BAYES_QUICK") == "1"
SAMPLER = Sampler(chains=2, warmup=200, draws=200) if QUICK else Sampler(chains=4, warmup=1000, draws=1000)
OUT = Path(os.environ.get("ATLAS_BAYES_NOTEBOOK_OUT", "results/notebooks")) / "01_quick_start"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)

# %% [markdown]
# ## 1. Load the runs
#
# `read_runs` reads CSV or Parquet, checks every row and column (a bad value is reported with
# its file, row and column) and returns a DataFrame with one row per **evaluation**: a run,
# evaluated on one language, after `n_tokens` training tokens (here bytes). The columns that
# matter most: `n_params`, `n_tokens`, `loss`, `language` (the evaluated language), the
# mixture shares `mix_<lang>`, and `unique_tokens` (how much distinct text there was; a run
# longer than that repeats its data). Below, one run's rows: a 1.1M-parameter model trained
# on Spanish alone, evaluated at several points of its 32M-byte budget (its learning curve).

# %%
runs = read_runs("data/bundled_study.csv")
print(f"{len(runs)} rows, {runs['run_id'].nunique()} runs")
columns = ["run_id", "language", "n_params", "n_tokens", "loss", "unique_tokens", "init"]
print(runs.loc[runs["run_id"] == "mono-es-t1-D32M", columns].to_string(index=False))

# %% [markdown]
# The run_id says what kind of run each is (the card lists them): `mono` (one language; a
# `-U<bytes>` suffix caps its unique data), `bi` (a 50/50 mix of two languages), `ml4` / `ml8`
# (equal mixes of 4 or 8 languages) and `ft` (finetuned from the `ml8` checkpoint). The table
# below counts runs of each kind per model size; the next counts evaluation rows per
# language (a mixture run is evaluated on each of its languages).

# %%
per_run = runs.drop_duplicates("run_id").assign(kind=lambda d: d["run_id"].str.split("-").str[0])
print(pd.crosstab(per_run["kind"], per_run["n_params"], margins=True))
print()
print(runs["language"].value_counts().to_frame("rows").T)

# %% [markdown]
# ## 2. Rows a scaling law cannot read: finetunes
#
# A finetuned run's `n_tokens` counts the checkpoint's tokens too (`init_tokens`), while its
# `mix_` shares describe only the continuation. A law would read the `ml8` checkpoint's
# 32M mixed bytes as Spanish or Portuguese bytes, so `fit` leaves such runs out and says so
# with a warning (`atlas-bayes crossover`, guide 04, is the model for them).
# `split_continued` is the rule it applies:

# %%
scratch, finetunes = split_continued(runs)
print("continued from a checkpoint:", finetunes)
print(f"{len(scratch)} of {len(runs)} rows remain")

# %% [markdown]
# ## 3. Fit ATLAS for Spanish
#
# ATLAS predicts the loss on a target language t from the model size N and an *effective*
# amount of data: the target's own tokens, discounted when repeated (a saturation with rate
# `lambda`), plus `tau` times the tokens of each transfer language, plus `tau_other` times
# everything else in the mixture. `fit` picks the target's three most co-sampled languages as
# transfer languages (pass `transfer_languages=[...]` to choose).
#
# We hand it the whole table on purpose, to see the finetune warning once; from then on we
# use `scratch`. Sampling is NUTS; each fit first compiles its sampler, which takes several
# seconds of its own (most of the time of a quick run).

# %%
atlas = fit(runs, "atlas", language="es", sampler=SAMPLER)

# %% [markdown]
# ## 4. Read the summary
#
# One row per parameter, in natural units: posterior mean and median, the 90% credible
# interval `q05`-`q95`, and two convergence checks. `r_hat` compares the chains (it should
# be at most 1.01) and `ess_bulk` is the number of effectively independent draws (a few
# hundred or more for stable intervals). The last lines give divergences and the runs left
# out. `E` is the irreducible loss, `A`/`alpha` and `B`/`beta` the model-size and data
# terms, `sigma` the residual scale on log loss.
#
# When a check fails, `fit` raises a `ConvergenceWarning` that says what to do (more warmup
# and draws, usually). At quick settings expect some; the study's own analysis also saw
# R-hat slightly above 1.01 with 2 chains, so use 4 chains for anything you report.

# %%
print(format_summary(atlas))

# %% [markdown]
# ## 5. The labelled posterior
#
# The result is an ArviZ 1.x `xarray.DataTree`: groups `posterior`, `posterior_predictive`,
# `log_likelihood`, `observed_data`, `sample_stats` and `fit_data` (the rows that were
# fitted). Each variable carries named dimensions, so you select by label rather than by
# position: `tau` has a `transfer_language` coordinate.

# %%
tau = atlas.posterior["tau"]
print("transfer languages:", tau["transfer_language"].values.tolist())
print(tau.quantile([0.05, 0.5, 0.95], dim=("chain", "draw")).to_pandas().round(3))
print(f"P(tau[ar] > 0) = {float((tau.sel(transfer_language='ar') > 0).mean()):.2f}")

# %% [markdown]
# The three transfer slots are the languages most often co-sampled with `es` in this table,
# which is not the same as the languages that help it: `es` shares runs with `en` and `vi`
# only inside the 4- and 8-language mixtures, so their `tau` rests on few rows and stays wide.
# Related languages (`pt`, `it`) fall under `tau_other` here. Guide 03 measures transfer
# directly and turns it into priors for `tau`.
#
# Any quantity derived from the draws keeps its uncertainty. For example, under a
# Chinchilla-type law without repetition the compute-optimal model size grows as C^a with
# a = `beta / (alpha + beta)`, so its posterior says how sure we are about how to split a
# budget between parameters and tokens:

# %%
post = atlas.posterior
share = post["beta"] / (post["alpha"] + post["beta"])
print("beta / (alpha + beta): median {:.2f}, 90% interval [{:.2f}, {:.2f}]".format(
    *share.quantile([0.5, 0.05, 0.95]).values))

# %% [markdown]
# ## 6. Does the law follow the data? The fit plot
#
# `plot_fit` draws two panels: loss against tokens with the 90% posterior-predictive interval
# for every row (colour is model size; a learning curve's predicted medians are joined by a
# line), and observed against predicted loss, titled with the share of rows inside their
# interval. Points far from the diagonal, or a share well below 90%, show where the law and
# the data disagree.
#
# In this study, look at the first checkpoints of each learning curve: they tend to sit
# above the band. A run evaluated part-way has not had its learning-rate decay yet, so it is
# worse than a finished run of that length, which is what the law describes.

# %%
plot_fit(atlas, OUT / "atlas_es_fit.png")
print("wrote", OUT / "atlas_es_fit.png")

# %% [markdown]
# ## 7. A baseline: Chinchilla on the same rows
#
# Chinchilla, `L = E + A/N^alpha + B/D^beta`, counts only the target's own tokens and ignores
# repetition and every other language. Fitting it to `scratch` gives the same rows without
# the warning.

# %%
chinchilla = fit(scratch, "chinchilla", language="es", sampler=SAMPLER)
print(format_summary(chinchilla))
plot_fit(chinchilla, OUT / "chinchilla_es_fit.png")

# %% [markdown]
# Chinchilla's summary deserves a second look. With Spanish runs at two model sizes only, the
# data barely separate the floor `E` from the model-size term `A/N^alpha`: many combinations
# of the three fit almost equally well. The posterior correlations show this ridge, and
# it is where NUTS may report divergent transitions (the warning suggests raising
# `target_accept`, e.g. `Sampler(target_accept=0.95)`; on a ridge that reduces them without
# always removing them). Treat those three intervals as the least trustworthy of the fit.

# %%
ridge = chinchilla.posterior.to_dataset()[["E", "A", "alpha"]].to_dataframe()
print(ridge.corr(method="spearman").round(2))
print("divergent transitions:", int(chinchilla.sample_stats["diverging"].sum()))

# %% [markdown]
# The two laws share five parameters. Their medians side by side show how much the extra
# terms change the reading of the same data; `sigma` is each law's residual scale on log
# loss, so a smaller `sigma` means the law follows the rows more closely. Whether that also
# means better predictions of runs it has not seen is the question of guide 02.

# %%
shared = ["E", "A", "B", "alpha", "beta", "sigma"]
print(pd.DataFrame({name: parameter_table(tree).loc[shared, "median"]
                    for name, tree in [("chinchilla", chinchilla), ("atlas", atlas)]}).round(3))

# %% [markdown]
# ## 8. Save and reload
#
# `save` writes every group and the fit's attributes (law, target, sampler settings, a hash
# of the data, diagnostics) to one netCDF file; `load` reads it back, so a saved fit alone
# says what was fitted and can be summarised, plotted or used for predictions later.

# %%
path = save(atlas, OUT / "atlas_es.nc")
again = load(path)
print(path, "groups:", list(again.children))
print("law:", again.attrs["law"], " target:", again.attrs["target_language"],
      " rows:", again.attrs["n_obs"])
print("same draws:", bool((again.posterior["beta"] == atlas.posterior["beta"]).all()))
print("runs fitted:", len(set(again["fit_data"]["run_id"].values)))

# %% [markdown]
# ## 9. The same from the command line
#
# `atlas-bayes fit` does all of the above in one command: it leaves the finetunes out with
# the same warning, prints the summary and writes `posterior.nc`, `fit.png`, `summary.json`
# and `summary.txt` under `--out` (with `--json` it prints the summary as one JSON object):
#
#     .venv/bin/atlas-bayes fit data/bundled_study.csv --law atlas --lang es --out results/bundled-atlas-es
#
# Defaults are 4 chains x (1000 warmup + 1000 draws); `--chains`, `--warmup`, `--draws` and
# `--seed` change them. `--law chinchilla` fits the baseline.
#
# ## What this fit can and cannot tell you
#
# The study is tiny by the paper's standards: Spanish has monolingual runs at two model sizes
# only (123K and 1.1M parameters; the 6.4M model appears only in the mixtures), and most
# runs see their few megabytes of Spanish text several times over. So the size exponent
# `alpha` and the repetition rate `lambda` are loosely pinned down, and intervals are the
# honest answer here: read them, not the medians. The study's card (`studies/bundled/README.md`, "What holds
# at this scale") reports what its full analysis found.
