"""Simulated transfer studies with known answers, and the paper's way of filling the matrix.

* `figure2_matrix`: the paper's Figure 2 (30 x 30 BTS, transcribed in atlas-law.md appendix
  A), read from the reference file at run time (never copied into the project).
* `simulate_bilingual_runs`: monolingual and 50/50 bilingual learning curves whose transfer
  is a given BTS matrix, in the run-table format (truth: D_eff = d/2 (1 + tau) on the target).
* `simulate_matrix`, `simulate_interaction_matrix`: matrices drawn from
  `models.transfer.transfer_matrix` and `transfer_interaction` at known parameters (for
  parameter recovery).
* `regressor_baseline` and `heldout_comparison`: the paper fills unmeasured pairs with a
  random forest trained on measured ones; we compare it with the Bayesian matrix on
  held-out pairs (error, rank correlation, interval coverage).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.decisions.bts import bts_from_efficiency, efficiency_from_bts
from atlas_bayes.fitting.inference import Sampler
from atlas_bayes.models.transfer import NU
from atlas_bayes.decisions.transfer import covariates, fit_transfer_matrix, language_order, transfer_draws

REFERENCE = Path("reference") / "atlas-law.md"


def figure2_matrix(shared: str | Path) -> pd.DataFrame:
    """The paper's Figure 2 as a DataFrame (index: target, columns: source; NaN diagonal)."""
    path = Path(shared) / REFERENCE
    text = path.read_text()
    section = text[text.index("## Appendix A"):]
    section = section[:section.index("## Appendix B")]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    sources = header[1:]
    values = {}
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        target = re.sub(r"\*", "", cells[0])
        values[target] = [np.nan if c == "·" else float(c) for c in cells[1:]]
    matrix = pd.DataFrame.from_dict(values, orient="index", columns=sources)
    if matrix.shape != (len(sources), len(sources)) or list(matrix.index) != sources:
        raise ValueError(f"{path}: appendix A is not a square target x source table")
    return matrix


def curve_parameters(langs, seed: int = 0) -> pd.DataFrame:
    """Per-language learning-curve truth: E (incl. the model-size term), B at 1e9 tokens, beta."""
    rng = np.random.default_rng(seed)
    n = len(langs)
    return pd.DataFrame({"E": rng.uniform(1.6, 2.4, n), "R": rng.uniform(0.8, 1.6, n),
                         "beta": rng.uniform(0.25, 0.4, n)}, index=list(langs))


def simulate_bilingual_runs(bts: pd.DataFrame, pairs=None, *, n_params: float = 1e9,
                            checkpoints=tuple(np.geomspace(1e9, 2e10, 8)), sigma: float = 0.005,
                            seed: int = 0) -> pd.DataFrame:
    """Monolingual runs for every language and bilingual runs for `pairs` (default: all).

    Truth on target t: mono L(d) = E_t + R_t (d / 1e9)^-beta_t; the (s, t) bilingual run
    evaluated on t sees D_eff = d/2 (1 + tau_{s->t}) with tau = BTS / (2 - BTS), so its BTS at
    any horizon is the matrix entry. Log-normal noise `sigma` on every checkpoint.
    """
    langs = list(bts.index)
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
    truth = curve_parameters(langs, seed)
    rng = np.random.default_rng(seed + 1)
    d = np.asarray(checkpoints, dtype=float)
    rows = []

    def curve(run_id, lang, d_eff, shares):
        p = truth.loc[lang]
        loss = (laws.learning_curve(np.log(d_eff / 1e9), p["E"], p["R"], p["beta"])
                * np.exp(sigma * rng.standard_normal(len(d))))
        for tokens, value in zip(d, loss):
            rows.append({"run_id": run_id, "language": lang, "n_params": n_params,
                         "n_tokens": tokens, "loss": value, "init": "scratch",
                         "source": f"simulated: bilingual transfer, seed={seed}, sigma={sigma}",
                         **{f"mix_{k}": v for k, v in shares.items()}})
    for lang in langs:
        curve(f"mono-{lang}", lang, d, {lang: 1.0})
    for a, b in pairs:
        for source, target in ((a, b), (b, a)):
            value = bts.at[target, source]
            tau = value / (2.0 - value)
            curve(f"bi-{a}-{b}", target, d / 2.0 * (1.0 + tau), {a: 0.5, b: 0.5})
    runs = pd.DataFrame(rows)
    mix = [c for c in runs.columns if c.startswith("mix_")]
    return runs[[c for c in runs.columns if c not in mix] + sorted(mix)]


