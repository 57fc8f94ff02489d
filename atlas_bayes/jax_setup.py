"""Process-wide JAX settings that atlas_bayes relies on, applied once at import.

NumPyro spends most of a small fit compiling the sampler, not sampling. JAX's persistent
compilation cache can keep compiled samplers on disk, so a second fit of the same law and data
shape starts faster. It is OFF by default: with jaxlib 0.12 on CPU we measured segmentation
faults inside it, once while serialising an executable to write it and once while reading an
entry back (two full test runs out of three on 2026-11-26, each while another process used the
same cache folder; the test suite therefore uses a folder of its own, tests/conftest.py).
Set ATLAS_BAYES_JAX_CACHE=1 to
turn it on in ~/.cache/atlas_bayes/jax, or to a folder to choose where it lives; a cache
folder you configured in JAX yourself is always respected.

When on, the cache is size-capped (`CACHE_BYTES`): only then does JAX lock reads and writes,
so parallel processes can share it (an unlocked write is not atomic). With the cap every write
scans the folder, so only compilations of at least `MIN_COMPILE_SECONDS` are kept (caching
every tiny program left ~7,000 files and slowed the suite several-fold).
"""

import os
from pathlib import Path

import jax

CACHE_BYTES = 4 * 1024 ** 3
MIN_COMPILE_SECONDS = 0.5


def enable_compilation_cache() -> None:
    setting = os.environ.get("ATLAS_BAYES_JAX_CACHE", "")
    if setting in ("", "0") or jax.config.jax_compilation_cache_dir:
        return
    if setting == "1":
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atlas_bayes" / "jax"
    else:
        folder = Path(setting)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)   # enables the file lock


enable_compilation_cache()
