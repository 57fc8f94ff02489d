"""Decision commands: `curse`, `crossover`, `transfer` and `optimal`."""

from __future__ import annotations

from atlas_bayes.cli.common import (BadInput, bad_input, command, library_call, output_folder,
                                    positive_float, positive_int, read_runs_or_fail, read_source,
                                    report, sampler_and_output_options, sampler_from)
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    curse = command(
        commands, "curse", "iso-loss scaling when adding languages (curse of multilinguality)",
        "Fit the curse-of-multilinguality law and report, with credible intervals, how model size, "
        "tokens and compute must grow to keep the loss when going from --from-k to --to-k "
        "languages.", run_curse, runs="run table file (.csv or .parquet) with mix_<lang> columns")
    add = curse.add_argument
    add("--from-k", type=positive_float, required=True)
    add("--to-k", type=positive_float, required=True)
    add("--n-params", type=positive_float,
        help="starting model size (with --tokens); default: a compute-optimal start")
    add("--tokens", type=positive_float, help="starting total training tokens at --from-k languages")
    add("--lang", help="language to report for a --per-language fit")
    add("--per-language", action="store_true", help="per-language parameters pooled across "
        "languages (law curse-h) instead of one pooled law")
    sampler_and_output_options(curse, "curse", target_accept=0.95, accept_help="NUTS target "
                               "acceptance (default 0.95: E, B and beta form a curved ridge when "
                               "beta is small)")

    cross = command(
        commands, "crossover", "when pretraining from scratch beats finetuning a multilingual "
        "checkpoint", "Fit scratch and finetune learning curves per (language, model size) and "
        "report the crossover tokens and compute with credible intervals; at a size without runs, "
        "predict from the power law C = k N^gamma.", run_crossover, runs="run table with scratch "
        "runs and runs continued from a checkpoint (init not 'scratch', with init_tokens)")
    cross.add_argument("--lang", required=True, help="target language")
    cross.add_argument("--n-params", type=positive_float,
                       help="model size (required when the language has several)")
    cross.add_argument("--budget", type=positive_float,
                       help="token budget of the planned run: P(no crossover within it)")
    sampler_and_output_options(cross, "crossover", warmup=500)

    transfer = command(
        commands, "transfer", "bilingual transfer scores and the transfer matrix; rank sources for "
        "a target", "Compute the bilingual transfer score (BTS) of every measured pair from its "
        "monolingual and 50/50 bilingual learning curves, fit the transfer matrix over all pairs "
        "(measured or not), and rank transfer languages for targets.", run_transfer,
        runs="run table with monolingual and 50/50 bilingual runs (mix_<lang> columns, "
             "learning-curve checkpoints)")
    add = transfer.add_argument
    add("--target", required=True, help="target language(s) to rank sources for, comma separated")
    add("--n-params", type=positive_float, help="model size to use when the table has several")
    add("--horizon", type=positive_float, help="reference horizon d_mono in tokens (default: a "
        "quarter of the shortest run's final tokens)")
    add("--languages", help="extra languages to include in the matrix, comma separated (their "
        "pairs are predicted from language metadata)")
    add("--tau-priors-for", type=positive_int, default=3, metavar="K", help="write ATLAS tau "
        "priors for each target's K best sources (tau_priors.json, for 'fit --tau-prior'; default 3)")
    sampler_and_output_options(transfer, "transfer", warmup=500)

    optimal = command(
        commands, "optimal", "compute-optimal model size and tokens for a language and budget",
        "Fit a law (or read a saved posterior.nc) and report the posterior of the compute-optimal "
        "N*, D* and predicted loss at compute C = 6ND, repetition-aware when the language's unique "
        "tokens are finite, with a trajectory plot.", run_optimal, runs="run table file (.csv or "
        ".parquet), or a posterior.nc written by 'fit' / 'optimal' (then no fit is run)")
    add = optimal.add_argument
    add("--lang", help="language to allocate for (default: the fit's first)")
    add("--compute", type=positive_float, required=True, help="compute budget in FLOPs (C = 6 N D)")
    add("--law", default="atlas", choices=law_names(decisions=True),
        help="law to fit (default: atlas; ignored for a posterior.nc)")
    add("--unique-tokens", type=positive_float, help="unique tokens U of the language (default: "
        "from the run table; none recorded means never repeated)")
    sampler_and_output_options(optimal, "optimal", target_accept=0.9)


def run_curse(args) -> int:
    """`curse`: iso-loss multipliers for going from --from-k to --to-k languages."""
    from atlas_bayes.decisions.curse import curse_study

    if (args.n_params is None) != (args.tokens is None):
        raise BadInput("give both --n-params and --tokens for a starting run, or neither "
                       "(a compute-optimal start)")
    runs = read_runs_or_fail(args.runs)
    with library_call(args.runs):
        result = curse_study(runs, args.from_k, args.to_k, sampler=sampler_from(args),
                             n_params=args.n_params, n_tokens=args.tokens, language=args.lang,
                             per_language=args.per_language, progress=not args.json)
    return report(result, args, output_folder(args, "curse"))


def run_crossover(args) -> int:
    """`crossover`: when pretraining from scratch beats finetuning, for one language and size."""
    from atlas_bayes.decisions.crossover_result import crossover_decision

    runs = read_runs_or_fail(args.runs)
    with library_call(args.runs, always=Warning, echo=UserWarning):
        result = crossover_decision(runs, args.lang, sampler=sampler_from(args), budget=args.budget,
                                    n_params=args.n_params, progress=not args.json)
    return report(result, args, output_folder(args, "crossover"))


def run_transfer(args) -> int:
    """`transfer`: BTS of the measured pairs, the transfer matrix, rankings and tau priors."""
    from atlas_bayes.decisions.transfer_result import transfer_study

    runs = read_runs_or_fail(args.runs)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    extra = [t.strip() for t in (args.languages or "").split(",") if t.strip()]
    with library_call(args.runs, always=Warning, echo=UserWarning):
        result = transfer_study(runs, targets, languages=extra,
                                sampler=sampler_from(args), n_params=args.n_params,
                                horizon=args.horizon, tau_priors_for=args.tau_priors_for,
                                progress=not args.json)
    return report(result, args, output_folder(args, "transfer"))


def run_optimal(args) -> int:
    """`optimal`: the compute-optimal allocation at --compute, from a run table or posterior.nc."""
    from atlas_bayes.decisions.optimal import check_minimum_compute, optimal_study

    with bad_input():
        check_minimum_compute(args.compute)
    with library_call(args.runs):
        result = optimal_study(read_source(args.runs), args.compute, law=args.law,
                               language=args.lang, unique_tokens=args.unique_tokens,
                               sampler=sampler_from(args), progress=not args.json)
    return report(result, args, output_folder(args, "optimal"))
