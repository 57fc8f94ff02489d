"""The curse of multilinguality (ATLAS section 5) and iso-loss scaling when adding languages.

The law, with K languages sampled uniformly, N parameters and D_t tokens per language:

    L(K, N, D_t) = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta,    D_tot = K D_t.

Going from K to rK languages at the same loss, with s = N'/N and t = D_t'/D_t, the reducible
loss must stay fixed:  r^phi w_N s^-alpha + r^psi w_D t^-beta = 1, where w_N and w_D are the
two terms' shares of the reducible loss at the starting point. Minimising compute
(C ~ N D_tot, so C'/C = s r t) along that curve gives, from any starting point,

    s = [r^phi w_N (alpha + beta) / beta]^(1/alpha),   t = [r^psi w_D (alpha + beta) / alpha]^(1/beta)

(set the derivative of log s + log t(s) to zero: the N term's share after the move is
beta / (alpha + beta)). From a compute-optimal start (w_N = beta / (alpha + beta)) these are the
paper's closed forms s = r^(phi/alpha), t = r^(psi/beta). Every function takes arrays of
posterior draws and returns arrays of the same shape, so intervals come for free.

Simulated capacity studies with known truths: `atlas_bayes.simulation.curse_study`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atlas_bayes import laws
from atlas_bayes.tables.atomic_files import atomic_file, atomic_write


def term_shares(K, N, D_t, A, B, alpha, beta, phi, psi):
    """(w_N, w_D): the parameter and data terms' shares of the reducible loss at (K, N, D_t)."""
    log_n, log_d = laws.log_curse_terms(K, N, D_t, A, B, alpha, beta, phi, psi)
    w_N = 1.0 / (1.0 + np.exp(log_d - log_n))
    return w_N, 1.0 - w_N


def paper_multipliers(r, alpha, beta, phi, psi) -> dict:
    """The paper's closed forms from a compute-optimal start (ATLAS section 4.2)."""
    r = np.asarray(r, dtype=float)
    return {"N": r ** (phi / alpha), "D_t": r ** (psi / beta),
            "D_tot": r ** (1.0 + psi / beta), "C": r ** (1.0 + phi / alpha + psi / beta)}


def compute_optimal_move(r, w_N, alpha, beta, phi, psi) -> dict:
    """Least-compute multipliers to keep the loss when going from K to rK languages, from a
    start whose parameter term holds share w_N of the reducible loss (any start)."""
    r, w_N = np.asarray(r, dtype=float), np.asarray(w_N, dtype=float)
    s = (r ** phi * w_N * (alpha + beta) / beta) ** (1.0 / alpha)
    t = (r ** psi * (1.0 - w_N) * (alpha + beta) / alpha) ** (1.0 / beta)
    return {"N": s, "D_t": t, "D_tot": r * t, "C": s * r * t}


def tokens_for_parameters(r, s, w_N, alpha, beta, phi, psi) -> np.ndarray:
    """Per-language token multiplier t that keeps the loss when going to rK languages with
    parameters multiplied by s (NaN where no amount of data suffices: s^alpha <= r^phi w_N)."""
    rest = 1.0 - r ** phi * w_N * np.asarray(s, dtype=float) ** -alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rest > 0, (r ** psi * (1.0 - w_N) / rest) ** (1.0 / beta), np.nan)


def parameters_for_tokens(r, t, w_N, alpha, beta, phi, psi) -> np.ndarray:
    """Parameter multiplier s that keeps the loss when going to rK languages with per-language
    tokens multiplied by t (NaN where no model size suffices: t^beta <= r^psi w_D)."""
    rest = 1.0 - r ** psi * (1.0 - w_N) * np.asarray(t, dtype=float) ** -beta
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rest > 0, (r ** phi * w_N / rest) ** (1.0 / alpha), np.nan)


def _draws(tree, language: str | None) -> tuple[dict, dict]:
    """One language's posterior draws (flattened): coefficients and exponents, and the
    exponents alone (the keyword arguments of the multiplier functions)."""
    post = tree.posterior
    fitted = [str(v) for v in post["language"].values]
    lang = language if language is not None else fitted[0]
    if lang not in fitted:
        raise ValueError(f"language {lang!r} was not fitted; fitted: {', '.join(fitted)}")
    p = {k: post[k].sel(language=lang).values.ravel() for k in
         ("A", "B", "alpha", "beta", "phi", "psi")}
    return p, {k: p[k] for k in ("alpha", "beta", "phi", "psi")}


