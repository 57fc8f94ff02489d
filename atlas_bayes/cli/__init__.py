"""The `atlas-bayes` command line.

May import: every layer (tables, fitting, decisions, design, trainers); nothing imports cli.

Commands (`atlas-bayes COMMAND --help` for their options; README.md for examples): `fit` and
`compare` (cli/fit.py); `curse`, `crossover`, `transfer` and `optimal` (cli/decide.py); `design`
and `loop` (cli/design.py); `adapt` and `train` (cli/data.py). Each handler reads its input,
calls one library function and reports its result (cli/common.py). Bad input prints one clear
message to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys

from atlas_bayes.cli import data, decide, design, fit
from atlas_bayes.cli.common import EXIT_BAD_INPUT, BadInput


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input prints one clear message and returns 2. Plots are drawn
    with matplotlib's Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BadInput as err:
        print(f"atlas-bayes: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each command module adds its own)."""
    parser = argparse.ArgumentParser(prog="atlas-bayes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (fit, decide, design, data):
        module.add_commands(commands)
    return parser
