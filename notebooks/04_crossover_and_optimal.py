# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Decisions with uncertainty: finetune or pretrain, and how big a model
#
# Two planning questions, each answered as a posterior rather than a point:
#
# 1. **Finetune or pretrain from scratch?** For one language and one model size, after how many
#    tokens of the current run does a model trained from scratch beat one continued from a
#    multilingual checkpoint (ATLAS section 6)? Below that point, finetune; above it, pretrain.
# 2. **How big a model for a compute budget?** The compute-optimal model size N* and token count
#    D* at C = 6ND, with intervals, and how they move when the language's text runs out and
#    has to be repeated.
#
# Both are asked first of the real bundled study (`data/bundled_study.csv`: tiny byte-level
# models trained on Bible text; loss in bits per byte; "tokens" are bytes). Where the real
# runs cannot answer, we say so, show why from the data, and ask the same question of a
# simulated study whose true answer we know, to see what an identified answer looks like and
# to check that the interval contains the truth.
#
# With `ATLAS_BAYES_QUICK=1` every fit uses a short sampler (2 chains x 200 + 200 draws): the
# numbers then illustrate the workflow and are not trustworthy (watch the R-hat lines). Without
# it the fits use 4 chains x 1000 + 1000.

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from atlas_bayes.decisions.crossover import crossover_summary, fit_crossover, plot_crossover
from atlas_bayes.simulation.crossover_study import simulate_crossover, true_crossover
from atlas_bayes.design.eig import choose_batch
from atlas_bayes.design.parse import parse_target
from atlas_bayes.design.targets import target_summary
from atlas_bayes.fitting.diagnostics import MAX_R_HAT, MIN_ESS_BULK
from atlas_bayes.design.study import curve_study
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.decisions.optimal import optimal, plot_trajectories, trajectories
from atlas_bayes.tables.runs import read_runs, validate_runs
from atlas_bayes.fitting.summary import format_summary

QUICK = os.environ.get("ATLAS_BAYES_QUICK") == "1"
OUT = Path(os.environ.get("ATLAS_BAYES_NOTEBOOK_OUT", "results/notebooks")) / "04_crossover_and_optimal"
OUT.mkdir(parents=True, exist_ok=True)
SAMPLER = Sampler(chains=2, warmup=200, draws=200) if QUICK else Sampler(chains=4, warmup=1000, draws=1000)
MAX_DRAWS = 128 if QUICK else 512        # posterior draws the design step reweights
pd.set_option("display.width", 120)

runs = read_runs("data/bundled_study.csv")
N_T1 = 1083008.0                         # parameters of the trainer's t1 shape
print(f"{runs['run_id'].nunique()} runs, {len(runs)} rows; sampler: {SAMPLER}")


def diagnostics(tree):
    """One line: the fit's convergence numbers and whether they pass the package's thresholds."""
    d = json.loads(tree.attrs["diagnostics"])
    n_draws = tree.posterior.sizes["chain"] * tree.posterior.sizes["draw"]
    ok = (d["divergences"] == 0 and d["max_r_hat"] <= MAX_R_HAT
          and d["min_ess_bulk"] >= min(MIN_ESS_BULK, n_draws / 4))
    return (f"divergences {d['divergences']}, max R-hat {d['max_r_hat']:.3f}, min bulk ESS "
            f"{d['min_ess_bulk']:.0f}: " + ("converged" if ok else "NOT converged, read with care"))

# %% [markdown]
# ## 1. Finetune or pretrain from scratch: the real study
#
# The study has, for Spanish (es) and Portuguese (pt) at the t1 size (about 1.1M parameters),
# monolingual runs from scratch of 4, 8, 16 and 32M bytes, and runs of 4 and 16M bytes that
# continue `ml8-t1-D32M`, a model trained on 32M bytes of an eight-language mixture (es is one
# of its languages, pt is not). We pick the rows by `run_id`. A finetune's `n_tokens` include
# its checkpoint's 32M bytes (`init_tokens`); the crossover is read in the tokens of the
# current run only.
#
# Before any model, look at the data. Each run uses a warmup-stable-decay schedule, so only a
# run's **last** evaluation (after its learning-rate decay) says what a run of that length
# reaches; its earlier checkpoints sit above that. The table compares end-of-run losses at
# equal own tokens: the gap is scratch minus finetune, positive while the finetune is ahead.

