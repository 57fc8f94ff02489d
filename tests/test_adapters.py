"""Adapters for the real data sets: counts, ranges and validation, read from ../shared/data."""

import warnings

import numpy as np
import pandas as pd
import pytest

from atlas_bayes.tables import adapters
from atlas_bayes.tables.runs import RunTableError, RunTableWarning, validate_runs

pytestmark = pytest.mark.unit


def load(name, shared_data, **options):
    """Load quietly: warnings that are expected are tested on their own below."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        return adapters.load_shared(name, shared_data, **options)


def check_valid(runs):
    """Every row has positive, finite N, D and loss, and the table validates again unchanged."""
    for column in ("n_params", "n_tokens", "loss"):
        assert np.isfinite(runs[column]).all() and (runs[column] > 0).all(), column
    if "unique_tokens" in runs.columns:
        assert (runs["unique_tokens"] > 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        again = validate_runs(runs.copy())
    pd.testing.assert_frame_equal(again.reset_index(drop=True), runs.reset_index(drop=True),
                                  check_dtype=False)
    assert runs["source"].str.len().gt(0).all()


# --- Epoch AI's Chinchilla reconstruction -------------------------------------------------------

def test_epoch_chinchilla(shared_data):
    runs = load("epoch_chinchilla", shared_data)
    check_valid(runs)
    assert len(runs) == 245 and runs["run_id"].is_unique
    assert runs["run_id"].iloc[0] == "epoch-000"
    assert (runs["language"] == "en").all()
    assert runs["n_params"].between(5.7e7, 1.7e10).all()
    assert runs["n_tokens"].between(2.4e8, 3.2e11).all()
    assert runs["loss"].between(2.07, 5.01).all()


def test_epoch_tokens_are_flop_over_6n(shared_data):
    raw = pd.read_csv(shared_data / "epoch_chinchilla" / "svg_extracted_data.csv")
    runs = load("epoch_chinchilla", shared_data)
    np.testing.assert_allclose(runs["n_params"], raw["Model Size"], rtol=1e-12)
    np.testing.assert_allclose(runs["n_tokens"], raw["Training FLOP"] / (6 * raw["Model Size"]),
                               rtol=1e-12)
    np.testing.assert_allclose(6 * runs["n_params"] * runs["n_tokens"], raw["Training FLOP"],
                               rtol=1e-12)
    np.testing.assert_array_equal(runs["loss"], raw["loss"])


def test_epoch_drop_outliers(shared_data):
    runs = load("epoch_chinchilla", shared_data)
    kept = load("epoch_chinchilla", shared_data, drop_epoch_outliers=True)
    check_valid(kept)
    assert len(kept) == 240
    dropped = runs[~runs["run_id"].isin(kept["run_id"])]
    assert len(dropped) == 5
    assert dropped["loss"].min() > kept["loss"].max()        # exactly the 5 highest losses
    assert sorted(dropped["run_id"]) == [f"epoch-{i:03d}" for i in range(5)]
    assert (dropped["n_tokens"] < 1e9).all()                  # large models, tiny budgets


# --- datablations final losses -------------------------------------------------------------------

def test_datablations_fit182(shared_data):
    runs = load("datablations", shared_data)
    check_valid(runs)
    assert len(runs) == 182 and runs["run_id"].is_unique
    assert runs["n_params"].between(7e6, 8.67e9).all()
    assert runs["n_tokens"].between(1e8, 9e11).all()
    assert runs["unique_tokens"].between(1e8, 1.78e11).all()
    assert (runs["unique_tokens"] <= runs["n_tokens"] * (1 + 1e-9)).all()
    assert runs["loss"].between(2.33, 8.11).all()


def test_datablations_all(shared_data):
    runs = load("datablations", shared_data, subset="all")
    check_valid(runs)
    assert len(runs) == 308 and runs["run_id"].is_unique
    assert runs["notes"].str.startswith("variant=").all()
    assert runs["notes"].str.contains("in_paper_fit_182=1").sum() == 182
    assert runs["notes"].str.contains("variant=dedup").sum() == 12
    assert runs["notes"].str.contains("note=corrected").sum() == 1
    fit = load("datablations", shared_data)
    assert set(fit["run_id"]) <= set(runs["run_id"])


def test_datablations_fit182_from_the_full_file(shared_data):
    path = shared_data / "datablations" / "datablations_final_losses_all.csv"
    from_all = adapters.datablations(path, subset="fit182").set_index("run_id").sort_index()
    fit = load("datablations", shared_data).set_index("run_id").sort_index()
    columns = ["n_params", "n_tokens", "unique_tokens", "loss"]
    pd.testing.assert_frame_equal(from_all[columns], fit[columns])


def test_datablations_bad_subset(shared_data):
    with pytest.raises(ValueError, match="subset"):
        adapters.datablations(shared_data / "datablations", subset="some")


# --- ColPret learning curves ---------------------------------------------------------------------

BUDGET = {2.81e9: 55e9, 4.2465e9: 84e9, 8.67e9: 178e9}


@pytest.mark.parametrize("corpus, rows, n_runs", [("c4", 4855, 24), ("oscar", 4080, 23),
                                                  ("all", 8935, 47)])
def test_datablations_curves_counts(shared_data, corpus, rows, n_runs):
    runs = load("datablations_curves", shared_data, corpus=corpus)
    check_valid(runs)
    assert len(runs) == rows
    assert runs["run_id"].nunique() == n_runs
    assert runs.groupby("run_id").size().min() >= 60           # several rows per run
    assert set(runs["n_params"]) == set(BUDGET)
    budget = runs["n_params"].map(BUDGET)
    assert (runs["n_tokens"] <= budget).all()
    epochs = runs["run_id"].str.extract(r"-(\d+)ep-")[0].astype(int)
    np.testing.assert_allclose(runs["unique_tokens"] * epochs, budget, rtol=1e-9)
    assert runs["loss"].between(2.3, 12).all()
    assert not runs.duplicated(["run_id", "n_tokens"]).any()


def test_datablations_curves_run_ids(shared_data):
    runs = load("datablations_curves", shared_data)
    assert runs["run_id"].str.fullmatch(r"c4-(2\.8|4\.2|8\.7)B-\d+ep-[A-Za-z0-9_-]{22}").all()
    assert "c4-2.8B-44ep-w7KmvQJRRvyCAsd0DkLOwg" in set(runs["run_id"])


def test_datablations_curves_oscar_copy_dropped_with_a_warning(shared_data):
    with pytest.warns(RunTableWarning, match="OSCAR 2.8B 4-epoch curve \\(326 rows\\)"):
        runs = adapters.load_shared("datablations_curves", shared_data, corpus="oscar")
    assert not runs["run_id"].str.startswith("oscar-2.8B-4ep-").any()
    assert runs["run_id"].str.startswith("oscar-2.8B-3ep-").sum() == 326
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunTableWarning)       # C4 alone: nothing to drop
        adapters.load_shared("datablations_curves", shared_data, corpus="c4")


def test_datablations_curves_end_at_the_final_losses(shared_data):
    """SOURCE.md: the C4 curves' last points match datablations' final losses within ~0.01."""
    curves = load("datablations_curves", shared_data)
    last = curves.sort_values("n_tokens").groupby("run_id").tail(1)
    final = load("datablations", shared_data, subset="all")
    final = final[final["notes"].str.startswith("variant=base")]
    pairs = last.merge(final, on=["n_params", "unique_tokens"], suffixes=("_curve", "_final"))
    pairs = pairs[np.isclose(pairs["n_tokens_curve"], pairs["n_tokens_final"], rtol=1e-3)]
    assert len(pairs) >= 8
    assert (pairs["loss_curve"] - pairs["loss_final"]).abs().max() < 0.01


CURVE_HEADER = ("index,data,epochs,token_num,loss,num_params,model_args,tokens_per_epoch,flops,"
                "checkpoint\n")


def curve_row(i, tokens, loss, data="c4", epochs=2, tb="AbCdEfGhIjKlMnOpQrStUv"):
    return (f"{i},{data},{epochs},{tokens},{loss},2.8B,\"{{'tensorboard': '{tb}'}}\","
            f"{55e9 / epochs},1e20,https://huggingface.co/datablations/x\n")


def test_datablations_curves_repeated_points_keep_the_last(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text(CURVE_HEADER + curve_row(0, 1e8, 5.0) + curve_row(1, 2e8, 4.0)
                    + curve_row(2, 2e8, 3.9) + curve_row(3, 3e8, 3.5))
    with pytest.warns(RunTableWarning, match="1 rows repeat a \\(run, token count\\) pair"):
        runs = adapters.datablations_curves(path)
    assert len(runs) == 3
    assert runs.loc[runs["n_tokens"] == 2e8, "loss"].item() == 3.9
    assert runs["run_id"].iloc[0] == "c4-2.8B-2ep-AbCdEfGhIjKlMnOpQrStUv"


def test_datablations_curves_distinct_oscar_curves_are_kept(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text(CURVE_HEADER + curve_row(0, 1e8, 5.0, "oscar", 3, "a" * 22)
                    + curve_row(1, 1e8, 5.1, "oscar", 4, "b" * 22))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunTableWarning)
        runs = adapters.datablations_curves(path, corpus="oscar")
    assert len(runs) == 2


def test_datablations_curves_bad_corpus(shared_data):
    with pytest.raises(ValueError, match="corpus"):
        adapters.datablations_curves(shared_data / "colpret_datablations_curves", corpus="pile")


# --- Goldfish ------------------------------------------------------------------------------------

def test_goldfish(shared_data):
    with pytest.warns(RunTableWarning, match="unknown language codes"):
        runs = adapters.load_shared("goldfish", shared_data)
    check_valid(runs)
    assert len(runs) == 741
    assert runs["language"].nunique() == 202
    assert runs["language"].str.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}").all()
    assert {"fra_Latn", "eng_Latn", "zho_Hans"} <= set(runs["language"])
    assert not runs.duplicated(["run_id", "language"]).any()
    assert runs["n_params"].between(2e7, 1.25e8).all()
    np.testing.assert_allclose(runs["n_tokens"], 10 * runs["unique_tokens"])
    assert runs["loss"].between(68, 384).all()                 # bits per sentence-half
    assert runs["notes"].str.contains("not per token").all()
    assert runs["notes"].str.contains("proxy_model=1").sum() == 134


def test_goldfish_proxy_rows_name_another_model(shared_data):
    runs = load("goldfish", shared_data)
    proxy = runs[runs["notes"].str.contains("proxy_model=1")]
    own = [run.lower().startswith(lang.lower()) for run, lang in zip(proxy["run_id"],
                                                                    proxy["language"])]
    assert len(proxy) == 134 and not any(own)
    swahili = runs[runs["language"] == "swh_Latn"]
    assert swahili["run_id"].str.startswith("swa_latn_").all()


# --- errors and the registry ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(adapters.ADAPTERS))
def test_missing_file_names_the_file(tmp_path, name):
    path = tmp_path / "nothing.csv"
    with pytest.raises(RunTableError, match="(?s)nothing.csv: 1 problem.*file not found"):
        adapters.ADAPTERS[name](path)


@pytest.mark.parametrize("name", sorted(adapters.ADAPTERS))
def test_missing_folder_file_names_the_expected_file(tmp_path, name):
    with pytest.raises(RunTableError, match="file not found") as caught:
        adapters.load_shared(name, tmp_path)
    assert str(tmp_path / adapters.FOLDERS[name]) in str(caught.value)


@pytest.mark.parametrize("name, header, missing", [
    ("epoch_chinchilla", "Model Size,loss\n1e8,3", "Training FLOP"),
    ("datablations", "run_name,params,tokens,unique_tokens\nx,1,2,3", "val_loss"),
    ("datablations_curves", CURVE_HEADER.replace("model_args,", "") + "0", "model_args"),
    ("goldfish", "flores_lang,goldfish_model\nfra_latn,fra_latn_5mb", "model_parameters"),
])
def test_missing_column_names_file_and_column(tmp_path, name, header, missing):
    path = tmp_path / "table.csv"
    path.write_text(header + "\n")
    with pytest.raises(RunTableError) as caught:
        adapters.ADAPTERS[name](path)
    assert str(path) in str(caught.value)
    assert f"missing expected column '{missing}'" in str(caught.value)


def test_datablations_all_needs_the_extra_columns(shared_data):
    path = shared_data / "datablations" / "datablations_fit182.csv"
    with pytest.raises(RunTableError, match="missing expected column 'variant'"):
        adapters.datablations(path, subset="all")


def test_load_shared_unknown_name(shared_data):
    with pytest.raises(KeyError, match="unknown data set"):
        adapters.load_shared("pile", shared_data)


def test_registry_and_folders_agree():
    assert set(adapters.ADAPTERS) == set(adapters.FOLDERS) == {
        "epoch_chinchilla", "datablations", "datablations_curves", "goldfish"}
