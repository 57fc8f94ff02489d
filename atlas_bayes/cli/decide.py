"""Decision commands: `curse`, `crossover`, `transfer` and `optimal`."""

from atlas_bayes.cli import common, validate
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register `curse`, `crossover`, `transfer` and `optimal`."""
    positive = common.positive_float
    curse = common.command(commands, "curse", run_curse, f"{common.RUNS} with mix_<lang> columns")
    add = curse.add_argument
    add("--from-k", type=common.positive_int, required=True, help="number of languages to start from")
    add("--to-k", type=common.positive_int, required=True, help="number of languages to go to")
    add("--n-params", type=positive, help="starting model size, with --tokens (default: "
        "a compute-optimal start)")
    add("--tokens", type=positive, help="starting total training tokens at --from-k languages")
    add("--lang", help="language to report for a --per-language fit")
    add("--per-language", action="store_true", help="per-language parameters pooled across "
        "languages (law curse-h) instead of one pooled law")
    common.sampler_options(curse, "curse", accept=0.95,
                           why=": E, B and beta form a curved ridge when beta is small")

    cross = common.command(commands, "crossover", run_crossover, "run table with scratch runs and "
                           "runs continued from a checkpoint (init not 'scratch', with init_tokens)")
    add = cross.add_argument
    add("--lang", required=True, help="target language")
    add("--n-params", type=positive, help="model size (required when the language has several)")
    add("--budget", type=positive, help="token budget of the planned run: P(no crossover within it)")
    common.sampler_options(cross, "crossover", warmup=500, accept="model")

    transfer = common.command(commands, "transfer", run_transfer, "run table with monolingual and "
                              "50/50 bilingual runs (mix_<lang> columns, learning-curve checkpoints)")
    add = transfer.add_argument
    add("--target", required=True, help="target language(s) to rank sources for, comma separated")
    add("--n-params", type=positive, help="model size to use when the table has several")
    add("--horizon", type=positive, help="reference horizon d_mono in tokens (default: a quarter "
        "of the shortest run's final tokens)")
    add("--languages", help="extra languages for the matrix, comma separated (their pairs are "
        "predicted from language metadata)")
    add("--tau-priors-for", type=common.positive_int, default=3, metavar="K", help="write tau "
        "priors of each target's K best sources to tau_priors.json, for 'fit --tau-prior' (default 3)")
    add("--model", choices=("additive", "interaction"), default="additive", help="matrix model: "
        "source and target effects and covariates (default), or with a source x target "
        "interaction, a pair term and per-target heavy-tailed noise (better held-out error on the "
        "paper's matrix, but not yet converging reliably there: benchmarks/RESULTS.md, Issue 20)")
    add("--rank", type=common.positive_int, default=2, help="interaction factors (default 2)")
    common.sampler_options(transfer, "transfer", warmup=500, accept="model")

    optimal = common.command(commands, "optimal", run_optimal, f"{common.RUNS}, or a posterior.nc "
                             "written by 'fit' / 'optimal' (then no fit is run)")
    add = optimal.add_argument
    add("--lang", help="language to allocate for (default: the fit's first)")
    add("--compute", type=positive, required=True, help="compute budget in FLOPs (C = 6 N D)")
    add("--law", default="atlas", type=common.law_option(decisions=True),
        help=f"law to fit: {', '.join(law_names(decisions=True))} (default: atlas; ignored "
        f"for a posterior.nc), {common.LAW_FILE_HELP}")
    add("--unique-tokens", type=positive, help="unique tokens of the language (default: the run "
        "table's; none recorded means never repeated)")
    common.sampler_options(optimal, "optimal", accept="law")
    common.accept_unconverged_option(optimal)


def run_curse(args) -> int:
    """Iso-loss scaling when adding languages: how model size, tokens and compute must grow."""
    from atlas_bayes.decisions.curse import curse_study
    if (args.n_params is None) != (args.tokens is None):
        raise common.BadInput("give both --n-params and --tokens for a starting run, or neither "
                              "(a compute-optimal start)")
    return common.call_and_report(
        args, "curse", curse_study, args.from_k, args.to_k, n_params=args.n_params,
        n_tokens=args.tokens, language=args.lang, per_language=args.per_language,
        check=lambda runs: validate.evaluated_language(runs, args.lang))


def run_crossover(args) -> int:
    """When pretraining from scratch beats finetuning a multilingual checkpoint.

    Fits scratch and finetune learning curves per (language, model size) and reports the crossover
    tokens and compute; at a size without runs, from the power law C = k N^gamma."""
    from atlas_bayes.decisions.crossover_result import crossover_decision
    return common.call_and_report(
        args, "crossover", crossover_decision, args.lang, budget=args.budget, n_params=args.n_params,
        always=Warning, echo=UserWarning, check=lambda runs: validate.crossover_language(runs, args.lang))


def run_transfer(args) -> int:
    """Bilingual transfer scores and the transfer matrix; rank sources for targets.

    The matrix model (--model interaction) adds to source and target effects a low-rank source x
    target interaction; the pairs it moves most from the additive prediction are listed and
    written to interaction.csv."""
    from atlas_bayes.decisions.transfer_result import transfer_study
    return common.call_and_report(
        args, "transfer", transfer_study, args.target, languages=args.languages, n_params=args.n_params,
        horizon=args.horizon, tau_priors_for=args.tau_priors_for, model=args.model, rank=args.rank,
        always=Warning, echo=UserWarning,
        check=lambda runs: validate.transfer_targets(runs, args.target, args.languages))


def run_optimal(args) -> int:
    """Compute-optimal model size, tokens and loss for a language and budget."""
    from atlas_bayes.decisions.optimal import check_minimum_compute, optimal_study
    from atlas_bayes.fitting.files import read_source
    with common.bad_input():
        check_minimum_compute(args.compute)
    return common.call_and_report(args, "optimal", optimal_study, args.compute, law=args.law,
                                  language=args.lang, unique_tokens=args.unique_tokens, read=read_source,
                                  accept_unconverged=args.accept_unconverged)
