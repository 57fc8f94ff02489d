"""Design targets read from learning-curve fits: the pretrain-vs-finetune crossover and a BTS entry.

Design scores candidates with any `posterior.DesignPosterior`: each draw's predicted log loss of
a candidate run (`candidate_log_mean`), a noise scale per draw (`sigma`) and the Student-t
degrees of freedom (`nu`). Two curve fits give such posteriors (`study.CrossoverStudy` and
`study.BtsStudy` fit them and build their candidates):

* `crossover:LANG@N`: the crossover fit (`crossover.fit_crossover`) of the cell (LANG, N).
  Candidates are new scratch or finetuned runs in that cell with d tokens of their own; a
  new run follows the cell's curve (the model has one scratch and one finetune curve per
  cell). The target is log d_cross, the current-run tokens where scratch overtakes the
  finetune; draws with no crossover in the searched range count at that range's end
  (`crossover.MAX_SPAN` x the cell's last scratch tokens), so learning that there is none
  counts as information too. Sizes without a measured cell are refused: the paper's power
  law across sizes is fitted to cell summaries, so its draws are not tied to any single
  run's outcome and cannot be reweighted by one.
* `bts:SRC->TGT[@N]`: the BTS fit (`bts.fit_bts`) of that pair. Its curves are one per
  (run, language) with no pooling, so a new run would be a new, unrelated curve and tell
  nothing; the runs that inform BTS continue the pair's monolingual or bilingual run to more
  tokens. The target is g = log(2 d_mono / d_bi) (BTS = 2(1 - e^-g)), floored where the
  bilingual curve never reaches the monolingual loss or needs over `BTS_MAX_RATIO` x the
  horizon. The companion trainer cannot continue a finished run on a longer schedule, so
  these designs have no trainer plan (`BTS_NO_PLAN`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.design.posterior import DEFAULT_DRAWS, DesignPosterior
from atlas_bayes.design.targets import Target
from atlas_bayes.design.candidates import flops, validate_candidates
from atlas_bayes.fitting.record import FitRecord

CURVE_KINDS = ("crossover", "bts")
CROSSOVER_FORM = "crossover:LANG@N (e.g. crossover:sw@2e9)"
BTS_FORM = "bts:SRC->TGT or bts:SRC->TGT@N (e.g. bts:en->sw)"
SIZE_RTOL = 0.05            # a target's N matches a fitted size within 5%
TOKEN_MULTIPLES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)    # default candidate tokens x the data's end
BTS_MAX_RATIO = 100.0       # g is floored at log(2 / BTS_MAX_RATIO): d_bi = 100 x the horizon
CROSSOVER_FIT = ("a crossover fit (scratch and finetuned learning curves: "
                 "atlas_bayes.decisions.crossover.fit_crossover)")
BTS_FIT = ("a BTS fit (monolingual and 50/50 bilingual learning curves: "
           "atlas_bayes.decisions.bts.fit_bts)")
BTS_NO_PLAN = ("its runs continue existing runs to more tokens (a BTS fit's curves are one per "
               "run), and the companion trainer cannot continue a finished run on a longer "
               "schedule, so there is no trainer plan; continue the runs in design.json with "
               "your own runner")


# ---------------------------------------------------------------------------------------------
# Targets


def parse_curve_target(text: str) -> Target | None:
    """crossover:LANG@N or bts:SRC->TGT[@N] as a `Target` (values read by the curve posteriors);
    None when `text` does not start with a curve kind (crossover: or bts:)."""
    kind, colon, rest = str(text).strip().partition(":")
    if not colon or kind not in CURVE_KINDS:
        return None
    body, at, size = rest.partition("@")
    n_params = None
    if at:
        try:
            n_params = float(size)
        except ValueError:
            n_params = float("nan")
        if not (np.isfinite(n_params) and n_params > 0):
            raise ValueError(f"target {text!r}: the model size after '@' must be a positive "
                             f"number, got {size!r}")
    if kind == "crossover":
        language = body.strip()
        if not language or n_params is None:
            raise ValueError(f"unknown target {text!r}; a crossover target names a language and "
                             f"a model size: {CROSSOVER_FORM}")
        return Target(f"crossover:{language}@{n_params:.3g}",
                      _values("crossover", text, CROSSOVER_FIT),
                      {"kind": "crossover", "language": language, "n_params": n_params})
    match = re.fullmatch(r"\s*([^\s>-]+)\s*->\s*([^\s>-]+)\s*", body)
    if not match:
        raise ValueError(f"unknown target {text!r}; a BTS target names a source and a target "
                         f"language: {BTS_FORM}")
    source, target = match.groups()
    if source == target:
        raise ValueError(f"target {text!r}: the source and the target are one language; BTS "
                         f"measures how one language helps another: {BTS_FORM}")
    name = f"bts:{source}->{target}" + (f"@{n_params:.3g}" if n_params else "")
    return Target(name, _values("bts", text, BTS_FIT),
                  {"kind": "bts", "source": source, "target": target, "n_params": n_params})


def _values(kind: str, text: str, needs: str):
    """The target's `values`: the posterior's own `target_values()`, refused (naming `needs`,
    the fit that answers the target) for a posterior of another kind."""
    def values(posterior):
        if getattr(posterior, "kind", None) != kind:
            raise ValueError(_wrong_posterior(text, needs, posterior))
        return posterior.target_values()
    return values


def _wrong_posterior(text: str, needs: str, posterior) -> str:
    law = getattr(getattr(posterior, "draws", None), "law", "") or type(posterior).__name__
    return (f"target {text!r} needs {needs}; the posterior given is a {law} fit, whose draws "
            "say nothing about it (design fits the right model itself from a run table)")


# ---------------------------------------------------------------------------------------------
# The crossover


@dataclass
class CrossoverPosterior(DesignPosterior):
    """One crossover cell's draws (flattened): scratch L0 + B u^-beta, finetune L0 + delta +
    B (u + D0)^-beta in u = d / d_end, noise sigma; `d_cross` the crossover tokens (inf: none)."""
    cell: str
    language: str
    n_params: float
    d_end: float
    params: dict
    sigma: np.ndarray
    nu: float = 4.0
    kind: str = "crossover"

    @property
    def n(self) -> int:
        """The number of draws."""
        return self.sigma.size

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """(draws, candidates) log loss of new scratch or finetuned runs in this cell."""
        p = {k: v[:, None] for k, v in self.params.items()}
        u = candidates["n_tokens"].to_numpy(float)[None, :] / self.d_end
        tuned = (candidates["init"].astype(str) != "scratch").to_numpy()[None, :]
        B = p["L_end"] - p["L0"]
        scratch = laws.scratch_curve(u, p["L0"], B, p["beta"])
        finetune = laws.finetune_curve(u, p["L0"], B, p["beta"], p["delta"], p["D0_rel"])
        return np.log(np.where(tuned, np.maximum(finetune, 1e-6), scratch))

    def target_values(self) -> np.ndarray:
        """log crossover tokens per draw, censored at the searched range's end."""
        from atlas_bayes.decisions.crossover import MAX_SPAN, crossover_tokens
        d = crossover_tokens(self.params, self.d_end)
        return np.log(np.minimum(d, MAX_SPAN * self.d_end))


