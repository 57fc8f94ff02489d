"""Turn a validated run table into the arrays a law model needs (the only DataFrame -> array edge).

Counts are divided by reference scales (geometric means of the data) so that the models'
coefficients are well scaled; `centre=False` keeps raw counts for the naive baseline.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd

from atlas_bayes import languages
from atlas_bayes.runs import mixture_fractions, unique_tokens_by_language

N_TRANSFER = 3  # |K_t| in the ATLAS paper: the three languages most often co-sampled with t


class LawInputs(NamedTuple):
    """Arrays for one fit; token counts in units of exp(log_D_ref), parameters of exp(log_N_ref)."""
    N: np.ndarray            # (n,) model parameters
    D: np.ndarray            # (n,) tokens of the target (evaluated) language seen
    U: np.ndarray            # (n,) unique target tokens available (inf: never repeated)
    D_total: np.ndarray      # (n,) all training tokens
    D_transfer: np.ndarray   # (n, K) tokens of each transfer language
    U_transfer: np.ndarray   # (n, K)
    D_other: np.ndarray      # (n,) tokens of every other language
    U_other: np.ndarray      # (n,)
    p_family: np.ndarray     # (n,) share of the mixture in the target's language family
    log_N_ref: float
    log_D_ref: float
    log_N_mid: float         # data's typical scale (equals the reference when centred)
    log_D_mid: float
    loss_median: float
    loss_min: float
    has_other: bool


class InputInfo(NamedTuple):
    """What the arrays mean, for labelling results."""
    target: str
    transfer_languages: list[str]
    obs_labels: list[str]


def build_inputs(runs: pd.DataFrame, *, transfer_languages=None, centre: bool = True,
                 family_level: str = "family") -> tuple[LawInputs, InputInfo, np.ndarray]:
    """Arrays for the law models, their labels, and the observed log losses.

    The table must hold one evaluated language (the target). Transfer languages default to
    the paper's choice: the three languages most often co-sampled with the target.
    """
    targets = runs["language"].unique()
    if len(targets) != 1:
        raise ValueError(f"the run table evaluates {len(targets)} languages "
                         f"({', '.join(map(str, targets[:8]))}{'...' if len(targets) > 8 else ''}); "
                         "these laws fit one target language at a time: choose one with "
                         "language=... (CLI: --lang)")
    target = str(targets[0])
    fractions = mixture_fractions(runs)
    unique = unique_tokens_by_language(runs)
    total = runs["n_tokens"].to_numpy(float)

    if transfer_languages is None:
        transfer_languages = co_sampled_languages(runs, target)[:N_TRANSFER]
    missing = [lang for lang in transfer_languages if lang not in fractions.columns]
    if missing:
        raise ValueError(f"transfer languages {missing} never appear in the mixtures "
                         f"(mix_<lang> columns: {list(fractions.columns)})")
    others = [c for c in fractions.columns if c != target and c not in transfer_languages]

    D = fractions[target].to_numpy(float) * total
    if np.any(D <= 0):
        bad = runs.index[D <= 0][0]
        raise ValueError(f"row {bad + 1}: the target language '{target}' has no share of the "
                         "training mixture, so its target tokens D_t are 0")
    D_transfer = fractions[transfer_languages].to_numpy(float) * total[:, None]
    U_transfer = unique[transfer_languages].to_numpy(float)
    D_other = fractions[others].to_numpy(float).sum(axis=1) * total
    # U_other is not defined in the paper; we pool the other languages' unique tokens.
    U_other = unique[others].to_numpy(float).sum(axis=1) if others else np.full(len(runs), np.inf)

    target_family = languages.family(target, family_level)
    same_family = [c for c in fractions.columns
                   if c == target or languages.family(c, family_level) == target_family != "unknown"]
    p_family = fractions[same_family].to_numpy(float).sum(axis=1)

    N = runs["n_params"].to_numpy(float)
    log_N_mid, log_D_mid = float(np.mean(np.log(N))), float(np.mean(np.log(D)))
    log_N_ref, log_D_ref = (log_N_mid, log_D_mid) if centre else (0.0, 0.0)
    d_scale, n_scale = np.exp(log_D_ref), np.exp(log_N_ref)
    loss = runs["loss"].to_numpy(float)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    inputs = LawInputs(
        N=f32(N / n_scale), D=f32(D / d_scale), U=f32(unique[target].to_numpy(float) / d_scale),
        D_total=f32(total / d_scale), D_transfer=f32(D_transfer / d_scale),
        U_transfer=f32(U_transfer / d_scale), D_other=f32(D_other / d_scale),
        U_other=f32(U_other / d_scale), p_family=f32(p_family),
        log_N_ref=log_N_ref, log_D_ref=log_D_ref, log_N_mid=log_N_mid, log_D_mid=log_D_mid,
        loss_median=float(np.median(loss)), loss_min=float(np.min(loss)),
        has_other=bool(np.any(D_other > 0)),
    )
    labels = [f"{r}@{t:.4g}" for r, t in zip(runs["run_id"], runs["n_tokens"])]
    return inputs, InputInfo(target, list(transfer_languages), labels), f32(np.log(loss))


def co_sampled_languages(runs: pd.DataFrame, target: str) -> list[str]:
    """Languages ordered by how many runs train on them together with the target.

    Ties are broken by the languages' total share across those runs, then by code.
    """
    fractions = mixture_fractions(runs).groupby(runs["run_id"]).first()
    with_target = fractions[fractions[target] > 0]
    counts, shares = Counter(), Counter()
    for lang in fractions.columns:
        if lang == target:
            continue
        present = with_target[lang] > 0
        if present.any():
            counts[lang] = int(present.sum())
            shares[lang] = float(with_target.loc[present, lang].sum())
    return sorted(counts, key=lambda lang: (-counts[lang], -shares[lang], lang))
