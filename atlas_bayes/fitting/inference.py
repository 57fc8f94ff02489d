"""Fit a scaling law to a run table with NUTS and return ArviZ 1.x data (an `xarray.DataTree`).

The result holds the groups posterior (natural-scale E, A, B, alpha, beta, ... as
deterministic sites), posterior_predictive and observed_data (log loss), log_likelihood
(pointwise, for LOO), sample_stats, and `fit_data`: the run table itself, so a saved file
alone tells what was fitted. Attributes record the law, target language, sampler settings,
a hash of the data and the diagnostics.
"""

from __future__ import annotations

import hashlib
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median
from numpyro.infer.util import log_likelihood as numpyro_log_likelihood

from atlas_bayes import __version__
from atlas_bayes.fitting import compiled, stuck, user_fit
from atlas_bayes.fitting import approximate as approximation
from atlas_bayes.fitting.approximate import Approximation, latent_sites
from atlas_bayes.fitting.approximate import latent_size as _latent_size
from atlas_bayes.fitting.files import load, save  # noqa: F401  (the API: fit, save, load)
from atlas_bayes.fitting.identifiability import check_tied_sizes
from atlas_bayes.fitting.informed import check_informed
from atlas_bayes.fitting.jax_setup import counting_compilations, release_compiled_if_crowded
from atlas_bayes.fitting.law_inputs import GroupInfo, Scales, build_group_inputs, build_inputs
from atlas_bayes.fitting.record import LAW, Convergence, FitRecord
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.models import get_law
from atlas_bayes.models.hierarchical import (BLOCK_PREFIX, centredness,
                                              group_centres, group_loss_levels, group_spreads,
                                              group_transfer_axes,
                                              group_transfer_weights, languages_per_block)
from atlas_bayes.tables.runs import RunTableWarning, read_runs, split_continued


DENSE_MAX = 200
FEW_LANGUAGES, FEW_LANGUAGES_ACCEPT = 6, 0.98   # `_target_accept`
PREDICT_NEEDS = ("law", "scales", "languages", "transfer_languages", "has_other", "student_t_nu",
                 "latent_sites")


@dataclass(frozen=True)
class Sampler:
    """NUTS settings.

    `dense_mass="auto"` learns the blocks a model asks for (`mass_blocks`: the joint laws'
    languages, a few at a time) densely and the rest diagonally; for other models a dense
    mass matrix up to `DENSE_MAX` latent dimensions and a diagonal one above. (A joint fit
    over 48 languages has ~450 dimensions, too many to estimate densely in a normal warmup:
    124 leapfrog steps per draw dense with an earlier rotation of the transfer weights, 31 in
    12 blocks; RESULTS "Issue 18: joint fits at paper scale".)
    `chain_method`: "sequential" runs the chains one after another inside one compiled
    program, "vectorized" runs them in lockstep (jax.vmap), "parallel" spreads them over the
    process's devices, each running its share in turn (`compiled.chain_devices`); "auto" is
    vectorised on a GPU and on a CPU parallel where JAX has several CPU devices (the CLI
    makes one per core: `jax_setup.use_cpu_cores`), else sequential. In turn beat lockstep
    on a CPU 1.2-1.4x on a first fit and 1.1-2x on a refit (a chain never waits for the
    chain with the longest trajectory; benchmarks/chain_methods.py); two cores beat one
    (RESULTS "Issue 18: chains on both CPU cores").
    """
    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int = 0
    target_accept: float | None = None   # None: the law's own (`models.Law.target_accept`)
    dense_mass: bool | str = "auto"
    chain_method: str = "auto"

    def resolved(self, target_accept: float = 0.9) -> "Sampler":
        """These settings with a target acceptance (`target_accept` when none was chosen) and
        the chain method "auto" stands for here."""
        changes = {}
        if self.target_accept is None:
            changes["target_accept"] = target_accept
        if self.chain_method == "auto":
            changes["chain_method"] = ("vectorized" if jax.default_backend() == "gpu" else
                                       "parallel" if jax.local_device_count() > 1 and self.chains > 1
                                       else "sequential")
        return replace(self, **changes) if changes else self


