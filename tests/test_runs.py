"""Run-table validation: one test per kind of bad input, each checking the message's location."""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atlas_bayes.tables.runs import RunTableError, RunTableWarning, mixture_fractions, read_runs, split_continued, unique_tokens_by_language, validate_runs, write_runs

pytestmark = pytest.mark.unit

GOOD = """run_id,language,n_params,n_tokens,loss
a,en,1e8,1e9,3.5
a,en,1e8,2e9,3.2
b,en,4e8,8e9,2.9
"""


def write(tmp_path, text, name="runs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(path) -> str:
    with pytest.raises(RunTableError) as caught:
        read_runs(path)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_good_table_reads(tmp_path):
    runs = read_runs(write(tmp_path, GOOD))
    assert len(runs) == 3
    assert runs["n_params"].dtype == float
    assert list(runs.columns[:5]) == ["run_id", "language", "n_params", "n_tokens", "loss"]
    assert runs.attrs["source"] == str(tmp_path / "runs.csv")


def test_missing_required_column(tmp_path):
    path = write(tmp_path, "n_params,n_tokens\n1e8,1e9\n")
    message = error_for(path)
    assert "missing required column 'loss'" in message


def test_misspelled_column_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "n_param,n_tokens,loss\n1e8,1e9,3.0\n")
    message = error_for(path)
    assert "column 'n_param' is not in the format: did you mean 'n_params'?" in message
    assert "missing required column 'n_params'" in message


def test_non_numeric_value(tmp_path):
    path = write(tmp_path, GOOD.replace("4e8,8e9", "big,8e9"))
    message = error_for(path)
    assert "row 3 (line 4), column 'n_params': expected a number, got 'big'" in message


def test_blank_required_value(tmp_path):
    path = write(tmp_path, GOOD.replace("2e9,3.2", "2e9,"))
    assert "row 2 (line 3), column 'loss': expected a number" in error_for(path)


def test_non_finite_value(tmp_path):
    path = write(tmp_path, GOOD.replace("2e9,3.2", "2e9,inf"))
    assert "row 2 (line 3), column 'loss': expected a finite number, got inf" in error_for(path)


@pytest.mark.parametrize("column, old, new", [
    ("n_params", "4e8,8e9,2.9", "0,8e9,2.9"),
    ("n_tokens", "4e8,8e9,2.9", "4e8,-8e9,2.9"),
    ("loss", "4e8,8e9,2.9", "4e8,8e9,0"),
])
def test_not_positive(tmp_path, column, old, new):
    path = write(tmp_path, GOOD.replace(old, new))
    message = error_for(path)
    assert f"row 3 (line 4), column '{column}': expected a positive number" in message


def test_unique_tokens_not_positive(tmp_path):
    path = write(tmp_path, "n_params,n_tokens,loss,unique_tokens\n1e8,1e9,3.0,-5\n")
    assert "row 1 (line 2), column 'unique_tokens': expected a positive number, got -5" \
        in error_for(path)


def test_every_problem_is_listed(tmp_path):
    path = write(tmp_path, "n_params,n_tokens,loss\nx,1e9,3.0\n1e8,0,3.0\n1e8,1e9,nope\n")
    message = error_for(path)
    assert "3 problem(s)" in message
    for where in ("row 1 (line 2)", "row 2 (line 3)", "row 3 (line 4)"):
        assert where in message


MIX = """run_id,language,n_params,n_tokens,loss,mix_en,mix_fr,n_languages
bi,en,1e8,1e9,3.1,0.5,0.5,2
bi,fr,1e8,1e9,3.3,0.5,0.5,2
mono,en,1e8,1e9,3.0,,,
"""


def test_mixture_fractions_must_sum_to_one(tmp_path):
    path = write(tmp_path, MIX.replace("bi,fr,1e8,1e9,3.3,0.5,0.5", "bi,fr,1e8,1e9,3.3,0.5,0.4"))
    message = error_for(path)
    assert "row 2 (line 3), columns mix_*: mixture fractions sum to 0.9, expected 1" in message


def test_mixture_fraction_out_of_range(tmp_path):
    path = write(tmp_path, MIX.replace("bi,en,1e8,1e9,3.1,0.5,0.5", "bi,en,1e8,1e9,3.1,1.5,-0.5"))
    message = error_for(path)
    assert "row 1 (line 2), column 'mix_en': expected a fraction in [0, 1], got 1.5" in message
    assert "row 1 (line 2), column 'mix_fr': expected a fraction in [0, 1], got -0.5" in message