def iso_loss(tree, from_k: float, to_k: float, *, n_params: float | None = None,
             n_tokens: float | None = None, language: str | None = None,
             prob: float = 0.9) -> pd.DataFrame:
    """Posterior multipliers for going from `from_k` to `to_k` languages at the same loss.

    Without a starting point, the start is compute-optimal and the multipliers are the paper's
    closed forms. With `n_params` and `n_tokens` (total tokens at `from_k` languages) the
    start is that run, and the move is the least-compute one from it. Rows: N, D_t (tokens
    per language), D_tot and C; columns: median and the `prob` interval; `language` picks
    one language of a per-language fit (default: the first; pooled fits share one set).
    """
    p, exps = _draws(tree, language)
    r = float(to_k) / float(from_k)
    if (n_params is None) != (n_tokens is None):
        raise ValueError("give both n_params and n_tokens for a starting run, or neither")
    if n_params is None:
        move = paper_multipliers(r, **exps)
    else:
        w_N, _ = term_shares(from_k, n_params, n_tokens / from_k, p["A"], p["B"], **exps)
        move = compute_optimal_move(r, w_N, **exps)
    tail = (1 - prob) / 2
    rows = {name: {"median": np.median(v), f"q{100 * tail:02.0f}": np.quantile(v, tail),
                   f"q{100 * (1 - tail):02.0f}": np.quantile(v, 1 - tail)}
            for name, v in move.items()}
    table = pd.DataFrame(rows).T
    table.index.name = "multiplier"
    return table


def plot_iso_loss(tree, from_k: float, to_k: float, path, *, n_params: float | None = None,
                  n_tokens: float | None = None, language: str | None = None) -> None:
    """The iso-loss frontier at `to_k` languages: total-token multiplier needed for each
    parameter multiplier (median and 90% band over posterior draws), with the least-compute
    point marked."""
    import matplotlib.pyplot as plt

    p, exps = _draws(tree, language)
    lang = language if language is not None else str(tree.posterior["language"].values[0])
    r = float(to_k) / float(from_k)
    if n_params is None:
        w_N = p["beta"] / (p["alpha"] + p["beta"])
    else:
        w_N, _ = term_shares(from_k, n_params, n_tokens / from_k, p["A"], p["B"], **exps)
    s = np.geomspace(0.5, 8.0, 200)
    tokens = r * tokens_for_parameters(r, s[:, None], w_N[None, :], **exps)
    low, mid, high = np.nanquantile(tokens, [0.05, 0.5, 0.95], axis=1)
    best = compute_optimal_move(r, w_N, **exps)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.fill_between(s, low, high, alpha=0.3, label="90% credible band")
    ax.plot(s, mid, label=f"same loss at {to_k:g} languages (median)")
    ax.errorbar(np.median(best["N"]), np.median(best["D_tot"]),
                xerr=[[np.median(best["N"]) - np.quantile(best["N"], 0.05)],
                      [np.quantile(best["N"], 0.95) - np.median(best["N"])]],
                yerr=[[np.median(best["D_tot"]) - np.quantile(best["D_tot"], 0.05)],
                      [np.quantile(best["D_tot"], 0.95) - np.median(best["D_tot"])]],
                fmt="o", color="C3", label="least compute")
    ax.axhline(r, color="grey", lw=0.8, ls=":", label=f"{r:g}x tokens (no transfer)")
    ax.set(xscale="log", yscale="log", xlabel="model size multiplier N'/N",
           ylabel="total token multiplier D_tot'/D_tot",
           title=f"Iso-loss: {from_k:g} -> {to_k:g} languages ({lang})")
    ax.set_ylim(max(np.nanmin(low), 0.5), min(np.nanmax(high), 100 * r))
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The `curse` command's result