def simulate_matrix(langs, *, mu=-0.15, sd_source=0.08, sd_target=0.2, sd_pair=0.06, rho=0.0,
                    gamma=(0.05, 0.03, 0.12), seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A g matrix (target x source) drawn from the matrix model at known hyperparameters."""
    rng = np.random.default_rng(seed)
    langs = language_order(langs)
    n = len(langs)
    a, b = rng.normal(0, sd_source, n), rng.normal(0, sd_target, n)
    cov = covariates(langs)
    g = np.full((n, n), np.nan)
    for s in range(n):
        for t in range(s + 1, n):
            e1, e2 = rng.multivariate_normal([0, 0], sd_pair ** 2 * np.array([[1, rho], [rho, 1]]))
            g[t, s] = mu + a[s] + b[t] + cov[s, t] @ np.asarray(gamma) + e1
            g[s, t] = mu + a[t] + b[s] + cov[t, s] @ np.asarray(gamma) + e2
    truth = {"mu": mu, "sd_source": sd_source, "sd_target": sd_target, "sd_pair": sd_pair,
             "rho": rho, "gamma": np.asarray(gamma), "source_effect": a, "target_effect": b}
    return pd.DataFrame(g, index=langs, columns=langs), truth


def simulate_interaction_matrix(langs, *, mu=-0.15, sd_source=0.08, sd_target=0.2, sd_pair=0.05,
                                sizes=(0.15, 0.08), noise=(0.03, 0.3), gamma=(0.05, 0.03, 0.12),
                                seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A g matrix (target x source) drawn from `models.transfer.transfer_interaction` at known
    parameters (`noise`: the typical scale of the Student-t directional noise and the targets'
    spread in its log)."""
    rng = np.random.default_rng(seed)
    langs = language_order(langs)
    n, r = len(langs), len(sizes)
    a, b = rng.normal(0, sd_source, n), sd_target * rng.standard_t(NU, n)
    a, b = a - a.mean(), b - b.mean()
    u, v = rng.normal(0, 1, (n, r)), rng.normal(0, 1, (n, r))
    u, v = u - u.mean(0), v - v.mean(0)
    sigma = noise[0] * np.exp(noise[1] * rng.standard_normal(n))
    inter = (u * np.asarray(sizes)) @ v.T
    g = mu + a[None, :] + b[:, None] + covariates(langs) @ np.asarray(gamma) + inter   # symmetric covariates
    c = rng.normal(0, sd_pair, (n, n))
    g = g + np.triu(c, 1) + np.triu(c, 1).T + sigma[:, None] * rng.standard_t(NU, (n, n))
    np.fill_diagonal(g, np.nan)
    truth = {"mu": mu, "sd_source": sd_source, "sd_target": sd_target, "sd_pair": sd_pair,
             "gamma": np.asarray(gamma), "factor_sizes": np.asarray(sizes), "source_effect": a,
             "target_effect": b, "sigma_target": sigma, "interaction": inter}
    return pd.DataFrame(g, index=langs, columns=langs), truth


def measure(g: pd.DataFrame, pairs, sd: float = 0.03, seed: int = 0) -> pd.DataFrame:
    """Noisy measurements (source, target, g_mean, g_sd) of a g matrix on ordered `pairs`."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"source": s, "target": t, "g_mean": g.at[t, s] + sd * rng.standard_normal(),
                          "g_sd": sd} for s, t in pairs])


def regressor_features(train: pd.DataFrame, pairs, langs) -> np.ndarray:
    """Per pair: same script / family / genus and the training mean g of its source (as a
    source) and of its target (as a target): what the paper's forest can learn without FAS."""
    cov = covariates(langs)
    pos = {lang: i for i, lang in enumerate(langs)}
    overall = train["g_mean"].mean()
    by_source = train.groupby("source")["g_mean"].mean()
    by_target = train.groupby("target")["g_mean"].mean()
    return np.array([[*cov[pos[s], pos[t]], by_source.get(s, overall), by_target.get(t, overall)]
                     for s, t in pairs])


def regressor_baseline(train: pd.DataFrame, pairs, langs, seed: int = 0) -> np.ndarray:
    """The paper's filler: a random forest (300 trees, unlimited depth) on measured pairs."""
    from sklearn.ensemble import RandomForestRegressor
    forest = RandomForestRegressor(n_estimators=300, random_state=seed)
    train_pairs = list(zip(train["source"], train["target"]))
    forest.fit(regressor_features(train, train_pairs, langs), train["g_mean"].to_numpy())
    return forest.predict(regressor_features(train, pairs, langs))


def heldout_comparison(truth_g: pd.DataFrame, measured: pd.DataFrame, heldout, *,
                       sampler: Sampler = Sampler(chains=4, warmup=500, draws=500),
                       prob: float = 0.9, seed: int = 0, model: str = "additive"):
    """Fit on measured pairs minus `heldout`; score both methods on the held-out truth.

    `model`: the matrix model (`fit_transfer_matrix`). Returns (metrics per method, per-pair
    predictions, the matrix fit). Metrics on g and BTS:
    RMSE, Spearman rank correlation, and for the Bayesian matrix the coverage of its
    `prob` interval.
    """
    from scipy.stats import spearmanr
    held = set(heldout)
    train = measured[[(s, t) not in held for s, t in zip(measured["source"], measured["target"])]]
    langs = language_order(truth_g.index)
    tree = fit_transfer_matrix(train.reset_index(drop=True), languages=langs, model=model,
                               sampler=sampler, warn=False)
    g = transfer_draws(tree, "g")
    truth = np.array([truth_g.at[t, s] for s, t in heldout])
    draws = np.stack([g.sel(source=s, target=t).to_numpy().ravel() for s, t in heldout])
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=1)
    predictions = pd.DataFrame({"source": [s for s, _ in heldout], "target": [t for _, t in heldout],
                                "truth": truth, "bayes": np.median(draws, axis=1),
                                "bayes_lo": lo, "bayes_hi": hi,
                                "forest": regressor_baseline(train, heldout, langs, seed)})
    bts = bts_from_efficiency
    metrics = []
    for method in ("bayes", "forest"):
        error = predictions[method] - truth
        metrics.append({"method": method, "rmse_g": float(np.sqrt(np.mean(error ** 2))),
                        "rmse_bts": float(np.sqrt(np.mean((bts(predictions[method]) - bts(truth)) ** 2))),
                        "spearman": float(spearmanr(predictions[method], truth).statistic),
                        "coverage": float(np.mean((lo <= truth) & (truth <= hi))) if method == "bayes"
                        else float("nan")})
    return pd.DataFrame(metrics), predictions, tree


def figure2_efficiency(shared: str | Path) -> pd.DataFrame:
    """Figure 2 on the g = log(1 + tau) scale (target x source)."""
    bts = figure2_matrix(shared)
    return pd.DataFrame(efficiency_from_bts(bts.to_numpy()), index=bts.index, columns=bts.columns)
