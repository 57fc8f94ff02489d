"""atlas_bayes: Bayesian ATLAS scaling laws for multilingual language-model training."""

from atlas_bayes.fitting import jax_setup  # noqa: F401  (compilation cache, before anything compiles)

__version__ = "0.1.0"
