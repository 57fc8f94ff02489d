"""What every command shares: the bad-input error, sampler and output options (and building
them from the arguments), reading inputs, running library calls (errors and warnings),
printing a result."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; reported without a traceback."""


def finite(value):
    """Plain JSON values: numpy scalars as Python numbers, non-finite numbers as null."""
    from atlas_bayes.fitting.summary import json_safe

    return json_safe(value)


def sampler_and_output_options(parser, name: str, draws: int = 1000, warmup: int = 1000,
                                target_accept: float | None = None,
                                target_accept_help: str | None = None, *, out_help: str | None = None,
                                json_help: str = "the readable output",
                                seed_help: str | None = None) -> None:
    """--chains, --draws, --warmup, --seed (and --target-accept when a default is given),
    --out and --json, shared by the analysis commands (`out_help`, `json_help` and `seed_help`
    word a command's own help)."""
    parser.add_argument("--chains", type=positive_int, default=4)
    parser.add_argument("--draws", type=positive_int, default=draws, help="draws per chain")
    parser.add_argument("--warmup", type=positive_int, default=warmup, help="warmup steps per chain")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    if target_accept is not None:
        parser.add_argument("--target-accept", type=float, default=target_accept,
                            help=target_accept_help or f"NUTS target acceptance (default {target_accept})")
    parser.add_argument("--out", type=Path,
                        help=out_help or f"output folder (default: results/<file>-{name})")
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON object on stdout instead of {json_help}")


def sampler_from(args):
    """The posterior sampler the arguments ask for: an `Approximation` with --approx, else NUTS
    from --chains/--draws/--warmup/--seed (and --target-accept where the command has it)."""
    from atlas_bayes.fitting.inference import Approximation, Sampler

    if getattr(args, "approx", None):
        return Approximation(args.approx, seed=args.seed)
    accept = getattr(args, "target_accept", None)
    return Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed,
                   **({} if accept is None else {"target_accept": accept}))


def output_folder(args, name: str) -> Path:
    """--out, or results/<input file's stem>-<name>."""
    return args.out or Path("results") / f"{Path(args.runs).stem}-{name}"


@contextmanager
def bad_input(source=None):
    """Turn a ValueError raised inside into BadInput ('SOURCE: message' when given a source)."""
    try:
        yield
    except ValueError as err:
        raise BadInput(f"{source}: {err}" if source is not None else str(err)) from None


@contextmanager
def library_call(source, always=None, echo=None):
    """Run library code: a ValueError becomes BadInput('SOURCE: message'); warnings are
    collected and echoed to stderr afterwards (`always`: the category always recorded,
    default the convergence warning; `echo`: the categories echoed, default all recorded)."""
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", always or ConvergenceWarning)
        with bad_input(source):
            yield
    echo_warnings([w for w in caught if echo is None or issubclass(w.category, echo)])


def report(result, args, out: Path) -> int:
    """Write the result's files into `out`, then print its JSON (--json) or readable text."""
    result.write(out)
    print(json.dumps(result.as_dict(), default=str) if args.json else result.to_text(out))
    return 0


def read_json_or_fail(path: Path, flag: str):
    """The JSON content of `path`; BadInput naming `flag` when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadInput(f"{flag} {path}: cannot be read as JSON: {err}") from None


def read_runs_or_fail(path):
    """The validated run table, its warnings echoed to stderr; BadInput when it is invalid."""
    from atlas_bayes.tables.runs import RunTableError, RunTableWarning, read_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunTableWarning)
        try:
            runs = read_runs(path)
        except RunTableError as err:
            raise BadInput(str(err)) from None
    echo_warnings(caught)
    return runs


def echo_warnings(caught) -> None:
    """Print caught warnings to stderr as 'atlas-bayes: warning: ...'."""
    for warning in caught:
        print(f"atlas-bayes: warning: {warning.message}", file=sys.stderr)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
