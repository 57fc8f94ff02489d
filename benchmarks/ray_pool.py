"""The benchmarks' seeds and replicates in parallel: as Ray tasks (`--ray [ADDRESS]`: a Ray
started inside the benchmark, or a cluster's address), else in `jobs` local spawned processes,
else (`jobs` 0) one after another in this process.

    for call, result in as_finished(one_episode, [(task, method, seed), ...], jobs=4, ray=None):

A Ray task asks for `cpus` CPUs and runs JAX on CPUs; the function is sent by value (a
benchmark's own functions live in its `__main__`), so workers need only the package installed.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed


def add_option(parser) -> None:
    """--ray [ADDRESS] (see the module's docstring)."""
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="run them as Ray tasks: on a Ray started here, or on the cluster at "
                        "ADDRESS ('auto', HOST:6379); --jobs is then ignored")


def as_finished(function, calls: list[tuple], jobs: int = 0, ray: str | None = None, cpus: float = 1):
    """Yield (call, function(*call)) for every call as each finishes."""
    if ray is not None:
        from atlas_bayes.trainers.ray_session import session
        with session(ray) as r:
            task = r.remote(function).options(num_cpus=cpus,
                                              runtime_env={"env_vars": {"JAX_PLATFORMS": "cpu"}})
            refs = {task.remote(*call): call for call in calls}
            pending = list(refs)
            while pending:
                ready, pending = r.wait(pending, num_returns=1)
                yield refs[ready[0]], r.get(ready[0])
        return
    if jobs < 1:
        for call in calls:
            yield call, function(*call)
        return
    # spawn, not fork: the parent has imported JAX, whose threads do not survive a fork
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(function, *call): call for call in calls}
        for future in as_completed(futures):
            yield futures[future], future.result()
