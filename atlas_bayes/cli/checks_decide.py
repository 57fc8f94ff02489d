"""Checks of the decision commands' options against the run table, made before any fit."""

import warnings

from atlas_bayes.cli import validate
from atlas_bayes.cli.common import BadInput


def curse_options(runs, args) -> None:
    """--lang (a --per-language fit's language) is evaluated in the table."""
    validate.evaluated_language(runs, args.lang)


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


def transfer_languages(runs, targets: str, languages: str | None) -> None:
    """--target and --languages name languages of the table or of the shipped metadata."""
    from atlas_bayes.decisions.comparison import names
    validate.known_languages(runs, names(targets), "--target")
    validate.known_languages(runs, names(languages or ()), "--languages")
