"""What every command shares: the bad-input error, the subcommand parser and shared options (the
sampler and output folder from them), reading inputs, library calls (errors, warnings), reporting."""

import argparse
import json
import math
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
    add("--seed", type=seed_int, default=0, help=f"{seed} (default 0)")
    if accept == "law":
        add("--target-accept", type=probability, help="NUTS target acceptance (default: the law's, "
            "0.9; 0.95 for joint laws, 0.98 over fewer than 6 languages)")
    elif accept == "model":
        add("--target-accept", type=probability, help="NUTS target acceptance (default: the "
            "model's, 0.9)")
    elif accept is not None:
        add("--target-accept", type=probability, default=accept,
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
    """A ValueError (or `errors`) inside becomes BadInput ('SOURCE: message' unless no source,
    `plain` or an error marked `plain` (a user law's file: it names the file), or the message
    names the source already)."""
    try:
        yield
    except errors as err:
        named = (source is not None and not isinstance(err, plain)
                 and not getattr(err, "plain", False) and not str(err).startswith(f"{source}:"))
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
                    check=None, **options) -> int:
    """The usual handler: read `read_runs_or_fail(args.runs, read)`, `check(it)` (options that
    must agree with it; raises BadInput), call `function(it, *inputs, **options)` with the
    sampler and progress as a `library_call`, report into `output_folder`."""
    source = read_runs_or_fail(args.runs, read)
    if check is not None:
        check(source)
    with library_call(args.runs, always, echo):
        result = function(source, *inputs, sampler=sampler_from(args), progress=not args.json, **options)
    return report(result, args, output_folder(args, name))


ECHOED: list[str] = []     # this command's warnings so far (`main` empties it), for --json


def report(result, args, out: Path) -> int:
    """Write the result into `out`, echo its `warnings()`, print its JSON (--json: with every
    warning the command gave under "warnings") or text."""
    result.write(out)
    echo_warnings(getattr(result, "warnings", list)())
    if args.json:
        data = result.as_dict()
        data["warnings"] = list(dict.fromkeys([*data.get("warnings", []), *ECHOED]))
        print(json.dumps(data, default=str))
    else:
        print(result.to_text(out))
    return 0


def echo_warnings(caught) -> None:
    """Print warnings (or messages) to stderr as 'atlas-bayes: warning: ...'."""
    for warning in caught:
        text = str(getattr(warning, "message", warning))
        ECHOED.append(text)
        print(f"atlas-bayes: warning: {text}", file=sys.stderr)


def read_runs_or_fail(path, read=None, always=None):
    """`read(path)` (default `read_runs`: the run table) as a `library_call`: its ValueError (a
    RunTableError) becomes BadInput, warnings (`always`: default RunTableWarning) are echoed."""
    from atlas_bayes.tables.runs import RunTableWarning, read_runs
    with library_call(None, always or RunTableWarning):
        return (read or read_runs)(path)


def numbers(text: str | None, flag: str) -> list[float] | None:
    """A comma-separated list of positive finite numbers (None for no text); BadInput naming
    `flag` otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()] if text else None
    except ValueError:
        raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None
    bad = [v for v in values or () if not (math.isfinite(v) and v > 0)]
    if bad:
        raise BadInput(f"{flag}: expected positive finite numbers, got {bad[0]:g} in {text!r}")
    return values


def _number_type(name: str, expected: str, accept, convert=float):
    """An argparse type: `convert(text)` when `accept(value)`, else 'expected EXPECTED, got TEXT'
    (argparse adds the option's name)."""
    def parse(text: str):
        try:
            value = convert(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    parse.__name__ = name
    parse.__doc__ = f"argparse type: {expected}."
    return parse


def _whole(text: str) -> int:
    """An int from '3' or '3.0' (not '3.5')."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


positive_int = _number_type("positive_int", "a whole number >= 1", lambda v: v >= 1, _whole)
MIN_DESIGN_DRAWS = 16        # the expected information gain compares draws: one or two say nothing
design_draws = _number_type("design_draws", f"a whole number >= {MIN_DESIGN_DRAWS} (the expected "
                            "information gain is estimated from that many posterior draws)",
                            lambda v: v >= MIN_DESIGN_DRAWS, _whole)
nonnegative_int = _number_type("nonnegative_int", "a whole number >= 0", lambda v: v >= 0, _whole)
seed_int = _number_type("seed_int", "a whole number from 0 to 2147483647", lambda v: 0 <= v < 2 ** 31,
                        _whole)
positive_float = _number_type("positive_float", "a positive finite number",
                              lambda v: math.isfinite(v) and v > 0)
nonnegative_float = _number_type("nonnegative_float", "a finite number >= 0",
                                 lambda v: math.isfinite(v) and v >= 0)
probability = _number_type("probability", "a probability strictly between 0 and 1",
                           lambda v: 0 < v < 1)


def law_option(*, decisions: bool = False):
    """An argparse type for --law: a registry law (`decisions`: one with a natural form), or a
    user law's file `path.py[:NAME]` (read when the command runs, so its errors name the file)."""
    from atlas_bayes.models import get_law, law_names
    from atlas_bayes.models.user import is_user_law
    choices = law_names(decisions=decisions)

    def parse(text: str) -> str:
        if is_user_law(text):
            return text
        try:
            known = get_law(text).natural is not None or not decisions
        except ValueError:
            known = False
        if not known:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)} or a law "
                                             f"file path.py[:NAME], got {text!r}")
        return text
    parse.__name__ = "law"
    return parse


LAW_FILE_HELP = ("or a law of your own: a .py file defining PARAMS, FEATURES and predict(p, x) "
                 "(path.py or path.py:NAME; docs/guide.md 'Bring your own law')")


def accept_unconverged_option(parser) -> None:
    """--accept-unconverged: use a saved posterior.nc whose fit failed its convergence checks."""
    parser.add_argument("--accept-unconverged", action="store_true", help="use a posterior.nc "
                        "whose fit did not converge (its warnings are still shown)")


def ray_option(parser, what: str) -> None:
    """--ray [ADDRESS]: train on a Ray started inside the command, or on the cluster at ADDRESS."""
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help=f"train {what}: on a Ray started inside this command, or on the "
                        "cluster at ADDRESS ('auto', HOST:6379); needs the "
                        "'cluster' extra")
