"""What every command shares: the bad-input error, the subcommand parser and shared options (the
sampler and output folder from them), reading inputs, library calls (errors, warnings), reporting."""

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


def command(commands, name: str, handler, runs: str | None = None):
    """A subcommand's parser run by `handler`, whose docstring is its help (the first paragraph:
    the summary in the command list), with the positional `runs` when given its help."""
    summary = handler.__doc__.split("\n\n")[0].rstrip(".")
    parser = commands.add_parser(name, help=summary, description=handler.__doc__)
    parser.set_defaults(handler=handler)
    if runs:
        parser.add_argument("runs", help=runs)
    return parser


def sampler_options(parser, out: str | None, *, chains=4, draws=1000, warmup=1000, accept=None,
                    why="", shows="the readable output", seed="random seed") -> None:
    """--chains, --draws, --warmup, --seed, --target-accept (given its default and `why`), --out
    (unless `out` is None; default results/<runs file>-OUT) and --json (instead of `shows`)."""
    add = parser.add_argument
    add("--chains", type=positive_int, default=chains, help=f"MCMC chains (default {chains})")
    add("--draws", type=positive_int, default=draws, help=f"draws per chain (default {draws})")
    add("--warmup", type=positive_int, default=warmup, help=f"warmup steps per chain (default {warmup})")
    add("--seed", type=int, default=0, help=f"{seed} (default 0)")
    if accept == "law":
        add("--target-accept", type=acceptance, help="NUTS target acceptance (default: the law's, "
            "0.9; 0.95 for joint laws)")
    elif accept == "model":
        add("--target-accept", type=acceptance, help="NUTS target acceptance (default: the "
            "model's, 0.9)")
    elif accept is not None:
        add("--target-accept", type=acceptance, default=accept,
            help=f"NUTS target acceptance (default {accept}{why})")
    if out is not None:
        add("--out", type=Path, help=f"output folder (default: results/<runs file>-{out})")
    add("--json", action="store_true", help=f"print one JSON object on stdout instead of {shows}")


def sampler_from(args):
    """An `Approximation` with --approx, else NUTS from the sampler options."""
    from atlas_bayes.fitting.inference import Approximation, Sampler
    if getattr(args, "approx", None):
        return Approximation(args.approx, seed=args.seed)
    return Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed,
                   target_accept=getattr(args, "target_accept", None))


def output_folder(args, name: str) -> Path:
    """--out, or results/<input file's stem>-<name>."""
    return args.out or Path("results") / f"{Path(args.runs).stem}-{name}"


@contextmanager
def bad_input(source=None, plain=(), errors=ValueError):
    """A ValueError (or `errors`) inside becomes BadInput ('SOURCE: message' unless no source or `plain`)."""
    try:
        yield
    except errors as err:
        named = source is not None and not isinstance(err, plain)
        raise BadInput(f"{source}: {err}" if named else str(err)) from None


@contextmanager
def library_call(source, always=None, echo=None, plain=()):
    """Library code: errors as in `bad_input`; warnings echoed afterwards (`always`: the category
    always recorded, default ConvergenceWarning; `echo`: those echoed, default all)."""
    if always is None:
        from atlas_bayes.fitting.diagnostics import ConvergenceWarning as always
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", always)
        with bad_input(source, plain):
            yield
    echo_warnings([w for w in caught if echo is None or issubclass(w.category, echo)])


def call_and_report(args, name: str, function, *inputs, read=None, always=None, echo=None,
                    **options) -> int:
    """The usual handler: read `read_runs_or_fail(args.runs, read)`, call `function(it, *inputs,
    **options)` with the sampler and progress as a `library_call`, report into `output_folder`."""
    source = read_runs_or_fail(args.runs, read)
    with library_call(args.runs, always, echo):
        result = function(source, *inputs, sampler=sampler_from(args), progress=not args.json, **options)
    return report(result, args, output_folder(args, name))


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


def read_runs_or_fail(path, read=None, always=None):
    """`read(path)` (default `read_runs`: the run table) as a `library_call`: its ValueError (a
    RunTableError) becomes BadInput, warnings (`always`: default RunTableWarning) are echoed."""
    from atlas_bayes.tables.runs import RunTableWarning, read_runs
    with library_call(None, always or RunTableWarning):
        return (read or read_runs)(path)


def numbers(text: str | None, flag: str) -> list[float] | None:
    """A comma-separated list of numbers (None for no text); BadInput naming `flag` otherwise."""
    try:
        return [float(v) for v in text.split(",") if v.strip()] if text else None
    except ValueError:
        raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if (value := int(text)) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def acceptance(text: str) -> float:
    """argparse type: a target acceptance probability, strictly between 0 and 1."""
    try:
        if 0 < (value := float(text)) < 1:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a probability strictly between 0 and 1 "
                                     f"(e.g. 0.95), got {text!r}")


def accept_unconverged_option(parser) -> None:
    """--accept-unconverged: use a saved posterior.nc whose fit failed its convergence checks."""
    parser.add_argument("--accept-unconverged", action="store_true", help="use a posterior.nc "
                        "whose fit did not converge (its warnings are still shown)")


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        if (value := float(text)) > 0:
            return value
    except ValueError:
        text = repr(text)
    raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
