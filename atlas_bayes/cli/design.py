"""Design commands: `design` (which runs to pay for next) and `loop` (design, train, refit)."""

import contextlib
from pathlib import Path

from atlas_bayes.cli import common, validate
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register `design` and `loop`, which share the target and the candidates' options."""
    positive, count = common.positive_float, common.positive_int
    design = common.command(commands, "design", run_design, f"{common.RUNS}, or a posterior.nc")
    loop = common.command(commands, "loop", run_loop, "the starting run table (.csv or .parquet)")
    for parser, k, budget in ((design, 4, "the batch"), (loop, 2, "all the loop's runs together")):
        add = parser.add_argument
        add("--target", default="params", help="what to learn: params, loss@N=1e9,D=2e10, "
            "nstar@C=1e21, crossover:sw@2e9 or bts:en->sw[@N] (default: params)")
        add("--budget", type=positive, required=parser is loop, help=f"FLOPs for {budget}")
        add("--k", type=count, default=k, help=f"runs chosen per batch or round (default {k})")
        add("--law", default="chinchilla", type=common.law_option(decisions=True),
            help=f"law to fit: {', '.join(law_names(decisions=True))} (default: chinchilla; ignored "
            f"for a posterior.nc), {common.LAW_FILE_HELP}")
        add("--lang", help="language to fit and design for (default: the fit's first)")
        add("--tokens", help="token budgets of candidate runs, comma separated")
        add("--tokens-per-param", help="or tokens per parameter (default 5,10,20,40,80)")
        add("--cost-power", type=common.nonnegative_float, default=1.0,
            help="rank by gain / cost^P (1: per FLOP, default; 0: gain alone)")
        add("--max-draws", type=common.design_draws, default=512,
            help="posterior draws for the EIG (default 512)")

    add, grid = design.add_argument, design.add_mutually_exclusive_group().add_argument
    grid("--candidates", type=Path,
         help="candidate runs (.csv or .jsonl: n_params, n_tokens[, model, language, mixture, cost])")
    grid("--shapes", help="trainer shapes, comma separated (e.g. s0,s2,s4), or 'all'")
    grid("--n-params", help="model sizes, comma separated (default: 10 from the data's smallest "
         "to 10x its largest)")
    add("--eval-tokens", type=common.nonnegative_float, default=0.0,
        help="evaluated tokens per run, costing 2N each")
    add("--unique-tokens", type=positive, help="unique tokens of the language (default: the table's)")
    common.sampler_options(design, "design", accept="law")
    common.accept_unconverged_option(design)
    add("--plan", type=Path, help="write the chosen runs as a trainer plan (JSONL) here; needs --shapes "
        "or a 'model' column of shapes (--out PLAN.jsonl: the same, other outputs beside it)")

    add = loop.add_argument
    add("--out", type=Path, required=True, help="output folder (the loop's state)")
    add("--width", type=positive, help="stop when the target's 90%% interval is narrower (in its "
        "own units: log loss, log N*, log tokens, g)")
    add("--max-rounds", type=count, help="stop after this many rounds")
    add("--shapes", help="trainer shapes of candidate runs, comma separated")
    common.sampler_options(loop, None, chains=2, draws=500, warmup=500, accept="law",
                           shows="the status line")
    add("--train-config", type=Path, help="JSON of trainer config fields added to every run "
        "(corpus, seq_len, batch_size, lr, eval_every, ...)")
    add("--external", action="store_true", help="write each round's plan and stop; an external "
        "runner trains it and puts the rows in OUT/round-R/results.csv (or --ingest FILE)")
    add("--ingest", type=Path, help="run table holding the planned runs' rows")
    add("--no-progress", action="store_true", help="no progress messages or bars")
    loop.add_argument("--accept-unconverged", action="store_true", help="design the next round "
                      "even from a fit that failed its convergence checks (they are still shown)")
    common.ray_option(loop, "each round's runs as Ray tasks")