def crossover_posterior(tree, language: str, n_params: float,
                        max_draws: int | None = DEFAULT_DRAWS) -> CrossoverPosterior:
    """The draws of the fitted cell (language, n_params) of a `fit_crossover` tree."""
    record = FitRecord.from_tree(tree)
    if record.kind != "crossover":
        raise ValueError(f"target crossover:{language}@{n_params:.3g} needs a crossover fit "
                         "(atlas_bayes.decisions.crossover.fit_crossover); this posterior is a "
                         f"{record.model or None} fit")
    post = tree.posterior
    cells = list(post["cell"].values)
    mine = [(c, float(n)) for c, lang, n in zip(cells, post["language"].values,
                                                 post["n_params"].values) if lang == language]
    if not mine:
        raise ValueError(f"no crossover cell for language {language!r} (cells: "
                         f"{', '.join(cells)}): it needs scratch and finetuned runs in {language}")
    match = [c for c, n in mine if abs(n / n_params - 1) <= SIZE_RTOL]
    if not match:
        sizes = ", ".join(f"{n:.3g}" for _, n in mine)
        raise ValueError(
            f"no crossover cell for {language!r} at N = {n_params:.3g} (measured sizes: {sizes}). "
            "The crossover at an unmeasured size comes from the power law fitted to the cells' "
            "summaries (crossover.fit_power_law), whose draws are not tied to any single run's "
            "outcome, so design cannot score runs for it: measure that size first (a scratch "
            "learning curve and a finetuned run), or target a measured size")
    cell = match[0]
    sel = post.sel(cell=cell)
    flat = lambda name: np.asarray(sel[name].values, dtype=float).ravel()  # noqa: E731
    params = {k: flat(k) for k in ("L_end", "L0", "beta", "delta", "D0_rel")}
    sigma = np.asarray(post["sigma"].values, dtype=float).ravel()
    keep = _thin(sigma.size, max_draws)
    return CrossoverPosterior(cell, language, float(sel["n_params"]), float(sel["d_end"]),
                              {k: v[keep] for k, v in params.items()}, sigma[keep])


