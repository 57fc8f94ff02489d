"""Simulated pretrain-vs-finetune studies with a known crossover (scratch and finetuned learning
curves from a truth), and the truth's own curves and crossover to check fits against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.decisions.crossover import crossover_tokens


def simulate_crossover(truth: dict, sizes, *, checkpoints=tuple(np.geomspace(1e9, 2e11, 8)),
                       init_tokens: float = 1e12, sigma: float = 0.005, seed: int = 0) -> pd.DataFrame:
    """Scratch and finetuned learning curves with a known crossover, as a run table.

    `truth[lang]` holds E, A, alpha (L0 = E + A N^-alpha), B, beta (scratch: L0 + B (d/1e9)^-beta),
    and the finetune's penalty `delta` and head start `D0` (tokens) at N = 1e9, which scale as
    N^-eta and N^zeta. The finetune continues a checkpoint of `init_tokens` tokens.
    """
    rng = np.random.default_rng(seed)
    d = np.asarray(checkpoints, dtype=float)
    rows = []
    for lang, t in truth.items():
        for n in sizes:
            scratch, tuned = true_curves(t, n, d)
            for kind, loss in (("scratch", scratch), ("finetune", tuned)):
                noisy = loss * np.exp(sigma * rng.standard_normal(len(d)))
                ft = kind == "finetune"
                for tokens, value in zip(d, noisy):
                    rows.append({"run_id": f"{kind}-{lang}-{n:.3g}", "language": lang,
                                 "n_params": float(n), "n_tokens": tokens + (init_tokens if ft else 0.0),
                                 "loss": value, "init": f"unimax-{n:.3g}" if ft else "scratch",
                                 "init_tokens": init_tokens if ft else 0.0,
                                 "source": f"simulated: crossover, seed={seed}, sigma={sigma}"})
    return pd.DataFrame(rows)


def _at_size(t: dict, n: float) -> tuple[float, float, float]:
    """The truth's L0 = E + A n^-alpha, finetune penalty delta and head start D0 at size n."""
    return (t["E"] + t["A"] * n ** -t["alpha"], t["delta"] * (n / 1e9) ** -t.get("eta", 0.0),
            t["D0"] * (n / 1e9) ** t.get("zeta", 0.0))


def true_curves(t: dict, n: float, d):
    """The truth's scratch and finetune losses at current-run tokens d, model size n."""
    L0, delta, D0 = _at_size(t, n)
    d = np.asarray(d, dtype=float)
    return (laws.scratch_curve(d / 1e9, L0, t["B"], t["beta"]),
            laws.finetune_curve(d / 1e9, L0, t["B"], t["beta"], delta, D0 / 1e9))


def true_crossover(t: dict, n: float) -> float:
    """The truth's crossover tokens at size n (inf when the finetune always wins)."""
    d_end = 1e9
    L0, delta, D0 = _at_size(t, n)
    post = {"L0": np.array(L0), "L_end": np.array(L0 + t["B"]), "beta": np.array(t["beta"]),
            "delta": np.array(delta), "D0_rel": np.array(D0 / d_end)}
    return float(crossover_tokens(post, d_end))