def fit(runs: pd.DataFrame | str | Path, law: str = "chinchilla", *, language: str | None = None,
        transfer_languages=None, nu: float = 4.0, centre: bool = True,
        sampler: Sampler | Approximation = Sampler(), options: dict | None = None,
        progress: bool = False, warn: bool = True) -> xr.DataTree:
    """Posterior of `law` given a run table (a DataFrame from `read_runs`, or a path).

    Single-language laws fit one evaluated language (`language` picks it when the table has
    several); joint laws (`*-h`) fit every language at once. `transfer_languages` overrides
    ATLAS's default K_t (a list, or for joint laws a dict target -> list). `options` are
    extra model options (e.g. {"pooling": "none"}). `sampler` is NUTS settings or an
    `Approximation`. Convergence problems raise `ConvergenceWarning` with advice (set
    `warn=False` to only record them in the result's attributes); a joint law over languages
    whose model sizes are tied to their data sizes, without A and alpha shared, raises a
    `TiedSizesWarning` before sampling (`fitting.identifiability`).
    """
    if not isinstance(runs, pd.DataFrame):
        runs = read_runs(runs)
    runs, left_out = _leave_out_continued(runs)
    spec = get_law(law)
    options = dict(options or {})
    unknown = sorted(name for name in options if not spec.takes(name))
    if unknown:
        raise ValueError(f"law {spec.name!r} has no option(s) {unknown}"
                         + ("; 'shared' and 'pooling' apply to joint laws (*-h)"
                            if not spec.hierarchical else ""))
    scales = None
    if spec.user is not None:
        runs = select_language(runs, language)
        inputs, info, log_loss, scales = user_fit.prepare(runs, spec.user)
        seed = sampler.seed if isinstance(sampler, Sampler) else 0
        options = {**user_fit.centring(spec.user, inputs, log_loss, seed), **options}
    elif spec.hierarchical:
        inputs, info, log_loss = build_group_inputs(runs, transfer_languages=transfer_languages,
                                                    centre=centre)
        runs = runs.reset_index(drop=True)
        options["centring"] = centredness(inputs, options.get("centring", "auto"))
        options["centres"] = options.get("centres") or group_centres(inputs)
        if spec.takes("spreads"):
            options["spreads"] = options.get("spreads") or group_spreads(inputs)
        _check_per_language(options, info.languages)     # before anything traces the model
        for name, resolve in (("transfer_weights", group_transfer_weights),
                              ("transfer_axes", group_transfer_axes)):
            if spec.takes(name) and name not in options:    # None given: none (benchmarks)
                options[name] = resolve(inputs)
        if spec.takes("loss_levels") and not options.get("loss_levels"):
            options["loss_levels"] = group_loss_levels(inputs, log_loss)
        if spec.takes("language_blocks") and "language_blocks" not in options:
            # a joint fit small enough for one dense mass matrix keeps it (in blocks, the
            # 4-language test study had 0-6 divergences per seed, dense none)
            small = _latent_size(spec.bind(nu=nu, **options), inputs) <= DENSE_MAX
            options["language_blocks"] = 0 if small else languages_per_block(inputs)
    else:
        runs = select_language(runs, language)
        inputs, info, log_loss = build_inputs(runs, transfer_languages=transfer_languages,
                                              centre=centre)
    scales = scales or Scales(*(float(getattr(inputs, f)) for f in Scales._fields))
    if options.get("tau_prior") is not None:
        options["tau_prior"] = resolve_tau_prior(options["tau_prior"], info, spec.hierarchical)
    _check_repetition_data(spec, inputs, runs)
    _check_curse_data(spec, inputs, runs)
    tied = check_tied_sizes(spec, runs, options, warn)   # (warning, R-hat advice) or None
    model = spec.bind(nu=nu, **options)
    if isinstance(sampler, Sampler):
        sampler = sampler.resolved(_target_accept(spec, info, options))
    start = time.perf_counter()
    key_fit, key_ppc = compiled.split_seed(sampler.seed)
    with counting_compilations() as compilations:
        if isinstance(sampler, Approximation):
            latents, stats = approximation.approximate(model, inputs, log_loss, sampler, key_fit,
                                                        progress)
        else:
            latents, stats = _nuts(model, inputs, log_loss, sampler, key_fit, progress)
        draws, log_lik = _predictive_and_log_likelihood(model, inputs, log_loss, latents, key_ppc)
    seconds = time.perf_counter() - start

    posterior = {k: np.asarray(v) for k, v in {**latents, **draws}.items() if k != "log_loss"}
    reported = [name for name in spec.parameters if name in posterior] + ["sigma"]
    approximate = isinstance(sampler, Approximation)
    record = FitRecord(
        LAW, law=spec.name, law_description=spec.description,
        target_language=",".join(info.languages) if spec.hierarchical else info.target,
        languages=info.languages if spec.hierarchical else [info.target],
        transfer_languages=info.transfer_languages, options=options,
        latent_sites=sorted(latents), parameters=reported, n_obs=int(len(runs)),
        left_out_runs=left_out, method=sampler.method if approximate else "nuts",
        sampler=asdict(sampler), student_t_nu=float(nu), centred=bool(centre),
        log_N_ref=scales.log_N_ref, log_D_ref=scales.log_D_ref, scales=scales._asdict(),
        has_other=bool(getattr(inputs, "has_other", False)), data_hash=data_hash(runs),
        source=str(runs.attrs.get("source", "")),
        simulated=bool(runs["source"].astype(str).str.startswith("simulated").any()),
        seconds=float(seconds), version=__version__, diagnostics=Convergence(**compilations),
        design_warnings=tied[:1] if tied else None,
        approximation=approximation.statement(sampler) if approximate else None,
        extra={} if "diverging" in stats else {k: float(v) for k, v in stats.items()})
    tree = _to_tree(model, inputs, log_loss, posterior, draws, log_lik, stats, info, runs,
                    record, None if approximate else reported, warn, tied[1] if tied else "")
    return check_informed(tree, runs, warn)


