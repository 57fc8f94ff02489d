"""Process-wide JAX settings that atlas_bayes relies on: the compilation cache, a guard
against running out of memory maps, and one CPU device per core.

**CPU cores.** JAX gives a CPU one device, and a fit's chains then share one core.
`use_cpu_cores` (called by the CLI before JAX starts) asks for one device per core, and the
sampler spreads the chains over them ("parallel": RESULTS "Issue 18: chains on both CPU
cores"). Library users opt in the same way; the trainer's commands keep one device (its mesh
spans every device).

**Memory maps.** A fit of a joint law compiles a fresh sampler (NumPyro builds new closures
each run; single-language laws share one per size, `atlas_bayes.fitting.compiled`), and JAX keeps
each compiled program alive in its caches, even though it can never be reused. On
CPU a compiled sampler holds ~900 memory maps (measured: a Chinchilla fit raised
/proc/self/maps by 893), and Linux stops a process at vm.max_map_count (65,530 by default):
after ~70 fits in one process, XLA segfaults while compiling. The test suite, a design loop
or a recovery study gets there. `release_compiled_if_crowded` (called before each fit) drops
JAX's compiled-program caches once the process holds more than `MAP_FRACTION` of its limit;
later calls of other jitted functions simply compile again.

**Compilation cache.** NumPyro spends most of a small fit compiling the sampler, not sampling.
JAX's persistent compilation cache keeps compiled programs on disk, so a later fit of the same
law and padded size, in any process, loads its programs instead of compiling them. It is on by
default in $XDG_CACHE_HOME/atlas_bayes/jax (~/.cache/atlas_bayes/jax); ATLAS_BAYES_JAX_CACHE=0
turns it off, a folder puts it there, and a cache folder you configured in JAX yourself is
always respected. (It was once switched off after segfaults inside it, which proved to be the
memory-map exhaustion above; the test suite has run with it on since.) The cache is
size-capped (`CACHE_BYTES`): only then does JAX lock reads and writes, so parallel processes
can share it. With the cap every write scans the folder, so only compilations of at least
`MIN_COMPILE_SECONDS` are kept (caching every tiny program left ~7,000 files and slowed the
test suite several-fold). The cache is keyed by the lowered program, so a process still traces
and lowers each program before the cache serves it; `program_store` keeps the shared
programs' traced form in a subfolder, so a later process skips that too.
"""

import gc
import os
from contextlib import contextmanager
from pathlib import Path

import jax

CACHE_BYTES = 4 * 1024 ** 3
MIN_COMPILE_SECONDS = 0.5
MAP_FRACTION = 0.5


def enable_compilation_cache() -> None:
    setting = os.environ.get("ATLAS_BAYES_JAX_CACHE", "")
    if setting == "0" or jax.config.jax_compilation_cache_dir:
        return
    if setting in ("", "1"):
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atlas_bayes" / "jax"
    else:
        folder = Path(setting)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)   # enables the file lock


def use_cpu_cores(devices: int | None = None) -> int | None:
    """Give JAX one CPU device per core this process may use (`devices` or the environment's
    ATLAS_BAYES_CPU_DEVICES instead), so a fit's chains run on all of them (`Sampler`'s
    "parallel"). Only before JAX has started and where neither XLA_FLAGS nor JAX's own
    setting says already; returns the number set, or None where it left JAX as it was.
    The CLI calls this; a program of yours may too, right after importing atlas_bayes."""
    from jax._src import xla_bridge
    wanted = devices or int(os.environ.get("ATLAS_BAYES_CPU_DEVICES", "0") or 0) or _cores()
    if (xla_bridge.backends_are_initialized() or jax.config.jax_num_cpu_devices > 0
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
        return None
    jax.config.update("jax_num_cpu_devices", wanted)
    return wanted


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:     # not Linux
        return os.cpu_count() or 1


def memory_maps() -> tuple[int, int] | None:
    """(maps this process holds, the system's per-process limit), or None off Linux."""
    try:
        with open("/proc/self/maps", "rb") as f:
            held = sum(1 for _ in f)
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None
    return held, limit


def release_compiled_if_crowded(fraction: float | None = None) -> bool:
    """Clear JAX's compiled-program caches when this process holds more than `fraction` of
    its memory-map limit (default `MAP_FRACTION`). Returns whether it cleared them."""
    counts = memory_maps()
    if counts is None or counts[0] <= (MAP_FRACTION if fraction is None else fraction) * counts[1]:
        return False
    from atlas_bayes.fitting import compiled
    compiled.clear()
    jax.clear_caches()
    gc.collect()     # the executables go when their last Python reference does
    return True


# JAX's events for preparing a program: lowering it, XLA compiling it or loading it from the
# persistent cache (tracing is left out: a program's trace event includes those of the jitted
# functions it calls, so their sum counts nested work twice)
_PREPARING = ("/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration",
              "/jax/compilation_cache/cache_retrieval_time_sec")
_COMPILE = "/jax/core/compile/backend_compile_duration"
_totals = {"n_compilations": 0, "compile_seconds": 0.0}


_CACHE_HIT = "/jax/compilation_cache/cache_hits"


def _count(event: str, duration: float, **_) -> None:
    if event in _PREPARING:
        _totals["compile_seconds"] += duration
        _totals["n_compilations"] += event == _COMPILE


def _count_hit(event: str, **_) -> None:
    if event == _CACHE_HIT:     # JAX reports a program loaded from the cache as compiled too
        _totals["n_compilations"] -= 1


@contextmanager
def counting_compilations():
    """Yields a dict that holds, on exit, the XLA compilations (`n_compilations`, not counting
    programs loaded from the persistent cache) and the seconds spent lowering, compiling and
    loading programs (`compile_seconds`) inside the block (this process)."""
    before, counted = dict(_totals), {}
    try:
        yield counted
    finally:
        counted.update({k: _totals[k] - before[k] for k in _totals})


jax.monitoring.register_event_duration_secs_listener(_count)
jax.monitoring.register_event_listener(_count_hit)
enable_compilation_cache()
