"""Design commands: `design` (which runs to pay for next) and `loop` (design, train, refit)."""

from __future__ import annotations

import json
from pathlib import Path

from atlas_bayes.cli.common import (RUNS, BadInput, bad_input, command, library_call, numbers,
                                    output_folder, positive_float, positive_int, read_json_or_fail,
                                    read_runs_or_fail, read_source, report,
                                    sampler_and_output_options, sampler_from)
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    design = command(
        commands, "design", "choose the next most informative training runs for a budget",
        "Fit a law (or read a saved posterior.nc), score candidate runs by the expected information "
        "gain about a target per FLOP, and choose a batch of k complementary runs within a budget; "
        "optionally write a trainer plan.", run_design, runs=f"{RUNS}, or a posterior.nc")
    add, grid = design.add_argument, design.add_mutually_exclusive_group().add_argument
    add("--law", default="chinchilla", choices=law_names(decisions=True),
        help="law to fit (default: chinchilla; ignored for a posterior.nc)")
    add("--lang", help="language to design for (default: the fit's first)")
    add("--target", default="params", help="what to learn: params, loss@N=1e9,D=2e10, nstar@C=1e21, "
        "crossover:sw@2e9 (fits the crossover model) or bts:en->sw[@N] (fits the BTS curves) "
        "(default: params)")
    add("--budget", type=positive_float, help="FLOPs for the whole batch")
    add("--k", type=positive_int, default=4, help="runs to choose (default 4)")
    grid("--candidates", type=Path,
         help="candidate runs (.csv or .jsonl: n_params, n_tokens[, model, language, mixture, cost])")
    grid("--shapes", help="trainer shapes, comma separated (e.g. s0,s2,s4), or 'all'")
    grid("--n-params", help="model sizes, comma separated (default: 10 sizes from the data's "
         "smallest to 10x its largest)")
    add("--tokens", help="token budgets, comma separated")
    add("--tokens-per-param", help="tokens per parameter, comma separated (default: 5,10,20,40,80)")
    add("--eval-tokens", type=float, default=0.0, help="evaluated tokens per run, costed at 2N each "
        "(default 0)")
    add("--cost-power", type=float, default=1.0,
        help="rank by gain / cost^P (1: per FLOP, default; 0: gain alone)")
    add("--max-draws", type=positive_int, default=512,
        help="posterior draws the estimator uses (default 512)")
    add("--unique-tokens", type=positive_float,
        help="unique tokens U of the language (default: from the run table)")
    sampler_and_output_options(design, "design", target_accept=0.9)
    add("--plan", type=Path, help="write the chosen runs as a trainer plan (JSONL) here (needs "
        "--shapes or a 'model' column of trainer shape names); '--out FILE.jsonl' does the same, "
        "other outputs beside it")

    loop = command(
        commands, "loop", "design, train, refit, repeat: until the budget is spent or the target "
        "is known", "The closed loop: choose a batch (as 'design' does), train it with the "
        "companion trainer (or write the plan for an external runner and stop), add the finished "
        "runs to the run table, refit, and repeat until the budget is spent or the target's 90%% "
        "interval is narrower than --width. The output folder holds the state: rerunning the same "
        "command continues.", run_loop, runs="the starting run table (.csv or .parquet)")
    add = loop.add_argument
    add("--out", type=Path, required=True, help="output folder (the loop's state)")
    add("--target", default="params", help="what to learn (as for 'design')")
    add("--budget", type=positive_float, required=True, help="FLOPs for all the loop's runs together")
    add("--k", type=positive_int, default=2, help="runs per round (default 2)")
    add("--width", type=positive_float, help="stop when the target's 90%% interval is narrower "
        "(its own units: log loss, log N*, log tokens, g)")
    add("--max-rounds", type=positive_int, help="stop after this many rounds")
    add("--shapes", help="trainer shapes of candidate runs, comma separated")
    add("--tokens", help="token budgets of candidate runs, comma separated")
    add("--tokens-per-param", help="or tokens per parameter (default 5,10,20,40,80)")
    add("--law", default="chinchilla", choices=law_names(decisions=True))
    add("--lang", help="language to fit and design for (default: the table's first)")
    add("--cost-power", type=float, default=1.0)
    add("--max-draws", type=positive_int, default=512)
    sampler_and_output_options(loop, None, 500, 500, chains=2, json_help="the final status line")
    add("--train-config", type=Path, help="JSON of trainer config fields added to every run "
        "(corpus, seq_len, batch_size, lr, eval_every, ...)")
    add("--external", action="store_true", help="write each round's plan and stop; an external "
        "runner trains it and puts the rows in OUT/round-R/results.csv (or --ingest FILE)")
    add("--ingest", type=Path, help="run table holding the planned runs' rows")
    add("--no-progress", action="store_true", help="no progress messages or bars")


