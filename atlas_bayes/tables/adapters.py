"""Adapters: turn the real public data sets into validated run tables (docs/data-format.md).

One small function per data set. Each takes the path of the data file, or of the data set's
folder (then the usual file name inside it is used), and returns the table from
`runs.validate_runs`. A missing file or an expected column that is absent raises a
`RunTableError` naming the file. The data itself is never copied into this repository: point
the adapters at ../shared/data (see each folder's SOURCE.md), e.g. with `load_shared`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from atlas_bayes.tables.runs import RunTableError, RunTableWarning, validate_runs

EPOCH_SOURCE = "Hoffmann et al. 2022 Fig. 4, points read by Besiroglu et al. 2024 (Epoch AI)"
DATABLATIONS_SOURCE = "Muennighoff et al. 2023, datablations final losses"
CURVES_SOURCE = "Muennighoff et al. 2023 curves, aggregated by ColPret (Choshen et al. 2024)"
GOLDFISH_SOURCE = "Chang et al. 2024, Goldfish FLORES log-perplexities"

# Exact parameter counts of the datablations IsoFLOP models (colpret_datablations_curves/SOURCE.md).
CURVE_PARAMS = {"2.8B": 2.81e9, "4.2B": 4.2465e9, "8.7B": 8.67e9}
EPOCH_OUTLIERS = 5


def _read(path: str | Path, default_name: str, expected: list[str]) -> tuple[pd.DataFrame, Path]:
    """Read a CSV (or `default_name` inside a folder) and check it has the expected columns."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise RunTableError(str(path), ["file not found"])
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunTableError(str(path), [f"cannot be read as a table: {err}"]) from None
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise RunTableError(str(path), [f"missing expected column '{c}' (this adapter needs "
                                        f"{', '.join(expected)})" for c in missing])
    return frame, path


def epoch_chinchilla(path: str | Path, drop_epoch_outliers: bool = False) -> pd.DataFrame:
    """Epoch AI's reconstruction of Chinchilla's Figure 4 (svg_extracted_data.csv), 245 runs.

    N is "Model Size"; D = "Training FLOP" / (6 N), as Epoch derive it; loss is the final training
    loss read off the figure's colour bar (so quantised). Language "en" (MassiveText, mostly
    English). run_id is "epoch-<file row>", kept when rows are dropped.

    `drop_epoch_outliers=True` drops the 5 highest-loss points, as Besiroglu et al. (2024) do for
    their fit: the largest models (2.0B to 6.8B parameters) of the 1e19 FLOP budget, trained on
    under 1B tokens, with losses 3.45 to 5.01. 240 rows remain.
    """
    raw, path = _read(path, "svg_extracted_data.csv", ["Model Size", "Training FLOP", "loss"])
    n_params = raw["Model Size"].astype(float)
    table = pd.DataFrame({
        "run_id": [f"epoch-{i:03d}" for i in range(len(raw))],
        "language": "en",
        "n_params": n_params,
        "n_tokens": raw["Training FLOP"].astype(float) / (6.0 * n_params),
        "loss": raw["loss"].astype(float),
        "source": EPOCH_SOURCE,
        "notes": "D = training FLOP / (6 N); loss quantised by the colour bar",
    })
    if drop_epoch_outliers:
        table = table.drop(index=table["loss"].nlargest(EPOCH_OUTLIERS).index)
    return validate_runs(table, source=str(path))


def datablations(path: str | Path, subset: str = "fit182") -> pd.DataFrame:
    """Muennighoff et al. (2023) final C4 validation losses (nats/token) of data-constrained runs.

    subset="fit182": the 182 runs of the paper's fit (datablations_fit182.csv; from the full
    file, the rows with in_paper_fit_182 == 1). subset="all": all 308 runs
    (datablations_final_losses_all.csv), with variant, in_paper_fit_182 and note in `notes`.
    """
    if subset not in ("fit182", "all"):
        raise ValueError(f"subset must be 'fit182' or 'all', got {subset!r}")
    base = ["run_name", "params", "tokens", "unique_tokens", "val_loss"]
    extra = ["variant", "in_paper_fit_182", "note"]
    if subset == "all":
        raw, path = _read(path, "datablations_final_losses_all.csv", base + extra)
    else:
        raw, path = _read(path, "datablations_fit182.csv", base)
        if "in_paper_fit_182" in raw.columns:
            raw = raw[raw["in_paper_fit_182"] == 1]
    notes = ""
    if subset == "all":
        note = ("; note=" + raw["note"].astype(str)).where(raw["note"].notna(), "")
        notes = ("variant=" + raw["variant"].astype(str)
                 + "; in_paper_fit_182=" + raw["in_paper_fit_182"].astype(int).astype(str) + note)
    table = pd.DataFrame({
        "run_id": raw["run_name"].astype(str), "language": "en",
        "n_params": raw["params"], "n_tokens": raw["tokens"],
        "unique_tokens": raw["unique_tokens"], "loss": raw["val_loss"],
        "source": DATABLATIONS_SOURCE, "notes": notes,
    })
    return validate_runs(table, source=str(path))


