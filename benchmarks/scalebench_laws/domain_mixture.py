"""ScaleBench domain_mixture task (Li et al. 2026): a law instance as a user law
(`--law domain_mixture.py:SL8`).

Formula re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/domain_mixture_scaling_law/laws.py, commit e0a58ff); no code copied. A run
has five losses, one per domain; the task's loader gives one row per (run, output)
(`atlas_bayes.design.scalebench.one_row_per_output`), with `output` (1-5) saying whose loss the
row holds and the run's five proportions p_1..p_5 on every row, so one law with per-domain
parameters predicts the row: the same residual vector the authors fit and score. Fitted per
group (model size). Bounds are the authors' boxes, a lower bound of 0 made a small positive one.
"""
import jax.numpy as jnp

DOMAINS = range(1, 6)
FEATURES = tuple(f"proportion_domain_{i}" for i in DOMAINS) + ("output",)


def own(x, values):
    """The row's own domain's entry of `values` (one per domain), by its `output`."""
    return sum(jnp.where(x["output"] == i, v, 0.0) for i, v in zip(DOMAINS, values))


class SL8:
    """loss_i = c_i - a_i p_i^b_i (15 parameters; target R² {r2} by the authors' full-data
    baseline)."""
    PARAMS = {f"{name}{i}": bounds for i in DOMAINS
              for name, bounds in (("c", (1e-3, 6.0)), ("a", (1e-3, 5.0)), ("b", (1e-3, 3.0)))}
    FEATURES = FEATURES

    @staticmethod
    def predict(p, x):
        share = jnp.maximum(own(x, [x[f"proportion_domain_{i}"] for i in DOMAINS]), 1e-12)
        c, a, b = (own(x, [p[f"{name}{i}"] for i in DOMAINS]) for name in "cab")
        return c - a * share ** b
