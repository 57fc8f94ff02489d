"""Language mixtures: UNIMAX (Chung et al. 2023, Alg. 1), monolingual, bilingual, custom.

UNIMAX spreads a token budget as uniformly as possible over languages, never giving a language
more than `max_epochs` passes over its unique tokens: visit languages from the smallest corpus
up; each gets the remaining budget split evenly over the languages left, capped at
max_epochs x its size. The allocations, normalised, are the sampling shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from atlas_bayes import laws


@dataclass(frozen=True)
class Mixture:
    """Sampling shares by language (sum 1) and a name for the run table's `mixture` column."""
    shares: dict[str, float]
    name: str

    @property
    def languages(self) -> list[str]:
        return [lang for lang, share in self.shares.items() if share > 0]


def unimax_allocation(sizes: dict[str, float], budget: float, max_epochs: float) -> dict[str, float]:
    """Tokens per language under UNIMAX (Alg. 1); sizes are unique tokens per language.

    Ties in size keep the given order. When every language hits its cap the allocations sum to
    less than the budget (the budget cannot be spent without more epochs).
    """
    if budget <= 0 or max_epochs <= 0:
        raise ValueError("UNIMAX needs a positive budget and max_epochs")
    allocation = laws.unimax([sizes[lang] for lang in sizes], budget, max_epochs)
    return {lang: float(a) for lang, a in zip(sizes, allocation)}


def unimax(sizes: dict[str, float], budget: float, max_epochs: float = 4.0) -> Mixture:
    allocation = unimax_allocation(sizes, budget, max_epochs)
    total = sum(allocation.values())
    return Mixture({lang: a / total for lang, a in allocation.items()}, "unimax")


def monolingual(lang: str) -> Mixture:
    return Mixture({lang: 1.0}, lang)


def bilingual(first: str, second: str) -> Mixture:
    """The paper's 50/50 bilingual mixture."""
    return Mixture({first: 0.5, second: 0.5}, f"{first}-{second}")


def custom(weights: dict[str, float]) -> Mixture:
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"custom mixture weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights.values())
    shares = {lang: w / total for lang, w in weights.items()}
    return Mixture(shares, "custom:" + ",".join(f"{l}={s:.4g}" for l, s in shares.items()))


def resolve(spec, sizes: dict[str, float], budget: float) -> Mixture:
    """A mixture from its config: a language code, {lang: weight}, or a dict with `kind`
    in mono | bilingual | unimax | custom (see docs/architecture.md, trainer section)."""
    if isinstance(spec, str):
        return monolingual(spec)
    if not isinstance(spec, dict):
        raise ValueError(f"mixture must be a language code or a dict, got {spec!r}")
    kind = spec.get("kind")
    if kind is None:
        return custom({k: float(v) for k, v in spec.items()})
    if kind == "mono":
        return monolingual(spec["language"])
    if kind == "bilingual":
        first, second = spec["languages"]
        return bilingual(first, second)
    if kind == "custom":
        return custom({k: float(v) for k, v in spec["weights"].items()})
    if kind == "unimax":
        langs = spec.get("languages") or list(sizes)
        missing = [lang for lang in langs if lang not in sizes]
        if missing:
            raise ValueError(f"UNIMAX languages {missing} are not in the corpus")
        return unimax({lang: sizes[lang] for lang in langs}, budget, float(spec.get("max_epochs", 4.0)))
    raise ValueError(f"unknown mixture kind {kind!r}; choose mono, bilingual, unimax or custom")
