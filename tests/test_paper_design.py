"""The paper-shaped design: valid, sized like Table B.1, mixtures and finetunes encoded right."""

import warnings

import numpy as np
import pandas as pd
import pytest

from atlas_bayes.simulation.paper_design import CAPACITY_K, L_MONO, L_PAIRS, MAX_EPOCHS, UNIMAX_ENGLISH, paper_design, summarise_design, unimax_shares
from atlas_bayes.tables.runs import mixture_fractions, validate_runs

pytestmark = pytest.mark.unit

COUNTS = {  # kind: (runs, rows) of the compact design, two checkpoints per run
    "mono": (94, 188),                 # 7 languages x 7 sizes x 2 budgets, less 4 capped repeats
    "unimax": (7, 672),                # 7 sizes, 48 languages
    "bilingual": (140, 560),           # 14 pairs x 5 sizes x 2 budgets, 2 languages
    "pairs-mono": (48, 96),
    "capacity": (40, 1500),            # 8 K x 5 sizes; 4+6+...+48 = 150 languages
    "unimax-finetune": (72, 144),      # 12 targets x 3 sizes + the other 36 at the largest
}


@pytest.fixture(scope="module")
def design():
    return paper_design()


def shares(design) -> pd.DataFrame:
    return design.filter(like="mix_").rename(columns=lambda c: c[len("mix_"):])


def test_design_is_a_valid_run_table(design):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = validate_runs(design.assign(loss=1.0), source="paper design")
    assert len(runs) == len(design)
    assert "loss" not in design and (design["source"] == "simulated design").all()


def test_counts_by_kind(design):
    summary = summarise_design(design)
    assert {k: tuple(v) for k, v in summary.drop("total").iterrows()} == COUNTS
    assert tuple(summary.loc["total"]) == (401, 3160)


def test_48_evaluation_languages(design):
    langs = set(design["language"])
    assert len(langs) == 48 and not langs & {"af", "bm"}
    assert {c[len("mix_"):] for c in design.filter(like="mix_")} == langs
    assert {c[len("unique_tokens_"):] for c in design.filter(like="unique_tokens_")} == langs
    for lang in langs:
        rows = design[design["language"] == lang]
        assert (rows["unique_tokens"] == rows[f"unique_tokens_{lang}"]).all()


def test_mixtures_sum_to_one_and_match_n_languages(design):
    mix = shares(design)
    np.testing.assert_allclose(mix.sum(axis=1), 1.0, rtol=1e-12)
    assert ((mix > 0).sum(axis=1) == design["n_languages"]).all()
    assert (mixture_fractions(design)[mix.columns] == mix).all().all()


def test_runs_keep_their_size_kind_and_fixed_shares(design):
    assert (design.groupby("run_id")[["n_params", "mixture", "init"]].nunique() == 1).all().all()
    scratch = design[design["mixture"] != "unimax-finetune"]
    assert (shares(scratch).groupby(scratch["run_id"]).nunique() == 1).all().all()


def test_kinds_train_on_what_they_say(design):
    mix = shares(design)
    mono = design["mixture"].isin(["mono", "pairs-mono"])
    assert all(mix.at[i, lang] == 1.0 for i, lang in design.loc[mono, "language"].items())
    assert set(design.loc[design["mixture"] == "mono", "language"]) == set(L_MONO)
    bilingual = mix[design["mixture"] == "bilingual"]
    assert ((bilingual == 0.5).sum(axis=1) == 2).all()
    unimax = mix[design["mixture"] == "unimax"]
    assert (unimax["en"] == UNIMAX_ENGLISH).all() and (unimax > 0).all().all()


def test_capacity_mixtures_are_nested_uniform_and_evaluated_on_each_language(design):
    capacity = design[design["mixture"] == "capacity"]
    mix = shares(capacity)
    subsets = {}
    for run, rows in capacity.groupby("run_id"):
        members = set(mix.columns[mix.loc[rows.index[0]] > 0])
        k = len(members)
        np.testing.assert_allclose(mix.loc[rows.index, list(members)], 1 / k)
        assert "en" in members and set(rows["language"]) == members
        subsets.setdefault(k, members)
        assert subsets[k] == members   # the same subset at every size
    assert sorted(subsets) == list(CAPACITY_K)
    ordered = [subsets[k] for k in CAPACITY_K]
    assert all(a < b for a, b in zip(ordered, ordered[1:]))


