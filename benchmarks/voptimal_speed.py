"""V-optimal's least-squares fit three ways, in one process: the hand-written batched
Levenberg-Marquardt (`voptimal.fit_least_squares`, the default), the same fit with
optimistix's `LevenbergMarquardt` vmapped over the starts in its place, and the selection
scripts' sequential L-BFGS-B (method="scipy").

    .venv/bin/python benchmarks/voptimal_speed.py [--data ../shared/data/scalebench]
        [--rows 40 80] [--starts 64] [--repeats 3] [--no-scipy]
        [--optx-rtol 1e-8] [--optx-atol 1e-10] [--optx-norm max] [--optx-solver qr]

The data-constrained pool (law "dcsl", 7 parameters), its `rows` cheapest runs. Every path
fits the same starts (seed 0) with no warm starts. The optimistix column swaps only the
batched solver (same starts in the same box coordinates, same L-BFGS-B polish of the best
two results), so the two batched columns differ by the solver alone. optimistix is not a
dependency of the package (measured and not adopted: benchmarks/RESULTS.md); without it the
column is left out.

Prints, per row count and path: seconds for the first fit (compiling the batched solver;
the MSE's gradient used by the polish is compiled beforehand), seconds per fit once compiled
(best and median of `repeats`, the batched paths interleaved; the sequential path runs once,
its compilation not counted), the training MSE of the whole fit and of the batched solver
alone (polish=0), and the iterations it ran (all starts stop together: the slowest start's
count).
"""

import argparse
import importlib.util
import os
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from atlas_bayes.design import voptimal as vopt  # noqa: E402
from atlas_bayes.design.scalebench import load_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scalebench"


def optimistix_batched(law, rtol: float, atol: float, norm: str = "max",
                       linear_solver: str = "qr", max_steps: int = vopt.LM_MAX_ITER):
    """Jitted (u starts (S, P), X, y, w) -> (u, MSE (S,), iterations), as `vopt._batched`,
    by optimistix.least_squares with LevenbergMarquardt, vmapped over the starts.
    `norm`: "max" (optimistix's default) or "rms", for its Cauchy termination; `linear_solver`:
    "qr" (its default) or "cholesky" (of the normal equations)."""
    import lineax as lx
    import optimistix as optx
    f = law.loss
    solver = optx.LevenbergMarquardt(
        rtol=rtol, atol=atol, norm={"max": optx.max_norm, "rms": optx.rms_norm}[norm],
        linear_solver={"qr": lx.QR(), "cholesky": lx.Normal(lx.Cholesky())}[linear_solver])

    def residual(u, args):
        X, y, sw = args
        return sw * (f(vopt._floor(vopt._to_theta(law, u)), X) - y)

    def solve(U, X, y, w):
        sw = jnp.sqrt(w)

        def one(u0):
            sol = optx.least_squares(residual, solver, u0, args=(X, y, sw),
                                     max_steps=max_steps, throw=False)
            r = residual(sol.value, (X, y, sw))
            ssr = jnp.sum(r * r)
            return sol.value, jnp.where(jnp.isfinite(ssr), ssr, jnp.inf), sol.stats["num_steps"]

        u, ssr, steps = jax.vmap(one)(U)
        return u, ssr / jnp.sum(w), jnp.max(steps)

    return jax.jit(solve)


@contextmanager
def solver(law, make):
    """`vopt.fit_least_squares(method="batched")` with the batched solver `make(law)` (None:
    the hand-written one, recompiled)."""
    key, saved = ("batched", law.name), vopt._CACHE.pop(("batched", law.name), None)
    if make is not None:
        vopt._CACHE[key] = make(law)
    try:
        yield
    finally:
        vopt._CACHE.pop(key, None)
        if saved is not None:
            vopt._CACHE[key] = saved


def fit(law, X, y, starts, method="batched", polish=2):
    start = time.perf_counter()
    theta, mse = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(0),
                                        n_starts=starts, method=method, polish=polish)
    return time.perf_counter() - start, theta, mse


def compile_objective(law, X, y):
    """Compile the jitted MSE and gradient (used by the polish and by the scipy path)."""
    Xp, yp, wp = vopt._pad(X, y)
    with jax.enable_x64(True):
        theta = jnp.asarray(vopt.random_starts(law, 1, np.random.default_rng(0))[0])
        args = (jnp.asarray(a) for a in (Xp, yp, wp))
        jax.block_until_ready(vopt._compiled(law)[0](theta, *args))


