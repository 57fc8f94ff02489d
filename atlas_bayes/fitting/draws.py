"""A fitted tree's posterior draws as one language's law (`LawDraws`), and the law's loss at any
(N, D) for every draw at once (`predicted_loss`): what decisions and design read from a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import numpy as np

from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.models import FORMS, form_of
from atlas_bayes.models.user import is_user_law


@dataclass
class LawDraws:
    """One language's posterior draws of a law, natural scale, flattened over (chain, draw).

    `kind` is the form evaluated (chinchilla, dcsl or atlas); `params` maps E, A, B, alpha,
    beta (and R_D_star, R_N_star or lambda) to float64 arrays of one length. `unique_tokens`
    is U for this language (inf: never repeated) and `unique_tokens_source` says where it
    came from.
    """
    kind: str
    params: dict
    language: str = ""
    law: str = ""
    unique_tokens: float = np.inf
    unique_tokens_source: str = "not recorded: data never repeated"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in FORMS and not is_user_law(self.kind):
            raise ValueError(f"unknown law form {self.kind!r}; expected one of {', '.join(FORMS)} "
                             "or a user law's file")
        needed = form_of(self.kind).parameters
        missing = [k for k in needed if k not in self.params]
        if missing:
            raise ValueError(f"{self.kind} draws need parameters {missing} as well")
        self.params = {k: np.atleast_1d(np.asarray(self.params[k], dtype=float)) for k in needed}
        sizes = {v.size for v in self.params.values()}
        if len(sizes) != 1:
            raise ValueError(f"parameter draws have different lengths {sorted(sizes)}")
        check_unique_tokens(self.unique_tokens)

    @property
    def n(self) -> int:
        """Number of draws."""
        return next(iter(self.params.values())).size

    def thin(self, max_draws: int | None) -> "LawDraws":
        """At most `max_draws` draws, evenly spaced (the same indices for every parameter)."""
        if max_draws is None or self.n <= max_draws:
            return self
        keep = np.linspace(0, self.n - 1, int(max_draws)).round().astype(int)
        return LawDraws(self.kind, {k: v[keep] for k, v in self.params.items()}, self.language,
                        self.law, self.unique_tokens, self.unique_tokens_source, dict(self.extra))

    def with_unique_tokens(self, unique_tokens: float | None) -> "LawDraws":
        """The same draws with U set by the user (None keeps the recorded one)."""
        if unique_tokens is None:
            return self
        check_unique_tokens(unique_tokens)
        return LawDraws(self.kind, self.params, self.language, self.law, float(unique_tokens),
                        "given", dict(self.extra))


def check_unique_tokens(value) -> None:
    """U must be a positive number (inf allowed: never repeated)."""
    try:
        ok = float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"unique_tokens must be a positive number of tokens (or inf), got {value!r}")


def law_draws(tree, language: str | None = None, unique_tokens: float | None = None,
              max_draws: int | None = None) -> LawDraws:
    """A fitted tree's draws for one language (default: the fit's only or first language).

    `unique_tokens` overrides U; by default it comes from the fit's data (`fit_data`): the
    language's unique-token column, the largest value when runs used several subsets.
    """
    record = FitRecord.from_tree(tree)
    law = record.law or ""
    form = form_of(law)
    post = tree.posterior
    fitted = list(record.languages or [])
    if "language" in post.dims:
        fitted = [str(v) for v in post["language"].values]
    lang = language if language is not None else (fitted[0] if fitted else "")
    if fitted and lang not in fitted:
        raise ValueError(f"language {lang!r} was not fitted; fitted: {', '.join(fitted)}")

    def values(name):
        v = post[name]
        if "language" in v.dims:
            v = v.sel(language=lang)
        return np.asarray(v.values, dtype=float).ravel()

    params = {k: values(k) for k in form.parameters}
    U, source = recorded_unique_tokens(tree, lang)
    draws = LawDraws(form.name, params, lang, law, U, source).thin(max_draws)
    return draws.with_unique_tokens(unique_tokens)


def recorded_unique_tokens(tree, language: str) -> tuple[float, str]:
    """U for `language` from the fit's run table: (largest recorded value, where it came from);
    (inf, ...) when the table records none."""
    if "fit_data" not in tree.children:
        return np.inf, "not recorded: the fit has no fit_data"
    data = tree["fit_data"].to_dataset()
    rows = np.ones(data.sizes["obs"], dtype=bool)
    if "language" in data:
        rows = data["language"].values.astype(str) == language
    found = []
    for column in (f"unique_tokens_{language}", "unique_tokens"):
        if column in data:
            v = np.asarray(data[column].values, dtype=float)[rows]
            found += [(float(v[np.isfinite(v)].max()), column)] if np.isfinite(v).any() else []
    if not found:
        return np.inf, "not recorded: data never repeated"
    U, column = max(found)
    n_values = len({float(x) for c in (f"unique_tokens_{language}", "unique_tokens") if c in data
                    for x in np.asarray(data[c].values, dtype=float)[rows] if np.isfinite(x)})
    note = f"fit data ({column}" + (f", largest of {n_values} values)" if n_values > 1 else ")")
    return U, note


def predicted_loss(draws: LawDraws, N, D, unique_tokens=None) -> np.ndarray:
    """The law's loss at (N, D) for every draw; N, D broadcast against draws on the leading
    axis (shape (n,) or (n, k)). `unique_tokens` overrides the draws' U."""
    U = draws.unique_tokens if unique_tokens is None else unique_tokens
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    shape = (-1,) + (1,) * (max(N.ndim, D.ndim) - 1)
    p = {k: v.reshape(shape) for k, v in draws.params.items()}
    with jax.enable_x64(True):
        return np.asarray(_law_loss(draws.kind, N, D, float(U), p), dtype=float)


@partial(jax.jit, static_argnums=0)
def _law_loss(kind, N, D, U, p):
    """The monolingual law in natural scale (compiled once per form and shape)."""
    return form_of(kind).loss(N, D, U, p)


def predicted_loss_at(draws: LawDraws, table) -> np.ndarray:
    """The law's loss (draws, rows) at each row of a table holding the columns its form reads
    (a user law's FEATURES, or n_params, n_tokens and, where read, unique_tokens)."""
    form = form_of(draws.kind)
    if form.user is None:
        U = table["unique_tokens"].to_numpy(float) if form.uses_unique_tokens and \
            "unique_tokens" in table else None
        N, D = table["n_params"].to_numpy(float), table["n_tokens"].to_numpy(float)
        if U is None:
            return predicted_loss(draws, N[None, :], D[None, :])
        out = np.empty((draws.n, len(table)))
        for u in np.unique(U):           # all rows at each U: one shape, one compilation
            rows = U == u
            out[:, rows] = predicted_loss(draws, N[None, :], D[None, :], float(u))[:, rows]
        return out
    missing = [f for f in form.inputs if f not in table]
    if missing:
        raise ValueError(f"{form.name}: the law reads column(s) {missing}, which the rows lack")
    x = {f: table[f].to_numpy(float)[None, :] for f in form.inputs}
    p = {k: v[:, None] for k, v in draws.params.items()}
    with jax.enable_x64(True):
        value = _user_loss(draws.kind, p, x)
    return np.broadcast_to(np.asarray(value, dtype=float), (draws.n, len(table)))


@partial(jax.jit, static_argnums=0)
def _user_loss(kind, p, x):
    return form_of(kind).user.predict(p, x)
