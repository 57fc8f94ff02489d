"""Shared compiled programs (atlas_bayes/fitting/compiled.py): padding must not change the model, and
fits of the same law at a similar size must reuse one program and still fit their own data."""

import json

import jax
import numpy as np
import pytest
from numpyro.infer.util import log_likelihood, potential_energy

from atlas_bayes.fitting import compiled, program_store
from atlas_bayes.fitting.inference import fit
from atlas_bayes.fitting.law_inputs import build_inputs
from atlas_bayes.models import get_law
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES, monolingual_design, simulate
from conftest import QUICK

TRUTH = {"E": 1.8, "A": 400.0, "B": 1200.0, "alpha": 0.34, "beta": 0.28}


def _runs(n_sizes: int, seed: int, scale: float = 1.0):
    design = monolingual_design("en", n_params=PAPER_MODEL_SIZES[:n_sizes], checkpoints=(1.0,))
    runs = simulate(design, "chinchilla", TRUTH, sigma=0.01, seed=seed)
    runs["loss"] *= scale
    return runs


@pytest.mark.unit
def test_padded_sizes_are_few_and_beyond_32_at_most_half_again():
    sizes = [compiled.padded_size(n) for n in range(1, 600)]
    assert all(s >= n for n, s in zip(range(1, 600), sizes))
    assert all(s <= max(32, 1.5 * n) for n, s in zip(range(1, 600), sizes))
    assert sorted(set(sizes))[:8] == [16, 32, 48, 64, 96, 128, 192, 256]


@pytest.mark.unit
@pytest.mark.parametrize("law", ["chinchilla", "dcsl", "atlas"])
def test_padding_leaves_the_density_and_the_likelihood_unchanged(law):
    runs = _runs(7, seed=1)
    runs["unique_tokens"] = runs["n_tokens"] / 3.0
    x, _, y = build_inputs(runs)
    model = get_law(law).bind(nu=4.0)
    padded, y_padded = compiled.pad(x, y, compiled.padded_size(len(y)) + 16)
    assert padded.obs_mask.sum() == len(y) and len(padded.N) > len(y)
    rng = np.random.default_rng(0)
    sites = {name: site for name, site in compiled._trace_sites(model, x).items()
             if site.kind == "sample" and not site.observed and name != "log_loss"}
    for _ in range(3):
        params = {name: rng.normal(size=site.size).reshape(() if site.size == 1 else -1) * 0.3
                  for name, site in sites.items()}
        plain = potential_energy(model, (x, y), {}, params)
        masked = potential_energy(model, (padded, y_padded), {}, params)
        np.testing.assert_allclose(masked, plain, rtol=1e-5)
    draws = {name: np.full((1, 2) + (() if site.size == 1 else (site.size,)), 0.1)
             for name, site in sites.items()}
    expect = log_likelihood(model, draws, x, y, batch_ndims=2)["log_loss"]
    got = compiled.pointwise_log_likelihood(model, x, y, draws)
    np.testing.assert_allclose(got, expect, rtol=1e-5)


@pytest.mark.statistical
def test_fits_of_one_size_share_a_program_and_fit_their_own_data():
    compiled.clear()
    sampler = QUICK
    low = fit(_runs(6, seed=2), "chinchilla", sampler=sampler, warn=False)   # 18 runs
    high = fit(_runs(7, seed=3, scale=1.15), "chinchilla", sampler=sampler, warn=False)  # 21
    programs = [p for key, p in compiled._programs.items() if key[0] == "nuts"]
    assert len(programs) == 1 and len(programs[0].runners) == 1   # one argument signature
    counted = [json.loads(tree.attrs["diagnostics"]) for tree in (low, high)]
    assert counted[1]["n_compilations"] == 0, counted     # the second fit compiles nothing
    assert counted[0]["compile_seconds"] > counted[1]["compile_seconds"], counted
    for tree in (low, high):
        observed = np.exp(tree.observed_data["log_loss"].values)
        predicted = np.exp(tree.posterior_predictive["log_loss"].median(("chain", "draw")).values)
        assert np.max(np.abs(predicted / observed - 1)) < 0.05
        assert tree.posterior_predictive["log_loss"].shape[-1] == len(observed)
    assert float(high.posterior["E"].median()) > 1.1 * float(low.posterior["E"].median())


@pytest.mark.unit
@pytest.mark.parametrize("law, options", [("atlas-h", {}), ("atlas-h", {"shared": ("A", "alpha")}),
                                          ("curse", {}), ("curse-h", {})])
