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
# # 05 · Choosing the next run, and closing the loop
#
# Training runs cost compute; a posterior says what we do not know yet. This notebook connects
# the two: for a quantity you care about (here, the loss a larger model would reach), which run
# should you pay for next, so that its outcome narrows that quantity's interval the most per
# FLOP? And then the loop around it: design a batch, train it, add the runs, refit, repeat until
# the interval is narrow enough or the budget is spent.
#
# 1. The posterior and the target, from the real bundled study.
# 2. Candidate runs, their cost, and the expected information gain (EIG) of each.
# 3. A batch of k runs that complement each other rather than repeat one idea.
# 4. The closed loop (`atlas_bayes.design.loop`), run on a simulated twin of the study with a known
#    truth, with an "external runner" written here that answers each planned run; the round log,
#    the interval width against compute, a check against the truth, and resuming.
# 5. A law of your own, written in a small Python file, fitted and designed with in the same way.
#
# With `ATLAS_BAYES_QUICK=1` the fits are short (2 chains x 200 + 200) and the loop does one
# round; without it, 4 chains x 1000 + 1000 and three rounds.

# %%
import dataclasses
import json
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from atlas_bayes import design
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.design.loop import LoopSettings, run_loop
from atlas_bayes.fitting.draws import LawDraws, predicted_loss
from atlas_bayes.tables.runs import read_runs, write_runs

QUICK = os.environ.get("ATLAS_BAYES_QUICK") == "1"
OUT = Path(os.environ.get("ATLAS_BAYES_NOTEBOOK_OUT", "results/notebooks")) / "05_design_and_loop"
OUT.mkdir(parents=True, exist_ok=True)
SAMPLER = dict(chains=2, warmup=200, draws=200) if QUICK else dict(chains=4, warmup=1000, draws=1000)
MAX_DRAWS = 128 if QUICK else 512        # draws the EIG estimators use (cost grows as draws^2)
ROUNDS = 1 if QUICK else 3
pd.set_option("display.width", 120)

SIZES = design.shape_sizes(["t0", "t1", "t2"])     # the companion trainer's tiny shapes
print({name: f"{n:,.0f} parameters" for name, n in SIZES.items()})

# %% [markdown]
# ## 1. The posterior and the target
#
# We fit ATLAS's repetition-aware law `atlas-dt` to the real monolingual Spanish runs of the
# bundled study (sizes t0 and t1, 2 to 32M bytes, most repeating Spanish's few million unique
# bytes). The target is a run the study does not have: Spanish at the t2 size on 67M bytes.
# A target is any function of the posterior draws; `loss_target(N, D)` is the law's log loss at
# (N, D), and its 90% interval (in log loss, so a width of 0.1 is roughly ±5% in loss) is what
# we want to shrink.

# %%
runs = read_runs("data/bundled_study.csv")
es_runs = runs[runs["run_id"].str.fullmatch(r"mono-es-t[01]-D\d+M")]
es_fit = fit(es_runs, "atlas-dt", sampler=Sampler(**SAMPLER), warn=False)
d = json.loads(es_fit.attrs["diagnostics"])
print(f"diagnostics: {d['divergences']} divergences, max R-hat {d['max_r_hat']:.3f}, min bulk ESS "
      f"{d['min_ess_bulk']:.0f} (intervals deserve trust only with R-hat <= 1.01 and few divergences)")

TARGET = f"loss@N={SIZES['t2']:.0f},D=6.7e7"       # the same text form the CLI and the loop take
target = design.parse_target(TARGET)
posterior = design.posterior_from_tree(es_fit, max_draws=MAX_DRAWS)
now = design.target_summary(posterior, target)
print(f"target {target.name}: log loss {now['median']:.3f} (90%: {now['lo']:.3f} - {now['hi']:.3f}), "
      f"i.e. {np.exp(now['median']):.3f} bits per byte ({np.exp(now['lo']):.3f} - {np.exp(now['hi']):.3f})")

