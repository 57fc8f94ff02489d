"""One compiled program per law and data size, reused by every fit of that law.

NumPyro compiles a sampler around the data it is given (the data are constants of the
program), so each fit would compile anew: ~15 s on 2 CPU cores for a Chinchilla fit whose
sampling takes 0.2 s. Here the data are arguments of one jitted function per (model,
options, sampler settings, static structure), and observations are padded to a few sizes
(`padded_size`) with a mask, so later fits of the same law at a similar number of runs reuse
the compiled program: within a process through jit's own cache, across processes through
JAX's persistent cache when it is on. The same holds for the posterior predictive and the
pointwise log likelihood.

Only the laws the registry marks `shareable` (`models.LAWS`) are padded (`compilable`). The
joint models' per-language set-up (centredness, data centres and spreads: `TRACED_OPTIONS`)
is resolved by the fit from the real rows and passed as arguments too, so a joint fit shares
its program with every fit of the same law, options, number of languages and padded size.

The other models (learning curves, crossover, transfer matrix: `NamedTuple` inputs, not
`LawInputs`) run the same way: their arrays are arguments and their whole-number fields part of
the key, so a refit of the same shapes, in this process or (through the persistent cache)
another, reuses the program, and a first fit compiles one program instead of the hundreds of
small ones that NumPyro's eager start would. Inputs with a `padded(observed, size)` method pad
themselves (the transfer matrix's measurements).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from functools import partial
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median
from numpyro.infer.util import log_likelihood as numpyro_log_likelihood

from atlas_bayes.fitting import program_store
from atlas_bayes.fitting.law_inputs import LawInputs
from atlas_bayes.models import LAWS

OBS_FIELDS = ("N", "D", "U", "D_total", "D_transfer", "U_transfer", "D_other", "U_other",
              "p_family", "K", "group")
# model options passed as arguments
TRACED_OPTIONS = ("centring", "centres", "spreads", "transfer_weights", "transfer_axes",
                  "loss_levels")
OBS_SITES = ("log_loss", "log_loss_mean")   # sites with one value per observation
EXTRA_FIELDS = ("num_steps", "energy", "diverging", "accept_prob", "potential_energy")
MAX_PROGRAMS = 32
CHAIN_METHODS = ("sequential", "parallel", "vectorized")    # the ways a shared program runs chains
SHAREABLE_MODELS = {law.model for law in LAWS.values() if law.shareable}
ENABLED = True       # False: every fit compiles its own program (the baseline in benchmarks)

_programs: OrderedDict = OrderedDict()


class Site(NamedTuple):
    """What a fit needs to know of one site of a model's trace."""
    kind: str              # "sample", "deterministic", ...
    observed: bool
    size: int              # number of values
    dims: tuple[str, ...]  # plate names, outermost first


