"""Compute-optimal allocation per language, with the posterior's uncertainty (ATLAS section 6).

For a budget C = 6 N D, the loss-minimising model size N* and tokens D* of a fitted law, for
every posterior draw at once (numpy/JAX arrays over draws, no Python loop over draws):

* without repetition (the language's unique tokens U are infinite, or the optimum needs no
  more than one epoch) the Chinchilla closed form: N* = G (C/6)^(beta/(alpha+beta)),
  D* = C / (6 N*), G = (alpha A / (beta B))^(1/(alpha+beta)). It is also the optimum of
  DCSL and ATLAS there: both equal Chinchilla up to one epoch and can only be worse beyond;
* with repetition (D > U) the law's own effective data (`laws.saturation` for ATLAS,
  `laws.dcsl_effective` for DCSL, which also decays excess parameters) bends the optimum, so
  it is found numerically along the iso-compute line: a log-spaced grid of N for all draws
  at once, then a golden-section refinement around each draw's best grid point.

Compute is spent on the target language alone (monolingual training): ATLAS's transfer and
"other" terms are zero. Predicted losses are the law's mean (no observation noise).

On top of the allocation: `trajectories` / `plot_trajectories` (the paper's Figure 1 with
bands) and `efficiency_tax`, the posterior ratio of compute two fitted regimes need for
equal loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.fitting.draws import LawDraws, check_unique_tokens, law_draws, predicted_loss
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.models import form_of
from atlas_bayes.tables.atomic_files import atomic_file, atomic_write

MIN_PARAMS = 1e6      # default smallest model and token count the search considers
MIN_TOKENS = 1e6
GRID_PER_DECADE = 48  # grid points per decade of N along the iso-compute line
GOLDEN_STEPS = 40     # refinement steps: the bracket shrinks 0.618^40 ~ 4e-9 times


# ---------------------------------------------------------------------------------------------
# The law along the iso-compute line (float64, all draws at once)


def chinchilla_optimum(compute, A, B, alpha, beta) -> tuple[np.ndarray, np.ndarray]:
    """Chinchilla's closed-form (N*, D*) at compute C = 6 N D (Hoffmann et al. 2022)."""
    return laws.chinchilla_optimum(np.asarray(compute, dtype=float), A, B, alpha, beta)


def allocation(draws: LawDraws, compute, *, unique_tokens=None, solver: str = "auto",
               min_params: float = MIN_PARAMS, min_tokens: float = MIN_TOKENS,
               per_decade: int = GRID_PER_DECADE) -> dict:
    """Posterior draws of the compute-optimal N*, D* and the predicted loss at budget `compute`
    (a number, or one per draw).

    Returns arrays (one per draw): N, D, loss, chinchilla_N, chinchilla_D (the closed form,
    which ignores repetition), repeated (D* > U) and at_bound (the optimum sits on the
    search's edge N = min_params or D = min_tokens). `solver="auto"` uses the closed form
    where it is exact (no repetition at its optimum) and the numerical search elsewhere;
    `"numerical"` searches for every draw.
    """
    U = draws.unique_tokens if unique_tokens is None else float(unique_tokens)
    check_unique_tokens(U)
    if solver not in ("auto", "numerical"):
        raise ValueError(f"solver must be 'auto' or 'numerical', got {solver!r}")
    C = np.broadcast_to(np.asarray(compute, dtype=float), (draws.n,)).copy()
    smallest = 6.0 * min_params * min_tokens
    if not np.all(np.isfinite(C)) or np.any(C < smallest):
        raise ValueError(f"compute budget {np.min(C):.3g} FLOPs is too small: C = 6 N D needs at "
                         f"least 6 x {min_params:.3g} parameters x {min_tokens:.3g} tokens = "
                         f"{smallest:.3g} FLOPs (lower min_params / min_tokens to search smaller "
                         "models)")
    if form_of(draws.kind).user is not None:
        return _user_allocation(draws, C, U, min_params, min_tokens, per_decade)
    p = draws.params
    N_c, D_c = chinchilla_optimum(C, p["A"], p["B"], p["alpha"], p["beta"])
    hi = C / (6.0 * min_tokens)
    N_c = np.clip(N_c, min_params, hi)
    D_c = C / (6.0 * N_c)
    exact = (D_c <= U) & (solver == "auto")
    N, D = N_c.copy(), D_c.copy()
    at_bound = (N_c <= min_params) | (N_c >= hi)
    todo = ~exact
    if np.any(todo):
        sub = _subset(draws, todo)
        n_star, edge = _search(lambda n, d: predicted_loss(sub, n, d, U), C[todo], min_params,
                               hi[todo], per_decade)
        N[todo], D[todo], at_bound[todo] = n_star, C[todo] / (6.0 * n_star), edge
    return {"N": N, "D": D, "loss": predicted_loss(draws, N, D, U), "chinchilla_N": N_c,
            "chinchilla_D": D_c, "repeated": D > U * (1 + 1e-9), "at_bound": at_bound}


