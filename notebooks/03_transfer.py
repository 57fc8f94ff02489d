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
# # Which languages help a target? The bilingual transfer matrix
#
# The ATLAS paper measures transfer with the **bilingual transfer score** (BTS): train one
# model on the target t alone and one on a 50/50 mix of a source s and t, at the same size.
# At a reference horizon of `d_mono` tokens the monolingual model reaches some loss on t; the
# bilingual model needs `d_bi` total tokens to reach it. Then
#
#     BTS(s -> t) = 2 - d_bi / d_mono
#
# BTS = 0 means the bilingual run needs exactly twice the tokens, i.e. the same number of
# target tokens: the source neither helps nor hurts. Above 0, the source's tokens count for
# something on t (positive transfer); below 0 they get in the way (interference).
#
# This guide computes BTS with a posterior from the bundled real study's learning curves,
# fits the transfer matrix over all ordered pairs (the measured ones and those never
# measured), ranks transfer languages for a target with intervals, and turns the result into
# priors for ATLAS's `tau`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from atlas_bayes.decisions.bts import bilingual_pairs, bts_table, fit_bts
from atlas_bayes.fitting.inference import Sampler
from atlas_bayes.tables.languages import family
from atlas_bayes.tables.runs import read_runs, write_runs
from atlas_bayes.decisions.transfer import fit_transfer_matrix, plot_source_ranking, plot_transfer_matrix, rank_sources, tau_priors
from atlas_bayes.decisions.transfer_interaction import deviations

if Path.cwd().name == "notebooks":  # opened in Jupyter: paths below are from the repository root
    os.chdir("..")
QUICK = os.environ.get("ATLAS_BAYES_QUICK") == "1"
SAMPLER = Sampler(chains=2, warmup=200, draws=200) if QUICK else Sampler(chains=4, warmup=1000, draws=1000)
TARGET = "es"
OUT = Path(os.environ.get("ATLAS_BAYES_NOTEBOOK_OUT", "results/notebooks")) / "03_transfer"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)

# %% [markdown]
# ## 1. Pick the runs BTS needs
#
# A BTS needs, at one model size and trained from scratch, exactly one monolingual run on the
# target and one 50/50 bilingual run on (source, target). The study has several monolingual
# runs per language and size (different budgets, some with capped unique data); rather than
# choose among them silently, `bilingual_pairs` stops with an error that names them:

# %%
runs = read_runs("data/bundled_study.csv")
try:
    bilingual_pairs(runs)
except ValueError as err:
    print(err)

# %% [markdown]
# So we choose by run_id, as the study's `analyse.sh` does: for each language and size the
# longest uncapped monolingual run, which has the same budget as that size's bilingual runs
# (16M bytes at the smallest size `t0`, 32M at `t1`) and whose learning curve therefore spans
# the same range, plus every 50/50 bilingual run. The 6.4M-parameter `t2` has no bilingual
# runs in the table.

# %%
chosen = runs["run_id"].str.fullmatch(r"mono-[a-z]+-t0-D16M|mono-[a-z]+-t1-D32M|bi-[a-z]+-[a-z]+-t[01]-D\d+M")
pair_runs = runs[chosen]
pairs = bilingual_pairs(pair_runs)
print(f"{pair_runs['run_id'].nunique()} runs, {len(pair_runs)} rows -> {len(pairs)} measurable ordered pairs")
print(pairs.to_string(index=False))

# %% [markdown]
# ## 2. BTS with a posterior
#
# `fit_bts` fits every learning curve used (loss on the target against tokens, `L(d) = E + B
# d^-beta`; all curves in one vectorised model) and computes BTS for every posterior draw, so
# the uncertainty of both curves reaches the score. The horizon `d_mono` defaults to a
# quarter of the shortest run at each size, so that BTS down to -2 is read inside the
# measured part of every bilingual curve rather than extrapolated.
#
# `bts_table` summarises each pair: the median and 90% interval of BTS, `p_positive` =
# P(BTS > 0), `g_mean`/`g_sd` on the log scale `g = log(2 d_mono / d_bi)` that the matrix
# model uses, and `p_unreachable`, the share of draws in which the bilingual curve never
# reaches the monolingual loss (kept as BTS = -inf and counted, never dropped).