def padded_size(n: int) -> int:
    """The observation count a fit of n rows is padded to: 16, 32, 48, 64, 96, 128, 192, ...
    (two sizes per doubling: beyond 32 rows at most half again as many, each a masked copy;
    padded rows cost little next to compiling, which takes seconds)."""
    if n <= 16:
        return 16
    step = max(16, 2 ** (int(np.floor(np.log2(n - 1))) - 1))
    return int(-(-n // step) * step)


def compilable(model, inputs) -> bool:
    """Whether a fit may use the shared programs: on `LawInputs`, a bound (`functools.partial`)
    model of a law the registry marks shareable, with options JSON can key (and the joint
    models' per-language set-up resolved to numbers); on other `NamedTuple` inputs (the curve
    and matrix models), any model with options JSON can key."""
    if not (ENABLED and _is_named_tuple(inputs) and _model_key(model) is not None):
        return False
    if not isinstance(inputs, LawInputs):
        return True
    return (isinstance(model, partial) and model.func in SHAREABLE_MODELS
            and all(not isinstance(model.keywords.get(name), str) for name in TRACED_OPTIONS))


def pad(inputs: LawInputs, log_loss, size: int):
    """Inputs and observations padded to `size` rows by repeating row 0, with `obs_mask`
    marking the real rows (the likelihood ignores the rest)."""
    n = int(np.shape(inputs.N)[0])
    index = np.concatenate([np.arange(n), np.zeros(size - n, dtype=int)])
    fields = {name: np.asarray(getattr(inputs, name))[index] for name in OBS_FIELDS
              if getattr(inputs, name) is not None}
    mask = np.arange(size) < n
    padded = inputs._replace(**fields, obs_mask=mask)
    return padded, None if log_loss is None else np.asarray(log_loss, np.float32)[index]


def run_nuts(model, inputs, log_loss, *, chains: int, warmup: int, draws: int,
             target_accept: float, dense: bool, key, chain_method: str = "sequential"):
    """NUTS samples (chain, draw, ...) of every site and the extra fields, from the shared
    program for this model and size (compiled on first use); `chain_method` one of
    `CHAIN_METHODS`."""
    _, traced, observed, static = _prepare(inputs, log_loss)
    settings = (chains, warmup, draws, float(target_accept), dense if isinstance(dense, tuple)
                else bool(dense), chain_method)
    program = _program("nuts", model, static, settings, lambda: _nuts_program(
        model, static, *settings))
    # on the host: draws spread over devices would make later programs span them too
    return jax.device_get(program(key, traced, observed, _traced_options(model)))


def predictive(model, inputs, latents: dict, key, sites: list[str],
               condition_deterministic: bool) -> dict:
    """Posterior predictive draws of `sites` (observation sites cut back to the real rows)."""
    n, traced, _, static = _prepare(inputs)
    settings = (tuple(sites), bool(condition_deterministic))
    program = _program("predictive", model, static, settings, lambda: _predictive_program(
        model, static, *settings))
    return _cut(program(key, traced, latents, _traced_options(model)), n)


def _cut(draws: dict, n: int | None) -> dict:
    """Observation sites cut back to the `n` real rows (None: not padded), on the host: a
    jax slice would compile a program for each row count."""
    if n is None:
        return draws
    return {name: np.asarray(value)[..., :n] if name in OBS_SITES else value
            for name, value in draws.items()}


def predictive_and_log_likelihood(model, inputs, log_loss, latents: dict, key,
                                   sites: list[str]) -> tuple[dict, np.ndarray]:
    """`predictive` (without conditioning deterministic sites) and `pointwise_log_likelihood`
    from one program: what a fit needs after sampling, one program to compile and keep (the
    log likelihood's alone compiled in ~0.4 s, under the compilation cache's threshold, so
    every process compiled it again)."""
    n, traced, observed, static = _prepare(inputs, log_loss)
    program = _program("predictive_and_log_likelihood", model, static, (tuple(sites),),
                       lambda: jax.jit(_predictive_and_log_likelihood(model, static, tuple(sites))))
    draws, log_lik = program(key, traced, observed, latents, _traced_options(model))
    return _cut(draws, n), np.asarray(log_lik)[..., :n]


def pointwise_log_likelihood(model, inputs, log_loss, latents: dict) -> np.ndarray:
    """Log likelihood of each real observation (chain, draw, obs)."""
    n, traced, observed, static = _prepare(inputs, log_loss)
    program = _program("log_likelihood", model, static, (), lambda: _log_likelihood_program(
        model, static))
    return np.asarray(program(traced, observed, latents, _traced_options(model)))[..., :n]


def split_seed(seed: int, n: int = 2) -> np.ndarray:
    """`jax.random.split(jax.random.PRNGKey(seed), n)`, computed with numpy on the host: run
    in JAX, the three small operations compile three programs (~0.2 s) in every process.
    Only JAX's defaults are reproduced (threefry2x32, split by counters, 32-bit seeds);
    otherwise JAX computes it."""
    if not (0 <= seed < 2 ** 31 and jax.config.jax_default_prng_impl == "threefry2x32"
            and jax.config.jax_threefry_partitionable and not jax.config.jax_random_seed_offset):
        return np.asarray(jax.random.split(jax.random.PRNGKey(seed), n))
    high, low = _threefry2x32(np.uint32(0), np.uint32(seed), np.zeros(n, np.uint32),
                              np.arange(n, dtype=np.uint32))
    return np.stack([high, low], axis=-1)


def _threefry2x32(key1, key2, x1, x2):
    """The Threefry-2x32 block cipher (20 rounds) on uint32 arrays, as JAX's lowering."""
    def rotate(v, d):
        return (v << np.uint32(d)) | (v >> np.uint32(32 - d))
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (key1, key2, key1 ^ key2 ^ np.uint32(0x1BD11BDA))
    x = [x1 + ks[0], x2 + ks[1]]
    for i in range(5):
        for r in rotations[i % 2]:
            x[0] = x[0] + x[1]
            x[1] = rotate(x[1], r) ^ x[0]
        x = [x[0] + ks[(i + 1) % 3], x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)]
    return x


def sites(model, inputs) -> dict[str, Site]:
    """The model's sites, from one trace at the padded size for shared programs (the same
    small operations each time, so JAX's compiled ones are reused; a site with one value per
    observation then reports the padded size) or at the inputs' own size otherwise."""
    if not compilable(model, inputs):
        return _trace_sites(model, inputs)
    _, traced, _, static = _prepare(inputs)
    shapes = tuple((name, np.shape(value)) for name, value in traced.items())
    name = _program_name("sites", model, static, shapes)

    def trace():
        if name is None:
            return _trace_sites(model, _join(static, traced))
        found = program_store.remember(name, lambda: {
            site: list(value) for site, value in _trace_sites(model, _join(static, traced)).items()})
        return {site: Site(kind, observed, size, tuple(dims))
                for site, (kind, observed, size, dims) in found.items()}
    return _program("sites", model, static, shapes, trace)


def _trace_sites(model, inputs) -> dict[str, Site]:
    """The sites of one abstract trace (shapes only: run eagerly, every operation of the model
    would compile a small program of its own, ~2-10 s per law and size)."""
    found = {}

    def trace_once():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(inputs)
        found.update({name: Site(site["type"], bool(site.get("is_observed", False)),
                                 int(np.prod(np.shape(site["value"]))) if "value" in site else 0,
                                 tuple(f.name for f in sorted(site.get("cond_indep_stack", []),
                                                              key=lambda f: f.dim)))
                      for name, site in trace.items()})

    jax.eval_shape(trace_once)
    return found


def clear() -> None:
    """Forget the shared programs (their compiled code goes with JAX's caches)."""
    _programs.clear()


def _prepare(inputs, log_loss=None):
    """(real rows, or None when not padded; the program's arguments; the observations, padded
    with the rows; the program's static key part: the inputs' type and whole-number fields)."""
    if not isinstance(inputs, LawInputs):
        observed = None if log_loss is None else np.asarray(log_loss, np.float32)
        # inputs that count their rows (a user law's) are cut back to them after padding
        n = inputs.n_rows() if hasattr(inputs, "n_rows") else None
        if hasattr(inputs, "padded"):          # inputs that pad themselves (the transfer matrix)
            inputs, observed = inputs.padded(observed, padded_size)
        traced, static = _split(inputs)
        return n, traced, observed, static
    n = int(np.shape(inputs.N)[0])
    padded, observed = pad(inputs, log_loss, padded_size(n))
    traced, static = _split(padded)
    return n, traced, observed, static


def _is_named_tuple(inputs) -> bool:
    return isinstance(inputs, tuple) and hasattr(inputs, "_asdict")


def _split(inputs) -> tuple[dict, tuple]:
    """Array and float fields (arguments of the program) and the rest (part of its key)."""
    traced, static = {}, [("__type__", type(inputs))]
    for name, value in inputs._asdict().items():
        if isinstance(value, (np.ndarray, jax.Array)):
            traced[name] = value
        elif isinstance(value, float) and not isinstance(value, bool):
            traced[name] = np.float32(value)
        else:
            static.append((name, value))
    return traced, tuple(static)


def _join(static: tuple, traced: dict):
    """The inputs again, from `_split`'s parts (traced arrays inside a program)."""
    kind, *fields = static
    return kind[1](**dict(fields), **traced)


def _model_key(model) -> str | None:
    """A key naming the model and its options (but those passed as arguments), or None when
    the options are not JSON."""
    func, args, keywords = (getattr(model, "func", model), getattr(model, "args", ()),
                            getattr(model, "keywords", {}))
    options = {k: v for k, v in keywords.items() if k not in TRACED_OPTIONS}
    try:
        return json.dumps([func.__module__, func.__qualname__, list(args),
                           options, sorted(set(keywords) & set(TRACED_OPTIONS))],
                          sort_keys=True)
    except (TypeError, AttributeError):
        return None


def _traced_options(model) -> dict:
    """The model options passed to its program as arrays (`TRACED_OPTIONS`)."""
    return {k: np.asarray(v, dtype=np.float32) for k, v in getattr(model, "keywords", {}).items()
            if k in TRACED_OPTIONS and v is not None}



def _program(kind: str, model, static: tuple, settings: tuple, build):
    """The program (or value) of this kind, model, static inputs and settings: built once
    per process; a jitted program is kept on disk too (`Stored`)."""
    key = (kind, _model_key(model), static, settings)
    if key in _programs:
        _programs.move_to_end(key)
    else:
        built = build()
        if hasattr(built, "lower"):    # jitted
            built = Stored(built, _program_name(kind, model, static, settings))
        _programs[key] = built
        if len(_programs) > MAX_PROGRAMS:
            _programs.popitem(last=False)
    return _programs[key]


class Stored:
    """A jitted program run through `program_store`: for each argument signature, the export
    an earlier process left on disk, else the program exported now (and stored)."""

    def __init__(self, jitted, name: str | None):
        self.jitted, self.name, self.runners = jitted, name, {}

    def __call__(self, *args):
        signature = program_store.signature(args)
        runner = self.runners.get(signature)
        if runner is None:
            runner = self.runners[signature] = program_store.export(self.jitted, self.name, args)
        return runner(*args)


def _program_name(kind: str, model, static: tuple, settings: tuple) -> str | None:
    """The program's key as text the same in every process, or None where its parts do not
    print so (an object shown by its address)."""
    kind_of_inputs, *fields = static
    text = repr((kind, _model_key(model), f"{kind_of_inputs[1].__module__}."
                 f"{kind_of_inputs[1].__qualname__}", fields, settings))
    return None if " at 0x" in text else text


def _nuts_program(model, static, chains, warmup, draws, target_accept, dense, chain_method):
    def run(key, traced, log_loss, options, n_chains):
        kernel = NUTS(partial(model, **options), target_accept_prob=target_accept,
                      dense_mass=dense_mass(dense), init_strategy=init_to_median())
        mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=n_chains,
                    chain_method="vectorized", progress_bar=False)
        mcmc.run(key, _join(static, traced), log_loss, extra_fields=EXTRA_FIELDS)
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    def in_turn(keys, traced, log_loss, options):    # one chain's program, run once per key
        drawn = jax.lax.map(lambda k: run(k, traced, log_loss, options, 1), keys)
        return jax.tree.map(lambda v: v[:, 0], drawn)

    def sequential(key, traced, log_loss, options):
        return in_turn(jax.random.split(key, chains), traced, log_loss, options)

    def parallel(key, traced, log_loss, options):    # the same chains, in turn on each device
        mesh = Mesh(np.array(jax.devices()[:chain_devices(chains)]), ("chain",))
        spread = jax.shard_map(in_turn, mesh=mesh, in_specs=(P("chain"), P(), P(), P()),
                               out_specs=P("chain"), check_vma=False)
        return spread(jax.random.split(key, chains), traced, log_loss, options)
    if chain_method == "sequential":
        return jax.jit(sequential)
    if chain_method == "parallel":
        return jax.jit(parallel)
    return jax.jit(partial(run, n_chains=chains))


