"""Simulated run tables drawn from any law with known parameters, on designs shaped like the paper's.

A design is a run table without losses (one row per run, language and checkpoint). `simulate`
fills in losses by running the law's own NumPyro model forward with the parameters fixed, so
simulated data follows exactly the likelihood that the fit assumes. Every simulated row says
so in its `source` column.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
from numpyro import handlers
import pandas as pd
from numpyro.infer import Predictive

from atlas_bayes.fitting.law_inputs import build_group_inputs, build_inputs
from atlas_bayes.models import get_law
from atlas_bayes.models.hierarchical import group_centres, group_spreads
from atlas_bayes.models.scaling import core_sites, pinned_sites

# Table B.3 of the ATLAS paper (scales 0-34 of S_full), parameters including embeddings.
PAPER_MODEL_SIZES = (9_044_352, 17_662_848, 24_847_776, 66_588_672, 106_830_080, 146_155_520,
                     237_646_080, 289_029_888, 368_068_608, 554_457_600, 661_807_872,
                     852_132_864, 1_297_391_872, 2_034_422_912)
# Table C.1: unique MADLAD-400 tokens per language.
PAPER_UNIQUE_TOKENS = {"en": 2.8e12, "fr": 3.63e11, "ru": 7.05e11, "zh": 1.25e11,
                       "hi": 7.9e9, "sw": 7.7e8}


def monolingual_design(language: str, n_params=PAPER_MODEL_SIZES[::3],
                       tokens_per_param=(5, 20, 80), checkpoints=(0.25, 0.5, 1.0),
                       unique_tokens: float | None = None) -> pd.DataFrame:
    """Runs on one language: every model size x token budget, with learning-curve checkpoints."""
    rows = []
    for n, ratio in itertools.product(n_params, tokens_per_param):
        run_id = f"sim-{language}-{n:.3g}-{ratio}x"
        for fraction in checkpoints:
            rows.append({"run_id": run_id, "language": language, "n_params": float(n),
                         "n_tokens": float(n * ratio * fraction), "n_languages": 1})
    design = pd.DataFrame(rows)
    if unique_tokens is not None:
        design["unique_tokens"] = float(unique_tokens)
    return design


def mixture_design(target: str, mixtures: dict[str, dict[str, float]], n_params, total_tokens,
                   unique_tokens: dict[str, float] | None = None,
                   checkpoints=(0.5, 1.0)) -> pd.DataFrame:
    """Runs on named mixtures ({name: {lang: share}}) evaluated on `target`."""
    langs = sorted({lang for mix in mixtures.values() for lang in mix})
    rows = []
    for (name, mix), n, tokens in itertools.product(mixtures.items(), n_params, total_tokens):
        for fraction in checkpoints:
            row = {"run_id": f"sim-{name}-{n:.3g}-{tokens:.3g}", "language": target,
                   "n_params": float(n), "n_tokens": float(tokens * fraction),
                   "n_languages": sum(share > 0 for share in mix.values())}
            row.update({f"mix_{lang}": float(mix.get(lang, 0.0)) for lang in langs})
            for lang, u in (unique_tokens or {}).items():
                row[f"unique_tokens_{lang}"] = float(u)
            rows.append(row)
    return pd.DataFrame(rows)


def simulate(design: pd.DataFrame, law: str, params: dict, *, sigma: float = 0.01, nu: float = 4.0,
             seed: int = 0, transfer_languages=None) -> pd.DataFrame:
    """Fill `design` with losses drawn from `law` at natural-scale `params`.

    `params` holds E, A, B, alpha, beta and the law's extra parameters (lambda, R_D_star,
    R_N_star, gamma, tau as {language: value}, tau_other). Noise is Student-t(nu) on log loss
    with scale `sigma`. Single-language laws simulate each evaluated language with the same
    parameters; joint laws (`*-h`) take per-language values instead: {"E": {lang: value},
    ..., "tau": {target: {source: value}}, "tau_other": {lang: value}, "lambda": value}.
    """
    spec = get_law(law)
    # nu as an array keeps NumPyro's own Student-t draws (`models.scaling.student_t`), so a
    # study is the same as before the fits' cheaper draws (the bundled example, the tests')
    model = spec.bind(nu=np.asarray(nu, dtype=np.float32))
    key = jax.random.PRNGKey(seed)
    if spec.hierarchical:
        runs = _simulate_joint(design, model, params, sigma, key, transfer_languages)
        runs["source"] = f"simulated: law={spec.name}, seed={seed}, sigma={sigma}"
        return runs
    pieces = []
    for language, rows in design.groupby("language", sort=False):
        rows = rows.reset_index(drop=True).assign(loss=1.0)
        x, info, _ = build_inputs(rows, transfer_languages=transfer_languages)
        sites = _sampled_sites(params, x, info.transfer_languages, sigma)
        _check_complete(model, x, sites, spec.name)
        key, sub = jax.random.split(key)
        draw = Predictive(model, posterior_samples=sites, return_sites=["log_loss"])(sub, x)
        rows["loss"] = np.exp(np.asarray(draw["log_loss"][0], dtype=float))
        pieces.append(rows)
    runs = pd.concat(pieces, ignore_index=True)
    runs["source"] = f"simulated: law={spec.name}, seed={seed}, sigma={sigma}"
    return runs


def _sampled_sites(params: dict, x, transfer_languages: list[str], sigma: float) -> dict:
    """Natural-scale parameters -> the models' sampled sites (one draw, leading axis of 1)."""
    p = dict(params)
    sites = core_sites(x, *(p.pop(name) for name in ("E", "A", "B", "alpha", "beta")))
    sites["sigma"] = sigma
    if "tau" in p:
        tau = p.pop("tau")
        sites["tau"] = np.array([tau.get(lang, 0.0) for lang in transfer_languages])
    sites.update(p)
    return {k: np.asarray(v, dtype=np.float32)[None] for k, v in sites.items()}