# %%
pattern = r"mono-(es|pt)-t1-D\d+M|ft-(es|pt)-t1-D\d+M-from-ml8-t1-D32M"
cx_runs = runs[runs["run_id"].str.fullmatch(pattern)]
ends = (cx_runs.assign(kind=np.where(cx_runs["init"] == "scratch", "scratch", "finetune"),
                       own_MB=(cx_runs["n_tokens"] - cx_runs["init_tokens"]) / 2 ** 20)
        .sort_values("n_tokens").groupby("run_id").tail(1))
table = ends.pivot_table(index="own_MB", columns=["language", "kind"], values="loss")
for lang in ("es", "pt"):
    table[(lang, "gap")] = table[(lang, "scratch")] - table[(lang, "finetune")]
print("End-of-run loss (bits per byte) by own tokens (2^20 bytes):")
print(table.sort_index(axis=1).round(3).to_string())

# %% [markdown]
# How to read it: the finetune starts far ahead and the gap shrinks quickly as the runs get
# longer. Whether it closes, and where, is exactly what the data cannot show: there is no
# finetune longer than 16M bytes, while the scratch runs go to 32M. (The 32M scratch run ends
# below the 16M finetune, but at twice the tokens, so it says nothing about equal tokens.)
#
# Now the model (`fit_crossover`, one fit of both cells): each cell has a scratch curve
# L0 + B (d/d_end)^-beta and a finetune curve L0 + delta + B ((d + D0)/d_end)^-beta that starts
# with a head start D0 but pays a lasting penalty delta. The curves cross once if delta > 0 and
# never if delta <= 0, so the sign of delta decides the answer. The summary gives the crossover
# tokens' 90% interval, the probability of no crossover at all, and within a budget of 32M
# bytes (`--budget` in the CLI: `atlas-bayes crossover RUNS --lang es --n-params 1083008
# --budget 3.2e7`).

# %%
real_cx = fit_crossover(cx_runs, sampler=SAMPLER, warn=False)
print("diagnostics:", diagnostics(real_cx))
delta = real_cx.posterior["delta"].quantile([0.05, 0.5, 0.95], dim=("chain", "draw"))
print("finetune penalty delta (bits per byte), 5% / 50% / 95%:")
print(delta.to_pandas().T.round(4).to_string())
for lang in ("es", "pt"):
    s = crossover_summary(real_cx, lang, N_T1, budget=3.2e7)
    t = s["tokens"]
    print(f"\n{lang}: crossover tokens median {t['median']:.3g} (90%: {t['q_lo']:.3g} - {t['q_hi']:.3g}); "
          f"P(no crossover) {s['p_no_crossover']:.2f}; "
          f"P(none within 32M bytes) {s['p_no_crossover_within_budget']:.2f}")
    print(f"  recommendation: {s['recommendation']}")
    plt.close(plot_crossover(real_cx, lang, N_T1, path=OUT / f"crossover_real_{lang}.png"))
print(f"\nplots: {OUT}/crossover_real_es.png, crossover_real_pt.png")

# %% [markdown]
# **What this says, honestly.** The model is confident: delta is negative in (nearly) every
# draw, so the finetune curve ends below the scratch curve forever and the recommendation is
# "finetune". That confidence does not come from a finetune that was watched being overtaken or
# not; it comes from the curve *shape*, fitted mostly to intermediate checkpoints that sit
# above the end-of-run losses (the points below the fitted curves in the plot are the ends of
# runs, after their decay), and extrapolated past 16M bytes where no finetune exists. The
# end-of-run table shows a gap closing fast enough that a crossover somewhat beyond 16M bytes is entirely
# plausible. So the verdict at this scale is: **finetuning wins up to 16M bytes of Spanish or
# Portuguese; beyond that the crossover is not identified**, and "never" is an extrapolation of
# the model's form, not a finding (the study's card, `studies/bundled/README.md`, reads it the
# same way). Check the diagnostics line too: when the chains disagree, even the model's own
# confidence is not established.
#
# Could the design machinery of notebook 05 say which run would settle it? It scores a run by
# reweighting the posterior's draws with each simulated outcome. When no draw has a crossover,
# the target is the same in every draw, no outcome can move it, and the design refuses, saying
# why; when only a few draws have one, its scores rest on those few and deserve little trust.

# %%
cx_target = parse_target(f"crossover:es@{N_T1:.0f}")
_, cx_post, cx_candidates = curve_study(cx_target, cx_runs, tree=real_cx, max_draws=MAX_DRAWS)
crossing = np.isfinite(real_cx.posterior["d_cross"].sel(cell=cx_post.cell))
print(f"draws with a crossover: {float(crossing.mean()):.1%}")
try:
    found = choose_batch(cx_post, cx_candidates, cx_target, k=2)
    print("design chose:", ", ".join(found.chosen["candidate"]), f"(total gain {found.total_gain:.3f} nats)")