# %% [markdown]
# ## 2. Candidates, cost, and the expected information gain
#
# Candidates are runs the trainer can do: each shape (t0, t1, t2) at each token budget. A run
# costs 6 N D FLOPs. For each candidate, `choose_batch` simulates its outcome under every
# posterior draw, reweights the draws by how well each explains that outcome, and measures how
# much the target's variance would fall; averaged over outcomes this is the EIG, in nats
# (0.5 × the expected drop in log variance: the interval would shrink by about exp(-gain)).
# Ranking by gain per FLOP finds the cheapest information; `cost_power=0` ranks by gain alone.
#
# The command line does the same (and writes the plot and a trainer plan):
# `atlas-bayes design RUNS --law atlas-dt --lang es --target loss@N=6361344,D=6.7e7
# --shapes t0,t1,t2 --tokens 4e6,8e6,1.6e7,3.2e7,6.4e7 --budget 3e15 --k 3 --plan plan.jsonl`.

# %%
candidates = design.candidate_grid(shapes=list(SIZES), tokens=[4e6, 8e6, 1.6e7, 3.2e7, 6.4e7],
                                   language="es")
per_flop = design.choose_batch(posterior, candidates, target, k=3, budget=3e15)
columns = ["candidate", "cost", "gain", "gain_per_flop", "ess"]
print(f"{len(candidates)} candidates, {candidates['cost'].min():.3g} - "
      f"{candidates['cost'].max():.3g} FLOPs each")
print("\nbest single runs by gain per FLOP:")
print(per_flop.scores.sort_values("gain_per_flop", ascending=False)[columns].head(6)
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
print("\nbest single runs by gain alone:")
print(per_flop.scores.sort_values("gain", ascending=False)[columns].head(3)
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))

# %% [markdown]
# How to read it: the largest gains come from runs at the target's own size (they measure the
# model-size term the fit can only extrapolate from t0 and t1), but they are also the most
# expensive; per FLOP, small models or short runs can compete (a long run of the smallest model
# is cheap and tells the fit how repetition wears off). `ess` is the effective number of draws
# left after reweighting: when it is small, the estimate rests on few draws (use more with
# `max_draws`).
#
# ## 3. A batch that complements itself
#
# Picking the top k by their scores alone would often pick near-copies: runs that would teach
# the same thing. `choose_batch` is greedy with fantasised outcomes: after each pick, every draw
# keeps that pick's simulated outcome, and the next candidate is scored by what it adds *given*
# the earlier picks. Compare each pick's gain alone (the first-round score) with its gain given
# the picks before it: a copy would add much less than it does alone; a complement may add as
# much or more. The last line shows what simply taking the three best first-round scores would
# have bought instead.