def _simulate_joint(design, model, params, sigma, key, transfer_languages) -> pd.DataFrame:
    """Losses for a joint (per-language) law, all languages in one forward pass."""
    runs = design.reset_index(drop=True).assign(loss=1.0)
    x, info, _ = build_group_inputs(runs, transfer_languages=transfer_languages)
    sites = _joint_sites(params, x, info, sigma)
    _check_complete(model, x, sites, "joint")
    draw = Predictive(model, posterior_samples=sites, return_sites=["log_loss"])(key, x)
    runs["loss"] = np.exp(np.asarray(draw["log_loss"][0], dtype=float))
    return runs


def _joint_sites(params: dict, x, info, sigma: float) -> dict:
    """Per-language natural-scale values -> the joint model's sites.

    Population means are set to 0 and spreads to 1, so each language's value is its z.
    """
    langs = info.languages
    per = lambda name: np.array([params[name][lang] for lang in langs], dtype=float)  # noqa: E731
    alpha, beta = per("alpha"), per("beta")
    log_N_c, log_D_c = (np.asarray(v) for v in group_centres(x)[:2])
    values = {"log_alpha": np.log(alpha), "log_beta": np.log(beta), "log_E": np.log(per("E")),
              "log_A_c": np.log(per("A")) - alpha * (x.log_N_ref + log_N_c),
              "log_B_c": np.log(per("B")) - beta * (x.log_D_ref + log_D_c)}
    if "tau" in params:
        values["tau"] = np.array([[params["tau"].get(t, {}).get(src, 0.0) for src in slots]
                                  for t, slots in zip(langs, info.transfer_languages)]).T  # (slot, language)
    if "tau_other" in params:
        values["log_tau_other"] = np.log(per("tau_other"))
    sites = {"sigma": sigma}
    for name, value in values.items():
        # mu = 0 and sd = 1 make value = z whatever the centring
        sites.update({f"{name}_z": value, f"{name}_mu": 0.0, f"{name}_sd": 1.0})
    # the core parameters are sampled through what each language's data pin
    sites.update(pinned_sites(*(values[k] for k in ("log_E", "log_A_c", "log_B_c")), alpha, beta,
                              x.loss_median, *group_spreads(x)))
    if "lambda" in params:
        sites["lambda"] = params["lambda"]
    return {k: np.asarray(v, dtype=np.float32)[None] for k, v in sites.items()}


# Population the simulated multilingual studies draw per-language truths from (natural scale
# medians and log-scale spreads; tau on its own scale).
POPULATION = {"E": (1.2, 0.2), "A": (350.0, 0.3), "B": (1800.0, 0.3),
              "alpha": (0.33, 0.08), "beta": (0.32, 0.08),
              "tau": (0.2, 0.12), "tau_other": (0.04, 0.35), "lambda": 0.08}


def language_parameters(languages, transfer: dict[str, list[str]] | None = None, seed: int = 0,
                        population: dict = POPULATION) -> dict:
    """Per-language truths drawn from `population`, in the form `simulate` takes for joint laws."""
    rng = np.random.default_rng(seed)
    params = {}
    for name in ("E", "A", "B", "alpha", "beta"):
        median, spread = population[name]
        params[name] = {lang: float(median * np.exp(spread * rng.standard_normal()))
                        for lang in languages}
    median, spread = population["tau_other"]
    params["tau_other"] = {lang: float(median * np.exp(spread * rng.standard_normal()))
                           for lang in languages}
    loc, spread = population["tau"]
    params["tau"] = {t: {src: float(loc + spread * rng.standard_normal()) for src in sources}
                     for t, sources in (transfer or {}).items()}
    params["lambda"] = population["lambda"]
    return params


def _check_complete(model, x, sites: dict, law: str) -> None:
    """Refuse to simulate when a parameter the law needs was not given (it would come from the prior)."""
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(x)
    needed = {name for name, site in trace.items()
              if site["type"] == "sample" and not site["is_observed"] and name != "log_loss"}
    missing = sorted(needed - set(sites))
    if missing:
        raise ValueError(f"simulating law {law!r} needs parameters {missing} as well")


EXAMPLE_TRUTH = {"E": 1.2, "A": 350.0, "B": 1800.0, "alpha": 0.33, "beta": 0.34, "lambda": 0.08,
                 "tau": {"en": 0.25, "fr": 0.1}}


def example_study(seed: int = 0) -> pd.DataFrame:
    """The bundled example (data/example_runs.csv): a simulated low-resource target ('sw').

    Monolingual runs that repeat its 2B unique tokens many times, plus 50/50 bilingual runs
    with English and with French, drawn from ATLAS at `EXAMPLE_TRUTH`.
    """
    unique = {"sw": 2e9, "en": PAPER_UNIQUE_TOKENS["en"], "fr": PAPER_UNIQUE_TOKENS["fr"]}
    mono = monolingual_design("sw", unique_tokens=unique["sw"])
    bilingual = mixture_design("sw", {"sw-en": {"sw": 0.5, "en": 0.5}, "sw-fr": {"sw": 0.5, "fr": 0.5}},
                               n_params=PAPER_MODEL_SIZES[3::5], total_tokens=(4e9, 2e10, 1e11),
                               unique_tokens=unique)
    design = pd.concat([mono, bilingual], ignore_index=True)
    design["unique_tokens"] = unique["sw"]
    return simulate(design, "atlas", EXAMPLE_TRUTH, sigma=0.01, seed=seed)
