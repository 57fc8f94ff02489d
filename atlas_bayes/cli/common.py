"""What every command shares: the bad-input error, sampler and output options, reading inputs,
echoing warnings, JSON-safe values."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; reported without a traceback."""


def finite(value):
    """Plain JSON values: numpy scalars as Python numbers, non-finite numbers as null."""
    import math

    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sampler_and_output_options(parser, name: str, draws: int = 1000, warmup: int = 1000,
                                target_accept: float | None = None,
                                target_accept_help: str | None = None) -> None:
    """--chains, --draws, --warmup, --seed (and --target-accept when a default is given),
    --out and --json, shared by the analysis commands."""
    parser.add_argument("--chains", type=positive_int, default=4)
    parser.add_argument("--draws", type=positive_int, default=draws, help="draws per chain")
    parser.add_argument("--warmup", type=positive_int, default=warmup, help="warmup steps per chain")
    parser.add_argument("--seed", type=int, default=0)
    if target_accept is not None:
        parser.add_argument("--target-accept", type=float, default=target_accept,
                            help=target_accept_help or f"NUTS target acceptance (default {target_accept})")
    parser.add_argument("--out", type=Path, help=f"output folder (default: results/<file>-{name})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout instead of the readable output")


def read_json_or_fail(path: Path, flag: str):
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
    for warning in caught:
        print(f"atlas-bayes: warning: {warning.message}", file=sys.stderr)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
