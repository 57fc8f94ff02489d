"""Language metadata shipped in data/languages.csv: ISO code, name, script, family.

Covers the 50 languages of the ATLAS paper's 50-language mixture (which contains its 38
transfer-matrix languages). Codes are looked up case-insensitively as the paper's ISO 639-1
code (`fr`), ISO 639-3 (`fra`), FLORES-200 (`fra_Latn`) or ISO 639-3 plus script (`fra_Latn`).
"""

from functools import cache
from importlib import resources

import pandas as pd


@cache
def table() -> pd.DataFrame:
    """All language metadata, indexed by the canonical code used in run tables."""
    with resources.files("atlas_bayes.data").joinpath("languages.csv").open() as handle:
        frame = pd.read_csv(handle, dtype={"in_50v0": bool, "in_matrix38": bool, "in_fig2_30": bool})
    return frame.set_index("code", drop=False)


@cache
def _aliases() -> dict[str, str]:
    aliases = {}
    for row in table().itertuples():
        for alias in (row.code, row.iso639_3, row.flores, f"{row.iso639_3}_{row.script_code}"):
            aliases[alias.lower()] = row.code
    return aliases


def canonical(code: str) -> str | None:
    """The canonical code for any accepted spelling of a language, or None if unknown."""
    return _aliases().get(str(code).strip().lower())


def is_known(code: str) -> bool:
    """Whether a language code is in the shipped metadata."""
    return canonical(code) is not None


def info(code: str) -> pd.Series:
    """Metadata row (name, script, family, genus, ...) for a language code."""
    key = canonical(code)
    if key is None:
        raise KeyError(f"unknown language code {code!r}; see atlas_bayes/data/languages.csv")
    return table().loc[key]


def family(code: str, level: str = "family") -> str:
    """Language family (`level="family"`) or the finer genus (`level="genus"`); 'unknown' if absent."""
    key = canonical(code)
    return "unknown" if key is None else str(table().at[key, level])