def _user_allocation(draws: LawDraws, C, U, min_params, min_tokens, per_decade) -> dict:
    """A user law's optimum: the numerical search for every draw (no closed form; its
    chinchilla_N, chinchilla_D are NaN). The law must read no columns besides n_params,
    n_tokens and unique_tokens."""
    form = form_of(draws.kind)
    if not {"n_params", "n_tokens"} <= set(form.inputs) \
            or not set(form.inputs) <= {"n_params", "n_tokens", "unique_tokens"}:
        raise ValueError(f"{form.name}: compute-optimal allocation needs a law of n_params and "
                         f"n_tokens (and unique_tokens) alone; its FEATURES are {list(form.inputs)}")
    hi = C / (6.0 * min_tokens)
    N, edge = _search(lambda n, d: predicted_loss(draws, n, d, U), C, min_params, hi, per_decade)
    D = C / (6.0 * N)
    nan = np.full(draws.n, np.nan)
    return {"N": N, "D": D, "loss": predicted_loss(draws, N, D, U), "chinchilla_N": nan,
            "chinchilla_D": nan, "repeated": D > U * (1 + 1e-9), "at_bound": edge}


def _subset(draws: LawDraws, mask) -> LawDraws:
    return LawDraws(draws.kind, {k: v[mask] for k, v in draws.params.items()}, draws.language,
                    draws.law, draws.unique_tokens, draws.unique_tokens_source)


def _search(loss, C, lo, hi, per_decade):
    """argmin over log N in [lo, hi] of loss(N, C / 6N), per row: a log grid, then golden
    section inside the best grid point's neighbours. Returns (N*, on the search's edge)."""
    log_lo = np.log(np.broadcast_to(lo, C.shape))
    log_hi = np.log(hi)
    span = float(np.max(log_hi - log_lo)) / np.log(10.0)
    # rounded up to a multiple of 64: fewer distinct shapes for the compiled law to see
    size = 64 * max(int(np.ceil((span * per_decade + 1) / 64)), 1)
    u = np.linspace(0.0, 1.0, size)
    log_n = log_lo[:, None] + u[None, :] * (log_hi - log_lo)[:, None]
    values = loss(np.exp(log_n), C[:, None] / (6.0 * np.exp(log_n)))
    best = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    rows = np.arange(len(C))
    a = log_n[rows, np.maximum(best - 1, 0)]
    b = log_n[rows, np.minimum(best + 1, size - 1)]
    f = lambda x: loss(np.exp(x)[:, None], (C / (6.0 * np.exp(x)))[:, None])[:, 0]  # noqa: E731
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(GOLDEN_STEPS):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        left = f(c) < f(d)
        a, b = np.where(left, a, c), np.where(left, d, b)
    x = 0.5 * (a + b)
    tol = 1e-6
    edge = (x - log_lo < tol) | (log_hi - x < tol)
    return np.exp(x), edge