def test_scratch_runs_repeat_no_language_more_than_the_cap(design):
    scratch = design[design["init"] == "scratch"]
    unique = scratch.filter(like="unique_tokens_")
    unique.columns = [c[len("unique_tokens_"):] for c in unique.columns]
    epochs = shares(scratch).mul(scratch["n_tokens"], axis=0) / unique[shares(scratch).columns]
    assert epochs.max().max() <= MAX_EPOCHS * (1 + 1e-9)
    small = design[(design["mixture"] == "mono") & (design["language"] == "yo")]
    assert (small["n_tokens"] / small["unique_tokens"]).max() > 4   # small languages do repeat


def test_finetune_encodes_pretraining_plus_finetuning(design):
    mix = shares(design)
    finetunes = design[design["mixture"] == "unimax-finetune"]
    assert set(finetunes["language"]) == set(design["language"])
    assert set(finetunes.loc[finetunes["n_params"] < 2e9, "language"]) == set(L_MONO + L_PAIRS)
    for run, rows in finetunes.groupby("run_id"):
        target = rows["language"].iloc[0]
        base = design[(design["run_id"] == rows["init"].iloc[0]) & (design["mixture"] == "unimax")]
        assert (base["n_params"] == rows["n_params"].iloc[0]).all()
        pretrained = base["n_tokens"].max()
        base_mix = mix.loc[base.index[0]]
        finetuned = rows["n_tokens"] - pretrained
        assert (finetuned > 0).all()
        # Checkpoints are fractions of the finetuning phase, as in the other runs.
        np.testing.assert_allclose(finetuned / finetuned.max(), [0.5, 1.0])
        tokens = mix.loc[rows.index].mul(rows["n_tokens"], axis=0)
        others = base_mix.index != target
        np.testing.assert_allclose(tokens.loc[:, others],
                                   np.outer([1, 1], pretrained * base_mix[others]), rtol=1e-9)
        np.testing.assert_allclose(tokens[target], pretrained * base_mix[target] + finetuned,
                                   rtol=1e-9)


def test_deterministic_given_the_seed(design):
    pd.testing.assert_frame_equal(paper_design(), design)
    other = paper_design(seed=1)
    assert len(other) == len(design)
    pd.testing.assert_frame_equal(other[other["mixture"] != "capacity"].reset_index(drop=True),
                                  design[design["mixture"] != "capacity"].reset_index(drop=True))
    assert not shares(other).equals(shares(design))


def test_paper_scales_and_language_subsets():
    summary = summarise_design(paper_design(scales="paper"))
    assert tuple(summary.loc["total"]) == (668, 5712)
    small = paper_design(eval_languages=["en", "fr", "sw", "yo", "de"], checkpoints=(1.0,))
    validate_runs(small.assign(loss=1.0))
    assert set(small["language"]) == {"en", "fr", "sw", "yo", "de"}
    capacity = small[small["mixture"] == "capacity"]
    assert set(capacity["n_languages"]) == {4}


@pytest.mark.parametrize("kw, message", [
    ({"scales": "huge"}, "unknown scales 'huge'; expected one of compact, paper"),
    ({"eval_languages": ["en", "xx"]}, r"no unique-token count for \['xx'\]"),
    ({"eval_languages": ["fr", "de"]}, "must include 'en'"),
    ({"checkpoints": (0.0, 1.0)}, r"checkpoints must be fractions in \(0, 1\]"),
])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        paper_design(**kw)


def test_unimax_follows_the_algorithm():
    # Budget 90: a (smallest) gets min(30, 4 x 1) = 4, b min(43, 40) = 40, c the rest, 46.
    got = unimax_shares({"c": 100.0, "a": 1.0, "b": 10.0}, budget=90.0, max_epochs=4)
    assert list(got) == ["c", "a", "b"]
    np.testing.assert_allclose([got["a"], got["b"], got["c"]], np.array([4, 40, 46]) / 90)
    pinned = unimax_shares({"en": 1e6, "a": 1.0, "b": 1e3}, budget=100.0, pinned={"en": 0.5})
    # a: min(25, 4) = 4; b: 46; normalised to the unpinned half.
    np.testing.assert_allclose([pinned["en"], pinned["a"], pinned["b"]], [0.5, 0.04, 0.46])
