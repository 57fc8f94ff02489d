"""Turn a validated run table into the arrays a law model needs (the only DataFrame -> array edge).

Counts are divided by reference scales (geometric means of the data) so that the models'
coefficients are well scaled; `centre=False` keeps raw counts for the naive baseline.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd

from atlas_bayes.tables import languages
from atlas_bayes.tables.runs import mixture_fractions, unique_tokens_by_language

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
    group: np.ndarray | None = None   # (n,) index of each row's evaluated language (joint fits)
    n_groups: int = 1
    K: np.ndarray | None = None       # (n,) languages in the mixture: 1 / sum(share^2), exact
                                      # for uniform mixtures (the curse law's K)
    log_N_sd: float = 0.0    # spread (sd over rows) of log N and log D around the centre:
    log_D_sd: float = 0.0    # where the models' slope sites measure the terms' slopes
    centred: bool = True     # counts divided by the data's own centre (False: naive baseline)
    obs_mask: np.ndarray | None = None   # (n,) real rows when padded (atlas_bayes.fitting.compiled)


class Scales(NamedTuple):
    """Reference scales and loss levels of the data a model was fitted to.

    Predictions for new rows reuse the training data's scales, so the fitted coefficients
    keep their meaning.
    """
    log_N_ref: float
    log_D_ref: float
    log_N_mid: float
    log_D_mid: float
    loss_median: float
    loss_min: float
    log_N_sd: float = 0.0     # 0 in fits saved before these were recorded
    log_D_sd: float = 0.0

    @classmethod
    def of(cls, runs: pd.DataFrame, D: np.ndarray, centre: bool = True) -> "Scales":
        """Geometric-mean scales of N and target tokens D (zero references when not centring),
        the spreads of log N and log D, and the loss levels."""
        log_N = np.log(runs["n_params"].to_numpy(float))
        log_D = np.log(D)
        log_N_mid, log_D_mid = float(np.mean(log_N)), float(np.mean(log_D))
        loss = runs["loss"].to_numpy(float)
        return cls(log_N_mid if centre else 0.0, log_D_mid if centre else 0.0, log_N_mid,
                   log_D_mid, float(np.median(loss)), float(np.min(loss)),
                   float(np.std(log_N)), float(np.std(log_D)))

    @property
    def centred(self) -> bool:
        """Whether counts are divided by the data's own centre (not the naive baseline)."""
        return bool(self.log_N_ref == self.log_N_mid and self.log_D_ref == self.log_D_mid)


class InputInfo(NamedTuple):
    """What the arrays mean, for labelling results."""
    target: str
    transfer_languages: list[str]
    obs_labels: list[str]


