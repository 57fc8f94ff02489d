"""The `atlas-bayes` command line.

May import: every layer (tables, fitting, decisions, design, trainers); nothing imports cli.

    atlas-bayes fit RUNS --law {chinchilla,dcsl,atlas,atlas-h,...} [--out DIR] [--chains N] [--draws N]
                    [--approx svi|laplace] [--shared A,alpha] [--transfer-languages fr=en,es] [--json]
    atlas-bayes compare RUNS --laws csl,dcsl,atlas [--split random,N,D,C,M] [--lang CODE[,CODE]]
                        [--no-loo] [--out DIR] [--json]
    atlas-bayes curse RUNS --from-k 8 --to-k 16 [--n-params N --tokens D] [--per-language]
                        [--lang CODE] [--out DIR] [--json]
    atlas-bayes crossover RUNS --lang sw [--n-params 2e9] [--budget TOKENS] [--out DIR] [--json]
    atlas-bayes transfer RUNS --target ca[,fr] [--n-params N] [--horizon D] [--languages CODES]
                         [--tau-priors-for 3] [--out DIR] [--json]
    atlas-bayes optimal RUNS --lang CODE --compute C [--law atlas] [--unique-tokens U]
                        [--out DIR] [--json]
    atlas-bayes design RUNS|posterior.nc --target loss@N=1e9,D=2e10 [--budget C] [--k 4]
                       [--shapes s0,s4 | --n-params ... | --candidates FILE] [--plan plan.jsonl]
                       [--out DIR] [--json]        (targets: params, loss@.., nstar@C=..,
                                                    crossover:LANG@N, bts:SRC->TGT[@N])
    atlas-bayes loop RUNS --out DIR --target T --budget C --shapes t0,t1 --tokens ...
                     [--k 2] [--width W] [--max-rounds R] [--train-config base.json] [--external]
    atlas-bayes adapt {epoch_chinchilla,datablations,datablations_curves,goldfish} PATH --out FILE

Bad input prints one clear message to stderr and exits with status 2 (no traceback).
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


if __name__ == "__main__":
    sys.exit(main())
