"""Traced programs kept on disk, so a later process skips tracing and lowering them.

JAX's persistent compilation cache (`jax_setup`) spares a later process the XLA compilation,
but its key is the lowered program, so every process still traces and lowers each program
first: ~1.2 s of a warm Chinchilla fit's NUTS program and ~0.6 s of its predictive (2 CPU
cores). Here a shared program (`compiled`) is exported once (`jax.export`: the traced and
lowered StableHLO with its argument and result types) and the export written to
`<compilation cache>/atlas_bayes-programs/`, keyed by what decides the program: its name
(kind, model and options, static inputs, settings), its arguments' shapes and dtypes, and
`fingerprint()`: the versions of jax, jaxlib and numpyro, the device, the JAX settings that
change what a trace produces, and a hash of atlas_bayes's source (models included). A later
process reads the export back (milliseconds) and runs it through `jax.jit`, which the
persistent cache then serves without compiling. Off with the compilation cache
(ATLAS_BAYES_JAX_CACHE=0) and where `flatbuffers` (jax.export's serialisation) is missing.

Small JSON values that cost a trace to compute (a model's sites) are kept the same way
(`remember`). The folder holds at most `MAX_FILES` files; the least recently used go first.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from functools import cache
from pathlib import Path

import jax
import numpy as np

SUBFOLDER = "atlas_bayes-programs"
MAX_FILES = 400
# JAX settings that change the program a trace produces (the rest: logging, caches, devices)
TRACE_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
                  "jax_threefry_partitionable", "jax_numpy_dtype_promotion",
                  "jax_enable_custom_prng", "jax_debug_nans", "jax_debug_infs",
                  "jax_softmax_custom_jvp", "jax_use_direct_linearize", "jax_random_seed_offset",
                  "jax_use_simplified_jaxpr_constants", "jax_export_calling_convention_version")


def folder() -> Path | None:
    """Where exports are kept: a folder inside JAX's compilation cache folder, or None when
    there is none, jit is disabled, or exports cannot be serialised."""
    cache_dir = jax.config.jax_compilation_cache_dir
    if not cache_dir or jax.config.jax_disable_jit or not _can_serialise():
        return None
    return Path(cache_dir) / SUBFOLDER


@cache
def _can_serialise() -> bool:
    return importlib.util.find_spec("flatbuffers") is not None


@cache
def fingerprint() -> str:
    """A hash of what, besides a program's own key, decides what tracing it produces."""
    digest = hashlib.sha256()
    for package in ("jax", "jaxlib", "numpyro"):
        digest.update(f"{package} {importlib.metadata.version(package)}\n".encode())
    device = jax.devices()[0]
    digest.update(f"{device.platform} {device.device_kind} {jax.device_count()}\n".encode())
    for name in TRACE_SETTINGS:
        digest.update(f"{name} {jax.config.values.get(name)!r}\n".encode())
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _sources() -> list[Path]:
    """atlas_bayes's Python files, the models (installed elsewhere in editable mode) included."""
    roots = {Path(p).resolve() for name in ("atlas_bayes", "atlas_bayes.models")
             for p in importlib.util.find_spec(name).submodule_search_locations}
    return sorted({path.resolve() for root in roots for path in root.rglob("*.py")})


def file_for(name: str, signature) -> Path | None:
    """The file that holds the entry of `name` (a deterministic text) for `signature`."""
    where = folder()
    if where is None:
        return None
    key = hashlib.sha256(f"{fingerprint()}\n{name}\n{signature!r}".encode()).hexdigest()[:40]
    return where / key


def read(path: Path) -> bytes | None:
    """The bytes stored at `path` (marking them used), or None."""
    try:
        data = path.read_bytes()
        os.utime(path)
    except OSError:
        return None
    return data


def write(path: Path, data: bytes) -> None:
    """Store `data` at `path` (atomically: parallel processes may share the folder), then drop
    the least recently used files beyond `MAX_FILES`. Failures are ignored: it is a cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as f:
            f.write(data)
        os.chmod(f.name, 0o644)
        os.replace(f.name, path)
        files = [p for p in path.parent.iterdir() if not p.name.startswith(".")]
        if len(files) > MAX_FILES:
            for old in sorted(files, key=_used)[:len(files) - MAX_FILES]:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def export(jitted, name: str | None, args: tuple):
    """A callable running `jitted` on arguments shaped like `args`: the program exported by
    an earlier process when the store has it, else `jitted` exported now and stored. Without
    a store, or a `name`, or where exporting fails (the error then comes from `jitted`
    itself), `jitted`."""
    path = None if name is None else file_for(name, signature(args))
    if path is None:
        return jitted
    from jax import export as jax_export
    data = read(path)
    if data is not None:
        try:
            return _runner(jax_export.deserialize(bytearray(data)))
        except Exception:    # an unreadable entry: export it again
            pass
    try:
        exported = jax_export.export(jitted)(*args)
        write(path, exported.serialize())
    except Exception:
        return jitted
    return _runner(exported)


def _runner(exported):
    def run(*args):
        return exported.call(*args)
    run.__name__ = run.__qualname__ = exported.fun_name    # what JAX's logs call it
    if exported.nr_devices == 1:
        return jax.jit(run)
    # a program over several devices (chains spread over them) runs on as many, laid out alike
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:exported.nr_devices]), ("devices",))
    return jax.jit(run, in_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def signature(args) -> tuple:
    """Argument structure, shapes and dtypes (Python scalars by type: JAX treats them weakly)."""
    leaves, tree = jax.tree.flatten(args)
    return (str(tree), tuple(type(x).__name__ if isinstance(x, (bool, int, float)) else
                             (tuple(x.shape), str(x.dtype)) for x in leaves))


def remember(name: str, compute):
    """`compute()`, a JSON value, kept in the store under `name` (computed once per store)."""
    path = file_for(name, "json")
    data = None if path is None else read(path)
    if data is not None:
        try:
            return json.loads(data)
        except ValueError:
            pass
    value = compute()
    if path is not None:
        write(path, json.dumps(value).encode())
    return value