def run_design(args) -> int:
    """Choose the next most informative training runs for a budget.

    Fits a law (or reads a posterior.nc; crossover: and bts: targets fit their curves instead),
    scores candidate runs by expected information gain about the target per FLOP and chooses k
    complementary runs within the budget; optionally writes a trainer plan."""
    from atlas_bayes import design as lib
    from atlas_bayes.fitting.files import read_source
    plan, out = args.plan, args.out
    if out is not None and out.suffix == ".jsonl":       # --out plan.jsonl, as the issue spells it
        plan, out = plan or out, out.parent
    options = lib.CandidateOptions(
        file=args.candidates, n_params=common.numbers(args.n_params, "--n-params"),
        tokens=common.numbers(args.tokens, "--tokens"), eval_tokens=args.eval_tokens,
        tokens_per_param=common.numbers(args.tokens_per_param, "--tokens-per-param"),
        shapes=None if not args.shapes else "all" if args.shapes == "all" else args.shapes.split(","))
    check_design_inputs(options, plan)
    with common.library_call(args.runs, plain=lib.OptionError):
        study = lib.study_for(lib.parse_target(args.target), law=args.law, language=args.lang,
                              unique_tokens=args.unique_tokens, run_folder=Path(args.runs).parent)
        study.check(options, runs_given=Path(args.runs).suffix != ".nc")
        result = lib.make_design(
            study, common.read_runs_or_fail(args.runs, read_source), sampler=common.sampler_from(args),
            options=options, k=args.k, budget=args.budget, cost_power=args.cost_power,
            max_draws=args.max_draws, seed=args.seed, plan=plan, progress=not args.json,
            accept_unconverged=args.accept_unconverged)
    return common.report(result, args, out or common.output_folder(args, "design"))


def run_loop(args) -> int:
    """Design, train and refit until the budget is spent or the target is known.

    Each round chooses a batch as 'design' does, trains it with the companion trainer (or writes
    the plan for an external runner and stops), adds the runs to the table and refits; the loop
    stops at --budget, --width or --max-rounds. OUT holds the state: rerun to continue."""
    from atlas_bayes.design import loop
    validate.trainer_shapes(args.shapes.split(",") if args.shapes else None)
    validate.input_file(args.ingest, "--ingest")
    if args.ray is not None and args.external:
        raise common.BadInput("--ray trains the rounds' runs, --external leaves them to another "
                              "runner: choose one")
    with common.bad_input(f"--train-config {args.train_config}"):
        base = loop.read_train_base(args.train_config)
    start = common.read_runs_or_fail(args.runs)
    with contextlib.ExitStack() as stack, common.bad_input(args.runs, plain=loop.OptionError):
        ray_session(args.ray, stack)
        status = loop.run_loop(loop.LoopSettings(
            runs=str(args.runs), target=args.target, budget=args.budget, k=args.k,
            shapes=args.shapes.split(",") if args.shapes else [], width=args.width,
            tokens=common.numbers(args.tokens, "--tokens"),
            tokens_per_param=common.numbers(args.tokens_per_param, "--tokens-per-param"),
            max_rounds=args.max_rounds, law=args.law, language=args.lang, seed=args.seed,
            cost_power=args.cost_power, max_draws=args.max_draws, train_base=base,
            sampler={"chains": args.chains, "warmup": args.warmup, "draws": args.draws,
                     # only when given: a loop folder's saved settings stay as they were
                     **({"target_accept": args.target_accept} if args.target_accept else {})},
            external=args.external, accept_unconverged=args.accept_unconverged), args.out,
            ingest=args.ingest, progress=not args.no_progress, start=start, ray=args.ray)
    return common.report(status, args, args.out)


def ray_session(address, stack: contextlib.ExitStack) -> None:
    """Open one Ray for all the loop's rounds in `stack` when --ray is given
    (`trainers.ray_session.session`); BadInput when it is not installed or not reached."""
    if address is None:
        return
    try:
        from atlas_bayes.trainers.ray_session import import_ray, session
        import_ray()
    except ImportError as err:
        raise common.BadInput(str(err)) from None
    with common.bad_input(f"--ray {address}", errors=ConnectionError):
        stack.enter_context(session(address))


def check_design_inputs(options, plan) -> None:
    """Before the fit: named trainer shapes exist; the candidate file reads, and with a plan its
    `model` column names trainer shapes."""
    if options.shapes != "all":
        validate.trainer_shapes(options.shapes)
    if plan is not None and options.file is None and options.n_params is not None:
        raise validate.BadInput("--plan writes trainer configs, which need trainer shapes: give "
                                "--shapes (names or 'all') instead of --n-params")
    validate.plan_candidates(options.file, plan is not None, options.eval_tokens)
