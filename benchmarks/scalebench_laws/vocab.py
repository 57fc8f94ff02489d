"""ScaleBench vocab task (Li et al. 2026): a law instance as a user law (`--law vocab.py:SL2`).

Formula re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/vocab_scaling_law/laws.py, commit e0a58ff); no code copied. Columns:
n_params is P (the task's `non_vocab_parameters`), n_tokens is D (`num_characters`),
vocab_size is V. The task's target, the unigram-normalised loss, is negative (-5.3 to -0.5);
the task's loader adds 6 to it (`atlas_bayes.design.scalebench.TASKS["vocab"].loss_shift`:
R² is unchanged by a shift of both sides), so this law predicts that shifted loss and its floor
is the authors' L + 6. Bounds are the authors' boxes made positive: the positive half where
their box is signed and the all-data fit is positive (A, alpha, beta, C, v0), and for L6 their
(-100, 100) shifted by 6, positive part (the fit: L6 0.37), uniform as their box is.
"""
import jax.numpy as jnp
import numpyro.distributions as dist

SHIFT = 6.0      # the loader's shift of the task's loss (L6 = L + SHIFT)


class SL2:
    """L + A M_r(P^-alpha, D^-beta) (1 + C (ln V - v0)^2), M_r(x, y) = ((x^r + y^r) / 2)^(1/r):
    the best all-data fit of the ten (target R² 0.988 by the authors' full-data baseline)."""
    PARAMS = {"L6": (1e-3, 100.0 + SHIFT), "A": (1e-3, 1e4), "alpha": (1e-3, 5.0),
              "beta": (1e-3, 5.0), "C": (1e-4, 100.0), "v0": (1e-3, 30.0), "r": (0.1, 10.0)}
    PRIORS = {"L6": dist.Uniform(1e-3, 100.0 + SHIFT)}
    FEATURES = ("n_params", "vocab_size", "n_tokens")

    @staticmethod
    def predict(p, x):
        r = p["r"]
        log_mean = (jnp.logaddexp(-p["alpha"] * r * jnp.log(x["n_params"]),
                                  -p["beta"] * r * jnp.log(x["n_tokens"])) - jnp.log(2.0)) / r
        gate = 1.0 + p["C"] * (jnp.log(x["vocab_size"]) - p["v0"]) ** 2
        return p["L6"] + p["A"] * jnp.exp(log_mean) * gate
