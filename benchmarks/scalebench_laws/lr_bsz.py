"""ScaleBench lr_bsz task (Li et al. 2026): a law instance as a user law (`--law lr_bsz.py:SL1`).

Formula re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/lr_bsz_scaling_law/laws.py, commit e0a58ff); no code copied. Columns: lr,
bsz, n_tokens (the task's `data_size`, D) and n_params (`non_embedding_param_size`, N). The
task's laws have 14-31 parameters; of the three smallest (14-15), this one fits all data best
(benchmarks/RESULTS.md, issue 21). Its polynomial's coefficients are signed: each is written
as w = w' + low with w' in (1e-4 (high - low), high - low), the authors' box shifted to a
positive one of the same width (less its lowest 0.01%), with a uniform prior as their box is.
"""
import jax.numpy as jnp
import numpyro.distributions as dist

FEATURES = ("lr", "bsz", "n_tokens", "n_params")
# the quadratic's terms in z = (ln lr, ln bsz, ln D, ln N): 1, z_i, z_i^2, z_i z_j (i < j)
TERMS = ("1", "u", "v", "s", "n", "uu", "vv", "ss", "nn", "uv", "us", "un", "vs", "vn", "sn")


def quadratic_terms(x) -> dict:
    """{term: values} of TERMS at the rows of x."""
    z = dict(zip("uvsn", (jnp.log(x[f]) for f in FEATURES)))
    return {t: 1.0 if t == "1" else z[t] if len(t) == 1 else z[t[0]] * z[t[1]] for t in TERMS}


def shifted(low: float, high: float) -> tuple:
    """A signed box as the positive box of its shift by -low."""
    return (1e-4 * (high - low), high - low)


class SL1:
    """exp(a full quadratic in ln lr, ln bsz, ln D, ln N) (15 parameters; target R² 0.605 by
    the authors' full-data baseline: the best of the three smallest laws, sl_9 0.423,
    sl_6 0.266)."""
    BOX = {"w_1": (-15.0, 15.0), **{f"w_{t}": (-0.35, 0.35) for t in TERMS[1:5]},
           **{f"w_{t}": (-0.025, 0.025) for t in TERMS[5:]}}
    PARAMS = {name: shifted(*box) for name, box in BOX.items()}
    PRIORS = {name: dist.Uniform(*bounds) for name, bounds in PARAMS.items()}
    FEATURES = FEATURES

    @staticmethod
    def predict(p, x):
        terms = quadratic_terms(x)
        return jnp.exp(sum((p[f"w_{t}"] + SL1.BOX[f"w_{t}"][0]) * terms[t] for t in TERMS))
