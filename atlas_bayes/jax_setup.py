"""Process-wide JAX settings that atlas_bayes relies on, applied once at import.

NumPyro spends most of a small fit compiling the sampler, not sampling. JAX's persistent
compilation cache keeps compiled samplers on disk, so a second fit of the same law and data
shape (another CLI call, the next test) starts in a fraction of the time. Set
ATLAS_BAYES_JAX_CACHE=0 to leave JAX's configuration alone, or to a folder to choose where
the cache lives; a cache folder you configured yourself is always respected.

The cache is size-capped (`CACHE_BYTES`, least recently used entries evicted) because only
then does JAX take a file lock around reads and writes: without it an entry is written
non-atomically, and a second process reading it at that moment (parallel fits, a test run
beside a benchmark) crashed with a segmentation fault inside JAX's cache read (measured).
With the cap, every write scans the whole folder, so only compilations of at least
`MIN_COMPILE_SECONDS` are kept (the samplers; not the thousands of tiny helper programs,
which made each write read ~7,000 files and slowed the test suite several-fold).
"""

import os
from pathlib import Path

import jax

CACHE_BYTES = 4 * 1024 ** 3
MIN_COMPILE_SECONDS = 0.5


def enable_compilation_cache() -> None:
    setting = os.environ.get("ATLAS_BAYES_JAX_CACHE", "")
    if setting == "0" or jax.config.jax_compilation_cache_dir:
        return
    if setting:
        folder = Path(setting)
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atlas_bayes" / "jax"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)   # enables the file lock


enable_compilation_cache()