def chain_devices(chains: int) -> int:
    """How many of this process's devices the parallel method spreads `chains` over: the
    most that divide them evenly (each device runs its chains in turn)."""
    return max(d for d in range(1, min(chains, jax.local_device_count()) + 1) if chains % d == 0)


def dense_mass(dense):
    """NumPyro's `dense_mass` for a bool or a tuple of blocks (tuples of site names)."""
    return bool(dense) if isinstance(dense, (bool, np.bool_)) else [tuple(b) for b in dense]


def _predictive_program(model, static, sites, condition_deterministic):
    def draw(key, traced, latents, options):
        return Predictive(partial(model, **options), posterior_samples=latents, batch_ndims=2,
                          return_sites=list(sites), condition_deterministic=condition_deterministic)(
            key, _join(static, traced))
    return jax.jit(draw)


def _log_likelihood_program(model, static):
    def log_lik(traced, log_loss, latents, options):
        return numpyro_log_likelihood(partial(model, **options), latents, _join(static, traced),
                                      log_loss, batch_ndims=2)["log_loss"]
    return jax.jit(log_lik)


def _predictive_and_log_likelihood(model, static, sites):
    draw = _predictive_program(model, static, sites, False)
    log_lik = _log_likelihood_program(model, static)

    def draw_and_log_lik(key, traced, log_loss, latents, options):
        return (draw(key, traced, latents, options),
                log_lik(traced, log_loss, latents, options))
    return draw_and_log_lik
