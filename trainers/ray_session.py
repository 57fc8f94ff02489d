"""Ray for the length of a command: started inside it (the embedded default) or joined.

    with session() as ray:              # a local Ray on every core, shut down afterwards
    with session("auto") as ray:        # the cluster this machine belongs to (ray start --head)
    with session("head:6379") as ray:   # a cluster by its head's address

Imports nothing but Ray, so the benchmarks use it too (`benchmarks/ray_pool.py`).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

LOCAL = (None, "", "local")


def import_ray():
    """The `ray` module; ImportError naming the extra when it is not installed."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"running on Ray needs the 'cluster' extra ({err}); install it with "
                          "pip install -e '.[cluster]'") from None
    return ray


@contextmanager
def session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the block: the session already open in this process if there is one (left
    open), else a new local Ray (`address` None or "local"; `num_cpus`: default all cores) or
    the cluster at `address` ("auto", "HOST:6379"), shut down after it.
    While it runs, SIGTERM ends the block as Ctrl-C does, so Ray is shut down."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    local = address in LOCAL
    ray.init(address="local" if local else address, num_cpus=num_cpus if local else None,
             include_dashboard=False, logging_level="WARNING")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield ray
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
