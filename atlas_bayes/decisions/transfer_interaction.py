"""The transfer matrix with a source x target interaction (`models.transfer.transfer_interaction`):
its posterior per pair, and the pairs where the interaction matters.

`interaction_posterior` turns NUTS draws into draws of every ordered pair's g (the structured
part plus the pair and directional residuals, drawn from their exact conditional given the
measurements), of the interaction term alone and of the additive prediction without it.
`deviations` lists the pairs whose transfer departs most from the additive prediction (source
effect + target effect + covariates), what the interaction model adds over the additive one.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.compiled import padded_size
from atlas_bayes.models.transfer import (NU, MatrixInputs, bivariate_residuals, interaction,
                                         interaction_mean)

HYPERPARAMETERS = ("mu", "sd_source", "sd_target", "sd_pair", "factor_sizes", "log_noise_mean",
                   "log_noise_spread")
STRUCTURE = ("mu", "gamma", "source_effect", "target_effect", "u", "v", "factor_sizes")
DROPPED = ("z_source", "z_target", "z_noise", "u_raw", "v_raw", "mix", "factor_scale", "factor_shrink")


def interaction_posterior(x: MatrixInputs, y, posterior: dict, seed: int) -> dict:
    """Per-pair draws (chain, draw, p) added to `posterior`: `g_pairs` (every ordered pair,
    measured ones shrunk by their standard errors), `interaction_pairs` and `additive_pairs`
    (the structured part without the interaction); the raw latents are dropped."""
    draws = {k: jax.numpy.asarray(posterior[k]) for k in STRUCTURE}
    per_draw = jax.jit(jax.vmap(jax.vmap(lambda p: (interaction_mean(x, p),
                                                    interaction(x, p["u"], p["v"], p["factor_sizes"])))))
    structured, inter = (np.asarray(a, dtype=float) for a in per_draw(draws))
    rng = np.random.default_rng(seed)
    mix = rng.gamma(NU / 2, 2 / NU, structured.shape)        # unmeasured pairs: from the prior
    mix[..., x.measured] = posterior["mix"][..., x.real_rows(padded_size)]
    shared = posterior["sd_pair"][..., None] ** 2
    var = posterior["sigma_target"][..., x.target] ** 2 / mix + shared
    g = structured + bivariate_residuals(x, y, structured, var, shared, rng)
    for name in DROPPED:
        posterior.pop(name, None)
    posterior.update(g_pairs=g, interaction_pairs=inter, additive_pairs=structured - inter)
    return posterior


def as_matrix(pairs: np.ndarray, x: MatrixInputs) -> np.ndarray:
    """(..., p) per ordered pair -> (..., target, source), NaN on the diagonal."""
    n = x.n_languages
    out = np.full(pairs.shape[:-1] + (n, n), np.nan, dtype=np.float32)
    out[..., x.target, x.source] = pairs
    return out


def deviations(tree: xr.DataTree, top: int = 10, prob: float = 0.9) -> pd.DataFrame:
    """The `top` pairs whose transfer departs most from the additive prediction: posterior
    median of the interaction term on g, its interval, P(> 0), and the additive prediction
    and full posterior median of g; largest |median interaction| first."""
    post = tree.posterior
    if "interaction" not in post:
        raise ValueError("this matrix was fitted with the additive model (no interaction term); "
                         "fit it with model='interaction'")
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    inter = post["interaction"].stack(s=("chain", "draw"))
    langs = list(post["target"].to_numpy().astype(str))
    rows = []
    values = inter.transpose("target", "source", "s").to_numpy()
    additive = post["additive"].median(("chain", "draw")).to_numpy()
    g = post["g"].median(("chain", "draw")).to_numpy()
    for t, target in enumerate(langs):
        for s, source in enumerate(langs):
            if s == t:
                continue
            d = values[t, s]
            rows.append({"source": source, "target": target, "interaction": float(np.median(d)),
                         f"q{lo * 100:02.0f}": float(np.quantile(d, lo)),
                         f"q{hi * 100:02.0f}": float(np.quantile(d, hi)),
                         "p_positive": float((d > 0).mean()), "g_additive": float(additive[t, s]),
                         "g_median": float(g[t, s])})
    table = pd.DataFrame(rows)
    order = table["interaction"].abs().sort_values(ascending=False).index
    return table.loc[order].head(top).reset_index(drop=True)
