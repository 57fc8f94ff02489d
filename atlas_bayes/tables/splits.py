"""The ATLAS paper's held-out sets (its §2 and App. B.3), made precise for any run table.

Each split returns a mask over the rows of a validated run table (True = held out):

- `random`: a seeded random `fraction` of the rows (points), round(fraction x rows) of them.
- `D`: within each evaluated language, the rows in the top `fraction` of training tokens
  `n_tokens`. The paper fits one law per target, so every target gets test points.
- `C`: the same with compute C = 6 x n_params x n_tokens.
- `N`: whole model sizes. By default the largest `n_params` and the size whose log is closest
  to log(largest) - log(8452190208 / 661807872): the paper held out 660M and 8.45B. Only the
  largest when that picks the largest itself or the table has fewer than 3 sizes. `sizes=`
  names the sizes instead (matched to a relative 1e-6).
- `M`: unseen mixtures: every row of every run whose mixture has 3 or more languages (non-zero
  `mix_` shares) and is not Unimax (its `mixture` name does not contain "unimax", any case).
  Runs continued from a Unimax checkpoint say so in their `mixture` name to stay in training.

"Top `fraction`" keeps ties together: with k = round(fraction x rows of the language) (at least
1), a row is held out when fewer than k rows of its language have a larger value.

Every split raises `ValueError` when it holds out nothing, leaves no training rows, or leaves
some evaluated language without training rows (naming it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from atlas_bayes.tables.runs import mixture_fractions

SPLITS = ("random", "N", "D", "C", "M")
# The paper's held-out sizes (Table B.3 scales 46 and 20): their ratio places the second size.
PAPER_HELD_OUT_SIZES = (8_452_190_208, 661_807_872)
SIZE_RTOL = 1e-6


def held_out(runs: pd.DataFrame, split: str, *, fraction: float = 0.2, seed: int = 0,
             sizes=None, languages=None) -> np.ndarray:
    """Boolean mask over the rows of `runs`: True where the row is held out by `split`.

    `languages`: the evaluated languages that must keep training rows (default: all). A
    comparison restricted to some targets passes them, so that a language it does not score
    (e.g. one evaluated only on held-out mixtures) does not make the split unbuildable."""
    _check_arguments(split, fraction, sizes)
    if split == "random":
        mask = _random(len(runs), fraction, seed)
    elif split == "D":
        mask = _top_per_language(runs["n_tokens"], runs["language"], fraction)
    elif split == "C":
        compute = 6.0 * runs["n_params"] * runs["n_tokens"]
        mask = _top_per_language(compute, runs["language"], fraction)
    elif split == "N":
        mask = _in_sizes(runs["n_params"], _held_out_sizes(runs["n_params"], sizes))
    else:
        mask = _unseen_mixtures(runs)
    _check_split(runs, split, mask, languages)
    return mask


def split_runs(runs: pd.DataFrame, split: str, **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) tables for `split`, index reset and `attrs` kept."""
    mask = held_out(runs, split, **kw)
    train = runs[~mask].reset_index(drop=True)
    test = runs[mask].reset_index(drop=True)
    train.attrs, test.attrs = dict(runs.attrs), dict(runs.attrs)
    return train, test


def describe(runs: pd.DataFrame, split: str, **kw) -> str:
    """One line saying what `split` holds out of `runs`."""
    mask = held_out(runs, split, **kw)
    fraction = kw.get("fraction", 0.2)
    count = f"({int(mask.sum())} of {len(runs)} rows)"
    n_langs = runs["language"].nunique()
    if split == "random":
        what = f"held out a random {fraction:.0%} of rows (seed {kw.get('seed', 0)})"
    elif split == "D":
        what = (f"held out the top {fraction:.0%} of n_tokens within each of "
                f"{_plural(n_langs, 'language')}")
    elif split == "C":
        what = (f"held out the top {fraction:.0%} of compute C = 6ND within each of "
                f"{_plural(n_langs, 'language')}")
    elif split == "N":
        sizes = sorted(runs.loc[mask, "n_params"].unique())
        plural = "s" if len(sizes) > 1 else ""
        what = f"held out model size{plural} " + ", ".join(map(_short, sizes))
    else:
        n_runs = runs.loc[mask, "run_id"].nunique()
        what = (f"held out {_plural(n_runs, 'run')} on mixtures of 3+ languages other than "
                "Unimax") + _mixture_names(runs, mask)
    return f"{split}: {what} {count}"