def compute_for_loss(draws: LawDraws, target_loss, *, unique_tokens=None,
                     max_factor: float = 1e6, min_params: float = MIN_PARAMS,
                     min_tokens: float = MIN_TOKENS, steps: int = 32) -> np.ndarray:
    """Least compute (per draw) at which the law's compute-optimal loss reaches `target_loss`
    (a number or one per draw); inf where it cannot: the target is at or below the law's floor
    (E, or ATLAS's saturation floor), or needs over `max_factor` x the no-repetition compute.

    Without repetition the closed form L*(C) = E + K (C/6)^(-alpha beta/(alpha+beta)) is
    inverted; with finite U, bisection on log C (L*(C) only falls as C grows).
    """
    U = draws.unique_tokens if unique_tokens is None else float(unique_tokens)
    p = draws.params
    target = np.broadcast_to(np.asarray(target_loss, dtype=float), (draws.n,))
    C = laws.chinchilla_compute_for_loss(target, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    floor = 6.0 * min_params * min_tokens
    C = np.where(np.isfinite(C), np.maximum(C, floor), C)
    if not np.isfinite(U):
        return C
    # repetition can only raise the loss at a given compute: the closed form is a lower bound
    reach = np.isfinite(C)
    if not np.any(reach):
        return C
    sub = _subset(draws, reach)
    lo, hi = np.log(C[reach]), np.log(C[reach] * max_factor)

    def optimal_loss(log_c):
        return allocation(sub, np.exp(log_c), unique_tokens=U, min_params=min_params,
                          min_tokens=min_tokens, per_decade=24)["loss"]

    done = optimal_loss(lo) <= target[reach] * (1 + 1e-12)
    possible = optimal_loss(hi) <= target[reach]
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = optimal_loss(mid) <= target[reach]
        hi, lo = np.where(below, mid, hi), np.where(below, lo, mid)
    out = np.where(done, np.exp(lo), np.where(possible, np.exp(hi), np.inf))
    C[reach] = out
    return C


# ---------------------------------------------------------------------------------------------
# Summaries


def _interval(values, prob):
    """Median and equal-tailed `prob` interval; infinite draws stay in (an end may be inf)."""
    tail = (1 - prob) / 2
    v = np.asarray(values, dtype=float)
    method = "linear" if np.all(np.isfinite(v)) else "inverted_cdf"
    q = np.quantile(v, [tail, 0.5, 1 - tail], method=method)
    return {"median": float(q[1]), f"q{100 * tail:02.0f}": float(q[0]),
            f"q{100 * (1 - tail):02.0f}": float(q[2])}


@dataclass
class Optimum:
    """The posterior of the compute-optimal allocation of one language at one budget."""
    draws: LawDraws
    compute: float
    result: dict
    prob: float = 0.9

    def table(self) -> pd.DataFrame:
        """Rows N, D, loss, tokens_per_param, epochs (D*/U; NaN when U is unlimited) and the
        Chinchilla closed form's N, D; columns median and the `prob` interval."""
        r = self.result
        rows = {"N": r["N"], "D": r["D"], "loss": r["loss"], "tokens_per_param": r["D"] / r["N"],
                "epochs": (r["D"] / self.draws.unique_tokens if np.isfinite(self.draws.unique_tokens)
                           else np.full(r["D"].shape, np.nan)),
                "chinchilla_N": r["chinchilla_N"], "chinchilla_D": r["chinchilla_D"]}
        table = pd.DataFrame({k: _interval(v, self.prob) for k, v in rows.items()}).T
        table.index.name = "quantity"
        return table

    def as_dict(self) -> dict:
        """Plain JSON-able summary."""
        r, d = self.result, self.draws
        return {"law": d.law, "language": d.language, "compute": self.compute,
                "unique_tokens": d.unique_tokens if np.isfinite(d.unique_tokens) else None,
                "unique_tokens_source": d.unique_tokens_source, "prob": self.prob,
                "n_draws": d.n,
                "allocation": {k: {q: (v if np.isfinite(v) else None) for q, v in row.items()}
                               for k, row in self.table().to_dict(orient="index").items()},
                "p_repeated": float(np.mean(r["repeated"])),
                "p_at_bound": float(np.mean(r["at_bound"])),
                "p_more_params_than_chinchilla": (
                    float(np.mean(r["N"] > r["chinchilla_N"] * (1 + 1e-6)))
                    if np.isfinite(r["chinchilla_N"]).any() else None)}


def optimal(tree, compute: float, *, language: str | None = None,
            unique_tokens: float | None = None, prob: float = 0.9,
            max_draws: int | None = None, **search) -> Optimum:
    """Posterior of N*, D* and the predicted loss for `language` at compute C = 6 N D.

    `unique_tokens` is the language's U (default: from the fit's data, inf when unrecorded);
    `search` passes min_params / min_tokens / solver to `allocation`.
    """
    check_compute(compute)
    draws = law_draws(tree, language, unique_tokens, max_draws)
    return Optimum(draws, float(compute), allocation(draws, float(compute), **search), prob)


def check_compute(compute) -> None:
    """A compute budget must be one positive, finite number of FLOPs."""
    try:
        ok = np.isfinite(float(compute)) and float(compute) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"compute must be a positive number of FLOPs (C = 6 N D), got {compute!r}")