def _target_accept(spec, info, options: dict) -> float:
    """The law's target acceptance; `FEW_LANGUAGES_ACCEPT` for a partially pooled law over
    fewer than `FEW_LANGUAGES` languages, whose population the data barely pin (the 4-language
    test study at 0.95: 0-6 divergences per seed, in the tails of the population means; at
    0.98 none, with ~45% more steps: RESULTS "Issue 18: joint fits at paper scale")."""
    pooled = spec.takes("spreads") and {**spec.options, **options}.get("pooling", "partial") == "partial"
    if spec.hierarchical and pooled and len(info.languages) < FEW_LANGUAGES:
        return max(spec.target_accept, FEW_LANGUAGES_ACCEPT)
    return spec.target_accept


def _check_per_language(options: dict, languages) -> None:
    """ValueError unless given `centres` and `spreads` hold one value per language per row."""
    for name in ("centres", "spreads"):
        rows = [list(np.atleast_1d(row)) for row in options.get(name) or []]
        if any(len(row) != len(languages) for row in rows):
            raise ValueError(f"option {name!r}: expected rows of {len(languages)} values, one per "
                             f"language {list(languages)}; got rows of {[len(r) for r in rows]}")


def resolve_tau_prior(given: dict, info, hierarchical: bool) -> dict:
    """Map tau priors named by language ({target: {source: [mean, sd]}}, or {source: [mean,
    sd]} for a single-language fit) onto the fit's transfer slots: {"loc", "scale"} arrays
    (scale 0 where a slot keeps the default prior). Already-resolved priors pass through."""
    if "loc" in given and "scale" in given:
        return given
    targets = info.languages if hierarchical else [info.target]
    slots = info.transfer_languages if hierarchical else [info.transfer_languages]
    if not hierarchical and not any(isinstance(v, dict) for v in given.values()):
        given = {info.target: given}
    unknown = sorted(set(given) - set(targets))
    if unknown:
        raise ValueError(f"tau_prior names target(s) {unknown} that the fit does not evaluate "
                         f"({', '.join(targets)})")
    loc, scale = np.zeros((len(targets), len(slots[0]))), np.zeros((len(targets), len(slots[0])))
    for i, (target, sources) in enumerate(zip(targets, slots)):
        priors = given.get(target, {})
        outside = sorted(set(priors) - set(sources))
        if outside:
            raise ValueError(f"tau_prior for {target!r} names {outside}, which are not its "
                             f"transfer languages {list(sources)}; pass transfer_languages to "
                             "choose them")
        for k, source in enumerate(sources):
            if source in priors:
                mean, sd = (float(v) for v in priors[source])
                if not sd > 0:
                    raise ValueError(f"tau_prior[{target!r}][{source!r}]: sd must be positive, got {sd}")
                loc[i, k], scale[i, k] = mean, sd
    if not hierarchical:
        loc, scale = loc[0], scale[0]
    return {"loc": loc.tolist(), "scale": scale.tolist()}