except ValueError as err:
    print("design:", err)

# %% [markdown]
# The run the question needs is obvious from the table anyway: a finetune of 32M bytes or more,
# to compare with the 32M scratch run at equal tokens. The lesson generalises: a posterior can be
# certain for reasons the data never tested, and reweighting cannot undo that; only a new run
# (or a model that leaves the sign of delta open) can.
#
# ## 2. The same decision on a simulated study with a known answer
#
# `simulate_crossover` draws scratch and finetune learning curves from a known truth. We give it
# curves at the same scale as the real cells (t1 size, losses like theirs, a checkpoint of 32M
# bytes) but a **positive** penalty delta, so scratch does catch up, at a point inside
# the measured range, and, unlike the real study, finetune curves that run as long as the
# scratch ones (to 64M bytes). The truth's crossover is printed; the question is whether the
# posterior finds it.

# %%
base = dict(E=1.0, A=18.7, alpha=0.3, B=0.011, beta=0.68)    # L0 = E + A N^-alpha; B at 1e9 tokens
truth = {"es": dict(base, delta=0.03, D0=4e6), "pt": dict(base, B=0.012, delta=0.04, D0=3e6)}
sim_runs = validate_runs(simulate_crossover(truth, [N_T1], checkpoints=np.geomspace(5e5, 6.4e7, 8),
                                            init_tokens=3.2e7, sigma=0.01, seed=1))
sim_cx = fit_crossover(sim_runs, sampler=SAMPLER, warn=False)
print("diagnostics:", diagnostics(sim_cx))
for lang in truth:
    s = crossover_summary(sim_cx, lang, N_T1)
    t, true_d = s["tokens"], true_crossover(truth[lang], N_T1)
    inside = t["q_lo"] <= true_d <= t["q_hi"]
    print(f"{lang}: true crossover {true_d:.3g} tokens; posterior median {t['median']:.3g}, "
          f"90% interval {t['q_lo']:.3g} - {t['q_hi']:.3g}; P(no crossover) {s['p_no_crossover']:.2f} "
          f"-> truth in interval: {'PASS' if inside else 'MISS'}")
    print(f"  recommendation: {s['recommendation']}")
plt.close(plot_crossover(sim_cx, "es", N_T1, path=OUT / "crossover_simulated_es.png"))
print(f"plot: {OUT / 'crossover_simulated_es.png'}")

# %% [markdown]
# Here the posterior identifies the crossover: the finetune curve is observed crossing the
# scratch curve, delta is pinned above zero, the interval is finite and (check the PASS lines)
# contains the true value. The recommendation reads as a rule: finetune below the interval's
# lower end, pretrain from scratch above its upper end, and between them the choice is a coin
# flip you could narrow with more runs. A 90% interval should miss the truth about one time in
# ten, so a single MISS is not alarming; many would be.
#
# With an identified posterior, the design step works (`atlas_bayes.design.study`; CLI `atlas-bayes design
# RUNS --target crossover:es@1083008`): which new runs in this cell (scratch or finetune, at
# multiples of the longest run's tokens) would narrow the crossover's interval most per FLOP?
# `gain` is the expected reduction of the log crossover's log-variance in nats: the interval
# shrinks by about a factor exp(-gain). Two runs are chosen greedily, the second scored given
# the simulated outcome of the first, so look at whether the pair repeats itself or covers both
# curves. Notebook 05 explains the machinery.

# %%
sim_target = parse_target(f"crossover:es@{N_T1:.0f}")
_, sim_post, sim_candidates = curve_study(sim_target, sim_runs, tree=sim_cx, max_draws=MAX_DRAWS)
print("target now (log tokens):", {k: round(v, 3) for k, v in target_summary(sim_post, sim_target).items()})
pick = choose_batch(sim_post, sim_candidates, sim_target, k=2)
print(pick.scores.sort_values("gain_per_flop", ascending=False)
      [["candidate", "cost", "gain", "gain_per_flop"]].head(6).to_string(index=False))
print("\nchosen, in order:", "; ".join(f"{r.candidate} (gain {r.gain:.3f})"
                                       for r in pick.chosen.itertuples()))

