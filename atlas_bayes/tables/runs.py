"""Run tables: the documented format (docs/data-format.md), reading, writing and validation.

A run table has one row per evaluation point: a run, evaluated on one language, after some
number of training tokens. Validation collects every problem in the table and raises one
`RunTableError` whose message names the file, row and column of each.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.tables import languages
from atlas_bayes.tables.atomic_files import atomic_file

REQUIRED = ("n_params", "n_tokens", "loss")
POSITIVE = ("n_params", "n_tokens", "loss", "unique_tokens")
TEXT = ("run_id", "language", "init", "mixture", "source", "notes")
COLUMNS = ("run_id", "language", "n_params", "n_tokens", "loss", "unique_tokens",
           "n_languages", "init", "init_tokens", "mixture", "source", "notes")
MIX_PREFIX = "mix_"                 # mix_<lang>: share of the run's training tokens in <lang>
UNIQUE_PREFIX = "unique_tokens_"    # unique_tokens_<lang>: unique tokens available in <lang>
DEFAULT_LANGUAGE = "und"            # ISO 639 "undetermined"
# one value per run; not the mixture (a continued run's shares count every token up to each
# checkpoint, so they move along its curve: simulation/paper_design.py's finetunes)
RUN_CONSTANT = ("n_params", "init", "init_tokens")
MIX_TOLERANCE = 1e-3
MAX_LISTED = 20


class RunTableError(ValueError):
    """A run table that does not follow the format; `problems` lists each one."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        lines = [f"{source}: {len(problems)} problem(s) in the run table:"]
        lines += [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class RunTableWarning(UserWarning):
    """Something in a run table that is allowed but probably not intended."""


@dataclass(frozen=True)
class _Where:
    """Formats row locations: 1-based data rows, plus the line number for CSV files."""
    csv: bool

    def __call__(self, index: int) -> str:
        return f"row {index + 1} (line {index + 2})" if self.csv else f"row {index + 1}"


def read_runs(path: str | Path) -> pd.DataFrame:
    """Read and validate a run table from CSV or Parquet."""
    path = Path(path)
    if not path.exists():
        raise RunTableError(str(path), ["file not found"])
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".txt", ".gz"):
        raise RunTableError(str(path), [f"unknown file type '{suffix}': expected .csv or .parquet"])
    try:
        if suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            _check_field_counts(path)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                              index_col=False)
    except RunTableError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError, csv.Error) as err:
        raise RunTableError(str(path), [f"cannot be read as a table: {err}"]) from None
    except Exception as err:   # pyarrow's ArrowException (a corrupt or truncated Parquet file)
        if type(err).__module__.split(".")[0] != "pyarrow":
            raise
        raise RunTableError(str(path), [f"cannot be read as a Parquet table ({type(err).__name__}: "
                                        f"{err}); expected a complete Parquet file"]) from None
    return validate_runs(raw, source=str(path), csv=suffix != ".parquet")


