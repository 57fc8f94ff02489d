"""Issue 20, next step: a prototype transfer-matrix model measured on the paper's matrix.

Not part of the package yet (models/transfer.py is where it belongs once it beats the forest
on random cells). The measured matrix, splits, forest and scores are those of
`benchmarks/transfer_matrix.py --part c`. The model, per target row t (dense n x n layout):

    g[t, s] = mu + gamma . covariates[t, s] + a_s + b_t + u_t . v_s + c_{s,t} + e[t, s]

a: source effects (normal, centred); b_t: target effects, Student-t (a scale mixture, one
weight per target) and *not* centred, so mu sits at the typical target and the few far-off
targets (zh, ps, ...) do not drag every new target's prediction down; v: `--rank` source
factors (sampled, or with `--svd-factors` fixed at the additive residuals' SVD); u_t: target
loadings with one half-normal size per factor (a shrinking-size Beta parameterisation sent
NUTS to its maximum tree depth); c: a pair term shared by both directions; e: per-target
normal noise. Given the hyperparameters, a and v, the target blocks (b_t, u_t) are Gaussian
and integrated out exactly (a Woodbury marginal whose capacitance matrix couples two targets
only through the pair term), so NUTS samples ~100-160 parameters whose gradient costs
O(n^2 (1 + rank)^2 + (n (1 + rank))^3 / 3).

    .venv/bin/python benchmarks/transfer_rows_prototype.py --kinds cells,rows,columns --repeats 10 \
        --folds 2 --rank 0
    .venv/bin/python benchmarks/transfer_rows_prototype.py --kinds cells --repeats 2 --rank 2 \
        --warmup 300 --draws 300
"""

import argparse
import math
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import MCMC, NUTS

from atlas_bayes.decisions.bts import efficiency_from_bts
from atlas_bayes.decisions.transfer import covariates
from atlas_bayes.models.transfer import MatrixInputs, bivariate_residuals
from atlas_bayes.simulation.transfer_study import figure2_matrix, regressor_baseline
from transfer_matrix import ROUNDING, real_splits, score, split_cells

NU = 4.0
CHECKED = ("mu", "sd_source", "sd_target", "sd_pair", "log_noise_mean")


def dense(table: pd.DataFrame, langs):
    """Measured g (target, source), its mask, standard errors and the pair covariates."""
    n, pos = len(langs), {lang: i for i, lang in enumerate(langs)}
    Y, M, SE = np.zeros((n, n)), np.zeros((n, n)), np.ones((n, n))
    for r in table.itertuples():
        t, s = pos[r.target], pos[r.source]
        Y[t, s], M[t, s], SE[t, s] = r.g_mean, 1.0, r.g_sd
    return Y, M, SE, covariates(langs)


def precisions(M, SE, sigma, sd_pair):
    """Per cell: its own and its reverse cell's entry of the 2 x 2 (or 1 x 1) precision of
    (c + e + measurement error); log det of that block covariance."""
    both = M * M.T
    var = sigma[:, None] ** 2 + sd_pair ** 2 + SE ** 2
    c = sd_pair ** 2
    det = var * var.T - c ** 2
    P_self = jnp.where(both > 0, var.T / det, M / var)
    P_cross = jnp.where(both > 0, -c / det, 0.0)
    return P_self, P_cross, jnp.sum(jnp.where(both > 0, 0.5 * jnp.log(det), M * jnp.log(var)))


def target_blocks(Y, M, SE, fixed, v, sigma, sd_pair, sd_b, sizes):
    """Cholesky factor L of the capacitance matrix of the target blocks (b_t, u_t), L^-1 w,
    and the whitened residual's pieces."""
    n = Y.shape[0]
    r = (Y - fixed) * M
    P_self, P_cross, logdet_B = precisions(M, SE, sigma, sd_pair)
    Z = jnp.concatenate([jnp.ones((n, 1)), v], axis=1)      # (source, 1 + rank)
    q = Z.shape[1]
    w = (P_self * r + P_cross * r.T) @ Z                     # (target, 1 + rank)
    Dinv = jnp.concatenate([1 / sd_b[:, None] ** 2, jnp.broadcast_to(1 / sizes ** 2, (n, q - 1))], axis=1)
    A_diag = jnp.einsum("ts,si,sj->tij", P_self, Z, Z) + jax.vmap(jnp.diag)(Dinv)
    A = jnp.einsum("ts,si,tj->tisj", P_cross, Z, Z) + jnp.einsum("tij,ts->tisj", A_diag, jnp.eye(n))
    L = jnp.linalg.cholesky(A.reshape(n * q, n * q))
    u = jax.scipy.linalg.solve_triangular(L, w.reshape(-1), lower=True)
    quad = jnp.sum(P_self * r ** 2) + jnp.sum(P_cross * r * r.T)
    return L, u, Z, quad, logdet_B, Dinv