def _leave_out_continued(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop finetune rows the laws would misread (`runs.split_continued`), saying which."""
    kept, left_out = split_continued(runs)
    if left_out:
        source = runs.attrs.get("source") or "the run table"
        shown = ", ".join(left_out[:8]) + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else "")
        warnings.warn(f"{source}: left out {len(runs) - len(kept)} row(s) of {len(left_out)} "
                      f"run(s) continued from a checkpoint ({shown}): their n_tokens include the "
                      "checkpoint's tokens (init_tokens), which the law would read as tokens of "
                      "their own mixture; `atlas-bayes crossover` models them",
                      RunTableWarning, stacklevel=3)
    return kept, left_out


def _check_repetition_data(law, inputs, runs: pd.DataFrame) -> None:
    """A law of repeated data without any unique-token counts would silently become Chinchilla:
    refuse it."""
    if "unique_tokens" in law.needs and not np.any(np.isfinite(inputs.U)):
        source = runs.attrs.get("source") or "the run table"
        raise ValueError(f"{source}: law {law.name!r} needs unique tokens, but column 'unique_tokens' "
                         "(or unique_tokens_<lang> for the target) is absent or empty in every "
                         "row; add it, or fit 'chinchilla'")


def _check_curse_data(law, inputs, runs: pd.DataFrame) -> None:
    """The curse law needs runs whose mixtures hold different numbers of languages."""
    if "language_counts" in law.needs and np.ptp(np.asarray(inputs.K)) < 1e-6:
        source = runs.attrs.get("source") or "the run table"
        raise ValueError(f"{source}: law {law.name!r} needs runs with different numbers of "
                         f"languages, but every row's mixture (the mix_<lang> columns) holds "
                         f"K = {float(np.asarray(inputs.K)[0]):.3g}; add capacity runs")


def _nuts(model, inputs, log_loss, sampler: Sampler, key, progress: bool):
    """Latent draws (chain, draw, ...) and sample statistics from NUTS."""
    release_compiled_if_crowded()
    sampler = sampler.resolved()
    accept = sampler.target_accept
    dense = sampler.dense_mass
    if dense == "auto":
        dense = mass_blocks(model, inputs) or _latent_size(model, inputs) <= DENSE_MAX
    # NumPyro's bar needs a program of the fit's own; where nobody watches a terminal (a log
    # file, a test) a line before and after says the same, and the shared program is reused
    bar = progress and sys.stderr.isatty()
    started = time.perf_counter()
    if progress and not bar:
        print(f"sampling: {sampler.chains} chains x ({sampler.warmup} warmup + {sampler.draws} "
              "draws) ...", file=sys.stderr, flush=True)
    shared = sampler.chain_method in compiled.CHAIN_METHODS and compiled.compilable(model, inputs)
    mcmc = None
    if not (shared and not bar):   # a progress bar, other chain methods, unshareable models:
        kernel = NUTS(model, target_accept_prob=accept,       # a program of their own
                      dense_mass=compiled.dense_mass(dense),
                      init_strategy=init_to_median())
        mcmc = MCMC(kernel, num_warmup=sampler.warmup, num_samples=sampler.draws,
                    num_chains=sampler.chains, chain_method=_numpyro_chain_method(sampler),
                    progress_bar=bar)

    def draw(key):
        if mcmc is None:
            return compiled.run_nuts(
                model, inputs, log_loss, chains=sampler.chains, warmup=sampler.warmup,
                draws=sampler.draws, target_accept=accept, dense=dense, key=key,
                chain_method=sampler.chain_method)
        mcmc.run(key, inputs, log_loss, extra_fields=compiled.EXTRA_FIELDS)
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    samples, extra = draw(key)
    samples, extra, restarts = stuck.restart_stuck(draw, key, samples, extra, progress)
    if progress and not bar:
        print(f"sampling: done in {time.perf_counter() - started:.1f} s", file=sys.stderr,
              flush=True)
    stats = {"diverging": extra["diverging"], "n_steps": extra["num_steps"],
             "energy": extra["energy"], "acceptance_rate": extra["accept_prob"],
             "lp": -np.asarray(extra["potential_energy"])}   # numpy: no program for a sign
    if restarts.any():   # only then: the stats of a fit that did not stick are as they were
        stats["restarts"] = np.broadcast_to(restarts[:, None], np.shape(stats["lp"])).copy()
    latent = latent_sites(model, inputs)
    return {k: v for k, v in samples.items() if k in latent}, stats


def sample_posterior(model, inputs, observed, sampler: Sampler, *, progress: bool = False):
    """NUTS on any model `model(inputs, observed)`: draws of every latent and deterministic site.

    Returns (posterior, stats), numpy arrays with leading (chain, draw) axes; for models that
    are not scaling laws fitted to a run table (learning curves, the transfer matrix).
    """
    key_fit, key_det = compiled.split_seed(sampler.seed)
    latents, stats = _nuts(model, inputs, observed, sampler, key_fit, progress)
    sites = [name for name, site in compiled.sites(model, inputs).items()
             if site.kind == "deterministic"]
    derived = _predict(model, inputs, latents, key_det, sites, False) if sites else {}
    posterior = {k: np.asarray(v) for k, v in {**latents, **derived}.items()}
    return posterior, {k: np.asarray(v) for k, v in stats.items()}


def _numpyro_chain_method(sampler: Sampler) -> str:
    """NumPyro's name for the chain method (its "parallel" needs a device per chain)."""
    if sampler.chain_method == "parallel" and sampler.chains > jax.local_device_count():
        return "sequential"
    return sampler.chain_method


def mass_blocks(model, inputs) -> tuple:
    """The dense blocks of the mass matrix a model asks for: one per site named
    `language_block_<j>` (`models.hierarchical`), the rest diagonal; () when it has none."""
    return tuple((name,) for name in sorted(latent_sites(model, inputs))
                 if name.startswith(BLOCK_PREFIX))


def site_dims(model, inputs) -> dict[str, list[str]]:
    """Dimension names of every sample and deterministic site, from the model's plates."""
    return {name: list(site.dims) for name, site in compiled.sites(model, inputs).items()
            if site.kind in ("sample", "deterministic")}


def posterior_predictive(model, inputs, latents: dict, key, deterministic: bool = False,
                         mean: bool = False, condition_deterministic: bool = False) -> dict:
    """Draws of log loss for every posterior sample (leading chain and draw axes kept).

    With `deterministic` also the model's deterministic sites (natural-scale parameters);
    with `mean` also `log_loss_mean`, the law's prediction without noise. With
    `condition_deterministic`, deterministic sites given in `latents` keep their given
    values (for fits whose latents the model now derives). Compiled as one
    call with the draws as arguments, so the compiled program is reused (and cached on
    disk) rather than rebuilt around each new set of draws.
    """
    sites = ["log_loss"]
    if deterministic:
        sites += [name for name, site in compiled.sites(model, inputs).items()
                  if site.kind == "deterministic"]
    if mean:
        model = partial(model, predict_mean=True)
        sites.append("log_loss_mean")

    return _predict(model, inputs, latents, key, sites, condition_deterministic)


def _predict(model, inputs, latents: dict, key, sites: list[str], condition_deterministic: bool):
    """Predictive draws of `sites`: the shared program where there is one, else a program of
    this model and data."""
    if compiled.compilable(model, inputs):
        return compiled.predictive(model, inputs, latents, key, sites, condition_deterministic)

    def draw(key, latents):
        return Predictive(model, posterior_samples=latents, batch_ndims=2, return_sites=sites,
                          condition_deterministic=condition_deterministic)(key, inputs)
    return jax.jit(draw)(key, latents)


def _predictive_and_log_likelihood(model, inputs, log_loss, latents: dict, key):
    """`posterior_predictive` with the deterministic sites and `log_likelihood`: from one
    shared program where there is one."""
    if not compiled.compilable(model, inputs):
        return (posterior_predictive(model, inputs, latents, key, deterministic=True),
                log_likelihood(model, inputs, log_loss, latents))
    sites = ["log_loss"] + [name for name, site in compiled.sites(model, inputs).items()
                            if site.kind == "deterministic"]
    return compiled.predictive_and_log_likelihood(model, inputs, log_loss, latents, key, sites)


def log_likelihood(model, inputs, log_loss, latents: dict) -> np.ndarray:
    """Pointwise log likelihood (chain, draw, obs), for PSIS-LOO."""
    if compiled.compilable(model, inputs):
        return compiled.pointwise_log_likelihood(model, inputs, log_loss, latents)
    values = jax.jit(lambda latents: numpyro_log_likelihood(
        model, latents, inputs, log_loss, batch_ndims=2)["log_loss"])(latents)
    return np.asarray(values)


def _to_tree(model, inputs, log_loss, posterior, draws, log_lik, stats, info, runs, record,
             check, warn, r_hat_advice="") -> xr.DataTree:
    """The fit's DataTree (`tree.build_tree`), labelling language, transfer-slot and
    observation axes, with the run table as `fit_data` (`r_hat_advice`: added to an R-hat
    warning)."""
    dims = site_dims(model, inputs)
    coords = {"obs": info.obs_labels}
    labels = {}
    if isinstance(info, GroupInfo):
        coords["language"] = info.languages
        slots = len(info.transfer_languages[0]) if info.transfer_languages else 0
        coords["transfer_slot"] = list(range(slots))
        slots = np.array(info.transfer_languages, dtype=str)
        labels["posterior"] = {"transfer_language": (("language", "transfer_slot"), slots)}
    else:
        coords["transfer_language"] = info.transfer_languages
        dims = {k: ["transfer_language" if d == "transfer_language" else d for d in v]
                for k, v in dims.items()}
    groups = {
        "posterior": posterior,
        "posterior_predictive": {"log_loss": np.asarray(draws["log_loss"])},
        "log_likelihood": {"log_loss": log_lik},
        "observed_data": {"log_loss": np.asarray(log_loss)},
    }
    if "diverging" in stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in stats.items()}
    used = {d for v in dims.values() for d in v}
    return build_tree(groups, record, coords={k: v for k, v in coords.items() if k in used},
                      dims={k: v for k, v in dims.items() if v}, labels=labels,
                      datasets={"fit_data": runs_to_dataset(runs, info.obs_labels)},
                      check=check, warn=warn, stacklevel=4, r_hat_advice=r_hat_advice)