def _check_field_counts(path: Path) -> None:
    """Refuse CSV rows with more fields than the header: a comma at the end of every row would
    otherwise shift every column by one (pandas reads the first field as the index). Fewer
    fields are blanks, as the format allows."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            return                                  # empty: read_csv says so
        problems = []
        rows = (row for row in reader if row)       # pandas skips blank lines too
        for number, row in enumerate(rows, start=1):
            if len(row) > len(header):
                problems.append(f"row {number} (line {reader.line_num}): {len(row)} fields, but the "
                                f"header has {len(header)} columns; expected at most one field per "
                                "column" + (" (the row ends in a comma)" if row[-1] == "" else ""))
    if problems:
        raise RunTableError(str(path), problems)


def write_runs(runs: pd.DataFrame, path: str | Path) -> None:
    """Write a run table to CSV or Parquet (by suffix), atomically and durably."""
    path = Path(path)
    with atomic_file(path) as tmp:
        if path.suffix.lower() == ".parquet":
            runs.to_parquet(tmp, index=False)
        else:
            runs.to_csv(tmp, index=False)


def validate_runs(raw: pd.DataFrame, source: str = "<run table>", csv: bool = False) -> pd.DataFrame:
    """Check a raw table against the format and return it with canonical types and defaults.

    Raises `RunTableError` listing every problem; warns (`RunTableWarning`) about unknown
    language codes and extra columns, which are kept.
    """
    where = _Where(csv)
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    problems = _check_columns(raw.columns)
    if problems:
        raise RunTableError(source, problems)
    if len(raw) == 0:
        raise RunTableError(source, ["the table has no rows"])

    numeric = [c for c in raw.columns if c in POSITIVE or c in ("n_languages", "init_tokens")
               or c.startswith(MIX_PREFIX) or c.startswith(UNIQUE_PREFIX)]
    parsed = {}
    for column in numeric:
        values, bad = _parse_numbers(raw[column], required=column in REQUIRED)
        for index, text in bad:
            problems.append(f"{where(index)}, column '{column}': expected a number, got {text!r}")
        parsed[column] = values
        problems += _check_range(column, values, where)
    # Built at once: wide mixtures (100+ mix_/unique_tokens_ columns) would fragment the frame.
    runs = pd.DataFrame(parsed, index=raw.index)

    for column in TEXT:
        if column in raw.columns:
            runs[column] = raw[column].astype("string").str.strip()
    runs["run_id"] = _fill_blank(runs.get("run_id"), [f"row{i + 1}" for i in raw.index])
    problems += _check_language_cells(runs.get("language"), where)
    runs["language"] = _fill_blank(runs.get("language"), DEFAULT_LANGUAGE)
    runs["init"] = _fill_blank(runs.get("init"), "scratch")
    for column in ("mixture", "source", "notes"):
        runs[column] = _fill_blank(runs.get(column), "")

    problems += _check_mixtures(runs, where)
    problems += _check_init_tokens(runs, where)
    problems += _check_duplicates(runs, where)
    problems += _check_run_constants(runs, where)
    if problems:
        raise RunTableError(source, problems)

    _warn_unknown_languages(runs, source, where)
    extra = [c for c in raw.columns if c not in runs.columns]
    if extra:
        warnings.warn(f"{source}: columns {extra} are not part of the run-table format; "
                      "they are kept (the registry's laws do not read them; a law of your own may, "
                      "as FEATURES)", RunTableWarning, stacklevel=2)
        for column in extra:
            runs[column] = raw[column]
    runs = runs[[c for c in COLUMNS if c in runs.columns]
                + [c for c in runs.columns if c not in COLUMNS]]
    runs.attrs["source"] = source
    return runs


def split_continued(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows a scaling law can read, and the run_ids of runs continued from a checkpoint.

    A continued run with `init_tokens` > 0 counts the checkpoint's tokens in `n_tokens` while
    its `mix_` shares describe only the continuation (as the trainer writes it), so a law would
    misread its data; `atlas-bayes crossover` models such runs. A continued run without
    `init_tokens` is one whose row describes its whole history, and is kept.
    """
    if "init_tokens" not in runs.columns:
        return runs, []
    continued = (runs["init"] != "scratch") & (runs["init_tokens"].fillna(0) > 0)
    if not continued.any():
        return runs, []
    kept = runs[~continued].reset_index(drop=True)
    kept.attrs = dict(runs.attrs)
    return kept, list(dict.fromkeys(runs.loc[continued, "run_id"].astype(str)))


def mixture_languages(runs: pd.DataFrame) -> list[str]:
    """Languages that have a mix_<lang> column, in column order."""
    return [c[len(MIX_PREFIX):] for c in runs.columns if c.startswith(MIX_PREFIX)]