def datablations_curves(path: str | Path, corpus: str = "c4") -> pd.DataFrame:
    """ColPret's validation-loss learning curves of the 48 datablations IsoFLOP runs.

    Several rows per run (one per logged checkpoint): n_tokens = tokens seen so far, unique_tokens
    = tokens per epoch, loss in nats/token on the run's own corpus. corpus is "c4", "oscar" or
    "all"; run_id is "<corpus>-<size>-<epochs>ep-<TensorBoard id>". The `flops` column is unusable
    (see SOURCE.md) and is left out.

    Two data defects are handled, each with a `RunTableWarning`:
    - The OSCAR 2.8B 3-epoch and 4-epoch curves are identical row for row (an aggregation
      error in ColPret). When they are (and OSCAR is loaded), the 4-epoch copy is dropped;
      which of the two labels is right cannot be told from the data.
    - Rows repeating a (run, token count) pair would keep only the last logged value.
    """
    if corpus not in ("c4", "oscar", "all"):
        raise ValueError(f"corpus must be 'c4', 'oscar' or 'all', got {corpus!r}")
    raw, path = _read(path, "datablations_losses.csv",
                      ["data", "epochs", "token_num", "loss", "num_params", "model_args",
                       "tokens_per_epoch", "checkpoint"])
    unknown = sorted(set(raw["num_params"]) - set(CURVE_PARAMS))
    if unknown:
        raise RunTableError(str(path), [f"column 'num_params': unknown model sizes {unknown} "
                                        f"(expected {', '.join(CURVE_PARAMS)})"])
    if corpus != "all":
        raw = raw[raw["data"] == corpus]
    oscar = (raw["data"] == "oscar") & (raw["num_params"] == "2.8B")
    three, four = (raw.loc[oscar & (raw["epochs"] == e), ["token_num", "loss"]].to_numpy()
                   for e in (3, 4))
    if len(four) and four.shape == three.shape and (four == three).all():
        warnings.warn(f"{path}: dropped the OSCAR 2.8B 4-epoch curve ({len(four)} rows), an exact "
                      "copy of the 3-epoch curve", RunTableWarning, stacklevel=2)
        raw = raw[~(oscar & (raw["epochs"] == 4))]
    tensorboard = raw["model_args"].str.extract(r"'tensorboard':\s*'([^']+)'")[0]
    if tensorboard.isna().any():
        bad = raw["model_args"][tensorboard.isna()].iloc[0]
        raise RunTableError(str(path), [f"column 'model_args': no TensorBoard id in {bad!r}"])
    run_id = (raw["data"] + "-" + raw["num_params"] + "-" + raw["epochs"].astype(str) + "ep-"
              + tensorboard)
    table = pd.DataFrame({
        "run_id": run_id, "language": "en",
        "n_params": raw["num_params"].map(CURVE_PARAMS), "n_tokens": raw["token_num"].astype(float),
        "unique_tokens": raw["tokens_per_epoch"], "loss": raw["loss"],
        "source": CURVES_SOURCE,
        "notes": raw["data"] + " validation loss; " + raw["checkpoint"].str.split("/").str[-1],
    })
    repeated = table.duplicated(["run_id", "n_tokens"], keep="last")
    if repeated.any():
        warnings.warn(f"{path}: {int(repeated.sum())} rows repeat a (run, token count) pair; "
                      "kept the last logged value of each", RunTableWarning, stacklevel=2)
        table = table[~repeated]
    return validate_runs(table, source=str(path))


def goldfish(path: str | Path) -> pd.DataFrame:
    """Goldfish monolingual models scored on FLORES-200 (goldfish_flores_long.csv), 741 rows.

    n_params = model_parameters, n_tokens = total_train_tokens (10 epochs), unique_tokens =
    dataset_tokens, language = the FLORES code as xxx_Xxxx (e.g. "fra_Latn"), run_id = the
    Goldfish model. **The loss is not per token**: it is the summed surprisal in bits of a FLORES
    sentence's second half given its first half, averaged over sentences (flores_logppl_bits).
    Rows with proxy_model == 1 score the language with a related language's model (often its
    macrolanguage, e.g. swh_Latn with swa_latn_*); `notes` says so and run_id names the model.
    They are kept as monolingual rows of the evaluated language. Languages outside
    atlas_bayes/data/languages.csv draw a `RunTableWarning` from validation.
    """
    raw, path = _read(path, "goldfish_flores_long.csv",
                      ["flores_lang", "goldfish_model", "dataset_category", "model_parameters",
                       "dataset_tokens", "total_train_tokens", "flores_logppl_bits", "proxy_model"])
    language = raw["flores_lang"].str.replace(
        r"^([A-Za-z]{3})_([A-Za-z]{4})$", lambda m: f"{m[1].lower()}_{m[2].title()}", regex=True)
    proxy = pd.Series("; proxy_model=1: scored with a related language's model (see run_id)",
                      index=raw.index).where(raw["proxy_model"] == 1, "")
    notes = ("loss in bits per FLORES sentence-half, not per token; size " + raw["dataset_category"]
             + proxy)
    table = pd.DataFrame({
        "run_id": raw["goldfish_model"], "language": language,
        "n_params": raw["model_parameters"], "n_tokens": raw["total_train_tokens"],
        "unique_tokens": raw["dataset_tokens"], "loss": raw["flores_logppl_bits"],
        "source": GOLDFISH_SOURCE, "notes": notes,
    })
    return validate_runs(table, source=str(path))


ADAPTERS = {
    "epoch_chinchilla": epoch_chinchilla,
    "datablations": datablations,
    "datablations_curves": datablations_curves,
    "goldfish": goldfish,
}
FOLDERS = {
    "epoch_chinchilla": "epoch_chinchilla",
    "datablations": "datablations",
    "datablations_curves": "colpret_datablations_curves",
    "goldfish": "goldfish",
}


def load_shared(name: str, shared_data_dir: str | Path, **options) -> pd.DataFrame:
    """Load data set `name` (a key of ADAPTERS) from ../shared/data/<folder>, passing `options`."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown data set {name!r}; choose one of {', '.join(ADAPTERS)}")
    return ADAPTERS[name](Path(shared_data_dir) / FOLDERS[name], **options)