def crossover_candidates(posterior: CrossoverPosterior, runs: pd.DataFrame, *, tokens=None,
                         run_folder=None, eval_tokens: float = 0.0) -> pd.DataFrame:
    """New scratch and finetuned runs in the cell, at `tokens` (default: the cell's last scratch
    tokens x `TOKEN_MULTIPLES`), cost 6 N d. Finetunes continue the checkpoint the cell's
    finetuned runs used; `run_folder` (the trainer's output folder) turns a trainer checkpoint
    name (finetune:RUN@T) into the run folder the trainer's `init` needs."""
    p = posterior
    same = runs[(runs["language"] == p.language)
                & np.isclose(runs["n_params"], p.n_params, rtol=1e-3)]
    inits = same.loc[same["init"] != "scratch", "init"].value_counts()
    if inits.empty:
        raise ValueError(f"cell {p.cell}: the run table has no finetuned run to continue from")
    init = str(inits.index[0])
    if run_folder is not None and (m := re.fullmatch(r"finetune:(.+)@\d+", init)):
        init = str(run_folder / m.group(1))
    d = np.asarray(tokens if tokens is not None else np.asarray(TOKEN_MULTIPLES) * p.d_end, float)
    model = _shape_name(p.n_params)
    rows = [{"candidate": f"{p.language}-{model or f'{p.n_params:.4g}'}-{kind}-{t:.4g}",
             "model": model, "n_params": p.n_params, "n_tokens": float(t),
             "language": p.language, "mixture": json.dumps(p.language),
             "init": "scratch" if kind == "scratch" else init}
            for t in d for kind in ("scratch", "finetune")]
    table = pd.DataFrame(rows)
    table["cost"] = flops(table["n_params"], table["n_tokens"], eval_tokens)
    return validate_candidates(table, source=f"crossover candidates for {p.cell}")


# ---------------------------------------------------------------------------------------------
# A BTS entry


@dataclass
class BtsPosterior(DesignPosterior):
    """The two curves of one BTS pair (E + (L_end - E)(d / d_end)^-beta, draws flattened),
    their runs and last tokens, the pair's g draws and the shared noise sigma."""
    pair: str
    n_params: float
    curves: dict            # "mono" / "bilingual" -> {run_id, d_end, E, L_end, beta}
    g: np.ndarray
    sigma: np.ndarray
    nu: float = 4.0
    kind: str = "bts"

    @property
    def n(self) -> int:
        """The number of draws."""
        return self.sigma.size

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """(draws, candidates) log loss of the pair's runs continued to n_tokens."""
        out = np.empty((self.n, len(candidates)))
        for i, (run, d) in enumerate(zip(candidates["extends"], candidates["n_tokens"])):
            c = next(c for c in self.curves.values() if c["run_id"] == run)
            out[:, i] = np.log(laws.learning_curve(np.log(d / c["d_end"]), c["E"], c["L_end"] - c["E"],
                                                   c["beta"]))
        return out

    def target_values(self) -> np.ndarray:
        """g = log(2 d_mono / d_bi) per draw, floored at log(2 / BTS_MAX_RATIO)."""
        return np.maximum(self.g, np.log(2.0 / BTS_MAX_RATIO))


