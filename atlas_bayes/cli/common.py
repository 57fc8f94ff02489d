"""What every command shares: the bad-input error, parsers and shared options (with the sampler
and output folder from them), reading inputs, library calls (errors, warnings), reporting."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

EXIT_BAD_INPUT = 2
RUNS = "run table file (.csv or .parquet)"


class BadInput(Exception):
    """Input the user must fix; reported without a traceback."""


def command(commands, name: str, about: str, description: str, handler, runs: str | None = None):
    """A subcommand's parser run by `handler` (with the positional `runs` when given its help)."""
    parser = commands.add_parser(name, help=about, description=description)
    parser.set_defaults(handler=handler)
    if runs:
        parser.add_argument("runs", help=runs)
    return parser


def sampler_and_output_options(parser, name: str | None, draws=1000, warmup=1000, target_accept=None,
                               accept_help=None, *, chains=4, json_help="the readable output",
                               seed_help=None) -> None:
    """--chains, --draws, --warmup, --seed, --target-accept (given a default), --out (unless
    `name` is None; default results/<runs file>-NAME) and --json."""
    add = parser.add_argument
    add("--chains", type=positive_int, default=chains)
    add("--draws", type=positive_int, default=draws, help="draws per chain")
    add("--warmup", type=positive_int, default=warmup, help="warmup steps per chain")
    add("--seed", type=int, default=0, help=seed_help)
    if target_accept is not None:
        add("--target-accept", type=float, default=target_accept,
            help=accept_help or f"NUTS target acceptance (default {target_accept})")
    if name is not None:
        add("--out", type=Path, help=f"output folder (default: results/<runs file>-{name})")
    add("--json", action="store_true", help=f"print one JSON object on stdout instead of {json_help}")


def sampler_from(args):
    """An `Approximation` with --approx, else NUTS from the sampler options."""
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
def bad_input(source=None, plain=()):
    """A ValueError inside becomes BadInput ('SOURCE: message' unless no source or `plain`)."""
    try:
        yield
    except ValueError as err:
        named = source is not None and not isinstance(err, plain)
        raise BadInput(f"{source}: {err}" if named else str(err)) from None


@contextmanager
def library_call(source, always=None, echo=None, plain=()):
    """Library code: errors as in `bad_input`; warnings echoed afterwards (`always`: the category
    always recorded, default ConvergenceWarning; `echo`: those echoed, default all)."""
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", always or ConvergenceWarning)
        with bad_input(source, plain):
            yield
    echo_warnings([w for w in caught if echo is None or issubclass(w.category, echo)])


def report(result, args, out: Path) -> int:
    """Write the result into `out`, echo its `warnings()`, print its JSON (--json) or text."""
    result.write(out)
    echo_warnings(getattr(result, "warnings", list)())
    print(json.dumps(result.as_dict(), default=str) if args.json else result.to_text(out))
    return 0


def echo_warnings(caught) -> None:
    """Print warnings (or messages) to stderr as 'atlas-bayes: warning: ...'."""
    for warning in caught:
        print(f"atlas-bayes: warning: {getattr(warning, 'message', warning)}", file=sys.stderr)


def read_json_or_fail(path: Path, flag: str):
    """The JSON content of `path`; BadInput naming `flag` when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadInput(f"{flag} {path}: cannot be read as JSON: {err}") from None


def read_runs_or_fail(path, read=None, always=None):
    """The run table `read(path)` (default `read_runs`) or BadInput; warnings of `always`
    (default RunTableWarning) echoed."""
    from atlas_bayes.tables.runs import RunTableError, RunTableWarning, read_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", always or RunTableWarning)
        try:
            runs = (read or read_runs)(path)
        except RunTableError as err:
            raise BadInput(str(err)) from None
    echo_warnings(caught)
    return runs


def read_source(path):
    """A saved posterior (a .nc file; BadInput when it is missing), else the run table."""
    from atlas_bayes.fitting.inference import load

    if Path(path).suffix != ".nc":
        return read_runs_or_fail(path)
    if not Path(path).is_file():
        raise BadInput(f"{path}: file not found")
    return load(path)


def numbers(text: str | None, flag: str) -> list[float] | None:
    """A comma-separated list of numbers (None for no text); BadInput naming `flag` otherwise."""
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if (value := int(text)) < 1:
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