# %%
alone = per_flop.scores.set_index("candidate")["gain"]
by_gain = design.choose_batch(posterior, candidates, target, k=3, budget=3e15, cost_power=0)
for name, batch in (("per FLOP (cost_power=1)", per_flop), ("by gain alone (cost_power=0)", by_gain)):
    shown = batch.chosen.assign(gain_alone=batch.chosen["candidate"].map(alone))
    print(f"\nbatch chosen {name}: total gain {batch.total_gain:.3f} nats, "
          f"cost {batch.chosen['cost'].sum():.3g} FLOPs")
    print(shown[["order", "candidate", "cost", "gain_alone", "gain", "cumulative_gain"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
naive = per_flop.scores.nlargest(3, "gain_per_flop")["candidate"].tolist()
print("\nthe naive top 3 by first-round gain per FLOP would be:", ", ".join(naive))

# %% [markdown]
# The utility plot shows every candidate on the (N, D) plane coloured by gain per FLOP, the
# fitted runs as grey crosses, the target as a star and the chosen runs circled and numbered.
# The chosen batch becomes a plan for the companion trainer (one JSON config per run,
# `atlas-bayes train --plan plan.jsonl`).

# %%
design.plot_design(per_flop, OUT / "design.png", data=es_fit["fit_data"].to_dataset().to_dataframe())
plan = design.write_plan(design.plan_configs(per_flop.chosen, prefix="next"), OUT / "plan.jsonl")
print(f"plot: {OUT / 'design.png'}\nplan: {plan}")
print(plan.read_text().splitlines()[0])

# %% [markdown]
# ## 4. The closed loop, with an external runner and a known truth
#
# `run_loop` repeats: fit, measure the target's 90% interval, design a batch within the
# remaining budget, write the round's plan, get the runs, add them to the run table, refit. It
# can train the runs itself with the companion trainer, or, with `external=True`, write the plan
# and stop until someone puts the finished runs' rows in `round-R/results.csv`; calling it
# again picks them up and goes on. The output folder is the loop's whole state, so a rerun after
# any interruption continues where it stopped (CLI: `atlas-bayes loop RUNS --out DIR --target ...
# --budget ... --shapes t0,t1,t2 --external`).
#
# To see whether the loop homes in on the right answer we need to know the answer, so the runs
# here come from a **simulated twin** of the study: the truth is one draw of the fit above (the
# one with the highest posterior density), the starting table has the real es runs' design
# (sizes, budgets, checkpoints, unique bytes) with losses drawn from that truth (the law's loss
# with the fit's own Student-t noise on log loss), and the external runner answers each planned
# run with eight evaluations along its length, drawn the same way. Nothing real is trained here;
# the point is the loop's mechanics and whether its interval ends up around the truth.

# %%
lp = es_fit.sample_stats["lp"].values
chain, draw = np.unravel_index(np.argmax(lp), lp.shape)
best = {k: float(es_fit.posterior[k].values[chain, draw])
        for k in ("E", "A", "B", "alpha", "beta", "lambda", "sigma")}
U_ES = float(es_runs["unique_tokens"].max())
TRUTH = LawDraws("atlas", {k: [v] for k, v in best.items() if k != "sigma"}, unique_tokens=U_ES)
NOISE = best["sigma"]
print("truth:", {k: round(v, 4) for k, v in best.items()}, f"unique bytes {U_ES:.3g}")


def with_losses(table, seed):
    """The truth's loss at every row, with the fit's own noise: Student-t(4) on log loss."""
    mean = predicted_loss(TRUTH, table["n_params"].to_numpy()[None], table["n_tokens"].to_numpy()[None])[0]
    noise = NOISE * np.random.default_rng(seed).standard_t(4, len(table))
    return table.assign(loss=mean * np.exp(noise), source=f"simulated: atlas-dt twin, seed={seed}")


def external_runner(configs, seed):
    """Answer planned runs (trainer configs) with eight evaluations each, drawn from the truth."""
    rows = [{"run_id": c["run_id"], "language": c["mixture"], "n_params": SIZES[c["model"]],
             "n_tokens": c["tokens"] * k / 8, "unique_tokens": U_ES}
            for c in configs for k in range(1, 9)]
    return with_losses(pd.DataFrame(rows), seed)


start_path = OUT / "twin_start.csv"
write_runs(with_losses(es_runs[["run_id", "language", "n_params", "n_tokens", "unique_tokens"]], seed=1),
           start_path)
true_target = float(np.log(predicted_loss(TRUTH, [SIZES["t2"]], [6.7e7]))[0])
print(f"true target: log loss {true_target:.3f} ({np.exp(true_target):.3f} bits per byte)")

# %% [markdown]
# The loop itself. Each `run_loop` call below is a fresh invocation, exactly what a person or a
# scheduler would do: it reads the folder, takes the runs the runner delivered, refits, designs
# the next round and stops again to wait. The progress lines (on stderr) say what each call did.

# %%
LOOP = OUT / "loop"
shutil.rmtree(LOOP, ignore_errors=True)            # a fresh loop each time the notebook runs
settings = LoopSettings(runs=str(start_path), target=TARGET, budget=3e15, shapes=list(SIZES),
                        tokens=[4e6, 8e6, 1.6e7, 3.2e7, 6.4e7], k=2, max_rounds=ROUNDS,
                        law="atlas-dt", language="es", max_draws=MAX_DRAWS, sampler=SAMPLER,
                        external=True, seed=0)
status = run_loop(settings, LOOP)
while "waiting" in status:
    configs = [json.loads(line) for line in Path(status["plan"]).read_text().splitlines()]
    write_runs(external_runner(configs, seed=100 + status["rounds"]), status["results"])
    status = run_loop(settings, LOOP)
print("\nloop stopped:", status["stopped"])

# %% [markdown]
# The round log (`rounds.jsonl`): which runs each round added, their cost, the compute spent so
# far, and the target's median and 90% interval after refitting with them. Round 0 is the
# starting table. The last column checks the interval against the known truth.

# %%
log = pd.read_json(LOOP / "rounds.jsonl", lines=True).astype({"cost": float, "spent": float})
log["truth_inside"] = np.where((log["lo"] <= true_target) & (true_target <= log["hi"]), "PASS", "MISS")
print(log[["round", "runs", "cost", "spent", "median", "lo", "hi", "width", "truth_inside"]]
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))

fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(log["spent"], log["median"], yerr=[log["median"] - log["lo"], log["hi"] - log["median"]],
            fmt="o", capsize=4, label="posterior median, 90% interval")
ax.axhline(true_target, color="C3", ls="--", label="truth")
for r in log.itertuples():
    ax.annotate(f"r{r.round}", (r.spent, r.hi), xytext=(3, 3), textcoords="offset points", fontsize=8)
ax.set(xlabel="compute spent by the loop (FLOPs)", ylabel=f"log loss at {target.name[5:]}",
       title="The target's interval, round by round")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "loop_interval.png", dpi=120)
plt.close(fig)
print(f"plots: {OUT / 'loop_interval.png'}, {LOOP / 'width.png'} (the loop's own width plot)")

# %% [markdown]
# How to read it: the interval should narrow as the loop buys runs, most where a round adds a run
# near the target's size, and the truth should stay inside it (a 90% interval misses about one
# time in ten, and quick-mode fits are too short to trust any single interval). The width is
# what the loop's stopping rule `width=` compares against; the budget is the other stop.
#
# One caveat when reading the runs column: a later round may buy a run with the same shape and
# tokens as an earlier one. Under the fitted noise model that is a second, independent
# measurement, and here the runner does draw fresh noise. A real trainer with the same config
# and seed would reproduce the first loss exactly, so the fit would count one measurement
# twice. A replicate needs its own seed, which the loop does not set for you (every round's
# configs share `train_base`), so check a real round's plan for repeats.
#
# ## 5. Resuming, and what a rerun may change
#
# Running the same command again after the loop has stopped does no new work: the folder says
# every round is done. A rerun may change only the stopping rules and who trains (`budget`,
# `width`, `max_rounds`, `external`); raising `max_rounds` would continue from the last round.
# Changing anything that defines the loop (the target, the law, the candidates) is refused,
# because the rounds already in the folder were chosen for the old one.

# %%
again = run_loop(settings, LOOP, progress=False)
print("same settings again:", again["stopped"], f"({again['rounds']} round(s), nothing refitted)")
try:
    run_loop(dataclasses.replace(settings, target="params"), LOOP, progress=False)
except ValueError as err:
    print("another target in the same folder:", err)
print("\nthe loop's folder:", sorted(p.name for p in LOOP.iterdir()))

# %% [markdown]
# ## 5. Bring your own law
#
# The registry's laws are not the only ones: any law written as a small Python file fits, and
# designs, the same way (`--law my_law.py` on the command line; docs/guide.md, "Bring your own
# law"). The file names the parameters with positive bounds (the default prior is log-uniform
# between them), the run-table columns it reads, and `predict(p, x)`, the loss, written with
# jax.numpy; `PRIORS` may replace the default prior of any parameter. Here: Chinchilla on
# Muennighoff's effective data D' with one decay constant R for repeated bytes, the idea behind
# `atlas-dt`, written out by hand. The fit samples on a centred scale it derives from the bounds
# and a least-squares fit of the data, so nothing about reparameterisation needs writing. With
# only two model sizes the data barely separate E, A and alpha, so expect the diagnostics to
# ask for longer chains at the quick settings.

# %%
LAW_FILE = OUT / "repeated_chinchilla.py"
LAW_FILE.write_text('''
"""Chinchilla on effective data: repeated bytes decay with constant R (Muennighoff's D')."""
import jax.numpy as jnp
import numpyro.distributions as dist

PARAMS = {"E": (0.05, 5.0), "A": (1e-2, 1e8), "B": (1e-2, 1e8), "alpha": (0.02, 2.0),
          "beta": (0.02, 2.0), "R": (0.1, 100.0)}
FEATURES = ("n_params", "n_tokens", "unique_tokens")
# two model sizes cannot pin the exponents alone: the registry's priors on them (90% in 0.15-0.8)
PRIORS = {"alpha": dist.LogNormal(jnp.log(0.35), 0.5), "beta": dist.LogNormal(jnp.log(0.35), 0.5)}


def predict(p, x):
    N, D, U = x["n_params"], x["n_tokens"], x["unique_tokens"]
    repeats = jnp.maximum(D / U - 1.0, 0.0)
    D_eff = jnp.minimum(D, U) * (1.0 + p["R"] * -jnp.expm1(-repeats / p["R"]))
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D_eff ** p["beta"]
''')
own_fit = fit(es_runs, str(LAW_FILE), sampler=Sampler(**SAMPLER), warn=False)
d = json.loads(own_fit.attrs["diagnostics"])
print(f"diagnostics: {d['divergences']} divergences, max R-hat {d['max_r_hat']:.3f}, min bulk ESS "
      f"{d['min_ess_bulk']:.0f}")
own_posterior = design.posterior_from_tree(own_fit, max_draws=MAX_DRAWS)
own = design.target_summary(own_posterior, target)
print("posterior medians:", {k: round(float(own_fit.posterior[k].median()), 3)
                             for k in ("E", "alpha", "beta", "R")})
print(f"target {target.name}: log loss {own['median']:.3f} (90%: {own['lo']:.3f} - {own['hi']:.3f}) "
      f"with the user law; {now['median']:.3f} ({now['lo']:.3f} - {now['hi']:.3f}) with atlas-dt")
own_candidates = candidates.assign(unique_tokens=float(es_runs["unique_tokens"].max()))
own_batch = design.choose_batch(own_posterior, own_candidates, target, k=3, budget=3e15)
print("\nbatch chosen with the user law:")
print(own_batch.chosen[["order", "candidate", "cost", "gain", "cumulative_gain"]]
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))

# %% [markdown]
# Where the two laws' intervals for the target differ, the difference is the laws' (their form
# and priors), and so are the batches they choose. The same file works in every command: `atlas-bayes fit RUNS --law
# repeated_chinchilla.py`, `compare --laws atlas-dt,repeated_chinchilla.py`, `optimal` (a law of
# n_params and n_tokens, here also unique_tokens), `design` and `loop`. A law that reads other
# columns (a vocabulary size, a learning rate) designs from a candidate file holding them, and
# may define `cost(x)` for its runs.

# %% [markdown]
# ## Where this leaves the real study
#
# The design in sections 2-3 is a real recommendation for the bundled study's next Spanish
# runs (at quick settings, a rough one: rerun without `ATLAS_BAYES_QUICK`). The loop in section 4
# shows how such recommendations compound when someone actually trains the runs: the trainer
# (`atlas-bayes loop ... ` without `--external`) or any other runner that writes a run table.
# Two limits to keep in mind: the EIG is computed under the fitted law, so runs that would
# reveal the law itself to be wrong (say, a different repetition behaviour after many epochs)
# get no credit for that; and it reweights existing draws, so it cannot value outcomes the
# posterior considers impossible (notebook 04 shows this for the real crossover).