def iterations(law, X, y, starts):
    """The batched solver's iteration count on these starts (its third output)."""
    Xp, yp, wp = vopt._pad(X, y)
    with jax.enable_x64(True):
        U = jnp.asarray(np.stack([vopt._to_u(law, t) for t in
                                  vopt._starts(law, starts, np.random.default_rng(0), ())]))
        return int(vopt._batched(law)(U, *(jnp.asarray(a) for a in (Xp, yp, wp)))[2])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 80])
    parser.add_argument("--starts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-scipy", action="store_true", help="skip the sequential fit")
    parser.add_argument("--optx-rtol", type=float, default=1e-8)
    parser.add_argument("--optx-atol", type=float, default=1e-10)
    parser.add_argument("--optx-norm", choices=("max", "rms"), default="max")
    parser.add_argument("--optx-solver", choices=("qr", "cholesky"), default="qr")
    args = parser.parse_args()
    pool, _ = load_task(args.data, "data_constrained")
    law = vopt.ls_law("dcsl")

    def make_optx(law):
        return optimistix_batched(law, args.optx_rtol, args.optx_atol, args.optx_norm,
                                  args.optx_solver)

    paths = {"hand-written LM": None}
    if importlib.util.find_spec("optimistix") is None:
        print("optimistix is not installed (.venv/bin/pip install optimistix): no column for it")
    else:
        paths[f"optimistix LM ({args.optx_solver}, {args.optx_norm} norm, rtol "
              f"{args.optx_rtol:g})"] = make_optx
    print(f"dcsl on the data-constrained pool, {args.starts} starts; seconds per fit once "
          f"compiled: best / median of {args.repeats}")
    print(f"{'rows':>4}  {'path':<48} {'first s':>8} {'best s':>7} {'median s':>8} "
          f"{'MSE':>12} {'MSE, no polish':>14} {'iters':>5}")
    for n in args.rows:
        rows = pool.sort_values("cost").head(n)
        X, y = law.matrix(rows), rows["loss"].to_numpy(float)
        compile_objective(law, X, y)               # the polish's MSE and gradient
        out = {}
        for name, make in paths.items():           # first fit: compiles the batched solver
            with solver(law, make):
                first, theta, mse = fit(law, X, y, args.starts)
                out[name] = {"first": first, "theta": theta, "mse": mse, "times": [],
                             "raw": fit(law, X, y, args.starts, polish=0)[2],
                             "iters": iterations(law, X, y, args.starts),
                             "compiled": vopt._CACHE[("batched", law.name)]}
        for _ in range(args.repeats):              # interleaved, the compiled solvers kept
            for name, r in out.items():
                with solver(law, lambda law, r=r: r["compiled"]):
                    r["times"].append(fit(law, X, y, args.starts)[0])
        if not args.no_scipy:
            t, theta, mse = fit(law, X, y, args.starts, method="scipy")
            out["sequential L-BFGS-B (scipy)"] = {"first": float("nan"), "theta": theta,
                                                  "mse": mse, "times": [t],
                                                  "raw": float("nan"), "iters": 0}
        for name, r in out.items():
            print(f"{n:>4}  {name:<48} {r['first']:>8.2f} {min(r['times']):>7.3f} "
                  f"{np.median(r['times']):>8.3f} {r['mse']:>12.7g} {r['raw']:>14.7g} "
                  f"{r['iters']:>5}")
        if len(paths) == 2:
            hand, optx = (out[k] for k in paths)
            print(f"      optimistix / hand-written: first fit "
                  f"{optx['first'] / hand['first']:.2f}x, "
                  f"compiled fit {min(optx['times']) / min(hand['times']):.2f}x (best), "
                  f"{np.median(optx['times']) / np.median(hand['times']):.2f}x (median); "
                  f"MSE ratio {optx['mse'] / hand['mse']:.6f}")
        for name, r in out.items():
            print(f"      {name[:24]:>24} theta: " + ", ".join(
                f"{p}={t:.4g}" for p, t in zip(law.params, r["theta"])))


if __name__ == "__main__":
    main()