def test_n_languages_inconsistent_with_mixture(tmp_path):
    path = write(tmp_path, MIX.replace("0.5,0.5,2\nbi,fr", "0.5,0.5,3\nbi,fr"))
    message = error_for(path)
    assert ("row 1 (line 2), column 'n_languages': says 3 languages but the mix_* columns "
            "give 2 a non-zero share") in message


def test_n_languages_without_mixture_must_be_one(tmp_path):
    path = write(tmp_path, "language,n_params,n_tokens,loss,n_languages\nen,1e8,1e9,3.0,1\n"
                           "en,1e8,2e9,2.9,2\n")
    message = error_for(path)
    assert "row 2 (line 3), column 'n_languages': says 2 languages" in message
    assert "no mix_* values" in message


def test_n_languages_not_whole(tmp_path):
    path = write(tmp_path, MIX.replace("0.5,0.5,2\nbi,fr", "0.5,0.5,1.5\nbi,fr"))
    assert "row 1 (line 2), column 'n_languages': expected a whole number >= 1, got 1.5" \
        in error_for(path)


def test_duplicate_rows(tmp_path):
    path = write(tmp_path, GOOD + "a,en,1e8,2e9,3.1\n")
    message = error_for(path)
    assert ("row 2 (line 3), row 4 (line 5): duplicate rows for run 'a', language 'en', "
            "n_tokens 2e+09") in message


def test_same_tokens_in_other_language_is_not_a_duplicate(tmp_path):
    runs = read_runs(write(tmp_path, MIX))
    assert len(runs) == 3


def test_unknown_language_warns_not_errors(tmp_path):
    path = write(tmp_path, GOOD.replace("b,en", "b,xx"))
    with pytest.warns(RunTableWarning, match=r"unknown language codes 'xx' \(row 3 \(line 4\)\)"):
        runs = read_runs(path)
    assert list(runs["language"]) == ["en", "en", "xx"]


def test_unknown_mixture_language_warns(tmp_path):
    path = write(tmp_path, "language,n_params,n_tokens,loss,mix_en,mix_qq\nen,1e8,1e9,3,0.5,0.5\n")
    with pytest.warns(RunTableWarning, match="'qq' \\(column mix_qq\\)"):
        read_runs(path)


def test_flores_and_iso3_codes_are_known(tmp_path):
    path = write(tmp_path, "language,n_params,n_tokens,loss\nfra_Latn,1e8,1e9,3\nDEU,1e8,1e9,3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunTableWarning)
        read_runs(path)


def test_empty_table(tmp_path):
    assert "the table has no rows" in error_for(write(tmp_path, "n_params,n_tokens,loss\n"))


def test_empty_file(tmp_path):
    assert "cannot be read as a table" in error_for(write(tmp_path, ""))


def test_missing_file(tmp_path):
    assert "file not found" in error_for(tmp_path / "nothing.csv")


def test_unknown_file_type(tmp_path):
    assert "unknown file type '.xlsx'" in error_for(write(tmp_path, GOOD, "runs.xlsx"))


def test_parquet_round_trip(tmp_path):
    runs = read_runs(write(tmp_path, MIX.replace("n_languages\n", "n_languages,unique_tokens\n")
                           .replace(",2\n", ",2,5e9\n")))
    path = tmp_path / "runs.parquet"
    write_runs(runs, path)
    again = read_runs(path)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), runs.reset_index(drop=True),
                                  check_dtype=False)
    assert not (tmp_path / "runs.parquet.tmp").exists()


def test_csv_round_trip(tmp_path):
    runs = read_runs(write(tmp_path, MIX))
    path = tmp_path / "copy.csv"
    write_runs(runs, path)
    pd.testing.assert_frame_equal(read_runs(path), runs, check_dtype=False)


def test_parquet_errors_name_the_row_without_a_line(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"n_params": [1e8, -1.0], "n_tokens": [1e9, 1e9], "loss": [3.0, 3.0]}) \
        .to_parquet(path)
    message = error_for(path)
    assert "row 2, column 'n_params': expected a positive number, got -1" in message
    assert "line" not in message.split("\n", 1)[1]