def bts_posterior(tree, runs: pd.DataFrame, source: str, target: str,
                  n_params: float | None = None, max_draws: int | None = DEFAULT_DRAWS) -> BtsPosterior:
    """The pair source->target of a `fit_bts` tree; `runs` gives each curve's last tokens."""
    text = f"bts:{source}->{target}"
    record = FitRecord.from_tree(tree)
    if record.kind != "bts":
        raise ValueError(f"target {text!r} needs a BTS fit (atlas_bayes.decisions.bts.fit_bts); this "
                         f"posterior is a {record.model or None} fit")
    post = tree.posterior
    pairs = [i for i, (s, t) in enumerate(zip(post["source"].values, post["target"].values))
             if s == source and t == target
             and (n_params is None or abs(float(post["n_params"].values[i]) / n_params - 1) <= SIZE_RTOL)]
    if not pairs:
        raise ValueError(f"no measured pair {source}->{target}"
                         + (f" at N = {n_params:.3g}" if n_params else "") + f" (pairs: "
                         f"{', '.join(post['pair'].values)}); BTS needs a monolingual {target} run "
                         f"and a 50/50 {source}/{target} run of one size")
    if len(pairs) > 1:
        raise ValueError(f"{source}->{target} is measured at several sizes "
                         f"({', '.join(post['pair'].values[pairs])}); add @N to the target")
    i = pairs[0]
    info = tree["pair_info"].to_dataset()
    sigma = np.asarray(post["sigma"].values, dtype=float).ravel()
    keep = _thin(sigma.size, max_draws)
    curves = {}
    for role, run in (("mono", str(info["mono_run"].values[i])),
                      ("bilingual", str(info["bilingual_run"].values[i]))):
        label = f"{run}:{target}"
        rows = runs[(runs["run_id"] == run) & (runs["language"] == target)]
        if rows.empty:
            raise ValueError(f"the run table has no rows of run {run!r} on {target!r}, which the "
                             "BTS fit used; pass the run table the fit was made from")
        sel = post.sel(curve=label)
        curves[role] = {"run_id": run, "d_end": float(rows["n_tokens"].max()),
                        **{k: np.asarray(sel[k].values, float).ravel()[keep]
                           for k in ("E", "L_end", "beta")}}
    g = np.asarray(post["g"].isel(pair=i).values, float).ravel()[keep]
    return BtsPosterior(str(post["pair"].values[i]), float(post["n_params"].values[i]), curves,
                        g, sigma[keep])


def bts_candidates(posterior: BtsPosterior, *, multiples=(1.5, 2.0, 3.0, 4.0, 8.0),
                   eval_tokens: float = 0.0) -> pd.DataFrame:
    """Continue the monolingual or the bilingual run to `multiples` x its last tokens; the cost
    is 6 N times the added tokens (`extends` names the run continued)."""
    rows = []
    for role, c in posterior.curves.items():
        for m in multiples:
            if m <= 1:
                raise ValueError(f"continuation multiples must exceed 1, got {m}")
            d = m * c["d_end"]
            rows.append({"candidate": f"{c['run_id']}-to-{d:.4g}", "n_params": posterior.n_params,
                         "n_tokens": d, "init": f"continue:{c['run_id']}", "extends": c["run_id"],
                         "role": role, "cost": float(flops(posterior.n_params, d - c["d_end"],
                                                          eval_tokens))})
    return validate_candidates(pd.DataFrame(rows), source=f"BTS candidates for {posterior.pair}")


# ---------------------------------------------------------------------------------------------
# Helpers


def _thin(n: int, max_draws: int | None) -> np.ndarray:
    """Indices of `max_draws` evenly spaced draws of n (all of them when None or n is smaller)."""
    if max_draws is None or n <= max_draws:
        return np.arange(n)
    return np.linspace(0, n - 1, int(max_draws)).round().astype(int)


def _shape_name(n_params: float) -> str:
    """The trainer shape with this parameter count, or '' (no match, or no 'train' extra)."""
    try:
        from atlas_bayes.design.candidates import shape_sizes
        sizes = shape_sizes()
    except ValueError:
        return ""
    return next((name for name, n in sizes.items() if abs(n / n_params - 1) < 1e-6), "")
