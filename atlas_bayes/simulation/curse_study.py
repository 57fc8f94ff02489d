"""Simulated capacity studies like the paper's section 5: uniform mixtures of K languages at
several sizes (`capacity_design`), filled with losses from the curse law at a known truth
(`simulate_curse`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.fitting.law_inputs import effective_languages
from atlas_bayes.simulation.simulate import mixture_design
from atlas_bayes.tables.runs import mixture_fractions


# Languages the simulated capacity mixtures draw from, in order (the paper's evaluation set).
POOL = ("en", "fr", "ru", "zh", "hi", "sw", "es", "de", "ja", "it", "pt", "pl", "nl", "vi",
        "tr", "id", "ar", "ko", "sv", "fa", "uk", "ro", "el", "th", "no", "he", "hr", "ca",
        "ms", "bn", "fil", "ur")


def capacity_design(targets=("en", "fr", "ru", "zh"), ks=(1, 2, 4, 8, 16, 32),
                    n_params=(3e7, 1e8, 3e8, 1e9), tokens_per_param=(10.0, 40.0),
                    checkpoints=(0.5, 1.0)) -> pd.DataFrame:
    """Capacity runs like the paper's (section 5): for each target, uniform mixtures of K
    languages that contain it, at several model sizes, each run to every `tokens_per_param`
    x N total tokens with learning-curve checkpoints (two budgets per size keep the model
    and data terms apart)."""
    pieces = []
    for target in targets:
        others = [lang for lang in POOL if lang != target]
        if max(ks) - 1 > len(others):
            raise ValueError(f"K up to {max(ks)} needs {max(ks)} languages; the pool has {len(POOL)}")
        mixtures = {f"{target}-K{k}": {lang: 1.0 / k for lang in [target, *others[:k - 1]]}
                    for k in ks}
        for n in n_params:
            pieces.append(mixture_design(target, mixtures, [n],
                                         [ratio * n for ratio in tokens_per_param],
                                         checkpoints=checkpoints))
    runs = pd.concat(pieces, ignore_index=True).fillna({c: 0.0 for c in _mix_columns(pieces)})
    return runs


def simulate_curse(design: pd.DataFrame, truth: dict, sigma: float = 0.01, seed: int = 0
                   ) -> pd.DataFrame:
    """Fill a design with losses from the curse law at `truth` (each value a number, or a
    {language: number} dict for per-language truths), log-normal noise of sd `sigma`."""
    fractions = mixture_fractions(design)
    K = effective_languages(fractions)
    share = fractions.to_numpy()[np.arange(len(design)), fractions.columns.get_indexer(design["language"])]
    D_t = share * design["n_tokens"].to_numpy(float)
    p = {name: (design["language"].map(value).to_numpy(float) if isinstance(value, dict)
                else np.full(len(design), float(value)))
         for name, value in truth.items()}
    loss = laws.curse(K, design["n_params"].to_numpy(float), D_t, p["E"], p["A"], p["B"], p["alpha"],
                      p["beta"], p["phi"], p["psi"])
    noise = np.random.default_rng(seed).normal(0.0, sigma, len(design))
    return design.assign(loss=loss * np.exp(noise),
                         source=f"simulated: curse law, seed={seed}, sigma={sigma}")


def _mix_columns(frames) -> list[str]:
    return sorted({c for frame in frames for c in frame.columns if c.startswith("mix_")})
