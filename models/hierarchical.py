"""One joint ATLAS model over many target languages, with per-language parameters pooled.

Each evaluated language ("group") has its own E, A, B, alpha, beta, transfer weights tau
(one per transfer slot of that target) and tau_other. With `pooling="partial"` each of these
is drawn from a population distribution, written non-centred (value = mu + sd * z), so a
language with few runs borrows strength from the others while one with many runs is barely
pulled. `pooling="none"` gives every language independent copies of the single-language
priors: the same law fitted separately to each language, in one run. The repetition
parameter lambda is shared by all languages, or per language (`lambda_per_language=True`).
`shared` names parameters held common to every language (complete pooling): use it when the
data cannot tell a language's value apart, e.g. A and alpha when each language has only two
model sizes, each tied to one data size (Goldfish).

Inputs are a `LawInputs` from `build_group_inputs` (row -> language index in `x.group`).
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from atlas_bayes import laws
from atlas_bayes.models.scaling import ALPHA_PRIOR, TAU_OTHER_LOG_PRIOR, TERM_SHARE, likelihood

# Prior (loc, scale) of each population mean, and the mean of the Gamma(2) prior on its spread
# across languages, for the per-language parameters on the log scale.
EXPONENT_SPREAD = 0.25
LOG_E_SPREAD = 0.5
TERM_SPREAD = 1.0
TAU_PRIOR, TAU_SPREAD = (0.0, 0.5), 0.25
TAU_OTHER_SPREAD = 0.5   # of log tau_other
LAMBDA_PRIOR = (jnp.log(0.1), 1.0)
CENTRED_MIN_OBS = 20
EXPONENTS = ("log_alpha", "log_beta")
SHAREABLE = {"E": "log_E", "A": "log_A_c", "B": "log_B_c", "alpha": "log_alpha",
             "beta": "log_beta"}


def hierarchical(x, log_loss=None, nu=4.0, saturate=True, transfer=True, other=True,
                 lambda_per_language=False, pooling="partial", centring="auto", shared=(),
                 centres=None, predict_mean=False):
    """ATLAS (or Chinchilla, `saturate=False`) with per-language parameters.

    `centring` says how each language's parameters are written: "noncentred" (value = mu +
    sd z), "centred" (value ~ Normal(mu, sd)), "auto" (see `centredness`), or an explicit
    0/1 per language. The A and B terms are parameterised at each language's own data centre
    (`centres`: mean log N and log D per language, relative to the shared references), where
    the data pin them and they barely correlate with the exponents. Fits resolve both once
    from the training data and predictions reuse them.
    """
    c = jnp.asarray(centredness(x, centring), dtype=jnp.float32)
    log_N_c, log_D_c = (jnp.asarray(v, dtype=jnp.float32) for v in
                        (group_centres(x) if centres is None else centres)[:2])
    common = _shared_sites(shared)
    term_loc = jnp.log(TERM_SHARE * x.loss_median)
    priors = {
        "log_alpha": (ALPHA_PRIOR, EXPONENT_SPREAD),
        "log_beta": (ALPHA_PRIOR, EXPONENT_SPREAD),
        "log_E": ((jnp.log(0.5 * x.loss_min), 1.0), LOG_E_SPREAD),
        "log_A_c": ((term_loc, 1.5), TERM_SPREAD),
        "log_B_c": ((term_loc, 1.5), TERM_SPREAD),
    }
    p = per_language_values(priors, pooling, common, c, x.n_groups, EXPONENTS)
    alpha, beta, E = p["alpha"], p["beta"], p["E"]
    with numpyro.plate("language", x.n_groups):
        # a shared coefficient is one value at the shared reference, not at each centre
        log_A_ref = p["log_A_c"] + (0.0 if "log_A_c" in common else alpha * log_N_c)
        log_B_ref = p["log_B_c"] + (0.0 if "log_B_c" in common else beta * log_D_c)
        numpyro.deterministic("A", jnp.exp(log_A_ref + alpha * x.log_N_ref))
        numpyro.deterministic("B", jnp.exp(log_B_ref + beta * x.log_D_ref))

    g = x.group
    D_eff = x.D
    if saturate:
        lam = _lambda(x, lambda_per_language, pooling, c)
        D_eff = laws.effective_data(x.D, x.U, lam, **_mixture_terms(x, transfer, other, pooling, c))
    mu = laws.log_chinchilla(x.N, D_eff, E[g], jnp.exp(log_A_ref)[g], jnp.exp(log_B_ref)[g],
                             alpha[g], beta[g])
    likelihood(mu, x, log_loss, nu, predict_mean)


def per_language_values(priors: dict, pooling: str, common: set, c, n_groups: int,
                        exponents) -> dict:
    """Every per-language value of `priors` ({site: ((loc, scale), spread)}), drawn from its
    population (or shared when in `common`), plus natural-scale alpha, beta and E.

    Exponents are strongly pooled (their spread across languages is comparable to each
    language's own uncertainty), so they stay non-centred; the rest follow `c`.
    """
    population = {name: _population(name, prior, spread, "shared" if name in common else pooling)
                  for name, (prior, spread) in priors.items()}
    with numpyro.plate("language", n_groups):
        p = {name: _per_language(name, *loc_scale, 0.0 if name in exponents else c, n_groups)
             for name, loc_scale in population.items()}
        p["alpha"] = numpyro.deterministic("alpha", jnp.exp(p["log_alpha"]))
        p["beta"] = numpyro.deterministic("beta", jnp.exp(p["log_beta"]))
        p["E"] = numpyro.deterministic("E", jnp.exp(p["log_E"]))
    return p


def _shared_sites(shared, shareable=SHAREABLE) -> set[str]:
    unknown = sorted(set(shared) - set(shareable))
    if unknown:
        raise ValueError(f"shared: unknown parameter(s) {unknown}; choose from {sorted(shareable)}")
    return {shareable[name] for name in shared}


def _population(name, prior, spread, pooling):
    """(location, scale) of a per-language parameter: sampled hyperparameters, or the fixed
    prior; pooling "shared" samples one common value (scale None)."""
    if pooling == "none":
        return prior
    if pooling == "shared":
        return numpyro.sample(f"{name}_mu", dist.Normal(*prior)), None
    if pooling != "partial":
        raise ValueError(f"pooling must be 'partial' or 'none', not {pooling!r}")
    loc = numpyro.sample(f"{name}_mu", dist.Normal(*prior))
    # Gamma(2): zero-avoiding, so the spread cannot collapse into a funnel's neck when only a
    # handful of languages inform it (languages do differ); its mean is `spread`.
    scale = numpyro.sample(f"{name}_sd", dist.Gamma(2.0, 2.0 / spread))
    return loc, scale


def group_centres(x) -> list[list[float]]:
    """Each language's mean log N, mean log D (target tokens) and, when the inputs carry it,
    mean log K (languages in the mixture); N and D relative to the references."""
    g, n = np.asarray(x.group), x.n_groups
    counts = np.maximum(np.bincount(g, minlength=n), 1)
    arrays = (x.N, x.D) if x.K is None else (x.N, x.D, x.K)
    return [(np.bincount(g, np.log(np.asarray(v, dtype=float)), minlength=n) / counts).tolist()
            for v in arrays]


def centredness(x, centring="auto") -> list[float]:
    """Per-language centredness (1 centred, 0 non-centred).

    "auto": centred for languages with at least `CENTRED_MIN_OBS` rows, whose own data pin
    their parameters down (non-centring them would leave a narrow, curved posterior in z);
    non-centred for the rest, whose values come mostly from the population.
    """
    if not isinstance(centring, str):
        if len(centring) != x.n_groups:
            raise ValueError(f"centring has {len(centring)} entries for {x.n_groups} languages")
        return [float(v) for v in centring]
    counts = np.bincount(np.asarray(x.group), minlength=x.n_groups)
    if centring == "auto":
        return [float(n >= CENTRED_MIN_OBS) for n in counts]
    if centring in ("centred", "noncentred"):
        return [float(centring == "centred")] * x.n_groups
    raise ValueError(f"centring must be 'auto', 'centred' or 'noncentred', not {centring!r}")


def _per_language(name, loc, scale, c, n_groups=None):
    """A per-language value inside the language plate, centred where c = 1.

    z ~ Normal(c loc, scale^c) and value = loc + scale^(1-c) (z - c loc): with c = 0 this is
    the non-centred value = loc + scale z, with c = 1 the centred value = z ~ Normal(loc, scale).
    A shared parameter (scale None) is its common value repeated for every language.
    """
    if scale is None:
        return numpyro.deterministic(name, jnp.broadcast_to(loc, (n_groups,)))
    z = numpyro.sample(f"{name}_z", dist.Normal(c * loc, scale ** c))
    return numpyro.deterministic(name, loc + scale ** (1.0 - c) * (z - c * loc))


def _lambda(x, per_language, pooling, c):
    """The repetition parameter per row: one shared value, or one per language."""
    if not per_language:
        lam = numpyro.sample("lambda", dist.LogNormal(*LAMBDA_PRIOR))
        numpyro.deterministic("R_D_star", 1.0 / lam)
        return lam
    loc_scale = _population("log_lambda", LAMBDA_PRIOR, 0.5, pooling)
    with numpyro.plate("language", x.n_groups):
        lam = numpyro.deterministic("lambda", jnp.exp(_per_language("log_lambda", *loc_scale, c)))
        numpyro.deterministic("R_D_star", 1.0 / lam)
    return lam[x.group]


def _mixture_terms(x, transfer, other, pooling, c):
    """Transfer-language and 'other' terms of the effective data, per row."""
    terms = {}
    width = x.D_transfer.shape[-1]
    if transfer and width > 0:
        loc_scale = _population("tau", TAU_PRIOR, TAU_SPREAD, pooling)
        # language stays the rightmost plate everywhere (autoguides need consistent plates)
        with numpyro.plate("transfer_slot", width, dim=-2), numpyro.plate("language", x.n_groups):
            tau = _per_language("tau", *loc_scale, c)
        terms.update(D_transfer=x.D_transfer, U_transfer=x.U_transfer, tau=tau.T[x.group])
    if other and x.has_other:
        loc_scale = _population("log_tau_other", TAU_OTHER_LOG_PRIOR, TAU_OTHER_SPREAD, pooling)
        with numpyro.plate("language", x.n_groups):
            tau_other = numpyro.deterministic(
                "tau_other", jnp.exp(_per_language("log_tau_other", *loc_scale, c)))
        terms.update(D_other=x.D_other, U_other=x.U_other, tau_other=tau_other[x.group])
    return terms
