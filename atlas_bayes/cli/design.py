"""Design commands: `design` (which runs to pay for next) and `loop` (design, train, refit)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from atlas_bayes.cli.common import (BadInput, echo_warnings, finite, positive_float, positive_int,
                                    read_json_or_fail, read_runs_or_fail, sampler_and_output_options)
from atlas_bayes.models import get_law, law_names


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
    echo_warnings(caught)

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
    summary = finite({**result.as_dict(), "law": model, "language": language,
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
    base = read_json_or_fail(args.train_config, "--train-config") if args.train_config else {}
    if not isinstance(base, dict):
        raise BadInput(f"--train-config {args.train_config}: expected a JSON object of config fields")
    read_runs_or_fail(args.runs)
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
        print(json.dumps(finite(status)))
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
    runs = read_runs_or_fail(args.runs)
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
    from atlas_bayes.fitting.inference import Sampler

    if args.candidates or args.shapes or args.n_params or args.tokens_per_param:
        raise BadInput(f"target {target.name}: its candidates are runs of the fitted cell or "
                       "pair; choose their token counts with --tokens (no --candidates, "
                       "--shapes, --n-params or --tokens-per-param)")
    if Path(args.runs).suffix == ".nc":
        raise BadInput(f"target {target.name}: give the run table, not a posterior.nc (the "
                       "candidates need the runs: the finetunes' checkpoint, the curves' tokens)")
    runs = read_runs_or_fail(args.runs)
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