def _sources(fits, unique_tokens, max_draws) -> dict[str, LawDraws]:
    """{label: LawDraws} from a tree (all its languages) or {label: tree or (tree, language)}."""
    if not isinstance(fits, dict):
        tree = fits
        langs = ([str(v) for v in tree.posterior["language"].values]
                 if "language" in tree.posterior.dims
                 else list(FitRecord.from_tree(tree, require=("languages",),
                                               purpose="trajectories").languages))
        fits = {lang: (tree, lang) for lang in langs}
    unique_tokens = unique_tokens or {}
    if not isinstance(unique_tokens, dict):
        raise ValueError("unique_tokens for trajectories is a dict {label: U}")
    out = {}
    for label, value in fits.items():
        tree, lang = value if isinstance(value, tuple) else (value, None)
        out[label] = law_draws(tree, lang, unique_tokens.get(label), max_draws)
    return out


def trajectories(fits, budgets, *, unique_tokens: dict | None = None, prob: float = 0.9,
                 max_draws: int | None = 1000, **search) -> pd.DataFrame:
    """Compute-optimal N*, D* and loss over a range of budgets for several languages/regimes.

    `fits` is one fitted tree (every language it fits) or {label: tree or (tree, language)};
    `unique_tokens` maps labels to U (default: each fit's data). One row per (label, budget)
    with the median and `prob` interval of N, D and loss and the share of draws that repeat
    data. Loops over budgets, each budget vectorised over draws.
    """
    budgets = np.asarray(budgets, dtype=float).ravel()
    for c in budgets:
        check_compute(c)
    tail = (1 - prob) / 2
    rows = []
    for label, draws in _sources(fits, unique_tokens, max_draws).items():
        for c in budgets:
            r = allocation(draws, c, **search)
            row = {"label": label, "language": draws.language, "law": draws.law, "compute": c,
                   "unique_tokens": draws.unique_tokens, "p_repeated": float(np.mean(r["repeated"]))}
            for name in ("N", "D", "loss"):
                lo, mid, hi = np.quantile(r[name], [tail, 0.5, 1 - tail])
                row.update({f"{name}_median": mid, f"{name}_lo": lo, f"{name}_hi": hi})
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["prob"] = prob
    return table


