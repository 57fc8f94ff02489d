"""The `atlas-bayes` command line.

May import: every layer (tables, fitting, decisions, design, trainers); nothing imports cli.

Commands: `fit`, `compare` (cli/fit.py); `curse`, `crossover`, `transfer`, `optimal` (cli/decide.py);
`design`, `loop` (cli/design.py); `adapt`, `train` (cli/data.py). A handler reads its input, calls
one library function and reports its result (cli/common.py); bad input prints one message to
stderr and exits with status 2 (no traceback)."""

import argparse
import os
import sys

from atlas_bayes.cli import common, data, decide, design, fit, validate
from atlas_bayes.cli.common import EXIT_BAD_INPUT, BadInput
from atlas_bayes.fitting import jax_setup

TRAINING_COMMANDS = ("train", "loop")    # keep one CPU device: the trainer's mesh spans them all


def main(argv: list[str] | None = None) -> int:
    """Run one command (plots drawn with Agg: files only); bad input prints one message, returns 2."""
    if "matplotlib" in sys.modules:
        import matplotlib
        matplotlib.use("Agg")
    else:     # importing matplotlib waits for a command that plots
        os.environ["MPLBACKEND"] = "Agg"
    args = build_parser().parse_args(argv)
    common.ECHOED.clear()
    if args.command not in TRAINING_COMMANDS:
        jax_setup.use_cpu_cores()
    try:
        validate.output_paths(args)
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