def test_defaults_when_only_required_columns(tmp_path):
    runs = read_runs(write(tmp_path, "n_params,n_tokens,loss\n1e8,1e9,3\n2e8,1e9,2.9\n"))
    assert list(runs["run_id"]) == ["row1", "row2"]
    assert list(runs["language"]) == ["und", "und"]
    assert list(runs["init"]) == ["scratch", "scratch"]
    assert list(runs["source"]) == ["", ""] and list(runs["notes"]) == ["", ""]
    assert list(runs["mixture"]) == ["", ""]


def test_blank_text_cells_get_defaults(tmp_path):
    runs = read_runs(write(tmp_path, "run_id,language,n_params,n_tokens,loss,init\n"
                                     ",,1e8,1e9,3\nr,en,1e8,1e9,3,continued\n"))
    assert list(runs["run_id"]) == ["row1", "r"]
    assert list(runs["language"]) == ["und", "en"]
    assert list(runs["init"]) == ["scratch", "continued"]


def test_a_language_code_with_spaces_is_refused(tmp_path):
    with pytest.raises(RunTableError, match=r"row 2 \(line 3\), column 'language': expected a language "
                                            r"code without spaces or control characters, got 'e n'"):
        read_runs(write(tmp_path, 'run_id,language,n_params,n_tokens,loss\na,en,1e8,1e9,3\nb,"e n",1e8,1e9,3\n'))


def test_several_rows_per_run(tmp_path):
    text = "run_id,n_params,n_tokens,loss\n" + "".join(
        f"curve,1e8,{tokens:g},{3 + 1 / tokens ** 0.1:.4f}\n" for tokens in (1e8, 2e8, 4e8, 8e8))
    runs = read_runs(write(tmp_path, text))
    assert (runs["run_id"] == "curve").all() and len(runs) == 4


def test_extra_columns_kept_with_a_warning(tmp_path):
    path = write(tmp_path, "n_params,n_tokens,loss,seed,checkpoint\n1e8,1e9,3,1,step100\n")
    with pytest.warns(RunTableWarning, match=r"columns \['seed', 'checkpoint'\] are not part"):
        runs = read_runs(path)
    assert list(runs.columns[-2:]) == ["seed", "checkpoint"]
    assert runs.at[0, "checkpoint"] == "step100"


def test_whitespace_is_stripped(tmp_path):
    runs = read_runs(write(tmp_path, " run_id , n_params, n_tokens, loss\n a , 1e8, 1e9, 3\n"))
    assert runs.at[0, "run_id"] == "a" and runs.at[0, "n_params"] == 1e8


def test_validate_runs_on_a_dataframe_names_rows_only():
    frame = pd.DataFrame({"n_params": [1e8, np.nan], "n_tokens": [1e9, 1e9], "loss": [3.0, 3.0]})
    with pytest.raises(RunTableError, match=r"<mine>: 1 problem.*\n  - row 2, column 'n_params'"):
        validate_runs(frame, source="<mine>")


def test_mixture_fractions(tmp_path):
    runs = read_runs(write(tmp_path, MIX))
    fractions = mixture_fractions(runs)
    assert list(fractions.columns) == ["en", "fr"]
    assert fractions.loc[0].tolist() == [0.5, 0.5]
    assert fractions.loc[1].tolist() == [0.5, 0.5]
    assert fractions.loc[2].tolist() == [1.0, 0.0]      # no mix_ values: monolingual


def test_mixture_fractions_add_evaluated_languages_without_mix_columns():
    runs = validate_runs(pd.DataFrame({"language": ["de", "en"], "n_params": [1e8, 1e8],
                                       "n_tokens": [1e9, 1e9], "loss": [3.0, 3.0],
                                       "mix_en": [np.nan, 1.0]}))
    fractions = mixture_fractions(runs)
    assert list(fractions.columns) == ["en", "de"]
    assert fractions.loc[0].tolist() == [0.0, 1.0]
    assert fractions.loc[1].tolist() == [1.0, 0.0]