def build_inputs(runs: pd.DataFrame, *, transfer_languages=None, centre: bool = True,
                 family_level: str = "family", scales: Scales | None = None,
                 has_other: bool | None = None) -> tuple[LawInputs, InputInfo, np.ndarray]:
    """Arrays for the law models, their labels, and the observed log losses.

    The table must hold one evaluated language (the target). Transfer languages default to
    the paper's choice: the three languages most often co-sampled with the target; a
    transfer language absent from the table's mixtures counts as zero tokens. `scales` and
    `has_other` come from the training data when building inputs for predictions.
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
    for lang in transfer_languages:
        if lang not in fractions.columns:
            fractions[lang] = 0.0
            unique[lang] = np.inf
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
    scales = scales or Scales.of(runs, D, centre)
    d_scale, n_scale = np.exp(scales.log_D_ref), np.exp(scales.log_N_ref)
    loss = runs["loss"].to_numpy(float) if "loss" in runs else np.full(len(runs), np.nan)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    inputs = LawInputs(
        N=f32(N / n_scale), D=f32(D / d_scale), U=f32(unique[target].to_numpy(float) / d_scale),
        D_total=f32(total / d_scale), D_transfer=f32(D_transfer / d_scale),
        U_transfer=f32(U_transfer / d_scale), D_other=f32(D_other / d_scale),
        U_other=f32(U_other / d_scale), p_family=f32(p_family), **scales._asdict(),
        centred=scales.centred,
        has_other=bool(np.any(D_other > 0)) if has_other is None else has_other,
        K=f32(effective_languages(fractions)),
    )
    labels = [f"{r}@{t:.4g}" for r, t in zip(runs["run_id"], runs["n_tokens"])]
    return inputs, InputInfo(target, list(transfer_languages), labels), f32(np.log(loss))


def effective_languages(fractions: pd.DataFrame) -> np.ndarray:
    """Per row, the number of languages a mixture is worth: (sum of shares)^2 / sum of squares.

    K for K languages sampled uniformly; between 1 and K for skewed mixtures (the inverse
    Simpson index), so the curse law's K stays defined on Unimax or bilingual 90/10 runs.
    """
    f = fractions.to_numpy(float)
    return f.sum(axis=1) ** 2 / (f ** 2).sum(axis=1)


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


def build_group_inputs(runs: pd.DataFrame, *, transfer_languages: dict | None = None,
                       centre: bool = True, scales: Scales | None = None,
                       has_other: bool | None = None, groups: list[str] | None = None,
                       ) -> tuple[LawInputs, GroupInfo, np.ndarray]:
    """Inputs for a joint fit over every evaluated language (one group per language).

    Rows keep their order; `group` indexes `GroupInfo.languages`. Each target gets its own
    transfer languages (default: its three most co-sampled languages; `transfer_languages`
    maps a target to its own list), padded with empty slots ("") to a common width. All
    targets share one set of reference scales, so the population distributions compare
    like with like.
    """
    runs = runs.reset_index(drop=True)
    groups = list(groups) if groups is not None else list(dict.fromkeys(runs["language"].astype(str)))
    unknown = sorted(set(runs["language"].astype(str)) - set(groups))
    if unknown:
        raise ValueError(f"rows evaluate languages {unknown} that the fit has no parameters for "
                         f"(fitted languages: {', '.join(groups)})")
    transfer = _transfer_languages(runs, groups, transfer_languages or {})
    width = max([len(v) for v in transfer.values()] + [0])
    if scales is None:
        scales = Scales.of(runs, target_tokens(runs), centre)
    pieces, any_other = [], False
    for lang in groups:
        rows = runs.index[runs["language"].astype(str) == lang]
        if len(rows) == 0:
            continue
        x, _, y = build_inputs(runs.loc[rows].reset_index(drop=True),
                               transfer_languages=transfer[lang], scales=scales, has_other=True)
        pad = width - x.D_transfer.shape[1]
        x = x._replace(D_transfer=np.pad(x.D_transfer, ((0, 0), (0, pad))),
                       U_transfer=np.pad(x.U_transfer, ((0, 0), (0, pad)), constant_values=np.inf))
        any_other |= bool(np.any(x.D_other > 0))
        pieces.append((rows, x, y))
    n = len(runs)
    fields = {}
    for name in ("N", "D", "U", "D_total", "D_transfer", "U_transfer", "D_other", "U_other",
                 "p_family", "K"):
        first = getattr(pieces[0][1], name)
        out = np.zeros((n,) + first.shape[1:], dtype=np.float32)
        for rows, x, _ in pieces:
            out[rows] = getattr(x, name)
        fields[name] = out
    log_loss = np.zeros(n, dtype=np.float32)
    for rows, _, y in pieces:
        log_loss[rows] = y
    group = np.array([groups.index(lang) for lang in runs["language"].astype(str)], dtype=np.int32)
    inputs = LawInputs(**fields, **scales._asdict(), centred=scales.centred,
                       has_other=any_other if has_other is None else has_other,
                       group=group, n_groups=len(groups))
    slots = [transfer[t] + [""] * (width - len(transfer[t])) for t in groups]
    labels = [f"{lang}:{r}@{t:.4g}" for lang, r, t in zip(runs["language"], runs["run_id"], runs["n_tokens"])]
    return inputs, GroupInfo(groups, slots, labels), log_loss


def target_tokens(runs: pd.DataFrame) -> np.ndarray:
    """Per row, the tokens of its evaluated language that it trained on (the laws' D): the
    language's share of the mixture times n_tokens."""
    fractions = mixture_fractions(runs)
    share = fractions.to_numpy()[np.arange(len(runs)),
                                 fractions.columns.get_indexer(runs["language"])]
    return share * runs["n_tokens"].to_numpy(float)


def _transfer_languages(runs: pd.DataFrame, groups: list[str], given: dict) -> dict[str, list[str]]:
    """Each target's transfer languages: the user's choice, else its most co-sampled ones."""
    present = set(runs["language"].astype(str))
    chosen = {}
    for target in groups:
        if target in given:
            chosen[target] = list(given[target])
        elif target in present:
            chosen[target] = co_sampled_languages(runs, target)[:N_TRANSFER]
        else:
            chosen[target] = []
    return chosen


class GroupInfo(NamedTuple):
    """Labels of a joint fit: the languages (groups), each one's transfer slots, row labels."""
    languages: list[str]
    transfer_languages: list[list[str]]
    obs_labels: list[str]