def predict(tree: xr.DataTree, runs: pd.DataFrame, *, seed: int = 0) -> xr.Dataset:
    """Posterior predictions of a fitted law for new rows (e.g. held-out runs, planned runs).

    Returns `log_loss` (posterior predictive draws, with noise) and `log_loss_mean` (the
    law's prediction, without noise), each (chain, draw, obs). Inputs are built with the
    fit's reference scales, transfer languages and terms, so the fitted coefficients keep
    their meaning; `loss` may be absent from `runs`.
    """
    record = FitRecord.from_tree(tree, require=PREDICT_NEEDS, purpose="predict")
    spec = get_law(record.law)
    options = dict(record.options or {})
    scales = Scales(**record.scales)
    languages = list(record.languages)
    transfer = [list(t) if isinstance(t, tuple) else t for t in record.transfer_languages]
    has_other = record.has_other
    runs = runs.reset_index(drop=True)
    if spec.user is not None:
        inputs, info, _, _ = user_fit.prepare(runs.assign(language=languages[0]), spec.user)
    elif spec.hierarchical:
        given = {t: [s for s in slots if s] for t, slots in zip(languages, transfer)}
        inputs, info, _ = build_group_inputs(runs, transfer_languages=given, scales=scales,
                                             has_other=has_other, groups=languages)
        # keep the fit's padding width even when the new rows need fewer slots
        width = len(transfer[0]) if transfer else 0
        pad = width - inputs.D_transfer.shape[1]
        inputs = inputs._replace(
            D_transfer=np.pad(inputs.D_transfer, ((0, 0), (0, pad))),
            U_transfer=np.pad(inputs.U_transfer, ((0, 0), (0, pad)), constant_values=np.inf))
    else:
        other = sorted(set(runs["language"].astype(str)) - set(languages))
        if other:
            raise ValueError(f"this fit is for target language {languages[0]!r}; the rows "
                             f"evaluate {other}")
        inputs, info, _ = build_inputs(runs, transfer_languages=transfer, scales=scales,
                                       has_other=has_other)
    if spec.hierarchical and spec.takes("spreads"):
        # fits saved before the joint models recorded them (their saved values are given)
        options.setdefault("spreads", group_spreads(inputs))
    model = spec.bind(nu=record.student_t_nu, **options)
    # every saved value, derived ones too, is given as it is: fits saved before a model changed
    # its parameterisation (the single-language laws and, later, the joint ones now sample
    # the loss at the centre and the slope sites) predict from their own values, and the
    # newer sites, then unused, come from their base measures
    latents = {name: value.values for name, value in tree.posterior.data_vars.items()
               if value.dims[:2] == ("chain", "draw") and "obs" not in value.dims}
    draws = posterior_predictive(model, inputs, latents, jax.random.PRNGKey(seed), mean=True,
                                 condition_deterministic=True)
    sample = {"chain": tree.posterior["chain"].values, "draw": tree.posterior["draw"].values,
              "obs": info.obs_labels}
    return xr.Dataset({name: (("chain", "draw", "obs"), np.asarray(draws[name]))
                       for name in ("log_loss", "log_loss_mean")}, coords=sample)


def select_language(runs: pd.DataFrame, language: str | None) -> pd.DataFrame:
    """Rows evaluated on `language` (all rows when None); a clear error if there are none."""
    if language is None:
        return runs
    chosen = runs[runs["language"] == language]
    if chosen.empty:
        have = ", ".join(sorted(map(str, runs["language"].unique()))[:20])
        raise ValueError(f"no rows evaluate language {language!r}; the table has: {have}")
    chosen = chosen.reset_index(drop=True)
    chosen.attrs = dict(runs.attrs)
    return chosen


def runs_to_dataset(runs: pd.DataFrame, labels: list[str]) -> xr.Dataset:
    """The run table as an xarray Dataset along `obs` (text columns as plain strings)."""
    columns = {}
    for name in runs.columns:
        values = runs[name]
        if pd.api.types.is_numeric_dtype(values):
            columns[name] = ("obs", values.to_numpy(float))
        else:
            columns[name] = ("obs", values.astype(str).to_numpy(dtype=str))
    return xr.Dataset(columns, coords={"obs": labels})


def data_hash(runs: pd.DataFrame) -> str:
    """Short hash of the table's contents, stored with every fit."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(runs.astype(str), index=False).to_numpy())
    return digest.hexdigest()[:16]
