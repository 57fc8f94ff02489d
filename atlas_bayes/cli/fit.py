"""Fitting commands: `fit` (a law's posterior) and `compare` (laws judged the paper's way and by LOO)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


from atlas_bayes.cli.common import (BadInput, echo_warnings, positive_int,
                                    read_json_or_fail, read_runs_or_fail)
from atlas_bayes.models import law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    fit = commands.add_parser("fit", help="fit a scaling law's posterior to a run table",
                              description="Fit a scaling law's posterior to a run table "
                                          "(CSV or Parquet; see docs/data-format.md).")
    fit.add_argument("runs", help="run table file (.csv or .parquet)")
    fit.add_argument("--law", default="chinchilla", choices=law_names(),
                     help="scaling law to fit (default: chinchilla)")
    fit.add_argument("--lang", help="evaluated language to fit when the table has several")
    fit.add_argument("--transfer-languages",
                     help="ATLAS transfer languages K_t, comma separated (default: the three "
                          "languages most often co-sampled with the target); for joint laws "
                          "per target as 'fr=en,es;sw=en' (targets not named keep the default)")
    fit.add_argument("--approx", choices=("svi", "laplace"),
                     help="fast approximate posterior instead of NUTS (interactive use; "
                          "narrower than NUTS, see benchmarks/hierarchical_speed.py)")
    fit.add_argument("--shared",
                     help="joint laws: parameters common to every language, comma separated "
                          "(E,A,B,alpha,beta), e.g. A,alpha when sizes are tied to data sizes")
    fit.add_argument("--tau-prior", type=Path,
                     help="ATLAS laws: JSON file of priors for tau, {target: {source: [mean, sd]}} "
                          "(written by 'atlas-bayes transfer' as tau_priors.json)")
    fit.add_argument("--out", type=Path,
                     help="output folder (default: results/<runs file>-<law>)")
    fit.add_argument("--chains", type=positive_int, default=4)
    fit.add_argument("--draws", type=positive_int, default=1000, help="draws per chain")
    fit.add_argument("--warmup", type=positive_int, default=1000, help="warmup steps per chain")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--target-accept", type=float, default=0.9)
    fit.add_argument("--json", action="store_true",
                     help="print one JSON object on stdout instead of the readable summary")
    fit.set_defaults(handler=run_fit)

    from atlas_bayes.tables.splits import SPLITS
    compare = commands.add_parser(
        "compare", help="compare laws on the paper's held-out splits and by PSIS-LOO",
        description="Fit each law on each held-out split (the ATLAS paper's R², with posterior "
                    "intervals and predictive coverage) and on all rows (PSIS-LOO).")
    compare.add_argument("runs", help="run table file (.csv or .parquet)")
    compare.add_argument("--laws", default="chinchilla,dcsl,atlas",
                         help="laws to compare, comma separated (default: chinchilla,dcsl,atlas)")
    compare.add_argument("--split", default=",".join(SPLITS),
                         help=f"held-out splits, comma separated (default: {','.join(SPLITS)}); "
                              "one the table cannot give is reported in its error column")
    compare.add_argument("--lang", help="target languages, comma separated (default: every "
                                        "evaluated language)")
    compare.add_argument("--chains", type=positive_int, default=4)
    compare.add_argument("--draws", type=positive_int, default=1000, help="draws per chain")
    compare.add_argument("--warmup", type=positive_int, default=1000, help="warmup steps per chain")
    compare.add_argument("--seed", type=int, default=0,
                         help="sampler seed and the random split's seed")
    compare.add_argument("--no-loo", action="store_true", help="skip the PSIS-LOO comparison")
    compare.add_argument("--out", type=Path,
                         help="output folder (default: results/<runs file>-compare)")
    compare.add_argument("--json", action="store_true",
                         help="print one JSON object on stdout instead of the readable tables")
    compare.set_defaults(handler=run_compare)


def run_fit(args) -> int:
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Approximation, Sampler, fit, save
    from atlas_bayes.fitting.plots import plot_fit
    from atlas_bayes.fitting.summary import format_summary, summary_dict

    runs = read_runs_or_fail(args.runs)

    out = args.out or Path("results") / f"{Path(args.runs).stem}-{args.law}"
    transfer = _transfer_option(args.transfer_languages)
    if args.approx:
        sampler = Approximation(args.approx, seed=args.seed)
    else:
        sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                          seed=args.seed, target_accept=args.target_accept)
    options = {"shared": args.shared.split(",")} if args.shared else {}
    if args.tau_prior:
        options["tau_prior"] = read_json_or_fail(args.tau_prior, "--tau-prior")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            tree = fit(runs, args.law, language=args.lang, transfer_languages=transfer,
                       sampler=sampler, options=options, progress=not args.json)
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    echo_warnings(caught)

    out.mkdir(parents=True, exist_ok=True)
    save(tree, out / "posterior.nc")
    plot_fit(tree, out / "fit.png")
    summary = summary_dict(tree)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.txt").write_text(format_summary(tree) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(tree))
        print(f"\nwrote {out / 'posterior.nc'}, {out / 'fit.png'}, {out / 'summary.json'}")
    return 0


def run_compare(args) -> int:
    import time

    from atlas_bayes.decisions import comparison
    from atlas_bayes.fitting.inference import Sampler

    try:
        laws = comparison.law_names(args.laws)
        splits = comparison.split_names(args.split)
    except ValueError as err:
        raise BadInput(str(err)) from None
    runs = read_runs_or_fail(args.runs)
    try:
        languages = comparison.evaluated_languages(runs, args.lang)
    except ValueError as err:
        raise BadInput(f"{args.runs}: {err}") from None
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    held = comparison.held_out_table(runs, laws, splits, sampler=sampler, languages=languages,
                                     seed=args.seed, progress=progress)
    loo = None if args.no_loo else comparison.loo_table(runs, laws, sampler=sampler,
                                                       languages=languages, progress=progress)
    seconds = time.perf_counter() - start

    out = args.out or Path("results") / f"{Path(args.runs).stem}-compare"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "held_out.csv", out / "held_out.png"]
    held.to_csv(written[0], index=False)
    comparison.plot_held_out(held, written[1])
    if loo is not None:
        written.append(out / "loo.csv")
        loo.to_csv(written[-1])
        if loo["elpd"].notna().any():
            written.append(out / "loo.png")
            comparison.plot_loo(loo, written[-1])
    if args.json:
        print(json.dumps({"laws": laws, "splits": splits,
                          "held_out": comparison.held_out_records(held),
                          "loo": comparison.loo_records(loo) if loo is not None else [],
                          "seconds": seconds}))
    else:
        print(comparison.format_comparison(held, loo))
        print(f"\nwrote {', '.join(map(str, written))}")
    return 0


def _transfer_option(text: str | None):
    """'en,es' -> a list; 'fr=en,es;sw=en' -> {target: list} (joint laws)."""
    if not text:
        return None
    if "=" not in text:
        return text.split(",")
    chosen = {}
    for part in filter(None, text.split(";")):
        target, _, sources = part.partition("=")
        if not target.strip() or not sources.strip():
            raise BadInput(f"--transfer-languages: expected TARGET=LANG[,LANG] in {part!r}")
        chosen[target.strip()] = [s.strip() for s in sources.split(",")]
    return chosen