def test_unique_tokens_by_language(tmp_path):
    text = ("language,n_params,n_tokens,loss,unique_tokens,mix_en,mix_fr,unique_tokens_fr\n"
            "en,1e8,1e9,3,2e9,0.5,0.5,4e8\n"
            "fr,1e8,1e9,3,,0.5,0.5,4e8\n"
            "en,1e8,2e9,3,,,,\n")
    unique = unique_tokens_by_language(read_runs(write(tmp_path, text)))
    assert list(unique.columns) == ["en", "fr"]
    assert unique.loc[0].tolist() == [2e9, 4e8]
    assert unique.loc[1, "fr"] == 4e8 and math.isinf(unique.loc[1, "en"])
    assert math.isinf(unique.loc[2, "en"])          # unknown: never repeated
    assert math.isinf(unique.loc[2, "fr"])


def test_unique_tokens_by_language_bad_value(tmp_path):
    path = write(tmp_path, "n_params,n_tokens,loss,unique_tokens_fr\n1e8,1e9,3,0\n")
    assert "row 1 (line 2), column 'unique_tokens_fr': expected a positive number, got 0" \
        in error_for(path)


def test_the_documented_example_is_valid(tmp_path):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data-format.md").read_text()
    example = doc.split("```csv\n", 1)[1].split("```", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunTableWarning)
        runs = read_runs(write(tmp_path, example))
    assert len(runs) == 6 and runs["run_id"].nunique() == 3
    fractions = mixture_fractions(runs)
    assert fractions.loc[0].tolist() == [1.0, 0.0]
    assert fractions.loc[4].tolist() == [0.5, 0.5]
    unique = unique_tokens_by_language(runs)
    assert unique.loc[2, "fr"] == 1e9 and math.isinf(unique.loc[0, "en"])


def test_duplicate_column_names():
    frame = pd.DataFrame([[1e8, 1e9, 3.0, 3.1]], columns=["n_params", "n_tokens", "loss", "loss"])
    with pytest.raises(RunTableError, match=r"columns \['loss'\] appear more than once"):
        validate_runs(frame, source="<dupes>")


def test_long_problem_lists_are_cut(tmp_path):
    path = write(tmp_path, "n_params,n_tokens,loss\n" + "-1,1e9,3\n" * 25)
    with pytest.raises(RunTableError) as caught:
        read_runs(path)
    assert len(caught.value.problems) == 25
    assert "... and 5 more" in str(caught.value)
    assert "row 25 (line 26)" not in str(caught.value)


def test_the_bundled_real_study_is_a_valid_run_table():
    """data/bundled_study.csv (studies/bundled/README.md): 98 complete learning curves, every
    run evaluated at the same steps in each of its languages, finetunes marked."""
    path = Path(__file__).resolve().parents[1] / "data" / "bundled_study.csv"
    runs = read_runs(path)
    assert runs["run_id"].nunique() == 98 and len(runs) == 1280
    assert set(runs["language"]) == {"en", "es", "pt", "it", "fr", "ar", "vi", "de", "ru"}
    assert (runs["loss"] > 0).all() and (runs["loss"] < 8).all()     # bits per byte
    tuned = runs[runs["init"] != "scratch"]
    assert set(tuned["run_id"].str.split("-").str[0]) == {"ft"}
    assert (tuned["init_tokens"] > 0).all() and (tuned["n_tokens"] > tuned["init_tokens"]).all()
    per_run = runs.groupby(["run_id", "language"])["n_tokens"].apply(tuple)
    assert per_run.groupby(level="run_id").nunique().eq(1).all()


def test_split_continued_keeps_rows_that_describe_their_whole_history():
    """Left out: continued runs whose n_tokens include init_tokens. Kept: scratch runs, and
    continued runs without init_tokens (one mixture over the whole history, as paper_design
    simulates them)."""
    runs = validate_runs(pd.DataFrame({
        "run_id": ["a", "a", "ft", "ft", "whole"], "language": ["es"] * 5,
        "n_params": [1e6] * 5, "n_tokens": [1e7, 2e7, 3e7, 4e7, 5e7], "loss": [2.0] * 5,
        "init": ["scratch", "scratch", "finetune:a", "finetune:a", "unimax-1M"],
        "init_tokens": [None, None, 2e7, 2e7, None]}))
    kept, left_out = split_continued(runs)
    assert left_out == ["ft"] and list(kept["run_id"]) == ["a", "a", "whole"]
    assert split_continued(kept)[1] == []
