"""ScaleBench lr_bsz task (Li et al. 2026): a law instance as a user law (`--law lr_bsz.py:SL6`).

Formula re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/lr_bsz_scaling_law/laws.py, commit e0a58ff); no code copied. Columns: lr,
bsz, n_tokens (the task's `data_size`, D) and n_params (`non_embedding_param_size`, P). The
task's laws have 14-31 parameters; this is the smallest (see benchmarks/RESULTS.md, issue 21,
for the all-data fits of the others). Its polynomial's coefficients are signed: each is written
as w = w' + low with w' in (1e-4 (high - low), high - low), the authors' box shifted to a
positive one of the same width (less its lowest 0.01%), with a uniform prior as their box is.
"""
import jax.numpy as jnp
import numpyro.distributions as dist

# the signed coefficients of the exponent's polynomial and the authors' boxes
SIGNED = {"w0": (-8.0, 8.0), "w_d": (-0.5, 0.5), "w_p": (-0.5, 0.5), "w_dp": (-0.025, 0.025),
          "w_lr": (-0.6, 0.6), "w_lr2": (-0.6, 0.6), "w_bsz": (-0.5, 0.5),
          "w_bsz2": (-0.5, 0.5), "w_lrbsz": (-0.04, 0.04), "w_lrD": (-0.02, 0.02),
          "w_lrP": (-0.04, 0.04), "w_bszD": (-0.05, 0.05), "w_bszP": (-0.02, 0.02)}


def shifted(name: str) -> tuple:
    low, high = SIGNED[name]
    return (1e-4 * (high - low), high - low)


class SL6:
    """L_inf + exp(a partial quadratic in ln lr, ln bsz, ln D, ln P) (14 parameters, the
    fewest of the ten)."""
    PARAMS = {"L_inf": (1e-3, 3.0), **{name: shifted(name) for name in SIGNED}}
    PRIORS = {name: dist.Uniform(*shifted(name)) for name in SIGNED}
    FEATURES = ("lr", "bsz", "n_tokens", "n_params")

    @staticmethod
    def predict(p, x):
        w = {name: p[name] + SIGNED[name][0] for name in SIGNED}
        u, v, s, n = (jnp.log(x[f]) for f in ("lr", "bsz", "n_tokens", "n_params"))
        exponent = (w["w0"] + w["w_d"] * s + w["w_p"] * n + w["w_dp"] * s * n
                    + w["w_lr"] * u + w["w_lr2"] * u ** 2 + w["w_bsz"] * v + w["w_bsz2"] * v ** 2
                    + w["w_lrbsz"] * u * v + w["w_lrD"] * u * s + w["w_lrP"] * u * n
                    + w["w_bszD"] * v * s + w["w_bszP"] * v * n)
        return p["L_inf"] + jnp.exp(jnp.clip(exponent, -50.0, 50.0))