def _check_arguments(split: str, fraction: float, sizes) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if sizes is not None and split != "N":
        raise ValueError(f"sizes= only applies to split 'N', not {split!r}")


def _random(n_rows: int, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(n_rows, dtype=bool)
    size = _round(fraction * n_rows)
    chosen = np.random.default_rng(seed).choice(n_rows, size=size, replace=False)
    mask[chosen] = True
    return mask


def _top_per_language(values: pd.Series, language: pd.Series, fraction: float) -> np.ndarray:
    """Rows in the top `fraction` of `values` within each language, ties kept together."""
    size = language.groupby(language).transform("size")
    k = np.maximum(1, np.floor(fraction * size + 0.5))
    # rank "min": 1 + the number of the language's rows with a larger value.
    rank = values.groupby(language).rank(method="min", ascending=False)
    return (rank <= k).to_numpy()


def _held_out_sizes(n_params: pd.Series, sizes) -> list[float]:
    present = np.sort(n_params.unique())
    if sizes is not None:
        sizes = np.atleast_1d(sizes).astype(float)
        missing = [s for s in sizes if not _in_sizes(pd.Series(present), [s]).any()]
        if missing:
            raise ValueError(f"N: model sizes {', '.join(f'{s:g}' for s in missing)} are not in "
                             f"the table; sizes present: {', '.join(f'{s:g}' for s in present)}")
        return [float(s) for s in sizes]
    largest = present[-1]
    if len(present) < 3:
        return [largest]
    target = math.log(largest) - math.log(PAPER_HELD_OUT_SIZES[0] / PAPER_HELD_OUT_SIZES[1])
    second = present[np.argmin(np.abs(np.log(present) - target))]
    return [largest] if second == largest else [second, largest]


def _in_sizes(n_params: pd.Series, sizes) -> np.ndarray:
    values = n_params.to_numpy(float)[:, None]
    sizes = np.asarray(sizes, dtype=float)[None, :]
    return np.isclose(values, sizes, rtol=SIZE_RTOL, atol=0).any(axis=1)


def _unseen_mixtures(runs: pd.DataFrame) -> np.ndarray:
    n_languages = (mixture_fractions(runs) > 0).sum(axis=1)
    unimax = _mixture(runs).str.contains("unimax", case=False)
    unseen = (n_languages >= 3) & ~unimax
    return runs["run_id"].isin(runs.loc[unseen, "run_id"]).to_numpy()


def _mixture(runs: pd.DataFrame) -> pd.Series:
    if "mixture" not in runs.columns:
        return pd.Series("", index=runs.index)
    return runs["mixture"].fillna("").astype(str)


def _check_split(runs: pd.DataFrame, split: str, mask: np.ndarray, languages=None) -> None:
    if not mask.any():
        reason = ("no run trains on 3 or more languages outside Unimax"
                  if split == "M" else "the table is too small")
        raise ValueError(f"split {split!r} holds out nothing: {reason}")
    if mask.all():
        raise ValueError(f"split {split!r} holds out every row, leaving no training data")
    trained = set(runs.loc[~mask, "language"])
    required = runs["language"].unique() if languages is None else languages
    empty = [lang for lang in required if lang not in trained]
    if empty:
        raise ValueError(f"split {split!r} holds out every row of language(s) "
                         f"{', '.join(map(str, empty))}, leaving them no training data")


def _mixture_names(runs: pd.DataFrame, mask: np.ndarray) -> str:
    names = [n for n in dict.fromkeys(_mixture(runs)[mask]) if n]
    if not names:
        return ""
    more = f", ... ({len(names)} names)" if len(names) > 5 else ""
    return f": {', '.join(names[:5])}{more}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _short(x: float) -> str:
    """6.6e8 style: two significant digits, no '+' or leading zero in the exponent."""
    mantissa, _, exponent = f"{x:.2g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa
