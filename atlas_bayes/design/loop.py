"""The closed loop: design a batch, train it, add its runs to the run table, refit, repeat until
the budget is spent or the target's 90% interval is narrower than a given width.

The output folder is the loop's whole state, so stopping anywhere (a crash, Ctrl-C, a machine
taken away) and running the same command again goes on without losing or repeating a run:

    loop.json            the settings; a rerun may change only the stopping rules
    runs.csv             the run table: the starting runs and every finished run. A run is added
                         only once it is complete, in one atomic rewrite (`runs.write_runs`).
                         Each invocation reads and validates it once and keeps it in memory
                         (`LoopTable`), adding each finished run to both
    rounds.jsonl         one line per finished round: its runs, their cost (6 N D of the tokens
                         actually trained), compute spent so far, the target's 90% interval
    round-R/plan.jsonl   round R's chosen runs as trainer configs, written (atomically) before any
                         is trained; a rerun trains only those not yet in runs.csv (the trainer
                         itself resumes a half-trained run from its last checkpoint)
    round-R/design.json, round-R/posterior.nc   the choice and the fit after the round
    train/               the trainer's folder (run folders with checkpoints)
    width.png            the interval width against compute spent

With `external=True` the loop writes the round's plan and stops; whoever trains it puts the
runs' rows (a run table) in round-R/results.csv, or passes the file as `ingest`, and the next
invocation takes every complete planned run from it, refits and goes on.

Which model a target needs (a law, or crossover / BTS curves), its posterior and its candidate
runs come from the target's study (`design.study.study_for`).

The trainer is imported only when a round is trained here (it needs the 'train' extra).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.design.eig import choose_batch
from atlas_bayes.design.parse import parse_target
from atlas_bayes.design.plan import plan_configs
from atlas_bayes.design.posterior import DesignPosterior
from atlas_bayes.design.study import CandidateOptions, OptionError, Study, study_for
from atlas_bayes.design.targets import Target, target_summary, weighted_interval
from atlas_bayes.fitting.files import read_json_object
from atlas_bayes.fitting.summary import json_safe
from atlas_bayes.fitting.trust import verdict
from atlas_bayes.tables.atomic_files import atomic_file, atomic_write
from atlas_bayes.tables.runs import RunTableWarning, read_runs, validate_runs, write_runs

PROB = 0.9
# settings a rerun may change (stopping rules and who trains); any other change is refused
MAY_CHANGE = ("budget", "width", "max_rounds", "external", "accept_unconverged")


@dataclass
class LoopSettings:
    """Everything that defines a loop (stored in OUT/loop.json)."""
    runs: str                                # the starting run table
    target: str                              # design.parse_target's forms
    budget: float                            # FLOPs for all the loop's runs together
    shapes: list[str] = field(default_factory=list)    # trainer shapes of candidate runs
    tokens: list[float] | None = None        # token budgets (absolute), or ...
    tokens_per_param: list[float] | None = None        # ... per parameter
    k: int = 2                               # runs per round
    width: float | None = None               # stop when the 90% interval is narrower
    max_rounds: int | None = None
    law: str = "chinchilla"
    language: str | None = None
    cost_power: float = 1.0
    max_draws: int = 512
    sampler: dict = field(default_factory=lambda: {"chains": 2, "warmup": 500, "draws": 500})
    train_base: dict = field(default_factory=dict)     # fields added to every trainer config
    external: bool = False
    seed: int = 0
    accept_unconverged: bool = False         # design from a round whose fit failed its checks

    def __post_init__(self):
        if not (np.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"budget must be a positive number of FLOPs, got {self.budget}")
        if self.width is not None and not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.tokens is not None and self.tokens_per_param is not None:
            raise OptionError("give either --tokens or --tokens-per-param, not both")


def read_train_base(path) -> dict:
    """`LoopSettings.train_base` from a JSON file of trainer config fields (no file: none);
    ValueError when it cannot be read or is not a JSON object."""
    return {} if path is None else read_json_object(path, "config fields")


class LoopStatus(dict):
    """Where the loop stopped, {stopped, rounds, spent, ...} (OUT/status.json), as the `loop`
    command reports it: `as_dict()` for --json, `to_text(out)` for the screen."""

    def as_dict(self) -> dict:
        """The status as plain JSON values."""
        return json_safe(self)

    def to_text(self, out) -> str:
        """Why the loop stopped, and where its log and plot are."""
        return f"{self['stopped']}; log {Path(out) / 'rounds.jsonl'}, plot {Path(out) / 'width.png'}"

    def write(self, out) -> None:
        """Nothing more to write: the loop keeps OUT (status.json too) up to date as it goes."""


def run_loop(settings: LoopSettings, out, *, ingest=None, progress: bool = True,
             start: pd.DataFrame | None = None, ray: str | None = None) -> LoopStatus:
    """Run (or continue) the loop in folder `out`; returns its `LoopStatus`.

    `ingest`: a run table holding an external round's runs; `start`: the starting run table
    (`settings.runs`) already read and validated, used when OUT/runs.csv does not exist yet;
    `ray`: train each round's runs as Ray tasks ("local": a Ray started here, or a cluster's
    address; `trainers.ray_plan`) instead of one after another here."""
    out = Path(out)
    study = study_for(parse_target(settings.target), law=settings.law,
                      language=settings.language, run_folder=Path(settings.runs).parent)
    study.plan_check()                         # fails early where runs have no trainer plan
    if not (out / "loop.json").exists():       # a new loop: check before any state is written
        start = read_runs(settings.runs) if start is None else start
        _check_new_loop(settings, start, study)
    table = _open(settings, out, start)
    log = _read_log(out)
    say = _say if progress else (lambda *_: None)
    if not log:
        say(f"round 0: fitting the starting runs ({settings.runs})")
        tree = _fit_round(table, out, 0, settings, study, [], 0.0, log, say)
    else:
        from atlas_bayes.fitting.inference import load
        tree = load(out / f"round-{len(log) - 1}" / "posterior.nc")
    while True:
        r = len(log)
        plan_path = out / f"round-{r}" / "plan.jsonl"
        if not plan_path.exists():
            stopped = _stop_reason(settings, log)
            if stopped:
                return _finish(out, log, stopped, say)
            configs = _design_round(table, out, r, settings, study, tree, log, say)
            if not configs:
                return _finish(out, log, "budget spent: no candidate fits the remaining budget", say)
        configs = [json.loads(line) for line in plan_path.read_text().splitlines() if line.strip()]
        missing = _collect_runs(table, out, r, configs, settings, ingest, say, progress, ray)
        if missing:
            status = LoopStatus(stopped=f"waiting for round {r}'s runs {missing}", waiting=missing,
                                plan=str(plan_path), results=str(out / f"round-{r}" / "results.csv"),
                                rounds=len(log), spent=log[-1]["spent"] if log else 0.0)
            _write_json(out / "status.json", status)
            say(f"round {r}: plan {plan_path}; waiting for runs {missing}: put their rows in "
                f"{status['results']} (or pass --ingest FILE) and run the command again")
            return status
        ids = [c["run_id"] for c in configs]
        cost = sum(run_cost(table.rows(i)) for i in ids)
        tree = _fit_round(table, out, r, settings, study, ids, cost, log, say)


# ---------------------------------------------------------------------------------------------
# State


def _open(settings: LoopSettings, out: Path, start: pd.DataFrame | None = None) -> LoopTable:
    """Create or check OUT/loop.json, and open the loop's run table OUT/runs.csv (created from
    the starting runs, `start` or `settings.runs`, when absent)."""
    out.mkdir(parents=True, exist_ok=True)
    stored_path = out / "loop.json"
    mine = json.loads(json.dumps(dataclasses.asdict(settings)))
    if stored_path.exists():
        stored = json.loads(stored_path.read_text())
        changed = sorted(k for k in set(stored) | set(mine)
                         if k not in MAY_CHANGE and stored.get(k) != mine.get(k))
        if changed:
            raise ValueError(f"{out} holds a loop with other settings ({', '.join(changed)}: "
                             + "; ".join(f"{k} was {stored.get(k)!r}, now {mine.get(k)!r}"
                                         for k in changed)
                             + "); use a new output folder, or rerun with the same settings")
    _write_json(stored_path, mine)
    return LoopTable.open(out / "runs.csv", settings.runs if start is None else start)


@dataclass
class LoopTable:
    """The loop's run table: the file `path` (the state a rerun continues from) and `runs`, the
    same rows validated in memory. It is read once per invocation; `add` appends a finished
    run to the file (one atomic rewrite) and then to memory, so the two stay equal."""
    path: Path
    runs: pd.DataFrame

    @classmethod
    def open(cls, path, start) -> LoopTable:
        """The table at `path`; where there is none yet, the starting runs `start` (a validated
        table, or a run-table file to read) written there."""
        path = Path(path)
        if path.exists():
            return cls(path, _read_quietly(path))
        runs = start if isinstance(start, pd.DataFrame) else read_runs(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunTableWarning)
            runs = validate_runs(runs, source=str(path))     # as reading the file back gives it
        write_runs(runs, path)
        return cls(path, runs)

    def run_ids(self) -> set[str]:
        """The runs in the table."""
        return set(self.runs["run_id"])

    def rows(self, run_id: str) -> pd.DataFrame:
        """One run's rows (empty when it is not in the table)."""
        return self.runs[self.runs["run_id"] == run_id]

    def add(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Add one finished run's rows: the merged table is validated, written atomically
        (`write_runs`: a temporary file and a rename), then kept; returns it."""
        run_id = rows["run_id"].iloc[0]
        if (self.runs["run_id"] == run_id).any():
            raise ValueError(f"{self.path}: run {run_id!r} is already in the loop's run table")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunTableWarning)
            merged = validate_runs(pd.concat([self.runs, rows], ignore_index=True),
                                   source=str(self.path))
        write_runs(merged, self.path)
        self.runs = merged
        return merged


def _read_quietly(path) -> pd.DataFrame:
    """A run table read and validated without its warnings (the loop reads its own files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        return read_runs(path)


def run_cost(rows: pd.DataFrame) -> float:
    """6 N D of the tokens a run trained itself (a finetune's checkpoint tokens excluded)."""
    if rows.empty:
        return 0.0
    own = rows["n_tokens"] - rows.get("init_tokens", pd.Series(0.0, index=rows.index)).fillna(0.0)
    return float(6.0 * rows["n_params"].iloc[0] * own.max())


def _read_log(out: Path) -> list[dict]:
    """The finished rounds (OUT/rounds.jsonl), oldest first; [] before round 0."""
    path = out / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_json(path: Path, value) -> None:
    """`value` as indented JSON, written atomically."""
    _write_text(path, json.dumps(value, indent=2, default=_plain) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and an atomic rename: a reader sees all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def _plain(value):
    """JSON's fallback for numpy scalars."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _say(message: str) -> None:
    """A progress message on stderr."""
    print(f"atlas-bayes loop: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# One round: fit, measure the target, design, train


def _check_new_loop(settings: LoopSettings, runs: pd.DataFrame, study: Study) -> None:
    """Before the first fit: the language a round's runs are named after (in their run_id,
    `loop-r1-<language>-<shape>-<tokens>`) makes a safe trainer run id, and the trainer's
    corpus has text in it (unless an external runner trains)."""
    from atlas_bayes.trainers.config import run_id_problem
    named = study.target.spec.get("language") or settings.language
    languages = [named] if named else list(dict.fromkeys(runs["language"].astype(str)))
    for language in languages:
        if (problem := run_id_problem(f"loop-r1-{language}-t0-1e+06")) is not None:
            raise OptionError(f"language {language!r} names the loop's runs (run ids "
                              f"loop-r1-{language}-...), so it must be a safe name: {problem}")
    if not settings.external and len(languages) == 1:
        from atlas_bayes.trainers.data import CorpusError, check_corpus_languages
        try:
            check_corpus_languages(settings.train_base.get("corpus"), languages)
        except CorpusError as err:
            raise OptionError(f"the trainer's corpus (--train-config 'corpus'): {err}") from None


def _fit_round(table: LoopTable, out, r, settings, study: Study, ids, cost, log, say):
    """Fit the table, measure the target's interval, save the posterior and log round r."""
    from atlas_bayes.fitting.inference import Sampler, save
    started = time.perf_counter()
    tree = study.fit(table.runs, Sampler(**{"seed": settings.seed, **settings.sampler}), warn=False)
    interval = target_interval(study.posterior(tree, table.runs, None), study.target)
    checks = verdict(tree)
    folder = out / f"round-{r}"
    folder.mkdir(parents=True, exist_ok=True)
    save(tree, folder / "posterior.nc")          # atomic: through a temporary file
    spent = (log[-1]["spent"] if log else 0.0) + cost
    entry = {"round": r, "runs": ids, "cost": cost, "spent": spent,
             "n_runs": int(table.runs["run_id"].nunique()), "target": study.target.name,
             **interval, **checks, "fit_seconds": round(time.perf_counter() - started, 2)}
    log.append(entry)
    _write_text(out / "rounds.jsonl", "".join(json.dumps(e, default=_plain) + "\n" for e in log))
    plot_width(log, out / "width.png")
    width = entry.get("width")
    say(f"round {r}: {len(ids)} run(s), cost {cost:.3g} FLOPs, spent {spent:.3g} of "
        f"{settings.budget:.3g}" + (f"; 90% interval width {width:.4g}" if width is not None else "")
        + f"; fit {_verdict_word(checks['converged'])}")
    for message in checks["warnings"]:
        say(f"round {r}: warning: {message}")
    return tree


def _verdict_word(converged) -> str:
    return {True: "converged", False: "DID NOT CONVERGE"}.get(converged, "not checked")


def target_interval(posterior: DesignPosterior, target: Target, prob: float = PROB) -> dict:
    """The target's median and central `prob` interval over all of the posterior's draws; for
    `params`, each parameter's interval width relative to its median (no single width)."""
    if target.is_parameters:
        widths = {}
        for name, values in posterior.draws.params.items():
            lo, hi = weighted_interval(values, prob=prob)
            widths[name] = (hi - lo) / abs(float(np.median(values)))
        return {"width": None, "relative_widths": widths}
    return target_summary(posterior, target, prob)


def _stop_reason(settings: LoopSettings, log: list[dict]) -> str:
    """Why the loop stops after the last round ('' to go on): width reached, budget spent or
    the round limit."""
    last = log[-1]
    if last.get("converged") is False and not settings.accept_unconverged:
        return (f"round {last['round']}'s fit did not converge, so its design would not be reliable: "
                "rerun with --accept-unconverged to design from it anyway, or start a new loop "
                "with more --warmup/--draws or a higher --target-accept")
    if settings.width is not None and last.get("width") is not None \
            and last["width"] <= settings.width:
        return f"the 90% interval ({last['width']:.4g}) is narrower than {settings.width:g}"
    if last["spent"] >= settings.budget:
        return "budget spent"
    if settings.max_rounds is not None and last["round"] >= settings.max_rounds:
        return f"{settings.max_rounds} round(s) done"
    return ""


def _design_round(table: LoopTable, out, r, settings, study: Study, tree, log, say) -> list[dict]:
    """Choose round r's batch within the remaining budget and write its plan (atomically)."""
    post = study.posterior(tree, table.runs, settings.max_draws)
    options = CandidateOptions(shapes=settings.shapes or None, tokens=settings.tokens,
                               tokens_per_param=settings.tokens_per_param, trainer=True)
    candidates = study.candidates(post, tree, table.runs, options)
    remaining = settings.budget - log[-1]["spent"]
    result = choose_batch(post, candidates, study.target, k=settings.k, budget=remaining,
                          cost_power=settings.cost_power, seed=settings.seed + r)
    if result.chosen.empty:
        return []
    configs = plan_configs(result.chosen, prefix=f"loop-r{r}", base=settings.train_base)
    # The trainer is deterministic for a seed: a later round that picks a spec again must train
    # a new seed, or the refit would count one measurement twice.
    base_seed = int(settings.train_base.get("seed", 0))
    for i, config in enumerate(configs):
        config["seed"] = base_seed + r * settings.k + i
    folder = out / f"round-{r}"
    _write_json(folder / "design.json", result.as_dict())
    _write_text(folder / "plan.jsonl", "".join(json.dumps(c) + "\n" for c in configs))
    say(f"round {r}: chose {len(configs)} run(s) ({', '.join(c['run_id'] for c in configs)}), "
        f"expected gain {result.total_gain:.3g} nats, cost {result.chosen['cost'].sum():.3g} FLOPs")
    return configs


def _collect_runs(table: LoopTable, out, r, configs, settings, ingest, say, progress,
                  ray=None) -> list[str]:
    """Add every planned run that is complete to the table (training it here, or on Ray,
    unless external); returns the run_ids still missing."""
    have = table.run_ids()
    todo = [c for c in configs if c["run_id"] not in have]
    if not todo:
        return []
    if settings.external:
        source = Path(ingest) if ingest else out / f"round-{r}" / "results.csv"
        if not source.exists():
            return [c["run_id"] for c in todo]
        results = _read_quietly(source)
        missing = []
        for config in todo:
            rows = results[results["run_id"] == config["run_id"]]
            if complete(rows, config):
                table.add(rows)
                say(f"round {r}: took {config['run_id']} from {source}")
            else:
                missing.append(config["run_id"])
        return missing
    if ray is not None:
        return _train_on_ray(table, out, r, todo, ray, say, progress)
    for i, config in enumerate(todo, 1):
        say(f"round {r}: training {config['run_id']} ({i}/{len(todo)}, model {config['model']}, "
            f"{config['tokens']:.3g} tokens)")
        rows = _train_run(config, out / "train", progress)
        if not complete(rows, config):
            raise RuntimeError(f"run {config['run_id']} ended without reaching its "
                               f"{config['tokens']} tokens; see {out / 'train'}")
        table.add(rows)
    return []


def complete(rows: pd.DataFrame, config: dict) -> bool:
    """Whether a run's rows reach the tokens its config asked for (its own, past any init)."""
    if rows.empty:
        return False
    own = rows["n_tokens"] - rows.get("init_tokens", pd.Series(0.0, index=rows.index)).fillna(0.0)
    return bool(own.max() >= 0.999 * float(config["tokens"]))


def _train_run(config: dict, folder: Path, progress: bool) -> pd.DataFrame:
    """One run with the companion trainer (resumes from its checkpoint if one exists)."""
    from atlas_bayes.trainers.train import train
    return train(config, folder, progress=progress)


def _train_on_ray(table: LoopTable, out, r, todo, address, say, progress) -> list[str]:
    """Round r's runs as Ray tasks, each added to the table as soon as it is complete."""
    from atlas_bayes.trainers.ray_plan import run_plan_on_ray
    wanted = {c["run_id"]: c for c in todo}

    def add(run_id, rows):
        if not complete(rows, wanted[run_id]):
            raise RuntimeError(f"run {run_id} ended without reaching its {wanted[run_id]['tokens']} "
                               f"tokens; see {out / 'train'}")
        table.add(rows)

    say(f"round {r}: training {len(todo)} run(s) on Ray ({', '.join(wanted)})")
    run_plan_on_ray(todo, out / "train", address=address, progress=progress, on_finished=add)
    return []


def _finish(out: Path, log: list[dict], stopped: str, say) -> LoopStatus:
    """Write OUT/status.json for a stopped loop and return it."""
    status = LoopStatus(stopped=stopped, rounds=len(log) - 1, spent=log[-1]["spent"], last=log[-1])
    _write_json(out / "status.json", status)
    say(f"stopped: {stopped} ({status['rounds']} round(s), {status['spent']:.3g} FLOPs); "
        f"log {out / 'rounds.jsonl'}, plot {out / 'width.png'}")
    return status


# ---------------------------------------------------------------------------------------------
# The plot


def plot_width(log: list[dict], path) -> Path:
    """The target's 90% interval width (or, for params, each parameter's relative width)
    against the compute spent, one point per round; for a single target, a second panel
    shows the interval itself, so a shift between rounds is seen, not only its width."""
    import matplotlib.pyplot as plt

    spent = [e["spent"] for e in log]
    scalar = log[0].get("width") is not None
    fig, axes = plt.subplots(1, 2 if scalar else 1, figsize=(11 if scalar else 6, 4),
                             squeeze=False)
    ax = axes[0, 0]
    if scalar:
        ax.plot(spent, [e["width"] for e in log], "o-", label=log[0]["target"])
        ax.set_ylabel("90% interval width")
        for e in log:
            ax.annotate(str(e["round"]), (e["spent"], e["width"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        band = axes[0, 1]
        median = np.array([e["median"] for e in log])
        band.errorbar(spent, median, yerr=[median - [e["lo"] for e in log],
                                           [e["hi"] for e in log] - median],
                      fmt="o", capsize=3)
        band.set_xlabel("compute spent by the loop (FLOPs)")
        band.set_ylabel("median and 90% interval")
        band.set_title("the target's interval after each round", fontsize=9)
    else:
        for name in log[0]["relative_widths"]:
            ax.plot(spent, [e["relative_widths"][name] for e in log], "o-", label=name)
        ax.set_ylabel("90% interval width / median")
    ax.set_xlabel("compute spent by the loop (FLOPs)")
    ax.set_title(f"Closed loop: {log[0]['target']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)
