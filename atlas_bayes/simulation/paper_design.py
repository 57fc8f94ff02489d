"""A design shaped like the ATLAS paper's run inventory (its Table B.1; App. B).

`paper_design()` returns a run table without losses: one row per run, evaluated language and
checkpoint. Run kinds, named in the `mixture` column:

- `mono`: L_mono (en fr ru zh hi sw yo), each alone, at several sizes and two token budgets.
- `unimax`: a UniMax mixture (Chung et al. 2023) over the evaluation languages, evaluated on each.
- `bilingual`: 50/50 mixtures en/X (X in L_pairs) and es/pt, fr/zh, hi/ru, de/ja, hi/vi
  (L_target), evaluated on both languages.
- `pairs-mono`: one monolingual run per evaluation language at one size (the paper's scale 34).
- `capacity`: uniform mixtures over K nested evaluation languages (English always in),
  evaluated on each language of the mixture.
- `unimax-finetune`: a Unimax run continued on one target. The whole history is one mixture:
  each row's shares count pretraining plus finetuning tokens up to that checkpoint, and
  `n_tokens` is their total; checkpoints are fractions of the finetuning tokens. The name
  contains "unimax", so the `M` split keeps it in training (the paper's finetunes train on one
  language from a Unimax checkpoint: no unseen mixture).

Runs from scratch are capped at `MAX_EPOCHS` of any language's unique tokens, so small
languages repeat their data several times but not without end (a finetune caps its two phases
separately).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.tables import languages
from atlas_bayes.fitting.law_inputs import build_group_inputs
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES, PAPER_UNIQUE_TOKENS, language_parameters, simulate

# Table B.3 scale numbers of simulate.PAPER_MODEL_SIZES.
PAPER_SCALES = (0, 1, 2, 4, 6, 8, 12, 14, 16, 18, 20, 24, 28, 34)
SIZE_OF_SCALE = dict(zip(PAPER_SCALES, PAPER_MODEL_SIZES, strict=True))
# Scale sets per run kind. "paper": the paper's S_full / S_part / S_min restricted to the
# scales above (no 22, 26, 30, 32, 42, 46); "compact": fewer sizes, about 3,000 rows.
SCALE_SETS = {
    "compact": {"full": (0, 2, 4, 8, 14, 20, 34), "part": (0, 4, 8, 20, 34), "min": (4, 14, 34),
                "pairs": 34},
    "paper": {"full": PAPER_SCALES, "part": (0, 4, 8, 12, 16, 20, 24, 28, 34),
              "min": (0, 8, 16, 24, 34), "pairs": 34},
}

L_MONO = ("en", "fr", "ru", "zh", "hi", "sw", "yo")
L_PAIRS = ("en", "fr", "ru", "zh", "hi", "de", "es", "pt", "ja", "vi")
L_TARGET_EXTRA = (("es", "pt"), ("fr", "zh"), ("hi", "ru"), ("de", "ja"), ("hi", "vi"))
CAPACITY_K = (4, 6, 8, 12, 16, 24, 32, 48)
# The paper evaluates 48 languages but its 50v0 list has 50 and it does not say which two are
# left out. We drop Afrikaans (its §2 says Telugu was chosen instead of Afrikaans) and Bambara
# (the smallest corpus in the ranking below). Pass eval_languages= to choose others.
DROPPED_FROM_50V0 = ("af", "bm")

# Languages without a Table C.1 count, largest corpus first: an approximate ranking of
# MADLAD-400 sizes. Their unique tokens are SIMULATED, not MADLAD's counts: spread
# log-uniformly from UNIQUE_RANGE[1] (first) down to UNIQUE_RANGE[0] (last).
SIZE_RANKING = ("de", "es", "ja", "it", "pt", "pl", "nl", "vi", "tr", "id", "ar", "ko", "sv",
                "fa", "uk", "ro", "el", "th", "no", "he", "hr", "ca", "ms", "bn", "fil", "ur",
                "kk", "af", "mr", "te", "cy", "gu", "my", "ckb", "ps", "jv", "ha", "ba", "sm",
                "om", "ee", "yo", "gn", "bm")
UNIQUE_RANGE = (3e8, 3e11)

MAX_EPOCHS = 16
TOKENS_PER_PARAM = {"mono": (20, 80), "unimax": (40,), "bilingual": (20, 80), "pairs-mono": (20,),
                    "capacity": (40,), "finetune": (20,)}
UNIMAX_BUDGET = 1e12      # the paper's Unimax base models saw 1T tokens (its App. B.4)
UNIMAX_EPOCHS = 4
UNIMAX_ENGLISH = 0.05     # Table B.4 gives English 5%, above plain UniMax's uniform share
SOURCE = "simulated design"


def paper_design(*, eval_languages=None, scales: str = "compact", checkpoints=(0.5, 1.0),
                 seed: int = 0) -> pd.DataFrame:
    """Run table without losses, shaped like the paper's Table B.1 (see the module docstring).

    `seed` orders the nested language subsets of the capacity mixtures.
    """
    langs = _eval_languages(eval_languages)
    if scales not in SCALE_SETS:
        raise ValueError(f"unknown scales {scales!r}; expected one of {', '.join(SCALE_SETS)}")
    sizes = {kind: _sizes(s) for kind, s in SCALE_SETS[scales].items()}
    checkpoints = _checkpoints(checkpoints)
    unique = unique_tokens(langs)
    unimax = unimax_shares(unique, UNIMAX_BUDGET, UNIMAX_EPOCHS, pinned={"en": UNIMAX_ENGLISH})
    runs = (_mono(langs, sizes["full"], unique) + _unimax(unimax, sizes["full"], unique)
            + _bilingual(langs, sizes["part"], unique) + _pairs_mono(langs, sizes["pairs"], unique)
            + _capacity(langs, sizes["part"], unique, seed))
    rows = [row for run in runs for row in _rows(run, checkpoints)]
    rows += _finetunes(langs, sizes, unimax, unique, checkpoints)
    return _table(rows, langs, unique)


def summarise_design(design: pd.DataFrame) -> pd.DataFrame:
    """Runs and rows by kind (the `mixture` column), with totals."""
    table = design.groupby("mixture", sort=False).agg(runs=("run_id", "nunique"),
                                                      rows=("run_id", "size"))
    table.loc["total"] = [design["run_id"].nunique(), len(design)]
    return table


def unique_tokens(langs) -> dict[str, float]:
    """Unique tokens per language: Table C.1 where the paper gives one, else SIZE_RANKING."""
    steps = len(SIZE_RANKING) - 1
    low, high = UNIQUE_RANGE
    ranked = {lang: high * (low / high) ** (i / steps) for i, lang in enumerate(SIZE_RANKING)}
    return {lang: float(PAPER_UNIQUE_TOKENS.get(lang, ranked.get(lang))) for lang in langs}


def unimax_shares(unique: dict[str, float], budget: float, max_epochs: float = UNIMAX_EPOCHS,
                  pinned: dict[str, float] | None = None) -> dict[str, float]:
    """UniMax sampling shares (Chung et al. 2023, Alg. 1), in the order of `unique`.

    Languages are visited from the smallest corpus up; each gets the remaining budget split
    evenly over the languages left, capped at `max_epochs` of its corpus. `pinned` fixes some
    shares first (the rest of the budget is spread by UniMax).
    """
    pinned = dict(pinned or {})
    rest = 1.0 - sum(pinned.values())
    remaining = budget * rest
    order = sorted((lang for lang in unique if lang not in pinned),
                   key=lambda lang: (unique[lang], lang))
    allocated = dict(zip(order, laws.unimax([unique[lang] for lang in order], remaining,
                                            max_epochs).tolist()))
    total = sum(allocated.values())
    shares = {lang: rest * a / total for lang, a in allocated.items()} | pinned
    return {lang: shares[lang] for lang in unique}


def _eval_languages(eval_languages) -> list[str]:
    if eval_languages is None:
        table = languages.table()
        return [c for c in table.index[table["in_50v0"]] if c not in DROPPED_FROM_50V0]
    langs = list(dict.fromkeys(eval_languages))
    unknown = [lang for lang in langs
               if lang not in PAPER_UNIQUE_TOKENS and lang not in SIZE_RANKING]
    if unknown:
        raise ValueError(f"no unique-token count for {unknown}; eval_languages must be codes "
                         "of the paper's 50v0 languages (atlas_bayes/data/languages.csv)")
    if "en" not in langs:
        raise ValueError("eval_languages must include 'en' (bilingual and capacity runs use it)")
    return langs


def _sizes(scales) -> tuple[int, ...] | int:
    if isinstance(scales, int):
        return SIZE_OF_SCALE[scales]
    return tuple(SIZE_OF_SCALE[s] for s in scales)


def _checkpoints(checkpoints) -> tuple[float, ...]:
    checkpoints = tuple(sorted({float(c) for c in checkpoints}))
    if not checkpoints or checkpoints[0] <= 0 or checkpoints[-1] > 1:
        raise ValueError(f"checkpoints must be fractions in (0, 1], got {checkpoints}")
    return checkpoints


def _size_label(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _capped(tokens: float, shares: dict[str, float], unique: dict[str, float]) -> float:
    """`tokens`, lowered so that no language is repeated more than MAX_EPOCHS times."""
    limits = [MAX_EPOCHS * unique[lang] / share for lang, share in shares.items() if share > 0]
    return min([tokens, *limits])


def _run(run_id, kind, n, tokens, shares, evaluated, init="scratch") -> dict:
    return {"run_id": run_id, "mixture": kind, "n_params": float(n), "tokens": float(tokens),
            "shares": shares, "evaluated": tuple(evaluated), "init": init}


def _rows(run: dict, checkpoints) -> list[dict]:
    """A run's rows: each evaluated language at each checkpoint, with the run's fixed shares."""
    return [_row(run, lang, run["tokens"] * c, run["shares"])
            for c, lang in itertools.product(checkpoints, run["evaluated"])]


def _row(run: dict, language: str, tokens: float, shares: dict[str, float]) -> dict:
    return {"run_id": run["run_id"], "language": language, "n_params": run["n_params"],
            "n_tokens": float(tokens), "init": run["init"], "mixture": run["mixture"],
            "shares": shares}


def _budgets(kind, n, shares, unique) -> list[float]:
    """Distinct capped token budgets of a kind at size n (capping can make two equal)."""
    return sorted({_capped(ratio * n, shares, unique) for ratio in TOKENS_PER_PARAM[kind]})


def _mono(langs, sizes, unique) -> list[dict]:
    runs = []
    for lang, n in itertools.product([lang for lang in L_MONO if lang in langs], sizes):
        for tokens in _budgets("mono", n, {lang: 1.0}, unique):
            runs.append(_run(f"mono-{lang}-{_size_label(n)}-{tokens / n:.3g}x", "mono", n, tokens,
                             {lang: 1.0}, [lang]))
    return runs


def _unimax(shares, sizes, unique) -> list[dict]:
    return [_run(_unimax_id(n), "unimax", n, _unimax_tokens(n, shares, unique), shares,
                 list(shares)) for n in sizes]


def _unimax_tokens(n, shares, unique) -> float:
    ratio, = TOKENS_PER_PARAM["unimax"]
    return _capped(ratio * n, shares, unique)


def _unimax_id(n: float) -> str:
    return f"unimax-{_size_label(n)}"


def _bilingual(langs, sizes, unique) -> list[dict]:
    pairs = [("en", x) for x in L_PAIRS if x != "en"] + list(L_TARGET_EXTRA)
    runs = []
    for (a, b), n in itertools.product([p for p in pairs if set(p) <= set(langs)], sizes):
        shares = {a: 0.5, b: 0.5}
        for tokens in _budgets("bilingual", n, shares, unique):
            runs.append(_run(f"bilingual-{a}-{b}-{_size_label(n)}-{tokens / n:.3g}x", "bilingual",
                             n, tokens, shares, [a, b]))
    return runs


def _pairs_mono(langs, n, unique) -> list[dict]:
    ratio, = TOKENS_PER_PARAM["pairs-mono"]
    return [_run(f"pairs-mono-{lang}-{_size_label(n)}", "pairs-mono", n,
                 _capped(ratio * n, {lang: 1.0}, unique), {lang: 1.0}, [lang]) for lang in langs]


def _capacity(langs, sizes, unique, seed) -> list[dict]:
    others = [lang for lang in langs if lang != "en"]
    order = ["en"] + [others[i] for i in np.random.default_rng(seed).permutation(len(others))]
    ratio, = TOKENS_PER_PARAM["capacity"]
    runs = []
    for k, n in itertools.product([k for k in CAPACITY_K if k <= len(order)], sizes):
        shares = {lang: 1.0 / k for lang in order[:k]}
        runs.append(_run(f"capacity-{k}-{_size_label(n)}", "capacity", n,
                         _capped(ratio * n, shares, unique), shares, order[:k]))
    return runs


def _finetunes(langs, sizes, unimax, unique, checkpoints) -> list[dict]:
    """Unimax runs continued on one target: L_mono and L_pairs at `min` sizes, all the largest."""
    targets = [lang for lang in dict.fromkeys(L_MONO + L_PAIRS) if lang in langs]
    plan = list(itertools.product(targets, sizes["min"]))
    plan += [(lang, max(sizes["min"])) for lang in langs if lang not in targets]
    rows = []
    for target, n in plan:
        pretrained = _unimax_tokens(n, unimax, unique)
        tokens, = _budgets("finetune", n, {target: 1.0}, unique)
        run = _run(f"finetune-{target}-{_size_label(n)}", "unimax-finetune", n,
                   pretrained + tokens, {}, [target], init=_unimax_id(n))
        for c in checkpoints:
            total = pretrained + c * tokens
            shares = {lang: pretrained * share / total for lang, share in unimax.items()}
            shares[target] += c * tokens / total
            rows.append(_row(run, target, total, shares))
    return rows


def _table(rows: list[dict], langs, unique) -> pd.DataFrame:
    shares = pd.DataFrame([r.pop("shares") for r in rows], columns=langs).fillna(0.0)
    design = pd.DataFrame(rows)
    design["unique_tokens"] = design["language"].map(unique)
    design["n_languages"] = (shares > 0).sum(axis=1)
    design["source"] = SOURCE
    mix = shares.add_prefix("mix_")
    u = pd.DataFrame({f"unique_tokens_{lang}": unique[lang] for lang in langs}, index=design.index)
    design = pd.concat([design, mix, u], axis=1)
    front = ["run_id", "language", "n_params", "n_tokens", "unique_tokens", "n_languages", "init",
             "mixture", "source"]
    return design[front + list(mix.columns) + list(u.columns)]


def paper_study(*, seed: int = 0, sigma: float = 0.01, **design_options) -> tuple[pd.DataFrame, dict]:
    """A simulated study shaped like the paper's: `paper_design` filled with losses.

    The truth is joint ATLAS with transfer ("atlas-h"): per-language parameters drawn from
    `simulate.POPULATION`, each target's transfer weights on its three most co-sampled
    languages, one shared lambda. Returns the run table (every row says it is simulated)
    and the truth in the form `simulate.simulate` takes.
    """
    design = paper_design(seed=seed, **design_options)
    _, info, _ = build_group_inputs(design.assign(loss=1.0))
    transfer = {t: [s for s in slots if s] for t, slots in zip(info.languages, info.transfer_languages)}
    truth = language_parameters(info.languages, transfer, seed=seed)
    runs = simulate(design, "atlas-h", truth, sigma=sigma, seed=seed)
    return runs, truth
