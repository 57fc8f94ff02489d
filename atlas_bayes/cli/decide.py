"""Decision commands: `curse`, `crossover`, `transfer` and `optimal`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from atlas_bayes.cli.common import (BadInput, echo_warnings, finite, positive_float, positive_int,
                                    read_runs_or_fail, sampler_and_output_options)
from atlas_bayes.models import get_law, law_names


def add_commands(commands) -> None:
    """Register this module's subcommands."""
    curse = commands.add_parser(
        "curse", help="iso-loss scaling when adding languages (curse of multilinguality)",
        description="Fit the curse-of-multilinguality law and report, with credible intervals, "
                    "how model size, tokens and compute must grow to keep the loss when going "
                    "from --from-k to --to-k languages.")
    curse.add_argument("runs", help="run table file (.csv or .parquet) with mix_<lang> columns")
    curse.add_argument("--from-k", type=positive_float, required=True)
    curse.add_argument("--to-k", type=positive_float, required=True)
    curse.add_argument("--n-params", type=positive_float,
                       help="starting model size (with --tokens); default: a compute-optimal start")
    curse.add_argument("--tokens", type=positive_float,
                       help="starting total training tokens at --from-k languages")
    curse.add_argument("--lang", help="language to report for a --per-language fit")
    curse.add_argument("--per-language", action="store_true",
                       help="per-language parameters pooled across languages (law curse-h) "
                            "instead of one pooled law")
    sampler_and_output_options(curse, "curse", target_accept=0.95,
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
    cross.add_argument("--n-params", type=positive_float,
                       help="model size (required when the language has several)")
    cross.add_argument("--budget", type=positive_float,
                       help="token budget of the planned run: P(no crossover within it)")
    sampler_and_output_options(cross, "crossover", warmup=500)
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
    transfer.add_argument("--n-params", type=positive_float,
                          help="model size to use when the table has several")
    transfer.add_argument("--horizon", type=positive_float,
                          help="reference horizon d_mono in tokens (default: a quarter of the "
                               "shortest run's final tokens)")
    transfer.add_argument("--languages",
                          help="extra languages to include in the matrix, comma separated "
                               "(their pairs are predicted from language metadata)")
    transfer.add_argument("--tau-priors-for", type=positive_int, default=3, metavar="K",
                          help="write ATLAS tau priors for each target's K best sources "
                               "(tau_priors.json, for 'fit --tau-prior'; default 3)")
    sampler_and_output_options(transfer, "transfer", warmup=500)
    transfer.set_defaults(handler=run_transfer)

    optimal = commands.add_parser(
        "optimal", help="compute-optimal model size and tokens for a language and budget",
        description="Fit a law (or read a saved posterior.nc) and report the posterior of the "
                    "compute-optimal N*, D* and predicted loss at compute C = 6ND, repetition-"
                    "aware when the language's unique tokens are finite, with a trajectory plot.")
    optimal.add_argument("runs", help="run table file (.csv or .parquet), or a posterior.nc "
                                      "written by 'fit' / 'optimal' (then no fit is run)")
    optimal.add_argument("--lang", help="language to allocate for (default: the fit's first)")
    optimal.add_argument("--compute", type=positive_float, required=True,
                         help="compute budget in FLOPs (C = 6 N D)")
    optimal.add_argument("--law", default="atlas",
                         choices=law_names(decisions=True),
                         help="law to fit (default: atlas; ignored for a posterior.nc)")
    optimal.add_argument("--unique-tokens", type=positive_float,
                         help="unique tokens U of the language (default: from the run table; "
                              "none recorded means never repeated)")
    sampler_and_output_options(optimal, "optimal", target_accept=0.9)
    optimal.set_defaults(handler=run_optimal)


def run_curse(args) -> int:
    from atlas_bayes.decisions.curse import iso_loss, plot_iso_loss
    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    from atlas_bayes.fitting.inference import Sampler, fit, save
    from atlas_bayes.fitting.summary import summary_dict

    if (args.n_params is None) != (args.tokens is None):
        raise BadInput("give both --n-params and --tokens for a starting run, or neither "
                       "(a compute-optimal start)")
    runs = read_runs_or_fail(args.runs)
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
    echo_warnings(caught)
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

    runs = read_runs_or_fail(args.runs)
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
    echo_warnings([w for w in caught if issubclass(w.category, (UserWarning, ConvergenceWarning))])
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

    runs = read_runs_or_fail(args.runs)
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
    echo_warnings([w for w in caught if issubclass(w.category, (UserWarning, ConvergenceWarning))])

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
                runs = read_runs_or_fail(args.runs)
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
    echo_warnings(caught)

    out = args.out or Path("results") / f"{Path(args.runs).stem}-optimal"
    out.mkdir(parents=True, exist_ok=True)
    save(tree, out / "posterior.nc")
    plot_trajectories(track, out / "trajectory.png",
                      title=f"Compute-optimal trajectory ({result.draws.language}, {tree.attrs['law']})")
    summary = finite({**result.as_dict(), "diagnostics": json.loads(tree.attrs["diagnostics"]),
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