# %% [markdown]
# ## 3. Compute-optimal model size, with repetition
#
# Next question: with a budget of C FLOPs for Spanish alone, how many parameters N* and bytes
# D* (C = 6 N D) minimise the loss? Spanish has only a few million unique bytes in this corpus
# (the `unique_tokens` column; printed with the allocation below), so most runs here repeat it,
# and a law that ignores repetition would overrate long runs of small models. We fit `atlas-dt`
# (Chinchilla on ATLAS's saturating effective data S_lambda(D; U), with the unique tokens U
# taken from the run table) to the monolingual es runs from scratch, at the two sizes the study
# has (t0, about 123K parameters, and t1).
#
# Read the summary first: lambda governs how fast repeated data loses value, and a wide
# alpha interval means the data barely separate the model-size term (two sizes are little to go
# on).

# %%
es_runs = runs[runs["run_id"].str.fullmatch(r"mono-es-t[01]-D\d+M")]
es_fit = fit(es_runs, "atlas-dt", sampler=SAMPLER, warn=False)
print(format_summary(es_fit))

# %% [markdown]
# Now the allocation at a budget equal to the study's largest Spanish run (t1 on 32M bytes), once
# with the recorded unique tokens and once pretending Spanish text were unlimited. Each row is a
# posterior quantity with its median and 90% interval: N, D, the predicted loss, tokens per
# parameter and epochs (D*/U). `chinchilla_N` / `chinchilla_D` are the closed form that ignores
# repetition. The search is told that models down to 100K parameters are allowed
# (`min_params`), since t0 is that small. The CLI does the same:
# `atlas-bayes optimal RUNS --law atlas-dt --lang es --compute C [--unique-tokens U]`.

# %%
C = 6 * N_T1 * 2 ** 25
for label, U in (("recorded unique tokens", None), ("unlimited text", np.inf)):
    result = optimal(es_fit, C, unique_tokens=U, min_params=1e5)
    d = result.as_dict()
    print(f"\nes at C = {C:.3g} FLOPs, {label} (U = {result.draws.unique_tokens:.3g}):")
    print(result.table().to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"P(optimum repeats data) {d['p_repeated']:.2f}; "
          f"P(more parameters than the closed form) {d['p_more_params_than_chinchilla']:.2f}")

# %% [markdown]
# How to read it: with the real unique-token count the optimum repeats the data several times,
# and the law moves compute from tokens to parameters (a larger N*, fewer bytes) compared with
# the unlimited case, where the closed form holds. The predicted loss is higher with repetition:
# that difference is what running out of Spanish text costs at this budget.
#
# Is the answer identified? At this budget the optimum lies close to the sizes that were
# trained, so the interval on N* spans a modest factor. The trajectories below ask the same
# question at budgets from well inside the data to far beyond it: the band is the 90% interval of
# (N*, D*) along each budget's iso-compute line, and the table gives the interval's width as the
# ratio of its ends.

# %%
budgets = np.geomspace(1e13, 1e17, 9)
track = trajectories({"es (recorded U)": (es_fit, "es"), "es (unlimited)": (es_fit, "es")}, budgets,
                     unique_tokens={"es (unlimited)": np.inf}, min_params=1e5)
plot_trajectories(track, OUT / "optimal_trajectories.png",
                  title="es, atlas-dt: compute-optimal N*, D* (90% bands)")
print(f"plot: {OUT / 'optimal_trajectories.png'}")
track["N_hi/N_lo"] = track["N_hi"] / track["N_lo"]
print(track[["label", "compute", "N_median", "N_lo", "N_hi", "N_hi/N_lo", "D_median", "p_repeated"]]
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))

# %% [markdown]
# The interval on N* widens as the budget moves away from the trained sizes: the model-size
# exponent comes from two sizes only, and every decade of extrapolation multiplies its
# uncertainty. Near the data the allocation is usable; at budgets far beyond it, the band says
# honestly that the study cannot tell you the model size. Runs at new sizes are the direct way
# to narrow it; notebook 05 turns "which run next?" into a calculation.
#
# ## What this notebook did not do
#
# - The crossover **power law** across model sizes (C_x = k N^gamma, `crossover.fit_power_law`)
#   needs crossovers in at least three cells; the real study has finetunes at one size only.
# - The **curse of multilinguality** (`atlas_bayes.decisions.curse.iso_loss`, CLI `atlas-bayes curse RUNS
#   --from-k 1 --to-k 4`): how model size and data must grow to keep the loss when languages
#   are added. It is one more fit, left out to keep this notebook quick; the study's card
#   (`studies/bundled/README.md`, section 3) reports it on the real runs, with its caveats.
