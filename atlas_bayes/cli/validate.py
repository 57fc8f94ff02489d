"""Checks made before any fit starts: output paths, and options that must agree with the run
table (languages, transfer languages and targets, crossover cells, trainer shapes, candidate
files). Each raises `BadInput`
naming the option, what was found and what was expected."""

import os
import warnings
from pathlib import Path

from atlas_bayes.cli.common import BadInput

TABLE_SUFFIXES = (".csv", ".parquet")


def output_paths(args) -> None:
    """The command's --out (and design's --plan) can be written, checked before any work."""
    out = getattr(args, "out", None)
    if args.command == "adapt":
        output_file(out, "--out", TABLE_SUFFIXES)
    elif args.command == "design" and out is not None and out.suffix == ".jsonl":
        output_file(out, "--out")
    else:
        output_folder(out)
    output_file(getattr(args, "plan", None) if args.command == "design" else None, "--plan")


def output_folder(path: Path | None, option: str = "--out") -> None:
    """`path` is a folder, or can be made one, and is writable."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path}: is an existing file; expected a folder (made if missing)")
    _writable_ancestor(path, option, path)


def output_file(path: Path | None, option: str, suffixes: tuple[str, ...] = ()) -> None:
    """`path` can be written as a file (not a folder; its folder exists or can be made, and is
    writable), with one of `suffixes` when given."""
    if path is None:
        return
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise BadInput(f"{option} {path}: unknown file type '{path.suffix}'; expected "
                       f"{' or '.join(suffixes)}")
    if path.is_dir():
        raise BadInput(f"{option} {path}: is an existing folder; expected a file name")
    _writable_ancestor(path.parent, option, path)


def _writable_ancestor(folder: Path, option: str, given: Path) -> None:
    """The nearest existing folder at or above `folder` is a writable folder."""
    ancestor = folder.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"{option} {given}: {ancestor} is a file, so no folder can be made under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {given}: folder {ancestor} is not writable")


def input_file(path: Path | None, option: str) -> None:
    """`path` (when given) is an existing file."""
    if path is not None and not Path(path).is_file():
        found = "a folder" if Path(path).is_dir() else "no such file"
        raise BadInput(f"{option} {path}: {found}; expected an existing file")


def languages_in(runs) -> list[str]:
    """Languages a run table evaluates or trains on (mix_<lang> columns), in order."""
    from atlas_bayes.tables.runs import mixture_languages
    return list(dict.fromkeys(list(runs["language"].astype(str)) + mixture_languages(runs)))


def evaluated_language(runs, language: str | None, option: str = "--lang") -> None:
    """`language` (when given) is evaluated by some row of the table."""
    present = list(dict.fromkeys(runs["language"].astype(str)))
    if language is not None and language not in present:
        raise BadInput(f"{option} {language}: no row of {_source(runs)} evaluates it; the table "
                       f"evaluates {', '.join(present)}")


def known_languages(runs, names: list[str], option: str) -> None:
    """Each name is a language of the table or of the shipped metadata (data/languages.csv)."""
    from atlas_bayes.tables.languages import is_known
    present = set(languages_in(runs))
    unknown = [n for n in names if n not in present and not is_known(n)]
    if unknown:
        raise BadInput(f"{option}: {', '.join(map(repr, unknown))} is neither a language of "
                       f"{_source(runs)} ({', '.join(sorted(present))}) nor a known language code "
                       "(ISO 639 or FLORES, see atlas_bayes/data/languages.csv)")


def transfer_languages(runs, chosen, law: str, language: str | None) -> None:
    """--transfer-languages applies to the law, and each named language trains alongside its
    target in some run: otherwise its transfer weight tau would be fitted from the prior alone.
    Refused rather than warned, as a language no run trains on is almost always a typo."""
    from atlas_bayes.models import get_law
    from atlas_bayes.tables.runs import mixture_fractions
    if chosen is None:
        return
    spec = get_law(law)
    if not spec.takes("tau_prior"):
        raise BadInput(f"--transfer-languages: law {law!r} has no transfer languages; expected an "
                       "ATLAS law (atlas, atlas-h, ...)")
    if isinstance(chosen, dict) != spec.hierarchical:
        form = "'TARGET=LANG[,LANG];...'" if spec.hierarchical else "'LANG[,LANG]'"
        raise BadInput(f"--transfer-languages: law {law!r} takes them as {form}")
    evaluated = list(dict.fromkeys(runs["language"].astype(str)))
    if not isinstance(chosen, dict):
        target = language if language is not None else evaluated[0]
        chosen = {target: chosen}
    fractions = mixture_fractions(runs)
    for target, names in chosen.items():
        if target not in evaluated:
            raise BadInput(f"--transfer-languages: target {target!r} is not evaluated in "
                           f"{_source(runs)}; it evaluates {', '.join(evaluated)}")
        rows = fractions[runs["language"].astype(str).to_numpy() == target]
        trained = [c for c in rows.columns if c != target and (rows[c] > 0).any()]
        absent = [n for n in names if n not in trained]
        if absent:
            raise BadInput(f"--transfer-languages: {', '.join(map(repr, absent))} trains in no run "
                           f"evaluated on {target!r}, so its transfer weight would be the prior "
                           f"alone; expected languages of those runs' mixtures: "
                           f"{', '.join(trained) or 'none (every run is monolingual)'}")


def trainer_shapes(names: list[str] | None, option: str = "--shapes") -> None:
    """Each name is a trainer shape (`trainers.model.SHAPES`)."""
    from atlas_bayes.design.candidates import shape_sizes
    if names:
        try:
            shape_sizes(names)
        except ValueError as err:
            raise BadInput(f"{option}: {err}") from None


def plan_candidates(path: Path | None, plan: bool, eval_tokens: float) -> None:
    """A candidate file reads as candidates; with a plan, every named `model` is a trainer shape."""
    from atlas_bayes.design.candidates import read_candidates
    if path is None:
        return
    try:
        table = read_candidates(path, eval_tokens=eval_tokens)
    except ValueError as err:
        raise BadInput(f"--candidates: {err}") from None
    if plan:
        unnamed = [row for row, m in enumerate(table["model"], start=1) if not m]
        if unnamed:
            raise BadInput(f"--candidates {path}: row {unnamed[0]}, column 'model' is empty, but "
                           "--plan writes trainer configs, which need a trainer shape name per run "
                           f"({len(unnamed)} row(s) without one)")
        named = list(dict.fromkeys(table["model"]))
        trainer_shapes(named, f"--candidates {path}, column 'model'")
        from atlas_bayes.trainers.config import run_id_problem
        for row, name in enumerate(table["candidate"], start=1):     # each names a planned run
            if (problem := run_id_problem(name)) is not None:
                raise BadInput(f"--candidates {path}: row {row}, column 'candidate' (a planned "
                               f"run's id): {problem}")


def _source(runs) -> str:
    return runs.attrs.get("source") or "the run table"


def crossover_language(runs, language: str) -> None:
    """`language` has a crossover cell: scratch and finetuned runs evaluated on it."""
    from atlas_bayes.decisions.crossover import crossover_cells
    with warnings.catch_warnings():          # the fit warns about partial cells itself
        warnings.simplefilter("ignore")
        try:
            cells = crossover_cells(runs)
        except ValueError as err:
            raise BadInput(str(err)) from None
    have = sorted(set(cells["language"]))
    if language not in have:
        raise BadInput(f"--lang {language}: no (language, model size) of {language!r} has both "
                       f"scratch runs and runs continued from a checkpoint; languages that do: "
                       f"{', '.join(have)}")


def transfer_targets(runs, targets: str, languages: str | None) -> None:
    """`transfer`'s --target and --languages name languages of the table or of the shipped
    metadata."""
    from atlas_bayes.decisions.comparison import names
    known_languages(runs, names(targets), "--target")
    known_languages(runs, names(languages or ()), "--languages")
