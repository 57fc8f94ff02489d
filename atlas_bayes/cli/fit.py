"""Fitting commands: `fit` (a law's posterior) and `compare` (laws judged the paper's way and by LOO)."""

from __future__ import annotations

import sys
from pathlib import Path

from atlas_bayes.cli.common import (RUNS, BadInput, bad_input, command, library_call, output_folder,
                                    read_json_or_fail, read_runs_or_fail, report,
                                    sampler_and_output_options, sampler_from)
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    fit = command(commands, "fit", "fit a scaling law's posterior to a run table", "Fit a scaling "
                  "law's posterior to a run table (CSV or Parquet; see docs/data-format.md).",
                  run_fit, runs=RUNS)
    add = fit.add_argument
    add("--law", default="chinchilla", choices=law_names(),
        help="scaling law to fit (default: chinchilla)")
    add("--lang", help="evaluated language to fit when the table has several")
    add("--transfer-languages", help="ATLAS transfer languages K_t, comma separated (default: the "
        "three languages most often co-sampled with the target); for joint laws per target as "
        "'fr=en,es;sw=en' (targets not named keep the default)")
    add("--approx", choices=("svi", "laplace"), help="fast approximate posterior instead of NUTS "
        "(interactive use; narrower than NUTS, see benchmarks/hierarchical_speed.py)")
    add("--shared", help="joint laws: parameters common to every language, comma separated "
        "(E,A,B,alpha,beta), e.g. A,alpha when sizes are tied to data sizes")
    add("--tau-prior", type=Path, help="ATLAS laws: JSON file of priors for tau, {target: {source: "
        "[mean, sd]}} (written by 'atlas-bayes transfer' as tau_priors.json)")
    sampler_and_output_options(fit, "<law>", target_accept=0.9, json_help="the readable summary")

    from atlas_bayes.tables.splits import SPLITS
    compare = command(
        commands, "compare", "compare laws on the paper's held-out splits and by PSIS-LOO",
        "Fit each law on each held-out split (the ATLAS paper's R², with posterior intervals and "
        "predictive coverage) and on all rows (PSIS-LOO).", run_compare, runs=RUNS)
    add = compare.add_argument
    add("--laws", default="chinchilla,dcsl,atlas",
        help="laws to compare, comma separated (default: chinchilla,dcsl,atlas)")
    add("--split", default=",".join(SPLITS), help=f"held-out splits, comma separated (default: "
        f"{','.join(SPLITS)}); one the table cannot give is reported in its error column")
    add("--lang", help="target languages, comma separated (default: every evaluated language)")
    add("--no-loo", action="store_true", help="skip the PSIS-LOO comparison")
    sampler_and_output_options(compare, "compare", json_help="the readable tables",
                               seed_help="sampler seed and the random split's seed")


def run_fit(args) -> int:
    """`fit`: a law's posterior, its summary, plot and files."""
    from atlas_bayes.fitting.summary import fit_result

    runs = read_runs_or_fail(args.runs)
    transfer = _transfer_option(args.transfer_languages)
    options = {"shared": args.shared.split(",")} if args.shared else {}
    if args.tau_prior:
        options["tau_prior"] = read_json_or_fail(args.tau_prior, "--tau-prior")
    with library_call(args.runs):
        result = fit_result(runs, args.law, language=args.lang, transfer_languages=transfer,
                            sampler=sampler_from(args), options=options, progress=not args.json)
    return report(result, args, output_folder(args, args.law))


def run_compare(args) -> int:
    """`compare`: held-out scores and PSIS-LOO of several laws."""
    from atlas_bayes.decisions import comparison
    from atlas_bayes.decisions.comparison_result import compare_laws

    with bad_input():
        laws, splits = comparison.law_names(args.laws), comparison.split_names(args.split)
    runs = read_runs_or_fail(args.runs)
    with bad_input(args.runs):
        languages = comparison.evaluated_languages(runs, args.lang)
    result = compare_laws(runs, laws, splits, sampler=sampler_from(args), languages=languages,
                          seed=args.seed, loo=not args.no_loo,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))
    return report(result, args, output_folder(args, "compare"))


def _transfer_option(text: str | None):
    """'en,es' -> a list; 'fr=en,es;sw=en' -> {target: list} (joint laws)."""
    if not text or "=" not in text:
        return text.split(",") if text else None
    chosen = {}
    for part in filter(None, text.split(";")):
        target, _, sources = part.partition("=")
        if not target.strip() or not sources.strip():
            raise BadInput(f"--transfer-languages: expected TARGET=LANG[,LANG] in {part!r}")
        chosen[target.strip()] = [s.strip() for s in sources.split(",")]
    return chosen