class IsoLossResult:
    """What `atlas-bayes curse` reports: the curse law's fit (`tree`) and the iso-loss
    multipliers (`table`: rows N, D_t, D_tot, C; median and 90% interval) for going from
    `from_k` to `to_k` languages, from `start` ({n_params, n_tokens}; both None for a
    compute-optimal start). `as_dict()` is the --json object, `to_text()` the readable table,
    `write(out)` the files (posterior.nc, iso_loss.png, iso_loss.json)."""

    def __init__(self, tree, table: pd.DataFrame, law: str, from_k: float, to_k: float,
                 start: dict, language: str | None = None):
        self.tree, self.table, self.law = tree, table, law
        self.from_k, self.to_k, self.start = from_k, to_k, start
        self.per_language = law == "curse-h"
        self.language = language or str(tree.posterior["language"].values[0])

    def as_dict(self) -> dict:
        """law, from_k, to_k, language ('pooled' unless per language), start (the run or
        'compute-optimal'), multipliers {row: {median, q05, q95}}, parameters, diagnostics."""
        from atlas_bayes.fitting.summary import summary_dict

        summary = summary_dict(self.tree)
        return {"law": self.law, "from_k": self.from_k, "to_k": self.to_k,
                "language": self.language if self.per_language else "pooled",
                "start": self.start if self.start["n_params"] else "compute-optimal",
                "multipliers": {name: dict(row) for name, row in self.table.iterrows()},
                "parameters": summary["parameters"], "diagnostics": summary["diagnostics"]}

    def to_text(self, out=None) -> str:
        """The multipliers table under a heading; with `out`, the line naming the files."""
        start = "compute-optimal" if not self.start["n_params"] else "from the given run"
        lines = [f"Going from {self.from_k:g} to {self.to_k:g} languages at the same loss "
                 f"({start} start; {self.law}, median and 90% interval):",
                 self.table.round(3).to_string()]
        if out is not None:
            lines.append(f"\nwrote {out / 'posterior.nc'}, {out / 'iso_loss.png'}, "
                         f"{out / 'iso_loss.json'}")
        return "\n".join(lines)

    def write(self, out) -> None:
        """Write posterior.nc, iso_loss.png and iso_loss.json into the folder `out`."""
        import json

        from atlas_bayes.fitting.inference import save

        out.mkdir(parents=True, exist_ok=True)
        save(self.tree, out / "posterior.nc")
        plot_iso_loss(self.tree, self.from_k, self.to_k, out / "iso_loss.png",
                      language=self.language, n_params=self.start["n_params"],
                      n_tokens=self.start["n_tokens"])
        atomic_write(out / "iso_loss.json", json.dumps(self.as_dict(), indent=2))


def curse_study(runs, from_k: float, to_k: float, *, sampler, n_params: float | None = None,
                n_tokens: float | None = None, language: str | None = None,
                per_language: bool = False, progress: bool = False) -> IsoLossResult:
    """Fit the curse law (`curse-h` with `per_language`) and the iso-loss multipliers for going
    from `from_k` to `to_k` languages (`iso_loss`), as `atlas-bayes curse` reports them."""
    from atlas_bayes.fitting.inference import fit

    law = "curse-h" if per_language else "curse"
    start = {"n_params": n_params, "n_tokens": n_tokens}
    tree = fit(runs, law, sampler=sampler, progress=progress)
    _warn_beyond_languages(runs, to_k)
    table = iso_loss(tree, from_k, to_k, language=language, **start)
    return IsoLossResult(tree, table, law, from_k, to_k, start, language)


LANGUAGE_FACTOR = 10.0    # --to-k this many times the most languages a run trained on: warn


def _warn_beyond_languages(runs, to_k: float) -> None:
    """An `ExtrapolationWarning` when `to_k` is `LANGUAGE_FACTOR` times the most languages
    in any run's mixture, or more."""
    import warnings

    from atlas_bayes.fitting.plausible import ExtrapolationWarning, beyond
    from atlas_bayes.tables.runs import mixture_fractions

    most = float((mixture_fractions(runs).to_numpy() > 0).sum(axis=1).max())
    note = beyond(float(to_k), most, "number of languages", "the most in any run's mixture",
                  factor=LANGUAGE_FACTOR)
    if note:
        warnings.warn(note, ExtrapolationWarning, stacklevel=3)