# %%
curves = fit_bts(pair_runs, sampler=SAMPLER)
table = bts_table(curves)
print(table[["source", "target", "n_params", "horizon", "bts_median", "bts_q05", "bts_q95",
             "p_positive", "p_unreachable"]].round(3).to_string(index=False))

# %% [markdown]
# ## 3. Does the answer hold across model sizes?
#
# The paper finds that related languages (same family, same script) transfer more. The
# study's pairs are chosen for that test: es-pt, es-it and fr-it are Romance pairs; es-ar,
# en-vi and fr-ar are not ("related" below means the same genus; en and vi share the Latin
# script but not a family). Below, every pair's BTS at the two sizes side by side, then the
# difference between the mean `g` of related and unrelated pairs per size, computed draw by
# draw (all curves come from one joint fit, so pairing draws is legitimate). An interval that
# straddles 0 means the data do not say which group transfers more at that size.

# %%
table["related"] = [family(s, "genus") == family(t, "genus") for s, t in zip(table.source, table.target)]
by_size = table.pivot_table(index=["related", "source", "target"], columns="n_params",
                            values="bts_median")
print(by_size.round(2).to_string())
print()

g = curves.posterior["g"]
g = g.assign_coords(related=("pair", table["related"].to_numpy()))
for size, g_size in g.groupby("n_params"):
    gap = g_size.where(g_size.related).mean("pair") - g_size.where(~g_size.related).mean("pair")
    low, mid, high = np.quantile(gap.values, [0.05, 0.5, 0.95])
    print(f"n_params {size:.3g}: mean g related - unrelated = {mid:.3f} [{low:.3f}, {high:.3f}], "
          f"P(> 0) = {float((gap > 0).mean()):.2f}")

# %% [markdown]
# The same comparison as a picture: each pair's BTS and 90% interval at both sizes, related
# pairs first.

# %%
table["pair"] = table["source"] + "->" + table["target"]
order = table.drop_duplicates("pair").sort_values(["related", "pair"], ascending=[False, True])["pair"]
fig, ax = plt.subplots(figsize=(8, 4.5))
for k, (size, rows) in enumerate(table.groupby("n_params")):
    rows = rows.set_index("pair").loc[order]
    x = np.arange(len(order)) + (k - 0.5) * 0.3
    ax.errorbar(x, rows["bts_median"], fmt="o", capsize=2, label=f"N = {size:.3g}",
                yerr=[rows["bts_median"] - rows["bts_q05"], rows["bts_q95"] - rows["bts_median"]])
ax.axhline(0, color="grey", lw=0.8)
ax.axvline(table.drop_duplicates("pair")["related"].sum() - 0.5, color="grey", ls=":")
ax.set_xticks(np.arange(len(order)), order, rotation=45)
ax.set(ylabel="BTS (median, 90% interval)", title="Measured BTS by pair and model size (left of the dotted line: related pairs)")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "bts_by_size.png", dpi=120)
print("wrote", OUT / "bts_by_size.png")

# %% [markdown]
# Read this before using any ranking. In the study's own analysis (its card,
# `studies/bundled/README.md`), at the larger size only the Spanish-Portuguese pair transferred
# clearly and the related-minus-unrelated gap was not credible; at the smallest size the order
# reversed, with unrelated pairs scoring higher. A plausible confound at this scale: a
# monolingual run repeats its few megabytes of text several times, while a bilingual run of
# the same length repeats each half as often, and BTS credits that gain to the partner
# language. So "related languages transfer more" is not something these runs establish.

# %% [markdown]
# ## 4. The transfer matrix
#
# The measured pairs are few; the matrix model fills in the rest. On the `g` scale
#
#     g(s -> t) = mu + source effect + target effect + gamma . (same script, same family, same genus)
#                 + sum_k size_k u_t,k v_s,k + pair term + directional noise
#
# The low-rank term is a source x target interaction (latent language factors): some sources
# help some targets more than their effects alone say. The pair term is shared by s->t and
# t->s, the noise is heavy-tailed with a scale per target. Measured pairs enter with their
# standard errors and are shrunk where thin; unmeasured pairs get posterior-predictive values
# with honest (wide) intervals. A matrix fits one model size, so we take the larger one.
# (`model="additive"` drops the interaction and fits one residual spread for all pairs.)

