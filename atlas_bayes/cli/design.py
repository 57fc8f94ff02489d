"""Design commands: `design` (which runs to pay for next) and `loop` (design, train, refit)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from atlas_bayes.cli.common import (BadInput, echo_warnings, finite, positive_float, positive_int,
                                    read_json_or_fail, read_runs_or_fail, sampler_and_output_options)
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    design = commands.add_parser(
        "design", help="choose the next most informative training runs for a budget",
        description="Fit a law (or read a saved posterior.nc), score candidate runs by the "
                    "expected information gain about a target per FLOP, and choose a batch of "
                    "k complementary runs within a budget; optionally write a trainer plan.")
    design.add_argument("runs", help="run table file (.csv or .parquet), or a posterior.nc")
    design.add_argument("--law", default="chinchilla",
                        choices=law_names(decisions=True),
                        help="law to fit (default: chinchilla; ignored for a posterior.nc)")
    design.add_argument("--lang", help="language to design for (default: the fit's first)")
    design.add_argument("--target", default="params",
                        help="what to learn: params, loss@N=1e9,D=2e10, nstar@C=1e21, "
                             "crossover:sw@2e9 (fits the crossover model) or bts:en->sw[@N] "
                             "(fits the BTS curves) (default: params)")
    design.add_argument("--budget", type=positive_float, help="FLOPs for the whole batch")
    design.add_argument("--k", type=positive_int, default=4, help="runs to choose (default 4)")
    grid = design.add_mutually_exclusive_group()
    grid.add_argument("--candidates", type=Path, help="candidate runs (.csv or .jsonl: n_params, "
                                                      "n_tokens[, model, language, mixture, cost])")
    grid.add_argument("--shapes", help="trainer shapes, comma separated (e.g. s0,s2,s4), or 'all'")
    grid.add_argument("--n-params", help="model sizes, comma separated (default: 10 sizes from "
                                         "the data's smallest to 10x its largest)")
    design.add_argument("--tokens", help="token budgets, comma separated")
    design.add_argument("--tokens-per-param", help="tokens per parameter, comma separated "
                                                   "(default: 5,10,20,40,80)")
    design.add_argument("--eval-tokens", type=float, default=0.0,
                        help="evaluated tokens per run, costed at 2N each (default 0)")
    design.add_argument("--cost-power", type=float, default=1.0,
                        help="rank by gain / cost^P (1: per FLOP, default; 0: gain alone)")
    design.add_argument("--max-draws", type=positive_int, default=512,
                        help="posterior draws the estimator uses (default 512)")
    design.add_argument("--unique-tokens", type=positive_float,
                        help="unique tokens U of the language (default: from the run table)")
    sampler_and_output_options(design, "design", target_accept=0.9)
    design.add_argument("--plan", type=Path,
                        help="write the chosen runs as a trainer plan (JSONL) here (needs "
                             "--shapes or a 'model' column of trainer shape names); "
                             "'--out FILE.jsonl' does the same, other outputs beside it")
    design.set_defaults(handler=run_design)

    loop = commands.add_parser(
        "loop", help="design, train, refit, repeat: until the budget is spent or the target is known",
        description="The closed loop: choose a batch (as 'design' does), train it with the "
                    "companion trainer (or write the plan for an external runner and stop), add "
                    "the finished runs to the run table, refit, and repeat until the budget is "
                    "spent or the target's 90%% interval is narrower than --width. The output "
                    "folder holds the state: rerunning the same command continues.")
    loop.add_argument("runs", help="the starting run table (.csv or .parquet)")
    loop.add_argument("--out", type=Path, required=True, help="output folder (the loop's state)")
    loop.add_argument("--target", default="params", help="what to learn (as for 'design')")
    loop.add_argument("--budget", type=positive_float, required=True,
                      help="FLOPs for all the loop's runs together")
    loop.add_argument("--k", type=positive_int, default=2, help="runs per round (default 2)")
    loop.add_argument("--width", type=positive_float,
                      help="stop when the target's 90%% interval is narrower (its own units: "
                           "log loss, log N*, log tokens, g)")
    loop.add_argument("--max-rounds", type=positive_int, help="stop after this many rounds")
    loop.add_argument("--shapes", help="trainer shapes of candidate runs, comma separated")
    loop.add_argument("--tokens", help="token budgets of candidate runs, comma separated")
    loop.add_argument("--tokens-per-param", help="or tokens per parameter (default 5,10,20,40,80)")
    loop.add_argument("--law", default="chinchilla", choices=law_names(decisions=True))
    loop.add_argument("--lang", help="language to fit and design for (default: the table's first)")
    loop.add_argument("--cost-power", type=float, default=1.0)
    loop.add_argument("--max-draws", type=positive_int, default=512)
    loop.add_argument("--chains", type=positive_int, default=2)
    loop.add_argument("--draws", type=positive_int, default=500, help="draws per chain")
    loop.add_argument("--warmup", type=positive_int, default=500)
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--train-config", type=Path,
                      help="JSON of trainer config fields added to every run (corpus, seq_len, "
                           "batch_size, lr, eval_every, ...)")
    loop.add_argument("--external", action="store_true",
                      help="write each round's plan and stop; an external runner trains it and "
                           "puts the rows in OUT/round-R/results.csv (or --ingest FILE)")
    loop.add_argument("--ingest", type=Path, help="run table holding the planned runs' rows")
    loop.add_argument("--no-progress", action="store_true", help="no progress messages or bars")
    loop.add_argument("--json", action="store_true", help="print the final status as JSON")
    loop.set_defaults(handler=run_loop)


def run_design(args) -> int:
    """The `design` command: read the inputs, let the design layer choose (`design.make_design`),
    write its outputs and show them."""
    from atlas_bayes import design as design_lib
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler

    fitted = Path(args.runs).suffix != ".nc"
    plan, out = args.plan, args.out
    if out is not None and out.suffix == ".jsonl":       # --out plan.jsonl, as the issue spells it
        plan, out = plan or out, out.parent
    options = design_lib.CandidateOptions(
        file=args.candidates,
        shapes=None if not args.shapes else "all" if args.shapes == "all" else args.shapes.split(","),
        n_params=_numbers(args.n_params, "--n-params"), tokens=_numbers(args.tokens, "--tokens"),
        tokens_per_param=_numbers(args.tokens_per_param, "--tokens-per-param"),
        eval_tokens=args.eval_tokens)
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed,
                      target_accept=args.target_accept)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            study = design_lib.study_for(design_lib.parse_target(args.target), law=args.law,
                                         language=args.lang, unique_tokens=args.unique_tokens,
                                         run_folder=Path(args.runs).parent)
            study.check(options, runs_given=fitted)
            runs = read_runs_or_fail(args.runs) if fitted else None
            output = design_lib.make_design(
                study, runs=runs, tree=None if fitted else _load_posterior(args.runs),
                sampler=sampler, options=options, k=args.k, budget=args.budget,
                cost_power=args.cost_power, max_draws=args.max_draws, seed=args.seed, plan=plan,
                progress=not args.json)
        except design_lib.OptionError as err:
            raise BadInput(str(err)) from None
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    echo_warnings(caught)

    out = out or Path("results") / f"{Path(args.runs).stem}-design"
    output.write(out)
    for message in output.warnings():
        print(f"atlas-bayes: warning: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(output.summary()))
    else:
        print(output.to_text(out))
    return 0


def run_loop(args) -> int:
    """The `loop` command: the settings from the options, then `design.loop.run_loop`."""
    from atlas_bayes.design.loop import LoopSettings, run_loop as loop

    if args.tokens and args.tokens_per_param:
        raise BadInput("give either --tokens or --tokens-per-param, not both")
    base = read_json_or_fail(args.train_config, "--train-config") if args.train_config else {}
    if not isinstance(base, dict):
        raise BadInput(f"--train-config {args.train_config}: expected a JSON object of config fields")
    start = read_runs_or_fail(args.runs)
    try:
        settings = LoopSettings(
            runs=str(args.runs), target=args.target, budget=args.budget,
            shapes=args.shapes.split(",") if args.shapes else [],
            tokens=_numbers(args.tokens, "--tokens"),
            tokens_per_param=_numbers(args.tokens_per_param, "--tokens-per-param"), k=args.k,
            width=args.width, max_rounds=args.max_rounds, law=args.law, language=args.lang,
            cost_power=args.cost_power, max_draws=args.max_draws,
            sampler={"chains": args.chains, "warmup": args.warmup, "draws": args.draws},
            train_base=base, external=args.external, seed=args.seed)
        status = loop(settings, args.out, ingest=args.ingest, progress=not args.no_progress,
                      start=start)
    except ValueError as err:
        raise BadInput(f"{args.runs}: {err}") from None
    if args.json:
        print(json.dumps(finite(status)))
    else:
        print(f"{status['stopped']}; log {args.out / 'rounds.jsonl'}, plot {args.out / 'width.png'}")
    return 0


def _numbers(text, flag):
    """A comma-separated list of numbers (None for no text); BadInput naming `flag` otherwise."""
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None


def _load_posterior(path):
    """A saved posterior.nc; BadInput when the file is missing."""
    from atlas_bayes.fitting.inference import load

    if not Path(path).is_file():
        raise BadInput(f"{path}: file not found")
    return load(path)
