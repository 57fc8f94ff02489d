"""Fitting commands: `fit` (a law's posterior) and `compare` (laws judged the paper's way and by LOO)."""

import sys
from pathlib import Path

from atlas_bayes.cli import common, validate
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register `fit` and `compare`."""
    from atlas_bayes.tables.splits import SPLITS
    fit = common.command(commands, "fit", run_fit, common.RUNS)
    add = fit.add_argument
    add("--law", default="chinchilla", type=common.law_option(), help="law to fit: "
        f"{', '.join(law_names())} (default: chinchilla), {common.LAW_FILE_HELP}")
    add("--lang", help="evaluated language to fit when the table has several")
    add("--transfer-languages", help="ATLAS transfer languages K_t, comma separated (default: the "
        "3 most co-sampled with the target); joint laws: per target, as 'fr=en,es;sw=en'")
    add("--approx", choices=("svi", "flow", "laplace"), help="fast APPROXIMATE posterior instead "
        "of NUTS: svi (a full-rank normal), flow (a normalising flow) or laplace; the output says "
        "how each was checked against NUTS (benchmarks/approx_coverage.py)")
    add("--shared", help="joint laws: parameters common to every language, comma separated "
        "(E,A,B,alpha,beta), e.g. A,alpha when sizes are tied to data sizes")
    add("--tau-prior", type=Path, help="ATLAS laws: JSON priors for tau, {target: {source: [mean, "
        "sd]}} (as 'transfer' writes in tau_priors.json)")
    common.sampler_options(fit, "<law>", accept="law", shows="the readable summary")

    compare = common.command(commands, "compare", run_compare, common.RUNS)
    add = compare.add_argument
    add("--laws", default="chinchilla,dcsl,atlas", help="laws, comma separated (default: "
        "%(default)s); law files path.py[:NAME] too")
    add("--split", default=",".join(SPLITS), help="held-out splits, comma separated (default: "
        "%(default)s); one the table cannot give is reported in its error column")
    add("--lang", help="target languages, comma separated (default: every evaluated language)")
    add("--no-loo", action="store_true", help="skip the PSIS-LOO comparison")
    common.sampler_options(compare, "compare", accept="law", shows="the readable tables",
                           seed="sampler seed and the random split's seed")


def run_fit(args) -> int:
    """Fit a scaling law's posterior to a run table (see docs/data-format.md)."""
    from atlas_bayes.fitting.files import parse_transfer_languages, read_tau_prior
    from atlas_bayes.fitting.summary import fit_result
    options = {"shared": args.shared.split(",")} if args.shared else {}
    if args.tau_prior:
        with common.bad_input(f"--tau-prior {args.tau_prior}"):
            options["tau_prior"] = read_tau_prior(args.tau_prior)
    with common.bad_input("--transfer-languages"):
        transfer = parse_transfer_languages(args.transfer_languages)
    return common.call_and_report(
        args, args.law, fit_result, args.law, language=args.lang, options=options,
        transfer_languages=transfer,
        check=lambda runs: validate.transfer_languages(runs, transfer, args.law, args.lang))


def run_compare(args) -> int:
    """Compare laws by R² on the paper's held-out splits (with coverage) and by PSIS-LOO."""
    from atlas_bayes.decisions import comparison
    from atlas_bayes.decisions.comparison_result import compare_laws
    with common.bad_input():
        laws, splits = comparison.law_names(args.laws), comparison.split_names(args.split)
    runs = common.read_runs_or_fail(args.runs)
    with common.bad_input(args.runs):
        languages = comparison.evaluated_languages(runs, args.lang)
    result = compare_laws(runs, laws, splits, sampler=common.sampler_from(args),
                          languages=languages, seed=args.seed, loo=not args.no_loo,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))
    return common.report(result, args, common.output_folder(args, "compare"))