def test_padding_leaves_a_joint_models_density_and_likelihood_unchanged(law, options):
    """Joint models take their per-language set-up as arguments and sum over real rows only."""
    from atlas_bayes.fitting.law_inputs import build_group_inputs
    from atlas_bayes.models.hierarchical import centredness, group_centres, group_spreads
    from atlas_bayes.simulation.paper_design import paper_study
    runs, _ = paper_study(eval_languages=["en", "sw", "hi"], seed=0)
    x, _, y = build_group_inputs(runs)
    spec = get_law(law)
    resolved = {"centring": centredness(x), "centres": group_centres(x)}
    if spec.model.__name__ == "hierarchical":
        resolved["spreads"] = group_spreads(x)
    model = spec.bind(nu=4.0, **options, **resolved)
    assert compiled.compilable(model, x)
    padded, y_padded = compiled.pad(x, y, compiled.padded_size(len(y)) + 16)
    from numpyro import handlers
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(x, y)
    shapes = {name: np.shape(site["value"]) for name, site in trace.items()
              if site["type"] == "sample" and not site["is_observed"]}
    rng = np.random.default_rng(0)
    for _ in range(3):
        params = {name: rng.normal(size=shape) * 0.3 for name, shape in shapes.items()}
        plain = potential_energy(model, (x, y), {}, params)
        masked = potential_energy(model, (padded, y_padded), {}, params)
        np.testing.assert_allclose(masked, plain, rtol=1e-5)


@pytest.mark.statistical
def test_curve_models_run_as_one_program_reused_for_data_of_the_same_shape():
    """The non-law models (here the learning curves) take their data as arguments too: a first
    fit compiles a few programs (NumPyro's eager start compiled hundreds), a refit of other
    data with the same shapes compiles none, and each fit follows its own data."""
    from atlas_bayes.fitting.inference import sample_posterior
    from atlas_bayes.fitting.jax_setup import counting_compilations
    from atlas_bayes.models.transfer import CurveInputs, learning_curves
    d = np.log(np.array([0.1, 0.2, 0.4, 0.7, 1.0] * 2))
    x = CurveInputs(curve=np.repeat([0, 1], 5), log_d_rel=d, log_span=np.full(2, np.log(10.0)),
                    log_loss_end=np.log([2.0, 3.0]), n_curves=2)
    assert compiled.compilable(learning_curves, x)
    ends = []
    for end in (2.0, 2.6):
        y = np.log(end * np.exp(-0.3 * d) * (1 + 0.01 * np.sin(np.arange(10))))
        with counting_compilations() as counted:
            posterior, _ = sample_posterior(learning_curves, x._replace(log_loss_end=y[[4, 9]]),
                                            y, QUICK)
        ends.append((counted["n_compilations"], np.median(posterior["L_end"], axis=(0, 1))))
    assert ends[0][0] <= 20 and ends[1][0] == 0, ends
    np.testing.assert_allclose(ends[1][1] / ends[0][1], 1.3, rtol=0.02)


@pytest.mark.unit
def test_the_program_store_serves_a_later_process_without_tracing(tmp_path, monkeypatch):
    monkeypatch.setattr(program_store, "folder", lambda: tmp_path)
    traced = []

    def program(x, options):
        traced.append(x.shape)
        return {"scaled": x * options["a"]}
    args = (np.ones(3, np.float32), {"a": np.float32(2.0)})
    first = program_store.export(jax.jit(program), "test program", args)
    np.testing.assert_allclose(first(*args)["scaled"], 2.0)
    assert traced == [(3,)] and len(list(tmp_path.iterdir())) == 1
    again = program_store.export(jax.jit(program), "test program", args)  # as a later process
    np.testing.assert_allclose(again(np.full(3, 2, np.float32), args[1])["scaled"], 4.0)
    assert traced == [(3,)]
    program_store.export(jax.jit(program), "test program", (np.ones(4, np.float32), args[1]))
    assert traced == [(3,), (4,)]            # another shape: another entry
    computed = []
    for _ in range(2):
        assert program_store.remember("test value", lambda: computed.append(1) or {"a": [1]}) == {
            "a": [1]}
    assert computed == [1]


@pytest.mark.statistical
def test_a_refit_in_a_fresh_process_reads_its_programs_from_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr(program_store, "folder", lambda: tmp_path)
    exported = []
    export = jax.export.export
    monkeypatch.setattr(jax.export, "export", lambda f, **kw: exported.append(f) or export(f, **kw))
    runs = _runs(6, seed=2)
    trees = []
    for _ in range(2):
        compiled.clear()                     # nothing in memory, as in a new process
        trees.append(fit(runs, "chinchilla", sampler=QUICK, warn=False))
        if len(trees) == 1:
            assert len(exported) == 2        # NUTS; the predictive with the log likelihood
    assert len(exported) == 2                # the refit traced neither
    np.testing.assert_array_equal(trees[0].posterior["E"], trees[1].posterior["E"])
    np.testing.assert_array_equal(trees[0].log_likelihood["log_loss"],
                                  trees[1].log_likelihood["log_loss"])


@pytest.mark.unit
@pytest.mark.parametrize("seed", [0, 1, 17, 2 ** 31 - 1])
def test_seeds_split_on_the_host_as_jax_splits_them(seed):
    for n in (2, 4):
        expect = np.asarray(jax.random.split(jax.random.PRNGKey(seed), n))
        np.testing.assert_array_equal(compiled.split_seed(seed, n), expect)



@pytest.mark.unit
def test_parallel_chains_spread_evenly_over_the_devices_that_divide_them(monkeypatch):
    for devices, chains, expect in [(1, 4, 1), (2, 4, 2), (3, 4, 2), (3, 6, 3), (16, 4, 4), (2, 1, 1)]:
        monkeypatch.setattr(jax, "local_device_count", lambda: devices)
        assert compiled.chain_devices(chains) == expect
