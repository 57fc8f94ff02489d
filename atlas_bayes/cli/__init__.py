"""The `atlas-bayes` command line.

May import: every layer (tables, fitting, decisions, design, trainers); nothing imports cli.

    atlas-bayes fit RUNS --law {chinchilla,dcsl,atlas,atlas-h,...} [--out DIR] [--chains N] [--draws N]
                    [--approx svi|laplace] [--shared A,alpha] [--transfer-languages fr=en,es] [--json]
    atlas-bayes compare RUNS --laws csl,dcsl,atlas [--split random,N,D,C,M] [--lang CODE[,CODE]]
                        [--no-loo] [--out DIR] [--json]
    atlas-bayes curse RUNS --from-k 8 --to-k 16 [--n-params N --tokens D] [--per-language]
                        [--lang CODE] [--out DIR] [--json]
    atlas-bayes crossover RUNS --lang sw [--n-params 2e9] [--budget TOKENS] [--out DIR] [--json]
    atlas-bayes transfer RUNS --target ca[,fr] [--n-params N] [--horizon D] [--languages CODES]
                         [--tau-priors-for 3] [--out DIR] [--json]
    atlas-bayes optimal RUNS --lang CODE --compute C [--law atlas] [--unique-tokens U]
                        [--out DIR] [--json]
    atlas-bayes design RUNS|posterior.nc --target loss@N=1e9,D=2e10 [--budget C] [--k 4]
                       [--shapes s0,s4 | --n-params ... | --candidates FILE] [--plan plan.jsonl]
                       [--out DIR] [--json]        (targets: params, loss@.., nstar@C=..,
                                                    crossover:LANG@N, bts:SRC->TGT[@N])
    atlas-bayes loop RUNS --out DIR --target T --budget C --shapes t0,t1 --tokens ...
                     [--k 2] [--width W] [--max-rounds R] [--train-config base.json] [--external]
    atlas-bayes adapt {epoch_chinchilla,datablations,datablations_curves,goldfish} PATH --out FILE

Bad input prints one clear message to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import warnings
from pathlib import Path

from atlas_bayes.models import get_law, law_names

EXIT_BAD_INPUT = 2
# laws whose posterior the decision commands (optimal, design) can read



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BadInput as err:
        print(f"atlas-bayes: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


class BadInput(Exception):
    """Input the user must fix; reported without a traceback."""


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="atlas-bayes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

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
    fit.add_argument("--chains", type=_positive_int, default=4)
    fit.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain")
    fit.add_argument("--warmup", type=_positive_int, default=1000, help="warmup steps per chain")
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
    compare.add_argument("--chains", type=_positive_int, default=4)
    compare.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain")
    compare.add_argument("--warmup", type=_positive_int, default=1000, help="warmup steps per chain")
    compare.add_argument("--seed", type=int, default=0,
                         help="sampler seed and the random split's seed")
    compare.add_argument("--no-loo", action="store_true", help="skip the PSIS-LOO comparison")
    compare.add_argument("--out", type=Path,
                         help="output folder (default: results/<runs file>-compare)")
    compare.add_argument("--json", action="store_true",
                         help="print one JSON object on stdout instead of the readable tables")
    compare.set_defaults(handler=run_compare)

    curse = commands.add_parser(
        "curse", help="iso-loss scaling when adding languages (curse of multilinguality)",
        description="Fit the curse-of-multilinguality law and report, with credible intervals, "
                    "how model size, tokens and compute must grow to keep the loss when going "
                    "from --from-k to --to-k languages.")
    curse.add_argument("runs", help="run table file (.csv or .parquet) with mix_<lang> columns")
    curse.add_argument("--from-k", type=_positive_float, required=True)
    curse.add_argument("--to-k", type=_positive_float, required=True)
    curse.add_argument("--n-params", type=_positive_float,
                       help="starting model size (with --tokens); default: a compute-optimal start")
    curse.add_argument("--tokens", type=_positive_float,
                       help="starting total training tokens at --from-k languages")
    curse.add_argument("--lang", help="language to report for a --per-language fit")
    curse.add_argument("--per-language", action="store_true",
                       help="per-language parameters pooled across languages (law curse-h) "
                            "instead of one pooled law")
    _sampler_and_output_options(curse, "curse", target_accept=0.95,
                                target_accept_help="NUTS target acceptance (default 0.95: E, B "
                                                   "and beta form a curved ridge when beta is small)")
    curse.set_defaults(handler=run_curse)

    cross = commands.add_parser(
        "crossover", help="when pretraining from scratch beats finetuning a multilingual checkpoint",
        description="Fit scratch and finetune learning curves per (language, model size) and "
                    "report the crossover tokens and compute with credible intervals; at a size "
                    "without runs, predict from the power law C = k N^gamma.")
    cross.add_argument("runs", help="run table with scratch runs and runs continued from a "
                                    "checkpoint (init not 'scratch', with init_tokens)")
    cross.add_argument("--lang", required=True, help="target language")
    cross.add_argument("--n-params", type=_positive_float,
                       help="model size (required when the language has several)")
    cross.add_argument("--budget", type=_positive_float,
                       help="token budget of the planned run: P(no crossover within it)")
    _sampler_and_output_options(cross, "crossover", warmup=500)
    cross.set_defaults(handler=run_crossover)

    transfer = commands.add_parser(
        "transfer", help="bilingual transfer scores and the transfer matrix; rank sources for a target",
        description="Compute the bilingual transfer score (BTS) of every measured pair from its "
                    "monolingual and 50/50 bilingual learning curves, fit the transfer matrix "
                    "over all pairs (measured or not), and rank transfer languages for targets.")
    transfer.add_argument("runs", help="run table with monolingual and 50/50 bilingual runs "
                                       "(mix_<lang> columns, learning-curve checkpoints)")
    transfer.add_argument("--target", required=True,
                          help="target language(s) to rank sources for, comma separated")
    transfer.add_argument("--n-params", type=_positive_float,
                          help="model size to use when the table has several")
    transfer.add_argument("--horizon", type=_positive_float,
                          help="reference horizon d_mono in tokens (default: a quarter of the "
                               "shortest run's final tokens)")
    transfer.add_argument("--languages",
                          help="extra languages to include in the matrix, comma separated "
                               "(their pairs are predicted from language metadata)")
    transfer.add_argument("--tau-priors-for", type=_positive_int, default=3, metavar="K",
                          help="write ATLAS tau priors for each target's K best sources "
                               "(tau_priors.json, for 'fit --tau-prior'; default 3)")
    _sampler_and_output_options(transfer, "transfer", warmup=500)
    transfer.set_defaults(handler=run_transfer)

    optimal = commands.add_parser(
        "optimal", help="compute-optimal model size and tokens for a language and budget",
        description="Fit a law (or read a saved posterior.nc) and report the posterior of the "
                    "compute-optimal N*, D* and predicted loss at compute C = 6ND, repetition-"
                    "aware when the language's unique tokens are finite, with a trajectory plot.")
    optimal.add_argument("runs", help="run table file (.csv or .parquet), or a posterior.nc "
                                      "written by 'fit' / 'optimal' (then no fit is run)")
    optimal.add_argument("--lang", help="language to allocate for (default: the fit's first)")
    optimal.add_argument("--compute", type=_positive_float, required=True,
                         help="compute budget in FLOPs (C = 6 N D)")
    optimal.add_argument("--law", default="atlas",
                         choices=law_names(decisions=True),
                         help="law to fit (default: atlas; ignored for a posterior.nc)")
    optimal.add_argument("--unique-tokens", type=_positive_float,
                         help="unique tokens U of the language (default: from the run table; "
                              "none recorded means never repeated)")
    _sampler_and_output_options(optimal, "optimal", target_accept=0.9)
    optimal.set_defaults(handler=run_optimal)

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
    design.add_argument("--budget", type=_positive_float, help="FLOPs for the whole batch")
    design.add_argument("--k", type=_positive_int, default=4, help="runs to choose (default 4)")
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
    design.add_argument("--max-draws", type=_positive_int, default=512,
                        help="posterior draws the estimator uses (default 512)")
    design.add_argument("--unique-tokens", type=_positive_float,
                        help="unique tokens U of the language (default: from the run table)")
    _sampler_and_output_options(design, "design", target_accept=0.9)
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
    loop.add_argument("--budget", type=_positive_float, required=True,
                      help="FLOPs for all the loop's runs together")
    loop.add_argument("--k", type=_positive_int, default=2, help="runs per round (default 2)")
    loop.add_argument("--width", type=_positive_float,
                      help="stop when the target's 90%% interval is narrower (its own units: "
                           "log loss, log N*, log tokens, g)")
    loop.add_argument("--max-rounds", type=_positive_int, help="stop after this many rounds")
    loop.add_argument("--shapes", help="trainer shapes of candidate runs, comma separated")
    loop.add_argument("--tokens", help="token budgets of candidate runs, comma separated")
    loop.add_argument("--tokens-per-param", help="or tokens per parameter (default 5,10,20,40,80)")
    loop.add_argument("--law", default="chinchilla", choices=law_names(decisions=True))
    loop.add_argument("--lang", help="language to fit and design for (default: the table's first)")
    loop.add_argument("--cost-power", type=float, default=1.0)
    loop.add_argument("--max-draws", type=_positive_int, default=512)
    loop.add_argument("--chains", type=_positive_int, default=2)
    loop.add_argument("--draws", type=_positive_int, default=500, help="draws per chain")
    loop.add_argument("--warmup", type=_positive_int, default=500)
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

    from atlas_bayes.tables.adapters import ADAPTERS
    adapt = commands.add_parser("adapt", help="convert a public data set into a run table",
                                description="Convert one of the public data sets (e.g. in "
                                            "../shared/data) into a run table file.")
    adapt.add_argument("dataset", choices=sorted(ADAPTERS))
    adapt.add_argument("path", help="the data set's file, or its folder")
    adapt.add_argument("--out", type=Path, required=True, help="run table to write (.csv or .parquet)")
    adapt.set_defaults(handler=run_adapt)

    train = commands.add_parser(
        "train", help="train byte-level models and write their learning curves to a run table",
        description="Train a run (or a plan of runs) with the companion Flax trainer and append "
                    "its learning curves (bits per byte per evaluation language) to OUT/runs.csv. "
                    "Rerunning resumes from the last checkpoint. Needs the 'train' extra.")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="one run's config (.json, .yaml or .yml)")
    source.add_argument("--plan", type=Path, help="a JSONL file of run configs, run in order")
    train.add_argument("--out", type=Path, default=Path("runs"),
                       help="output folder: runs.csv plus one folder per run (default: runs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)
    return parser


def run_train(args) -> int:
    try:
        from atlas_bayes.trainers.data import CorpusError
        from atlas_bayes.trainers.train import ConfigError, run_plan
    except ImportError as err:
        raise BadInput(f"training needs the 'train' extra ({err}); install it with "
                       "pip install -e '.[train]'") from None
    path = args.config or args.plan
    try:
        text = path.read_text(encoding="utf-8")
        if args.plan:
            configs = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            try:
                configs = [yaml.safe_load(text)]
            except yaml.YAMLError as err:
                raise ValueError(str(err)) from None
        else:
            configs = [json.loads(text)]
    except (OSError, ValueError) as err:
        raise BadInput(f"{path}: cannot read the run config: {err}") from None
    if not all(isinstance(c, dict) for c in configs):
        raise BadInput(f"{path}: each run config must be a JSON object")
    try:
        rows = run_plan(configs, args.out, progress=not args.no_progress)
    except (ConfigError, CorpusError) as err:
        raise BadInput(f"{path}: {err}") from None
    final = rows.sort_values("n_tokens").groupby(["run_id", "language"]).tail(1)
    for record in final.itertuples():
        print(f"{record.run_id} [{record.language}]: {record.loss:.4f} bits/byte after "
              f"{record.n_tokens:.4g} tokens")
    print(f"wrote {len(rows)} rows ({len(configs)} run(s)) to {args.out / 'runs.csv'}")
    return 0


def run_adapt(args) -> int:
    from atlas_bayes.tables.adapters import ADAPTERS
    from atlas_bayes.tables.runs import RunTableError, write_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runs = ADAPTERS[args.dataset](args.path)
        except RunTableError as err:
            raise BadInput(str(err)) from None
    _echo_warnings(caught)
    write_runs(runs, args.out)
    print(f"wrote {len(runs)} rows ({runs['run_id'].nunique()} runs) to {args.out}")
    return 0


def run_fit(args) -> int:
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Approximation, Sampler, fit, save
    from atlas_bayes.fitting.plots import plot_fit
    from atlas_bayes.fitting.summary import format_summary, summary_dict

    runs = _read_runs_or_fail(args.runs)

    out = args.out or Path("results") / f"{Path(args.runs).stem}-{args.law}"
    transfer = _transfer_option(args.transfer_languages)
    if args.approx:
        sampler = Approximation(args.approx, seed=args.seed)
    else:
        sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                          seed=args.seed, target_accept=args.target_accept)
    options = {"shared": args.shared.split(",")} if args.shared else {}
    if args.tau_prior:
        options["tau_prior"] = _read_json_or_fail(args.tau_prior, "--tau-prior")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            tree = fit(runs, args.law, language=args.lang, transfer_languages=transfer,
                       sampler=sampler, options=options, progress=not args.json)
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings(caught)

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
    runs = _read_runs_or_fail(args.runs)
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


def run_curse(args) -> int:
    from atlas_bayes.decisions.curse import iso_loss, plot_iso_loss
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler, fit, save
    from atlas_bayes.fitting.summary import summary_dict

    if (args.n_params is None) != (args.tokens is None):
        raise BadInput("give both --n-params and --tokens for a starting run, or neither "
                       "(a compute-optimal start)")
    runs = _read_runs_or_fail(args.runs)
    law = "curse-h" if args.per_language else "curse"
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed,
                      target_accept=args.target_accept)
    start = {"n_params": args.n_params, "n_tokens": args.tokens}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            tree = fit(runs, law, sampler=sampler, progress=not args.json)
            table = iso_loss(tree, args.from_k, args.to_k, language=args.lang, **start)
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings(caught)
    language = args.lang or str(tree.posterior["language"].values[0])

    out = args.out or Path("results") / f"{Path(args.runs).stem}-curse"
    out.mkdir(parents=True, exist_ok=True)
    save(tree, out / "posterior.nc")
    plot_iso_loss(tree, args.from_k, args.to_k, out / "iso_loss.png", language=language, **start)
    summary = summary_dict(tree)
    result = {"law": law, "from_k": args.from_k, "to_k": args.to_k,
              "language": language if args.per_language else "pooled",
              "start": start if args.n_params else "compute-optimal",
              "multipliers": {name: dict(row) for name, row in table.iterrows()},
              "parameters": summary["parameters"], "diagnostics": summary["diagnostics"]}
    (out / "iso_loss.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Going from {args.from_k:g} to {args.to_k:g} languages at the same loss "
              f"({result['start'] if isinstance(result['start'], str) else 'from the given run'} "
              f"start; {law}, median and 90% interval):")
        print(table.round(3).to_string())
        print(f"\nwrote {out / 'posterior.nc'}, {out / 'iso_loss.png'}, {out / 'iso_loss.json'}")
    return 0


def run_crossover(args) -> int:
    from atlas_bayes.decisions.crossover import crossover_summary, fit_crossover, fit_power_law, plot_crossover, predict_crossover, summarise_draws
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler, save

    runs = _read_runs_or_fail(args.runs)
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed)
    out = args.out or Path("results") / f"{Path(args.runs).stem}-crossover"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tree = fit_crossover(runs, sampler=sampler, progress=not args.json)
            post = tree.posterior
            sizes = post["n_params"].values[post["language"].values == args.lang]
            measured = args.n_params is None or np.isclose(sizes, args.n_params, rtol=1e-3).any()
            if measured:
                result = crossover_summary(tree, args.lang, args.n_params, args.budget)
                result["source"] = "measured cell"
            else:
                law = fit_power_law(tree, sampler=Sampler(chains=args.chains, draws=args.draws,
                                                          warmup=args.warmup, seed=args.seed,
                                                          target_accept=0.95))
                draws = predict_crossover(law, args.lang, args.n_params, seed=args.seed)
                result = {"language": args.lang, **summarise_draws(draws, args.n_params, args.budget),
                          "source": "power law C = k N^gamma over the measured cells",
                          "gamma": [float(q) for q in law.posterior["gamma"].quantile([0.05, 0.5, 0.95])],
                          "k": {str(lang): [float(q) for q in np.exp(law.posterior["log_k"].sel(language=lang)
                                                                      .quantile([0.05, 0.5, 0.95]))]
                                for lang in law.posterior["language"].values}}
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings([w for w in caught if issubclass(w.category, (UserWarning, ConvergenceWarning))])
    out.mkdir(parents=True, exist_ok=True)
    save(tree, out / "posterior.nc")
    if measured:
        plot_crossover(tree, args.lang, args.n_params, out / "crossover.png")
    else:
        save(law, out / "power_law.nc")
    result["diagnostics"] = json.loads(tree.attrs["diagnostics"])
    (out / "crossover.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return 0
    t, c = result["tokens"], result["compute"]
    print(f"{args.lang} at N = {result['n_params']:.3g} ({result['source']}): crossover after "
          f"{t['median']:.3g} tokens ({t['q_lo']:.3g} - {t['q_hi']:.3g}, 90%), compute "
          f"{c['median']:.3g} FLOPs ({c['q_lo']:.3g} - {c['q_hi']:.3g}); P(no crossover at all) "
          f"{result['p_no_crossover']:.2f}")
    if args.budget:
        print(f"P(no crossover within {args.budget:.3g} tokens): {result['p_no_crossover_within_budget']:.2f}")
    print(f"Recommendation: {result['recommendation']}")
    print(f"wrote {out}/: posterior.nc, crossover.json, " + ("crossover.png" if measured else "power_law.nc"))
    return 0


def run_transfer(args) -> int:
    from atlas_bayes.decisions.bts import bts_table, fit_bts
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler, save
    from atlas_bayes.decisions.transfer import fit_transfer_matrix, plot_source_ranking, plot_transfer_matrix, rank_sources, tau_priors

    runs = _read_runs_or_fail(args.runs)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    extra = [t.strip() for t in (args.languages or "").split(",") if t.strip()]
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            curves = fit_bts(runs, n_params=args.n_params, horizon=args.horizon, sampler=sampler,
                             progress=not args.json)
            measured = bts_table(curves)
            tree = fit_transfer_matrix(measured, languages=targets + extra, sampler=sampler,
                                       progress=not args.json)
            rankings = {t: rank_sources(tree, t) for t in targets}
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings([w for w in caught if issubclass(w.category, (UserWarning, ConvergenceWarning))])

    out = args.out or Path("results") / f"{Path(args.runs).stem}-transfer"
    out.mkdir(parents=True, exist_ok=True)
    save(curves, out / "bts_curves.nc")
    save(tree, out / "matrix.nc")
    measured.to_csv(out / "bts.csv", index=False)
    plot_transfer_matrix(tree, out / "matrix.png")
    priors = tau_priors(tree, {t: list(r["source"].head(args.tau_priors_for)) for t, r in rankings.items()})
    (out / "tau_priors.json").write_text(json.dumps(priors, indent=2))
    for target, table in rankings.items():
        table.to_csv(out / f"ranking_{target}.csv", index=False)
        plot_source_ranking(tree, target, out / f"ranking_{target}.png")
    result = {"targets": targets, "n_measured_pairs": int(len(measured)),
              "languages": json.loads(tree.attrs["languages"]),
              "diagnostics": {"curves": json.loads(curves.attrs["diagnostics"]),
                              "matrix": json.loads(tree.attrs["diagnostics"])},
              "measured": measured.to_dict(orient="records"),
              "rankings": {t: r.to_dict(orient="records") for t, r in rankings.items()},
              "tau_priors": priors}
    (out / "transfer.json").write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    print(f"{len(measured)} measured pairs (BTS at the reference horizon, median and 90% interval):")
    print(measured[["source", "target", "bts_median", "bts_q05", "bts_q95", "p_positive"]]
          .round(3).to_string(index=False))
    for target, table in rankings.items():
        print(f"\nTransfer languages for {target}, best first (tau = exp(g) - 1; * = measured):")
        shown = table.assign(source=[s + (" *" if m else "") for s, m in zip(table.source, table.measured)])
        print(shown.drop(columns="measured").round(3).to_string(index=False))
    print(f"\nwrote {out}/: matrix.png, ranking_<target>.png/.csv, bts.csv, tau_priors.json, "
          "matrix.nc, bts_curves.nc, transfer.json")
    return 0


def run_optimal(args) -> int:
    import numpy as np

    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler, fit, load, save
    from atlas_bayes.decisions.optimal import MIN_PARAMS, MIN_TOKENS, optimal, plot_trajectories, trajectories

    smallest = 6.0 * MIN_PARAMS * MIN_TOKENS
    if args.compute < smallest:
        raise BadInput(f"--compute {args.compute:g} is too small: C = 6 N D needs at least 6 x "
                       f"{MIN_PARAMS:g} parameters x {MIN_TOKENS:g} tokens = {smallest:g} FLOPs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            if Path(args.runs).suffix == ".nc":
                if not Path(args.runs).is_file():
                    raise BadInput(f"{args.runs}: file not found")
                tree = load(args.runs)
            else:
                runs = _read_runs_or_fail(args.runs)
                sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                                  seed=args.seed, target_accept=args.target_accept)
                hierarchical = get_law(args.law).hierarchical
                tree = fit(runs, args.law, language=None if hierarchical else args.lang,
                           sampler=sampler, progress=not args.json)
            result = optimal(tree, args.compute, language=args.lang,
                             unique_tokens=args.unique_tokens)
            budgets = args.compute * np.geomspace(1e-3, 1e3, 13)
            budgets = budgets[budgets >= smallest]
            track = trajectories({result.draws.language: (tree, result.draws.language)}, budgets,
                                 unique_tokens={result.draws.language: result.draws.unique_tokens})
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings(caught)

    out = args.out or Path("results") / f"{Path(args.runs).stem}-optimal"
    out.mkdir(parents=True, exist_ok=True)
    save(tree, out / "posterior.nc")
    plot_trajectories(track, out / "trajectory.png",
                      title=f"Compute-optimal trajectory ({result.draws.language}, {tree.attrs['law']})")
    summary = _finite({**result.as_dict(), "diagnostics": json.loads(tree.attrs["diagnostics"]),
                       "trajectory": track.drop(columns=["label"]).to_dict(orient="records")})
    (out / "optimal.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary))
        return 0
    d = result.draws
    U = f"{d.unique_tokens:.3g} ({d.unique_tokens_source})" if np.isfinite(d.unique_tokens) \
        else "not limited (never repeated)"
    print(f"Compute-optimal allocation for {d.language} at C = {args.compute:.3g} FLOPs "
          f"({tree.attrs['law']}; unique tokens {U}; median and 90% interval):")
    print(result.table().to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nP(the optimum repeats data) = {summary['p_repeated']:.2f}; "
          f"P(more parameters than Chinchilla's closed form) = "
          f"{summary['p_more_params_than_chinchilla']:.2f}")
    print(f"wrote {out / 'posterior.nc'}, {out / 'optimal.json'}, {out / 'trajectory.png'}")
    return 0


def run_design(args) -> int:
    from atlas_bayes import design as design_lib
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import save

    def numbers(text, flag):
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None

    fitted = Path(args.runs).suffix != ".nc"
    plan, out = args.plan, args.out
    if out is not None and out.suffix == ".jsonl":       # --out plan.jsonl, as the issue spells it
        plan, out = plan or out, out.parent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            target = design_lib.parse_target(args.target)
            curve = target.spec.get("kind") in ("crossover", "bts")
            if curve:
                tree, posterior, candidates, language = _curve_design_inputs(args, target, numbers)
            else:
                tree = _design_tree(args, fitted)
                posterior = design_lib.posterior_from_tree(tree, language=args.lang,
                                                           unique_tokens=args.unique_tokens,
                                                           max_draws=args.max_draws)
                language = posterior.draws.language or "und"
                candidates = _design_candidates(args, tree, target, language, numbers)
            result = design_lib.choose_batch(posterior, candidates, target, k=args.k,
                                             budget=args.budget, cost_power=args.cost_power,
                                             seed=args.seed)
            if plan and curve:
                from atlas_bayes.design.curves import plan_check
                plan_check(target)
            configs = design_lib.plan_configs(result.chosen) if plan else None
        except ValueError as err:
            raise BadInput(f"{args.runs}: {err}") from None
    _echo_warnings(caught)

    out = out or Path("results") / f"{Path(args.runs).stem}-design"
    out.mkdir(parents=True, exist_ok=True)
    if fitted:
        save(tree, out / "posterior.nc")
    result.scores.to_csv(out / "scores.csv", index=False)
    data = tree["fit_data"].to_dataset().to_dataframe() \
        if "fit_data" in tree.children and not curve else None
    design_lib.plot_design(result, out / "design.png", data=data)
    outside = []
    if data is not None and len(result.chosen):
        lo, hi = data["n_params"].min(), data["n_params"].max()
        outside = result.chosen["candidate"][(result.chosen["n_params"] < lo / 1.5)
                                             | (result.chosen["n_params"] > hi * 1.5)].tolist()
    model = tree.attrs.get("law") or tree.attrs.get("kind")
    summary = _finite({**result.as_dict(), "law": model, "language": language,
                       "outside_fitted_sizes": outside, "plan": str(plan) if plan else None})
    (out / "design.json").write_text(json.dumps(summary, indent=2))
    if configs is not None:
        design_lib.write_plan(configs, plan)
    if outside:
        print(f"atlas-bayes: warning: chosen runs {outside} lie outside the fitted model sizes "
              f"({lo:.3g}-{hi:.3g}); their value assumes the law holds there", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"Runs chosen to learn {target.name} ({model}, {language}; "
          f"{len(candidates)} candidates, {posterior.n} posterior draws"
          + (f", budget {args.budget:.3g} FLOPs" if args.budget else "") + "):")
    shown = result.chosen[["order", "candidate", "n_params", "n_tokens", "cost", "gain",
                           "cumulative_gain"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nexpected gain {result.total_gain:.3g} nats for {summary['total_cost']:.3g} FLOPs"
          + (f" (stopped: {result.stopped})" if result.stopped else ""))
    print(f"wrote {out / 'design.json'}, {out / 'scores.csv'}, {out / 'design.png'}"
          + (f", plan {plan}" if plan else ""))
    return 0


def run_loop(args) -> int:
    from atlas_bayes.design.loop import LoopSettings, run_loop as loop

    def numbers(text, flag):
        if not text:
            return None
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise BadInput(f"{flag}: expected numbers separated by commas, got {text!r}") from None

    if args.tokens and args.tokens_per_param:
        raise BadInput("give either --tokens or --tokens-per-param, not both")
    base = _read_json_or_fail(args.train_config, "--train-config") if args.train_config else {}
    if not isinstance(base, dict):
        raise BadInput(f"--train-config {args.train_config}: expected a JSON object of config fields")
    _read_runs_or_fail(args.runs)
    try:
        settings = LoopSettings(
            runs=str(args.runs), target=args.target, budget=args.budget,
            shapes=args.shapes.split(",") if args.shapes else [],
            tokens=numbers(args.tokens, "--tokens"),
            tokens_per_param=numbers(args.tokens_per_param, "--tokens-per-param"), k=args.k,
            width=args.width, max_rounds=args.max_rounds, law=args.law, language=args.lang,
            cost_power=args.cost_power, max_draws=args.max_draws,
            sampler={"chains": args.chains, "warmup": args.warmup, "draws": args.draws},
            train_base=base, external=args.external, seed=args.seed)
        status = loop(settings, args.out, ingest=args.ingest, progress=not args.no_progress)
    except ValueError as err:
        raise BadInput(f"{args.runs}: {err}") from None
    if args.json:
        print(json.dumps(_finite(status)))
    else:
        print(f"{status['stopped']}; log {args.out / 'rounds.jsonl'}, plot {args.out / 'width.png'}")
    return 0


def _design_tree(args, fitted: bool):
    """The law posterior `design` scores with: read from a posterior.nc, or fitted."""
    from atlas_bayes.fitting.inference import Sampler, fit, load

    if not fitted:
        if not Path(args.runs).is_file():
            raise BadInput(f"{args.runs}: file not found")
        return load(args.runs)
    runs = _read_runs_or_fail(args.runs)
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                      seed=args.seed, target_accept=args.target_accept)
    hierarchical = get_law(args.law).hierarchical
    return fit(runs, args.law, language=None if hierarchical else args.lang,
               sampler=sampler, progress=not args.json)


def _design_candidates(args, tree, target, language: str, numbers):
    """Candidate runs from --candidates, or a grid of --shapes / --n-params x token budgets."""
    from atlas_bayes import design as design_lib

    if args.candidates:
        return design_lib.read_candidates(args.candidates, eval_tokens=args.eval_tokens)
    if args.tokens and args.tokens_per_param:
        raise BadInput("give either --tokens or --tokens-per-param, not both")
    amounts = ({"tokens": numbers(args.tokens, "--tokens")} if args.tokens else
               {"tokens_per_param": numbers(args.tokens_per_param or "5,10,20,40,80",
                                            "--tokens-per-param")})
    if args.shapes:
        sizes = {"shapes": None if args.shapes == "all" else args.shapes.split(",")}
    elif args.n_params:
        sizes = {"n_params": numbers(args.n_params, "--n-params")}
    else:
        seen = tree["fit_data"]["n_params"].values.astype(float)
        top = max(10 * seen.max(), target.spec.get("n_params", 0.0))
        sizes = {"n_params": np.geomspace(seen.min(), top, 10)}
    return design_lib.candidate_grid(**sizes, **amounts, language=language,
                                     eval_tokens=args.eval_tokens)


def _curve_design_inputs(args, target, numbers):
    """(tree, posterior, candidates, language) for a crossover or BTS target: the curve model
    fitted to the run table (or read from a posterior.nc) and its own candidates."""
    from atlas_bayes.design.curves import curve_study
    from atlas_bayes.fitting.inference import Sampler, load

    if args.candidates or args.shapes or args.n_params or args.tokens_per_param:
        raise BadInput(f"target {target.name}: its candidates are runs of the fitted cell or "
                       "pair; choose their token counts with --tokens (no --candidates, "
                       "--shapes, --n-params or --tokens-per-param)")
    if Path(args.runs).suffix == ".nc":
        raise BadInput(f"target {target.name}: give the run table, not a posterior.nc (the "
                       "candidates need the runs: the finetunes' checkpoint, the curves' tokens)")
    runs = _read_runs_or_fail(args.runs)
    sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                      seed=args.seed, target_accept=args.target_accept)
    tokens = numbers(args.tokens, "--tokens") if args.tokens else None
    if tokens is not None and target.spec["kind"] == "bts":
        raise BadInput(f"target {target.name}: BTS candidates continue the pair's runs to 1.5-8x "
                       "their tokens; --tokens does not apply")
    tree, posterior, candidates = curve_study(
        target, runs, sampler=sampler, tokens=tokens, eval_tokens=args.eval_tokens,
        max_draws=args.max_draws, run_folder=Path(args.runs).parent, progress=not args.json)
    language = target.spec.get("language") or target.spec.get("target")
    return tree, posterior, candidates, language


def _finite(value):
    """Plain JSON values: numpy scalars as Python numbers, non-finite numbers as null."""
    import math

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def _sampler_and_output_options(parser, name: str, draws: int = 1000, warmup: int = 1000,
                                target_accept: float | None = None,
                                target_accept_help: str | None = None) -> None:
    """--chains, --draws, --warmup, --seed (and --target-accept when a default is given),
    --out and --json, shared by the analysis commands."""
    parser.add_argument("--chains", type=_positive_int, default=4)
    parser.add_argument("--draws", type=_positive_int, default=draws, help="draws per chain")
    parser.add_argument("--warmup", type=_positive_int, default=warmup, help="warmup steps per chain")
    parser.add_argument("--seed", type=int, default=0)
    if target_accept is not None:
        parser.add_argument("--target-accept", type=float, default=target_accept,
                            help=target_accept_help or f"NUTS target acceptance (default {target_accept})")
    parser.add_argument("--out", type=Path, help=f"output folder (default: results/<file>-{name})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout instead of the readable output")


def _read_json_or_fail(path: Path, flag: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadInput(f"{flag} {path}: cannot be read as JSON: {err}") from None


def _read_runs_or_fail(path):
    """The validated run table, its warnings echoed to stderr; BadInput when it is invalid."""
    from atlas_bayes.tables.runs import RunTableError, RunTableWarning, read_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunTableWarning)
        try:
            runs = read_runs(path)
        except RunTableError as err:
            raise BadInput(str(err)) from None
    _echo_warnings(caught)
    return runs


def _echo_warnings(caught) -> None:
    for warning in caught:
        print(f"atlas-bayes: warning: {warning.message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