def model(Y, M, SE, C, rank, V=None):
    n, k = C.shape[0], C.shape[2]
    mu = numpyro.sample("mu", dist.Normal(0, 0.5))
    gamma = numpyro.sample("gamma", dist.Normal(0, 0.3).expand([k]).to_event(1))
    sd_source = numpyro.sample("sd_source", dist.HalfNormal(0.3))
    sd_target = numpyro.sample("sd_target", dist.HalfNormal(0.3))
    sd_pair = numpyro.sample("sd_pair", dist.HalfNormal(0.3))
    sizes = (numpyro.sample("factor_sizes", dist.HalfNormal(0.3).expand([rank]).to_event(1))
             if rank else jnp.zeros(0))
    noise_mean = numpyro.sample("log_noise_mean", dist.Normal(math.log(0.05), 1.0))
    noise_spread = numpyro.sample("log_noise_spread", dist.HalfNormal(0.5))
    with numpyro.plate("language", n):
        a_raw = numpyro.sample("a_raw", dist.Normal(0, sd_source))
        z_noise = numpyro.sample("z_noise", dist.Normal(0, 1))
        lam = numpyro.sample("lam", dist.Gamma(NU / 2, NU / 2))
        if rank and V is None:
            v_raw = numpyro.sample("v_raw", dist.Normal(0, 1).expand([n, rank]).to_event(1))
        else:
            v_raw = V if V is not None else jnp.zeros((n, 0))
    sigma = jnp.exp(noise_mean + noise_spread * z_noise)
    fixed = mu + C @ gamma + (a_raw - a_raw.mean())[None, :]
    L, u, _, quad, logdet_B, Dinv = target_blocks(Y, M, SE, fixed, v_raw - v_raw.mean(0), sigma, sd_pair,
                                                   sd_target / jnp.sqrt(lam), sizes)
    numpyro.factor("g", -0.5 * (quad - u @ u + logdet_B - jnp.sum(jnp.log(Dinv))
                                + 2 * jnp.sum(jnp.log(jnp.diag(L))) + jnp.sum(M) * jnp.log(2 * jnp.pi)))


def svd_factors(Y, M, rank):
    """Source factors from the additive residuals (alternating means; unmeasured cells 0)."""
    n, mu = Y.shape[0], (Y * M).sum() / M.sum()
    a, b = np.zeros(n), np.zeros(n)
    for _ in range(50):
        b = ((Y - mu - a[None]) * M).sum(1) / np.maximum(M.sum(1), 1)
        a = ((Y - mu - b[:, None]) * M).sum(0) / np.maximum(M.sum(0), 1)
    V = np.linalg.svd((Y - mu - a[None] - b[:, None]) * M)[2][:rank].T
    return (V - V.mean(0)) / V.std(0)


def fit(table, langs, rank, chains, warmup, draws, seed, svd=False):
    data = dense(table, langs)
    V = svd_factors(*data[:2], rank) if svd and rank else None
    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=warmup, num_samples=draws,
                num_chains=chains, chain_method="vectorized", progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), *data, rank, V, extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - start
    post = mcmc.get_samples(group_by_chain=True)
    if V is not None:
        post = dict(post, v_raw=np.broadcast_to(V, (chains, draws) + V.shape))
    return post, mcmc.get_extra_fields(group_by_chain=True), seconds, data


