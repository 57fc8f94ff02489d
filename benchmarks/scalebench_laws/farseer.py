"""ScaleBench farseer task (Li et al. 2026), its one law as a user law (`--law farseer.py:SL1`).

Formula re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/farseer_scaling_law/laws.py, commit e0a58ff); no code copied:
    L = exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E)),   N = n_params, D = n_tokens.
The authors' box has signed parameters; here each is shifted to a positive one with the same
width (s = s' - 1, S = S' - 1, b = -b', Q = Q' - 5, A = A' - 5) and given a uniform prior on
that width, as the authors' box is uniform; E, q, B and a keep their boxes (log-uniform).
"""
import numpyro.distributions as dist
import jax.numpy as jnp

PARAMS = {"E": (1.0, 6.0), "s1": (1e-3, 1.3), "q": (0.01, 0.5), "S1": (1e-3, 2.0),
          "B": (10.0, 1000.0), "b1": (0.01, 0.6), "Q5": (1e-3, 6.0), "A5": (1e-3, 6.0),
          "a": (0.001, 0.25)}
PRIORS = {name: dist.Uniform(*PARAMS[name]) for name in ("s1", "S1", "b1", "Q5", "A5")}


class SL1:
    """Farseer (the task's only law; target R² 0.935 from all data by the authors' baseline)."""
    PARAMS = PARAMS
    PRIORS = PRIORS
    FEATURES = ("n_params", "n_tokens")

    @staticmethod
    def predict(p, x):
        N, D = x["n_params"], x["n_tokens"]
        floor = jnp.exp((p["s1"] - 1.0) * N ** p["q"] + p["S1"] - 1.0)
        amplitude = jnp.exp(p["B"] * N ** -p["b1"] + p["Q5"] - 5.0)
        exponent = jnp.exp((p["A5"] - 5.0) * N ** p["a"] + p["E"])
        return floor + amplitude * D ** -exponent