def run_design(args) -> int:
    """`design`: the target's study checks the options, then `design.make_design` fits (or
    reads) the posterior and chooses the batch."""
    from atlas_bayes import design as lib

    plan, out, fitted = args.plan, args.out, Path(args.runs).suffix != ".nc"
    if out is not None and out.suffix == ".jsonl":       # --out plan.jsonl, as the issue spells it
        plan, out = plan or out, out.parent
    options = lib.CandidateOptions(
        file=args.candidates, n_params=numbers(args.n_params, "--n-params"),
        tokens=numbers(args.tokens, "--tokens"), eval_tokens=args.eval_tokens,
        tokens_per_param=numbers(args.tokens_per_param, "--tokens-per-param"),
        shapes=None if not args.shapes else "all" if args.shapes == "all" else args.shapes.split(","))
    with library_call(args.runs, plain=lib.OptionError):
        study = lib.study_for(lib.parse_target(args.target), law=args.law, language=args.lang,
                              unique_tokens=args.unique_tokens, run_folder=Path(args.runs).parent)
        study.check(options, runs_given=fitted)
        source = read_source(args.runs)
        result = lib.make_design(
            study, runs=source if fitted else None, tree=None if fitted else source,
            sampler=sampler_from(args), options=options, k=args.k, budget=args.budget,
            cost_power=args.cost_power, max_draws=args.max_draws, seed=args.seed, plan=plan,
            progress=not args.json)
    return report(result, args, out or output_folder(args, "design"))


def run_loop(args) -> int:
    """`loop`: the settings from the options, then `design.loop.run_loop`."""
    from atlas_bayes.design.loop import LoopSettings, run_loop as loop
    from atlas_bayes.fitting.summary import json_safe

    if args.tokens and args.tokens_per_param:
        raise BadInput("give either --tokens or --tokens-per-param, not both")
    base = read_json_or_fail(args.train_config, "--train-config") if args.train_config else {}
    if not isinstance(base, dict):
        raise BadInput(f"--train-config {args.train_config}: expected a JSON object of config fields")
    start = read_runs_or_fail(args.runs)
    with bad_input(args.runs):
        status = loop(LoopSettings(
            runs=str(args.runs), target=args.target, budget=args.budget, k=args.k,
            shapes=args.shapes.split(",") if args.shapes else [], width=args.width,
            tokens=numbers(args.tokens, "--tokens"),
            tokens_per_param=numbers(args.tokens_per_param, "--tokens-per-param"),
            max_rounds=args.max_rounds, law=args.law, language=args.lang, seed=args.seed,
            cost_power=args.cost_power, max_draws=args.max_draws, train_base=base,
            sampler={"chains": args.chains, "warmup": args.warmup, "draws": args.draws},
            external=args.external), args.out, ingest=args.ingest,
            progress=not args.no_progress, start=start)
    print(json.dumps(json_safe(status)) if args.json else
          f"{status['stopped']}; log {args.out / 'rounds.jsonl'}, plot {args.out / 'width.png'}")
    return 0
