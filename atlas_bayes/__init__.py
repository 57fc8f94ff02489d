"""atlas_bayes: Bayesian ATLAS scaling laws for multilingual language-model training."""

__version__ = "0.1.0"