def mixture_fractions(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-row training-token shares by language (rows x languages), zeros where absent.

    A row without any mixture values is monolingual in its evaluated language.
    """
    langs = list(dict.fromkeys(mixture_languages(runs) + list(runs["language"].unique())))
    fractions = pd.DataFrame(0.0, index=runs.index, columns=langs)
    for lang in mixture_languages(runs):
        fractions[lang] = runs[MIX_PREFIX + lang].fillna(0.0)
    monolingual = fractions.sum(axis=1) == 0
    for index in runs.index[monolingual]:
        fractions.loc[index, runs.at[index, "language"]] = 1.0
    return fractions


def unique_tokens_by_language(runs: pd.DataFrame) -> pd.DataFrame:
    """Unique tokens available per row and language (inf where unknown: never repeated).

    `unique_tokens` applies to the evaluated language; `unique_tokens_<lang>` to <lang>.
    """
    fractions = mixture_fractions(runs)
    unique = pd.DataFrame(np.inf, index=runs.index, columns=fractions.columns)
    for lang in fractions.columns:
        column = UNIQUE_PREFIX + lang
        if column in runs.columns:
            unique[lang] = runs[column].fillna(np.inf)
    if "unique_tokens" in runs.columns:
        for index in runs.index[runs["unique_tokens"].notna()]:
            unique.loc[index, runs.at[index, "language"]] = runs.at[index, "unique_tokens"]
    return unique


def _check_columns(columns) -> list[str]:
    problems = []
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if list(columns).count(c) > 1})
        problems.append(f"columns {dupes} appear more than once")
    known = set(COLUMNS)
    for column in columns:
        if column in known or column.startswith((MIX_PREFIX, UNIQUE_PREFIX)):
            continue
        close = difflib.get_close_matches(column, COLUMNS, n=1, cutoff=0.75)
        if close:
            problems.append(f"column '{column}' is not in the format: did you mean '{close[0]}'?")
    for column in REQUIRED:
        if column not in columns:
            problems.append(f"missing required column '{column}' "
                            f"(required: {', '.join(REQUIRED)}; see docs/data-format.md)")
    return problems


def _parse_numbers(column: pd.Series, required: bool):
    """Parse a column to floats; blanks become NaN. Returns values and (index, text) failures."""
    if pd.api.types.is_numeric_dtype(column):
        values = column.astype(float)
        text = column.astype(str)
    else:
        text = column.astype("string").fillna("").str.strip()
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce").astype(float)
    blank = text.isin(["", "nan", "NaN", "<NA>", "None"]) | column.isna()
    bad = values.isna() & ~blank
    if required:
        bad = bad | blank
    failures = [(i, "" if blank[i] else text[i]) for i in column.index[bad]]
    return values, failures


def _check_range(column: str, values: pd.Series, where) -> list[str]:
    problems = []
    present = values.dropna()
    infinite = present[~np.isfinite(present)]
    problems += [f"{where(i)}, column '{column}': expected a finite number, got {v}"
                 for i, v in infinite.items()]
    finite = present[np.isfinite(present)]
    if column in POSITIVE or column.startswith(UNIQUE_PREFIX):
        problems += [f"{where(i)}, column '{column}': expected a positive number, got {v:g}"
                     for i, v in finite[finite <= 0].items()]
    elif column == "init_tokens":
        problems += [f"{where(i)}, column 'init_tokens': expected a number >= 0, got {v:g}"
                     for i, v in finite[finite < 0].items()]
    elif column == "n_languages":
        bad = finite[(finite < 1) | (finite != np.round(finite))]
        problems += [f"{where(i)}, column 'n_languages': expected a whole number >= 1, got {v:g}"
                     for i, v in bad.items()]
    elif column.startswith(MIX_PREFIX):
        bad = finite[(finite < 0) | (finite > 1)]
        problems += [f"{where(i)}, column '{column}': expected a fraction in [0, 1], got {v:g}"
                     for i, v in bad.items()]
    return problems


def _check_mixtures(runs: pd.DataFrame, where) -> list[str]:
    mix_columns = [MIX_PREFIX + lang for lang in mixture_languages(runs)]
    problems = []
    shares = runs[mix_columns]
    given = shares.notna().any(axis=1)
    totals = shares.fillna(0.0).sum(axis=1)
    for index in runs.index[given & ((totals - 1.0).abs() > MIX_TOLERANCE)]:
        problems.append(f"{where(index)}, columns {MIX_PREFIX}*: mixture fractions sum to "
                        f"{totals[index]:.4g}, expected 1")
    if "n_languages" in runs.columns:
        counts = (shares.fillna(0.0) > 0).sum(axis=1)
        declared = runs["n_languages"]
        for index in runs.index[given & declared.notna() & (counts != declared)]:
            problems.append(f"{where(index)}, column 'n_languages': says {declared[index]:g} "
                            f"languages but the {MIX_PREFIX}* columns give {counts[index]} "
                            "a non-zero share")
        # A row without mix_ values is monolingual, so it cannot declare several languages.
        for index in runs.index[~given & (declared > 1)]:
            problems.append(f"{where(index)}, column 'n_languages': says {declared[index]:g} "
                            f"languages but the row has no {MIX_PREFIX}* values, so it is read "
                            "as monolingual (give the mixture in mix_<lang> columns)")
    return problems


def _check_init_tokens(runs: pd.DataFrame, where) -> list[str]:
    """A continued run's checkpoint tokens are part of n_tokens, so they cannot exceed it."""
    if "init_tokens" not in runs.columns:
        return []
    over = runs.index[runs["init_tokens"].notna() & (runs["init_tokens"] >= runs["n_tokens"])]
    return [f"{where(i)}, column 'init_tokens': {runs.at[i, 'init_tokens']:g} is not below "
            f"n_tokens {runs.at[i, 'n_tokens']:g} (n_tokens counts the checkpoint's tokens too)"
            for i in over]


def _check_duplicates(runs: pd.DataFrame, where) -> list[str]:
    key = ["run_id", "language", "n_tokens"]
    dupes = runs[runs.duplicated(key, keep=False) & runs["n_tokens"].notna()]
    problems = []
    for (run, lang, tokens), group in dupes.groupby(key, sort=False):
        rows = ", ".join(where(i) for i in group.index)
        problems.append(f"{rows}: duplicate rows for run '{run}', language '{lang}', "
                        f"n_tokens {tokens:g} (columns run_id, language, n_tokens must be unique)")
    return problems


def _check_run_constants(runs: pd.DataFrame, where) -> list[str]:
    """Columns that describe the whole run (its size and start) must agree on all of its rows."""
    columns = [c for c in runs.columns if c in RUN_CONSTANT]
    problems = []
    for column in columns:
        values = runs[column]
        if pd.api.types.is_numeric_dtype(values):
            spread = values.groupby(runs["run_id"]).agg(lambda v: np.ptp(v.dropna()) if v.notna().any()
                                                        else 0.0)
            scale = values.abs().groupby(runs["run_id"]).max().fillna(0.0)
            differ = spread[spread > 1e-9 * scale].index
            gaps = values.isna().groupby(runs["run_id"]).agg(lambda v: 0 < v.sum() < len(v))
            differ = differ.union(gaps[gaps].index, sort=False)
        else:
            counts = values.groupby(runs["run_id"]).nunique(dropna=False)
            differ = counts[counts > 1].index
        for run in differ:
            rows = runs.index[runs["run_id"] == run]
            seen = list(dict.fromkeys(values[rows].astype(str)))
            shown = ", ".join(where(i) for i in rows[:4]) + (", ..." if len(rows) > 4 else "")
            problems.append(f"{shown}: run '{run}' has different values in column '{column}' "
                            f"({', '.join(seen[:4])}); expected one value per run_id (a run has one "
                            f"{column}): give different runs different run_ids")
    return problems


def _check_language_cells(column: pd.Series | None, where) -> list[str]:
    """A language code holds no spaces or control characters (a stray quote would otherwise
    make a new language, and codes name runs and files); blank cells are 'und'."""
    if column is None:
        return []
    text = column.fillna("")
    odd = column.index[text.str.contains(r"[\s\x00-\x1f]", regex=True)]
    if not len(odd):
        return []
    return [f"{where(odd[0])}, column 'language': expected a language code without spaces or "
            f"control characters, got {text[odd[0]]!r}" + (f" ({len(odd)} rows)" if len(odd) > 1 else "")]


def _warn_unknown_languages(runs: pd.DataFrame, source: str, where) -> None:
    codes = list(runs["language"].unique()) + mixture_languages(runs)
    unknown = [c for c in dict.fromkeys(codes) if c != DEFAULT_LANGUAGE and not languages.is_known(c)]
    if not unknown:
        return
    first = {c: runs.index[runs["language"] == c] for c in unknown}
    examples = [f"'{c}' ({where(first[c][0])})" if len(first[c]) else f"'{c}' (column {MIX_PREFIX}{c})"
                for c in unknown[:10]]
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    warnings.warn(f"{source}: unknown language codes {', '.join(examples)}{more}; expected ISO 639 "
                  "codes such as 'en' or FLORES codes such as 'eng_Latn' "
                  "(see atlas_bayes/data/languages.csv)", RunTableWarning, stacklevel=3)


def _fill_blank(column: pd.Series | None, default) -> pd.Series:
    if column is None:
        return pd.Series(default, dtype="string") if not np.isscalar(default) else default
    filled = column.fillna("")
    blank = filled == ""
    if np.isscalar(default):
        return filled.mask(blank, default)
    return filled.mask(blank, pd.Series(default, index=column.index, dtype="string"))
