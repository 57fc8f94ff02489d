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
model sizes, each at data sizes the other is not trained at (Goldfish).

The sampler sees each language's core parameters through what its data pin
(`pinned_parameters`), its transfer weights along the directions its rows pin, and all of a
language's coordinates in one block of the mass matrix (`_language_blocks`); the fit resolves
the per-language set-up these need from the training rows (`group_*` functions).

Inputs are a `LawInputs` from `build_group_inputs` (row -> language index in `x.group`).
"""

from contextlib import nullcontext

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.primitives import Messenger

from atlas_bayes import laws
from atlas_bayes.models.scaling import (ALPHA_PRIOR, LAMBDA_PRIOR, LOG_E_SD, TAU_OTHER_LOG_PRIOR,
                                        TAU_PRIOR, TERM_SD, TERM_SHARE, likelihood, pinned_parameters,
                                        tau_prior_arrays)

# Prior (loc, scale) of each population mean, and the mean of the Gamma(2) prior on its spread
# across languages, for the per-language parameters on the log scale.
EXPONENT_SPREAD = 0.25
LOG_E_SPREAD = 0.5
TERM_SPREAD = 1.0
TAU_SPREAD = 0.25
TAU_OTHER_SPREAD = 0.5   # of log tau_other
LAMBDA_SPREAD = 0.5       # of log lambda, when it is per language
CENTRED_MIN_OBS = 20
# Shape of the Gamma prior on each population spread. Every language's core parameters are
# centred (`_pinned`), so a spread drawn towards zero is a funnel's neck. On the 4-language
# test study (4 x 300 + 300 draws): shape 2 (the usual zero-avoiding choice) gave 27
# divergences at target_accept 0.9 (79 with `sw` cut to 4 rows); shape 4 gave 6 at 0.9 and
# 0, 2, 8 at 0.95 (seeds 0-2); shape 6 (P(spread < mean / 5) ~ 0.2%) gave 2, 1, 0 at 0.9 and
# at 0.95, the joint laws' default, at most 1 over seeds 0-4 while developing and none in the
# committed run (benchmarks/RESULTS.md, "Issue 18: joint fits").
SPREAD_SHAPE = 6.0
E_SOFT = 0.02             # width, as a share of the median loss, of E's soft floor in `_aligned`
EXPONENTS = ("log_alpha", "log_beta")
SHAREABLE = {"E": "log_E", "A": "log_A_c", "B": "log_B_c", "alpha": "log_alpha",
             "beta": "log_beta"}


def hierarchical(x, log_loss=None, nu=4.0, saturate=True, transfer=True, other=True,
                 lambda_per_language=False, pooling="partial", centring="auto", shared=(),
                 centres=None, spreads=None, transfer_weights=None, transfer_axes=None,
                 loss_levels=None, tau_prior=None, language_blocks=0, predict_mean=False):
    """ATLAS (or Chinchilla, `saturate=False`) with per-language parameters.

    `centring` says how each language's parameters are written: "noncentred" (value = mu +
    sd z), "centred" (value ~ Normal(mu, sd)), "auto" (see `centredness`), or an explicit
    0/1 per language. The A and B terms are parameterised at each language's own data centre
    (`centres`: mean log N and log D per language, relative to the shared references), where
    the data pin them and they barely correlate with the exponents. Fits resolve both once
    from the training data and predictions reuse them. With A or B shared (and E per
    language), E and the B-term are sampled through each language's loss and slope at its
    centre instead (`_aligned`; same model, `centring` does not apply to them).
    `transfer_weights` and `transfer_axes` (`group_transfer_weights`, `group_transfer_axes`,
    resolved by fits like `centres`) say how each transfer language and "other" move a
    language's effective data: the transfer weights and the B term are sampled along what
    the data pin (`_mixture_terms`). `language_blocks` > 0 samples every language's own
    coordinates as blocks of that many languages (`_language_blocks`; not with `shared`).
    `loss_levels` (each language's mean log loss, `group_loss_levels`) place the sampler's
    start; fits resolve them, and then predictions must be given them too.
    """
    c = jnp.asarray(centredness(x, centring), dtype=jnp.float32)
    log_N_c, log_D_c = (jnp.asarray(v, dtype=jnp.float32) for v in
                        (group_centres(x) if centres is None else centres)[:2])
    common = _shared_sites(shared)
    term_loc = jnp.log(TERM_SHARE * x.loss_median)
    priors = {
        "log_alpha": (ALPHA_PRIOR, EXPONENT_SPREAD),
        "log_beta": (ALPHA_PRIOR, EXPONENT_SPREAD),
        "log_E": ((jnp.log(0.5 * x.loss_min), LOG_E_SD), LOG_E_SPREAD),
        "log_A_c": ((term_loc, TERM_SD), TERM_SPREAD),
        "log_B_c": ((term_loc, TERM_SD), TERM_SPREAD),
    }
    blocks = nullcontext()
    if language_blocks and not common:
        if loss_levels is None:     # else the start, and so the values, would move with the data
            raise ValueError("language_blocks needs loss_levels (group_loss_levels)")
        if not isinstance(language_blocks, int) or language_blocks < 1:
            raise ValueError(f"language_blocks must be a whole number of languages per block "
                             f"(0: none), not {language_blocks!r}")
        sites = _block_sites(x, c, saturate, transfer, other, lambda_per_language)
        blocks = _language_blocks(x, language_blocks, sites)
    with blocks:
        D_eff, log_D_shift = x.D, 0.0
        if saturate:
            lam = _lambda(x, lambda_per_language, pooling, c)
            terms, log_D_shift = _mixture_terms(x, transfer, other, pooling, c, tau_prior,
                                                transfer_weights, transfer_axes)
            D_eff = laws.effective_data(x.D, x.U, lam, **terms)
        if not common:
            p = _pinned(priors, pooling, x, log_loss, spreads, log_D_shift, loss_levels)
        # a shared term with per-language E: E and B are written through what the data pin
        aligned = "log_E" not in common and bool(common & {"log_A_c", "log_B_c"})
        own = {name: priors.pop(name) for name in ("log_E", "log_B_c") if aligned and name not in common}
        if common:
            p = per_language_values(priors, pooling, common, c, x.n_groups, EXPONENTS)
        alpha, beta = p["alpha"], p["beta"]
        # log of each term at the language's own centre; a shared coefficient is one value at the
        # shared reference, not at each centre
        log_A_c = p["log_A_c"] - (alpha * log_N_c if "log_A_c" in common else 0.0)
        log_B_c = p["log_B_c"] - beta * log_D_c if "log_B_c" in common else p.get("log_B_c")
        if aligned:
            log_B_c, E = _aligned(own, pooling, log_A_c, log_B_c, p["log_beta"], x, log_loss)
        else:
            E = p["E"]
        with numpyro.plate("language", x.n_groups):
            log_A_ref, log_B_ref = log_A_c + alpha * log_N_c, log_B_c + beta * log_D_c
            numpyro.deterministic("A", jnp.exp(log_A_ref + alpha * x.log_N_ref))
            numpyro.deterministic("B", jnp.exp(log_B_ref + beta * x.log_D_ref))

        g = x.group
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
        if "log_E" in p:
            p["E"] = numpyro.deterministic("E", jnp.exp(p["log_E"]))
    return p


def _pinned(priors, pooling, x, log_loss, spreads, log_D_shift=0.0, loss_levels=None) -> dict:
    """Every language's E, N and D terms at its centre and exponents, sampled through what
    its data pin (`models.scaling.pinned_parameters`, per language: the loss at the
    language's centre, its split into E and the terms, the terms' slopes across the
    language's spread of log N and log D), the population prior applied through the Jacobian.

    Centred in those coordinates for every language: a language with few rows still pins its
    loss at the centre, and the zero-avoiding prior on each spread (`SPREAD_SHAPE`) keeps the
    population from pulling its values into a funnel. (Written as log E, log terms and
    exponents, non-centred, the 4-language test study took 180-600 leapfrog steps per draw;
    non-centring only the exponents here, ~300.) The D term is pinned where the language's
    effective data typically lie, `log_D_shift` above its own tokens (`_mixture_terms`).
    """
    population = {name: _population(name, prior, spread, pooling)
                  for name, (prior, spread) in priors.items()}
    dists = {name: dist.Normal(*loc_scale) for name, loc_scale in population.items()}
    start = [jnp.exp(priors[name][0][0]) for name in ("log_E", "log_A_c", "log_B_c")]
    if loss_levels is not None:
        L_start = jnp.exp(jnp.asarray(loss_levels, dtype=jnp.float32))
    elif log_loss is None:
        L_start = sum(start)
    else:
        L_start = jnp.exp(group_sums(x, log_loss) / jnp.maximum(group_sums(x), 1.0))
    log_N_sd, log_D_sd = (jnp.asarray(v, dtype=jnp.float32)
                          for v in (group_spreads(x) if spreads is None else spreads))
    with numpyro.plate("language", x.n_groups):
        p = pinned_parameters(dists, L_start, start, x.loss_median, log_N_sd, log_D_sd,
                              names=("log_E", "log_A_c", "log_B_c"), log_D_shift=log_D_shift)
        for name in ("log_alpha", "log_beta"):
            numpyro.deterministic(name, p[name])
        p["E"] = numpyro.deterministic("E", jnp.exp(p["log_E"]))
    return p


def group_sums(x, values=None):
    """Per-language sums of `values` (counts when None) over the real rows (padding left out)."""
    weights = jnp.ones(x.group.shape[0]) if x.obs_mask is None else x.obs_mask.astype(jnp.float32)
    if values is not None:
        weights = weights * values
    return jnp.zeros(x.n_groups).at[x.group].add(weights)


def group_loss_levels(x, log_loss) -> list[float]:
    """Each language's mean log loss over its rows (host side)."""
    g = np.asarray(x.group)
    counts = np.maximum(np.bincount(g, minlength=x.n_groups), 1)
    return (np.bincount(g, np.asarray(log_loss, dtype=float), minlength=x.n_groups) / counts).tolist()


def group_spreads(x) -> list[list[float]]:
    """Each language's sd of log N and of log D around its own centre (host side)."""
    g, n = np.asarray(x.group), x.n_groups
    counts = np.maximum(np.bincount(g, minlength=n), 1)
    spreads = []
    for v in (x.N, x.D):
        log_v = np.log(np.asarray(v, dtype=float))
        mean = np.bincount(g, log_v, minlength=n) / counts
        spreads.append(np.sqrt(np.bincount(g, (log_v - mean[g]) ** 2, minlength=n) / counts).tolist())
    return spreads


def _aligned(own, pooling, log_A_c, log_B_c, log_beta, x, log_loss=None):
    """Per-language log B-term at the centre and E, sampled through quantities the data pin.

    When A (or B) is shared, moving the shared term drags every language's E the other way
    (and moving the population's beta drags every language's B-term), a ridge through all
    languages that NUTS crosses slowly. So each language samples instead its loss at its
    own data centre, L_c = E + A-term + B-term there (`L_c`, in units of the data's median
    loss), and, with B per language, the loss's slope in log D there, beta * B-term
    (`log_B_slope_c`); then B-term = slope / beta and E = L_c - A-term - B-term. So that E
    stays positive without a wall (languages whose E is loosely pinned near zero put
    posterior mass there, and a hard bound gave divergences), E is that difference passed
    through a softplus of width `E_SOFT` times the median loss: E = w softplus((L_c - terms)
    / w), equal to the difference once it exceeds a few w, about w exp(difference / w)
    below. This is a one-to-one change of variables, so the model is unchanged: the priors
    (pooled as usual) still apply to log E and log B-term, with the Jacobian
    d log E / d L_c = sigmoid((L_c - terms) / w) / E (that of log B-term given beta is 1).
    `own` holds the ((loc, scale), spread) prior of "log_E" and, unless B is shared, of
    "log_B_c".

    Each sampled quantity gets a base measure that the density cancels: it only places the
    initial value (init_to_median). L_c starts at the language's observed loss (geometric
    mean of its runs, when fitting) and E at the population's typical E, the B-term taking
    the rest: started at the typical B-term instead, a language whose loss lies far above
    the others' (mni_Beng in Goldfish) reaches a minor mode (E high, B-term typical) and
    stays there.
    """
    population = {name: _population(name, prior, spread, pooling)
                  for name, (prior, spread) in own.items()}
    E_typical, terms = jnp.exp(population["log_E"][0]), jnp.exp(log_A_c)
    if log_loss is None:
        L_start = E_typical + terms + (jnp.exp(log_B_c) if "log_B_c" not in own else
                                       jnp.exp(population["log_B_c"][0]))
    else:
        L_start = jnp.exp(group_sums(x, log_loss) / jnp.maximum(group_sums(x), 1.0))
    with numpyro.plate("language", x.n_groups):
        if "log_B_c" in own:
            loc, scale = population["log_B_c"]
            rest = L_start - terms - E_typical
            base = dist.Normal(jnp.where(rest > 0.1 * L_start, jnp.log(jnp.abs(rest)), loc)
                               + log_beta, 0.1)
            log_slope = numpyro.sample("log_B_slope_c", base)
            log_B_c = numpyro.deterministic("log_B_c", log_slope - log_beta)
            numpyro.factor("log_B_c_prior", dist.Normal(loc, scale).log_prob(log_B_c)
                           - base.log_prob(log_slope))
        loc, scale = population["log_E"]
        terms = terms + jnp.exp(log_B_c)
        # L_c in units of the data's median loss (fixed by the fit, reused by predictions)
        unit, width = x.loss_median, E_SOFT * x.loss_median
        base = dist.Normal(L_start / unit, 0.01)
        L_c = numpyro.sample("L_c", base)
        gap = (unit * L_c - terms) / width
        log_E = numpyro.deterministic("log_E", jnp.log(width) + _log_softplus(gap))
        numpyro.factor("log_E_prior", dist.Normal(loc, scale).log_prob(log_E) - log_E
                       + jnp.log(unit) + jax.nn.log_sigmoid(gap) - base.log_prob(L_c))
        E = numpyro.deterministic("E", jnp.exp(log_E))
    return log_B_c, E


def _log_softplus(z):
    """log(log(1 + e^z)), finite for very negative z (where it is z)."""
    return jnp.where(z < -15.0, z, jnp.log(jax.nn.softplus(jnp.maximum(z, -15.0))))


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
    # Gamma(SPREAD_SHAPE), mean `spread`: zero-avoiding, so the spread cannot collapse into a
    # funnel's neck when only a handful of languages inform it (languages do differ)
    scale = numpyro.sample(f"{name}_sd", dist.Gamma(SPREAD_SHAPE, SPREAD_SHAPE / spread))
    return loc, scale


def group_centres(x) -> list[list[float]]:
    """Each language's mean log N, mean log D (target tokens) and, when the inputs carry it,
    mean log K (languages in the mixture); N and D relative to the references."""
    g, n = np.asarray(x.group), x.n_groups
    counts = np.maximum(np.bincount(g, minlength=n), 1)
    arrays = (x.N, x.D) if x.K is None else (x.N, x.D, x.K)
    return [(np.bincount(g, np.log(np.asarray(v, dtype=float)), minlength=n) / counts).tolist()
            for v in arrays]


def centredness(x, centring="auto"):
    """Per-language centredness (1 centred, 0 non-centred).

    "auto": centred for languages with at least `CENTRED_MIN_OBS` rows, whose own data pin
    their parameters down (non-centring them would leave a narrow, curved posterior in z);
    non-centred for the rest, whose values come mostly from the population.
    """
    if not isinstance(centring, str):
        if len(centring) != x.n_groups:
            raise ValueError(f"centring has {len(centring)} entries for {x.n_groups} languages")
        # an argument of a shared compiled program (atlas_bayes.fitting.compiled) is traced
        return centring if isinstance(centring, jax.Array) else [float(v) for v in centring]
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
    return numpyro.deterministic(name, loc + _offset(name, loc, scale, c))


def _offset(name, loc, scale, c):
    """A per-language value's offset from `loc` (Normal(0, scale)), centred where c = 1."""
    z = numpyro.sample(f"{name}_z", dist.Normal(c * loc, scale ** c))
    return scale ** (1.0 - c) * (z - c * loc)


def _lambda(x, per_language, pooling, c):
    """The repetition parameter per row: one shared value, or one per language."""
    if not per_language:
        lam = numpyro.sample("lambda", dist.LogNormal(*LAMBDA_PRIOR))
        numpyro.deterministic("R_D_star", 1.0 / lam)
        return lam
    loc_scale = _population("log_lambda", LAMBDA_PRIOR, LAMBDA_SPREAD, pooling)
    with numpyro.plate("language", x.n_groups):
        lam = numpyro.deterministic("lambda", jnp.exp(_per_language("log_lambda", *loc_scale, c)))
        numpyro.deterministic("R_D_star", 1.0 / lam)
    return lam[x.group]


def _mixture_terms(x, transfer, other, pooling, c, tau_prior=None, weights=None, axes=None):
    """Transfer-language and 'other' terms of the effective data, per row, and each language's
    log shift of its typical effective data (`pinned_parameters`' `log_D_shift`).

    A language's mixtures hold its transfer languages in a few fixed proportions, so its
    rows pin a few combinations of its transfer weights and leave the rest to the prior, and
    a weight that adds data trades against the B term: narrow ridges (in the 12-language
    paper study's posterior, directions ~30 times narrower than the weights' own spread; 540
    leapfrog steps per draw with a diagonal mass matrix). So the B term is pinned at the
    effective data that the weights imply (`log_D_shift` = sum of `weights` x weight), and
    with `axes` (`group_transfer_axes`) each language's weights are sampled along the
    directions its rows pin (a rotation: the Normal prior is unchanged by it).
    """
    terms, shift = {}, 0.0
    width = x.D_transfer.shape[-1]
    w = None if weights is None else jnp.asarray(weights, dtype=jnp.float32)
    axes = None if axes is None else jnp.asarray(axes, dtype=jnp.float32)
    if transfer and width > 0:
        loc, scale = _population("tau", TAU_PRIOR, TAU_SPREAD, pooling)
        isotropic = jnp.ones(x.n_groups, dtype=bool)     # one prior for all of a language's slots
        if tau_prior is not None:   # (language, slot) in the prior; (slot, language) here
            given_loc, given_scale = (a.T for a in tau_prior_arrays(tau_prior, (x.n_groups, width)))
            has = jnp.asarray(tau_prior["scale"]).T > 0
            loc, scale = jnp.where(has, given_loc, loc), jnp.where(has, given_scale, scale)
            isotropic = ~has.any(axis=0)
        # language stays the rightmost plate everywhere (autoguides need consistent plates)
        with numpyro.plate("transfer_slot", width, dim=-2), numpyro.plate("language", x.n_groups):
            if scale is None:
                tau = _per_language("tau", loc, scale, c, x.n_groups)
            else:
                tau = _rotated_weights(loc, scale, c, axes, isotropic)
        terms.update(D_transfer=x.D_transfer, U_transfer=x.U_transfer, tau=tau.T[x.group])
        if w is not None:
            shift = shift + jnp.sum(tau * w[:, :width].T, axis=0)
    if other and x.has_other:
        loc_scale = _population("log_tau_other", TAU_OTHER_LOG_PRIOR, TAU_OTHER_SPREAD, pooling)
        with numpyro.plate("language", x.n_groups):
            tau_other = numpyro.deterministic(
                "tau_other", jnp.exp(_per_language("log_tau_other", *loc_scale, c)))
        terms.update(D_other=x.D_other, U_other=x.U_other, tau_other=tau_other[x.group])
        if w is not None:
            shift = shift + tau_other * w[:, -1]
    return terms, shift


def _rotated_weights(loc, scale, c, axes, isotropic):
    """The transfer weights (slot, language), sampled along each language's axes (`axes`:
    language, slot, axis; orthonormal, `group_transfer_axes`) as y = Q^T tau ~ Normal(Q^T loc,
    scale), centred as the language's `c` says; languages whose slots have priors of their
    own (not `isotropic`), or `axes` None, sample tau itself."""
    if axes is None:
        return numpyro.deterministic("tau", loc + _offset("tau", loc, scale, c))
    loc = jnp.broadcast_to(loc, (axes.shape[1], axes.shape[0]))
    mean = jnp.where(isotropic, jnp.einsum("gka,kg->ag", axes, loc), loc)
    y = mean + _offset("tau", mean, scale, c)
    return numpyro.deterministic("tau", jnp.where(isotropic, jnp.einsum("gka,ag->kg", axes, y), y))


# Typical transfer weight and "other" weight at which `group_transfer_weights` linearises the
# effective data (they only orient the sampler's coordinates; the model does not depend on them)
TAU_TYPICAL, TAU_OTHER_TYPICAL = 0.25, 0.05


def group_transfer_weights(x) -> list[list[float]]:
    """Per language, d log(effective data) / d tau for each transfer slot and for tau_other
    (last column), averaged over the language's rows at typical weights and repetition (host
    side): how far each weight moves the language's typical data (`_mixture_terms`)."""
    slopes, g, real = _data_slopes(x)
    counts = np.maximum(np.bincount(g, real, minlength=x.n_groups), 1.0)
    return np.column_stack([np.bincount(g, col * real, minlength=x.n_groups) / counts
                            for col in slopes.T]).tolist()


def group_transfer_axes(x) -> list:
    """Per language, orthonormal axes (slot, axis) of its transfer weights: the eigenvectors
    of the covariance, over the language's rows, of d log(effective data) / d tau, largest
    first. The rows pin the weights along the first axes and leave the last to the prior."""
    slopes, g, real = _data_slopes(x)
    width = slopes.shape[1] - 1
    axes = []
    for lang in range(x.n_groups):
        rows = slopes[(g == lang) & (real > 0), :width]
        cov = (np.cov(rows, rowvar=False).reshape(width, width) if len(rows) > 1
               else np.zeros((width, width)))
        axes.append(np.linalg.eigh(cov)[1][:, ::-1].tolist())
    return axes


def _data_slopes(x):
    """(rows x (slots + 1) array of d log(effective data) / d tau per transfer slot and per
    tau_other at `TAU_TYPICAL`, `TAU_OTHER_TYPICAL` and the prior's median repetition; each
    row's language; 1 for real rows, 0 for padding)."""
    lam = float(np.exp(LAMBDA_PRIOR[0]))
    S_t = np.asarray(laws.saturation(x.D, x.U, lam), dtype=float)
    S_i = np.asarray(laws.saturation(x.D_transfer, x.U_transfer, lam), dtype=float) / S_t[:, None]
    S_o = (np.asarray(laws.saturation(x.D_other, x.U_other, lam), dtype=float) / S_t
           if x.has_other else np.zeros_like(S_t))
    ratio = 1.0 + TAU_TYPICAL * S_i.sum(axis=1) + TAU_OTHER_TYPICAL * S_o
    g = np.asarray(x.group)
    real = np.ones(len(g)) if x.obs_mask is None else np.asarray(x.obs_mask, dtype=float)
    return np.column_stack([S_i, S_o]) / ratio[:, None], g, real


# At most this many blocks of the mass matrix (`languages_per_block`): NUTS learns each block's
# covariance densely and the rest diagonally (`fitting.inference._nuts`). Each block costs
# compile time (48 one-language blocks: 148 s; 12 blocks of 4: 64 s, for the same 31 leapfrog
# steps per draw on the 48-language paper study).
MAX_BLOCKS = 12
BLOCK_PREFIX = "language_block_"
PINNED_SITES = ("log_L_c", "A_logit_c", "B_logit_c", "log_A_slope_c", "log_B_slope_c")


def _language_blocks(x, per_language: int, sites: dict):
    """Sample every per-language coordinate of the model as blocks of `per_language`
    languages (sites `language_block_<j>`, shape (languages, coordinates)), and return a
    handler that gives each per-language sample site its values from them.

    Within a language the coordinates are correlated (the split of the loss into E and the
    terms, the N and D slopes when model and data sizes grow together, the transfer weights
    against each other and against "other"); across languages they are nearly independent.
    A dense mass matrix learns the first, but over all languages at once (~450 dimensions at
    48 languages) it cannot be estimated in a warmup, and a diagonal one ignores them; blocks
    of a few languages NUTS can learn. `sites` maps each site name to its number
    of columns and, for sites whose prior depends on the population, a fixed (loc, scale) at
    which its value is written (the rest use their own base measure's); the values are
    loc + scale u with u flat (its Normal(0, 1) is cancelled), so the model is unchanged.
    """
    n, k = x.n_groups, sum(width for width, _ in sites.values())
    u = []
    for j, start in enumerate(range(0, n, per_language)):
        size = min(per_language, n - start)
        block = numpyro.sample(f"{BLOCK_PREFIX}{j}", dist.Normal(0.0, 1.0).expand([size, k]).to_event(2))
        numpyro.factor(f"{BLOCK_PREFIX}{j}_flat", -dist.Normal(0.0, 1.0).log_prob(block).sum())
        u.append(block)
    u = jnp.concatenate(u, axis=0)
    columns, at = {}, 0
    for name, (width, _) in sites.items():
        columns[name] = u[:, at:at + width].T if width > 1 or name == "tau_z" else u[:, at]
        at += width
    return _FromBlocks(columns, {name: fixed for name, (_, fixed) in sites.items() if fixed})


class _FromBlocks(Messenger):
    """Gives the named sample sites values loc + scale u from the language blocks (loc and
    scale: the fixed ones given, else the site's own distribution's, which must not depend on
    the observations: predictions run without them) and makes them observed, so they add
    their density at that value and are not sampled again."""

    def __init__(self, columns: dict, fixed: dict):
        self.columns, self.fixed = columns, fixed
        super().__init__()

    def process_message(self, msg):
        name = msg["name"]
        if msg["type"] != "sample" or name not in self.columns:
            return
        fn = msg["fn"]
        while not hasattr(fn, "loc"):      # a plate's expansion of the site's Normal
            fn = fn.base_dist
        loc, scale = self.fixed.get(name) or (fn.loc, fn.scale)
        msg["value"] = loc + scale * self.columns[name]
        msg["is_observed"] = True


def languages_per_block(x) -> int:
    """Languages per block of the mass matrix: one, or as few as keep `MAX_BLOCKS` blocks."""
    return -(-x.n_groups // MAX_BLOCKS)


def _block_sites(x, c, saturate, transfer, other, lambda_per_language) -> dict:
    """The per-language sites `_language_blocks` holds: {name: (columns, fixed (loc, scale)
    or None)}; the fixed values are the populations' prior means and spreads (centred) or
    0 and 1 (non-centred)."""
    def fixed(prior_loc, spread):
        return c * prior_loc, c * spread + (1.0 - c)
    sites = {name: (1, None) for name in PINNED_SITES}
    if saturate:
        width = x.D_transfer.shape[-1]
        if transfer and width > 0:
            sites["tau_z"] = (width, fixed(TAU_PRIOR[0], TAU_SPREAD))
        if other and x.has_other:
            sites["log_tau_other_z"] = (1, fixed(TAU_OTHER_LOG_PRIOR[0], TAU_OTHER_SPREAD))
        if lambda_per_language:
            sites["log_lambda_z"] = (1, fixed(LAMBDA_PRIOR[0], LAMBDA_SPREAD))
    return sites