def predict(post, data, seed):
    """Draws (chain * draw, target, source) of every cell: (b_t, u_t) from their Gaussian
    conditional, then the pair residuals given the measurements."""
    Y, M, SE, C = data
    n = Y.shape[0]
    flat = {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in post.items()}
    draws = len(flat["mu"])
    flat.setdefault("factor_sizes", np.ones((draws, 0)))
    flat.setdefault("v_raw", np.zeros((draws, n, 0)))

    def one(key, p, Y, M, SE, C):      # the data as arguments, not constants: one compilation
        sigma = jnp.exp(p["log_noise_mean"] + p["log_noise_spread"] * p["z_noise"])
        fixed = p["mu"] + C @ p["gamma"] + (p["a_raw"] - p["a_raw"].mean())[None, :]
        L, u, Z, *_ = target_blocks(Y, M, SE, fixed, p["v_raw"] - p["v_raw"].mean(0), sigma, p["sd_pair"],
                                    p["sd_target"] / jnp.sqrt(p["lam"]), p["factor_sizes"])
        beta = jax.scipy.linalg.solve_triangular(L.T, u + jax.random.normal(key, u.shape), lower=False)
        return fixed + beta.reshape(n, -1) @ Z.T, sigma
    keys = jax.random.split(jax.random.PRNGKey(seed), draws)
    params = {k: jnp.asarray(v) for k, v in flat.items()}
    per_draw = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None)))
    structured, sigma = (np.asarray(a) for a in per_draw(keys, params, Y, M, SE, C))
    src, tgt = np.array([(s, t) for t in range(n) for s in range(n) if s != t]).T
    meas = np.flatnonzero(M[tgt, src] > 0)
    x = MatrixInputs(design=None, source=src, target=tgt, reverse=None, measured=meas, se=SE[tgt, src][meas],
                     n_single=0, n_languages=n, n_covariates=0)
    shared = flat["sd_pair"][:, None] ** 2
    fixed = structured[:, tgt, src]
    g = fixed + bivariate_residuals(x, Y[tgt, src][meas], fixed, sigma[:, tgt] ** 2 + shared, shared,
                                    np.random.default_rng(seed))
    out = np.full((draws, n, n), np.nan)
    out[:, tgt, src] = g
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared")
    parser.add_argument("--kinds", default="cells,rows,columns")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--svd-factors", action="store_true", help="fix the source factors at the SVD")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    warnings.simplefilter("ignore")
    print("command:", " ".join(sys.argv), flush=True)
    bts = figure2_matrix(args.shared)
    langs = list(bts.index)
    pos = {lang: i for i, lang in enumerate(langs)}
    g = pd.DataFrame(efficiency_from_bts(bts.to_numpy()), index=langs, columns=langs)
    se = ROUNDING / (2.0 - bts)
    rows = []
    for kind, index, held in real_splits(langs, args.repeats, args.folds):
        if kind not in args.kinds.split(","):
            continue
        train, truth, noise, hard = split_cells(g, se, held)
        results = [score("forest", regressor_baseline(train, held, langs, index)[None], truth, hard)]
        post, extra, seconds, data = fit(train, langs, args.rank, 4, args.warmup, args.draws, index,
                                         args.svd_factors)
        G = predict(post, data, index)
        draws = np.stack([G[:, pos[t], pos[s]] for s, t in held], axis=1)
        draws = draws + noise * np.random.default_rng(index).standard_normal(draws.shape)
        cells = np.stack([G.reshape(4, -1, *G.shape[1:])[:, :, pos[t], pos[s]] for s, t in held], axis=-1)
        rhat_g = float(np.nanmax(split_gelman_rubin(cells)))
        rhat = max([rhat_g] + [float(np.max(split_gelman_rubin(np.asarray(post[k])))) for k in CHECKED])
        row = score(f"rows model, rank {args.rank}", draws, truth, hard, seconds,
                    {"max_r_hat": rhat, "divergences": int(extra["diverging"].sum())})
        results.append(dict(row, steps=float(np.mean(extra["num_steps"])), rhat_g=rhat_g))
        for r in results:
            rows.append({"split": kind, "index": index, **r})
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
            print(kind, index, shown, flush=True)
    print(pd.DataFrame(rows).groupby(["split", "method"]).mean(numeric_only=True).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