def plot_trajectories(table: pd.DataFrame, path, *, title: str | None = None):
    """The paper's Figure 1 with uncertainty: compute-optimal D* against N* as the budget
    grows, one line per language/regime with its `prob` band (the band's edges pair N's lower
    quantile with D's upper one: N D = C/6 on each budget's line), iso-compute lines in grey,
    and a second panel of tokens per parameter against compute. Returns the figure."""
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("no trajectories to plot: the table is empty")
    prob = table.attrs.get("prob", 0.9)
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for i, (label, rows) in enumerate(table.groupby("label", sort=False)):
        rows = rows.sort_values("compute")
        colour = f"C{i % 10}"
        ax.fill(np.r_[rows["N_lo"], rows["N_hi"][::-1]], np.r_[rows["D_hi"], rows["D_lo"][::-1]],
                color=colour, alpha=0.25, lw=0)
        ax.plot(rows["N_median"], rows["D_median"], color=colour, marker="o", ms=3, label=label)
        U = rows["unique_tokens"].iloc[0]
        if np.isfinite(U):
            ax.axhline(U, color=colour, ls=":", lw=0.8)
        ratio = rows["D_median"] / rows["N_median"]
        ax_ratio.fill_between(rows["compute"], rows["D_lo"] / rows["N_hi"],
                              rows["D_hi"] / rows["N_lo"], color=colour, alpha=0.25, lw=0)
        ax_ratio.plot(rows["compute"], ratio, color=colour, label=label)
    n = np.geomspace(table["N_lo"].min() / 2, table["N_hi"].max() * 2, 50)
    for c in np.unique(table["compute"])[:: max(len(np.unique(table["compute"])) // 6, 1)]:
        ax.plot(n, c / (6 * n), color="grey", lw=0.5, alpha=0.5)
    ax.set(xscale="log", yscale="log", xlabel="parameters N*", ylabel="training tokens D*",
           title=title or f"Compute-optimal trajectories ({prob:.0%} bands; dotted: unique tokens)")
    ax.set_xlim(n[0], n[-1])
    ax.set_ylim(table["D_lo"].min() / 2, table["D_hi"].max() * 2)
    ax.legend(fontsize=8)
    ax_ratio.set(xscale="log", yscale="log", xlabel="compute C = 6ND (FLOPs)",
                 ylabel="tokens per parameter D*/N*", title="Tokens per parameter")
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return fig


def efficiency_tax(regime_a, regime_b, *, compute: float | None = None,
                   target_loss: float | None = None, language: str | None = None,
                   language_b: str | None = None, unique_tokens: float | None = None,
                   unique_tokens_b: float | None = None, prob: float = 0.9,
                   max_draws: int | None = 1000, max_factor: float = 1e6) -> dict:
    """Posterior ratio C_B / C_A of the compute regime B needs for the loss regime A reaches
    (e.g. multilingual vs monolingual fits): a ratio above 1 is B's tax.

    Regimes are fitted trees or `LawDraws`. Give `compute` (A reaches its compute-optimal loss
    there, per draw, and C_A = compute) or `target_loss` (both solved for it). Draws are paired
    by index after thinning both to the same count: independent fits give draws from the
    product of their posteriors; the same joint fit keeps its joint posterior. Draws where a
    regime cannot reach the loss (at or below its floor) have an infinite ratio, counted in
    `p_unreachable` and left inside the quantiles (so an interval may end at inf).
    """
    if (compute is None) == (target_loss is None):
        raise ValueError("give exactly one of compute (A's budget) or target_loss")
    a = _as_draws(regime_a, language, unique_tokens)
    b = _as_draws(regime_b, language_b if language_b is not None else language, unique_tokens_b)
    m = min(a.n, b.n, max_draws or max(a.n, b.n))
    a, b = a.thin(m), b.thin(m)
    if compute is not None:
        check_compute(compute)
        target = allocation(a, float(compute))["loss"]
        c_a = np.full(m, float(compute))
    else:
        if not float(target_loss) > 0:
            raise ValueError(f"target_loss must be a positive loss, got {target_loss!r}")
        target = np.full(m, float(target_loss))
        c_a = compute_for_loss(a, target, max_factor=max_factor)
    c_b = compute_for_loss(b, target, max_factor=max_factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(c_a) & np.isfinite(c_b), c_b / c_a,
                         np.where(np.isfinite(c_a), np.inf, np.nan))
    valid = ~np.isnan(ratio)
    return {"regime_a": {"law": a.law, "language": a.language},
            "regime_b": {"law": b.law, "language": b.language},
            "compute": compute, "target_loss": _interval(target, prob), "prob": prob,
            "n_draws": int(m), "ratio": _interval(ratio[valid], prob) if valid.any() else None,
            "p_tax": float(np.mean(ratio[valid] > 1)) if valid.any() else None,
            "p_unreachable_a": float(np.mean(~np.isfinite(c_a))),
            "p_unreachable_b": float(np.mean(~np.isfinite(c_b))),
            "ratio_draws": ratio}


def _as_draws(regime, language, unique_tokens) -> LawDraws:
    if isinstance(regime, LawDraws):
        return regime.with_unique_tokens(unique_tokens)
    return law_draws(regime, language, unique_tokens)


def save_optimum(result: Optimum, path) -> Path:
    """Write `Optimum.as_dict()` as JSON."""
    path = Path(path)
    atomic_write(path, json.dumps(result.as_dict(), indent=2))
    return path


# ---------------------------------------------------------------------------------------------
# The `optimal` command's result


@dataclass
class OptimalResult:
    """What `atlas-bayes optimal` reports: the law's posterior (`tree`), the `Optimum` at the
    budget and the compute-optimal trajectory around it (`trajectory`, 1e-3 to 1e3 times the
    budget). `as_dict()` is the --json object (Optimum.as_dict plus diagnostics and
    trajectory), `to_text()` the readable table, `write(out)` the files (posterior.nc,
    optimal.json, trajectory.png)."""
    tree: object
    optimum: Optimum
    trajectory: pd.DataFrame
    notes: tuple[str, ...] = ()     # how far the answer lies outside the data (`plausibility`)

    def as_dict(self) -> dict:
        """The optimum's summary, the fit's diagnostics, verdict and warnings (the fit's, then
        the answer's own) and the trajectory's rows (JSON-safe)."""
        from atlas_bayes.fitting.summary import json_safe
        from atlas_bayes.fitting.trust import verdict

        fit = verdict(self.tree)
        return json_safe({**self.optimum.as_dict(),
                          "diagnostics": FitRecord.from_tree(self.tree).diagnostics.as_dict(),
                          "converged": fit["converged"], "warnings": fit["warnings"] + list(self.notes),
                          "trajectory": self.trajectory.drop(columns=["label"]).to_dict(orient="records")})

    def warnings(self) -> list[str]:
        """The answer's own warnings (the fit's are said where it is fitted or read)."""
        return list(self.notes)

    def to_text(self, out: Path | None = None) -> str:
        """The allocation table under a heading, P(repeats data), P(more parameters than
        Chinchilla); with `out`, the line naming the files."""
        d, summary = self.optimum.draws, self.as_dict()
        U = f"{d.unique_tokens:.3g} ({d.unique_tokens_source})" if np.isfinite(d.unique_tokens) \
            else "not limited (never repeated)"
        lines = [f"Compute-optimal allocation for {d.language} at C = {self.optimum.compute:.3g} "
                 f"FLOPs ({FitRecord.from_tree(self.tree).law}; unique tokens {U}; median and 90% interval):",
                 self.optimum.table().to_string(float_format=lambda v: f"{v:.4g}"),
                 f"\nP(the optimum repeats data) = {summary['p_repeated']:.2f}"
                 + ("" if summary["p_more_params_than_chinchilla"] is None else
                    f"; P(more parameters than Chinchilla's closed form) = "
                    f"{summary['p_more_params_than_chinchilla']:.2f}")]
        if out is not None:
            lines.append(f"wrote {out / 'posterior.nc'}, {out / 'optimal.json'}, "
                         f"{out / 'trajectory.png'}")
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        """Write posterior.nc, trajectory.png and optimal.json into the folder `out`."""
        from atlas_bayes.fitting.inference import save

        out.mkdir(parents=True, exist_ok=True)
        save(self.tree, out / "posterior.nc")
        language = self.optimum.draws.language
        plot_trajectories(self.trajectory, out / "trajectory.png",
                          title=f"Compute-optimal trajectory ({language}, {FitRecord.from_tree(self.tree).law})")
        atomic_write(out / "optimal.json", json.dumps(self.as_dict(), indent=2))


def check_minimum_compute(compute: float) -> None:
    """Raise ValueError when `compute` is below the smallest budget the search considers
    (C = 6 N D at `MIN_PARAMS` and `MIN_TOKENS`)."""
    smallest = 6.0 * MIN_PARAMS * MIN_TOKENS
    if compute < smallest:
        raise ValueError(f"--compute {compute:g} is too small: C = 6 N D needs at least 6 x "
                         f"{MIN_PARAMS:g} parameters x {MIN_TOKENS:g} tokens = {smallest:g} FLOPs")


def plausibility(tree, optimum: Optimum) -> list[str]:
    """Warnings for an optimum far outside the fitted runs: its compute against the largest
    run's (`fitting.plausible`), and draws whose loss along the iso-compute line is flat to
    double precision around N* (the model-size or data term has vanished below the floor's
    resolution, so N* and D* are not determined: the search stops at the first flat point)."""
    from atlas_bayes.fitting.plausible import beyond, fitted_extremes

    largest = fitted_extremes(tree).get("compute", np.nan)
    notes = [m for m in [beyond(optimum.compute, largest, "compute", "the largest run's")] if m]
    r, draws = optimum.result, optimum.draws
    C = optimum.compute
    loss = r["loss"]
    nearby = [predicted_loss(draws, r["N"] * f, C / (6.0 * r["N"] * f)) for f in (0.1, 10.0)]
    flat = np.all([np.abs(v - loss) <= 1e-12 * np.abs(loss) for v in nearby], axis=0)
    if flat.mean() > 0.05:
        notes.append(
            f"at C = {C:.3g} the predicted loss changes by less than double precision's "
            f"resolution between N*/10 and 10 N* for {flat.mean():.0%} of draws: N* and D* are not "
            f"determined there (the closed form without repetition gives N* = "
            f"{np.median(r['chinchilla_N']):.3g})")
    return notes


def optimal_study(source, compute: float, *, law: str = "atlas", language: str | None = None,
                  unique_tokens: float | None = None, sampler=None, progress: bool = False,
                  accept_unconverged: bool = False) -> OptimalResult:
    """The compute-optimal allocation `atlas-bayes optimal` reports: `source` is a fitted tree
    (used as is, after `trust.check_saved_fit`: its warnings repeated, and refused when it did
    not converge unless `accept_unconverged`) or a run table (`law` is fitted to it with
    `sampler`); the optimum at `compute` and the trajectory over budgets 1e-3 to 1e3 times it."""
    import xarray as xr

    from atlas_bayes.fitting.inference import fit
    from atlas_bayes.fitting.trust import check_saved_fit
    from atlas_bayes.models import get_law

    tree = source
    if isinstance(source, xr.DataTree):
        check_saved_fit(tree, accept_unconverged)
    else:
        hierarchical = get_law(law).hierarchical
        tree = fit(source, law, language=None if hierarchical else language, sampler=sampler,
                   progress=progress)
    result = optimal(tree, compute, language=language, unique_tokens=unique_tokens)
    budgets = compute * np.geomspace(1e-3, 1e3, 13)
    budgets = budgets[budgets >= 6.0 * MIN_PARAMS * MIN_TOKENS]
    track = trajectories({result.draws.language: (tree, result.draws.language)}, budgets,
                         unique_tokens={result.draws.language: result.draws.unique_tokens})
    return OptimalResult(tree, result, track, tuple(plausibility(tree, result)))