# %%
size = table["n_params"].max()
matrix = fit_transfer_matrix(table[table["n_params"] == size], model="interaction", sampler=SAMPLER)
post = matrix.posterior
print("languages:", post["target"].values.tolist())
print(post["gamma"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw")).to_pandas().round(3))
for name in ["mu", "sd_source", "sd_target", "sd_pair"]:
    low, mid, high = post[name].quantile([0.05, 0.5, 0.95]).values
    print(f"{name:>9}: {mid:.3f} [{low:.3f}, {high:.3f}]")

# %% [markdown]
# Where does the interaction matter? `deviations` lists the pairs whose transfer departs most
# from the additive prediction (source effect + target effect + covariates), with the
# interaction's interval and P(> 0). With a handful of languages and pairs the factors are
# barely pinned and the intervals straddle 0; on the paper's 30 x 30 matrix the interaction
# moves the zh, ja, ko, gu, ps and ur rows by up to ~0.3 on g (benchmarks/RESULTS.md, "Issue 20").

# %%
print(deviations(matrix, top=8).round(3).to_string(index=False))

# %% [markdown]
# `gamma` is the shift in `g` for pairs that share a script, a family or a genus: an interval
# well above 0 would be evidence that similarity helps. With a handful of measured pairs
# these intervals are wide, and the priors matter. `sd_pair` is the spread of the term the two
# directions of a pair share.
#
# `plot_transfer_matrix` shows the posterior median BTS of every ordered pair (rows: target,
# columns: source; dots: measured) next to the width of its 90% interval: measured cells are
# narrow, predicted ones wide.

# %%
plot_transfer_matrix(matrix, OUT / "matrix.png")
plt.close("all")
print("wrote", OUT / "matrix.png")

# %% [markdown]
# ## 5. Choosing transfer languages for a target
#
# `rank_sources` orders candidate sources for a target by the expected transfer weight
# `tau = exp(g) - 1` (ATLAS's weight on the source's tokens, under the bridge BTS = 2 tau /
# (1 + tau)), with `p_positive` = P(tau > 0), 90% intervals for tau and BTS, and whether the
# pair was measured. Rank by the intervals, not the order: sources whose intervals overlap
# are not distinguished by the data, and an unmeasured source's place comes from the model's
# language effects and covariates alone.

# %%
ranking = rank_sources(matrix, TARGET)
print(ranking.round(3).to_string(index=False))
plot_source_ranking(matrix, TARGET, OUT / f"ranking_{TARGET}.png")
plt.close("all")

# %% [markdown]
# ## 6. From the matrix to ATLAS's tau
#
# `tau_priors` turns the matrix into priors (mean, sd) for the `tau` of chosen transfer
# languages, the sd widened by 0.1 in quadrature because BTS is measured at one size and
# horizon. Here the top three sources of the ranking; pass them to an ATLAS fit as
# `fit(runs, "atlas", language="es", transfer_languages=[...], options={"tau_prior": priors["es"]})`
# (guide 01 shows the fit), or on the command line with `--tau-prior tau_priors.json`.

# %%
priors = tau_priors(matrix, {TARGET: ranking["source"].head(3).tolist()})
print(pd.DataFrame(priors[TARGET], index=["mean", "sd"]).round(3))

# %% [markdown]
# ## 7. The same from the command line
#
# `atlas-bayes transfer` runs steps 2 to 6 on a run table file for one model size and writes
# `matrix.png`, `ranking_<target>.png/.csv`, `bts.csv`, `tau_priors.json`, `matrix.nc`,
# `bts_curves.nc` and `interaction.csv` (the pairs the interaction moves most, also printed).
# Write the chosen rows first:

# %%
write_runs(pair_runs, OUT / "transfer_runs.csv")
print(f".venv/bin/atlas-bayes transfer {OUT / 'transfer_runs.csv'} --target {TARGET} "
      f"--n-params {size:.0f} --out {OUT / 'cli'}")
