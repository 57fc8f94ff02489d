"""Experiment design: scoring speed over candidates and draws, and the estimators' bias and
spread against the exact linear-Gaussian EIG.

    .venv/bin/python benchmarks/design_speed.py [--quick]

Speed: a Chinchilla posterior (plausible random draws, sigma ~ 0.01) scores grids of 1,000 to
4,000 candidates; each time is the best of 3 warm calls (the first call compiles). Accuracy:
theta ~ N(0, S) in 3 dimensions, y = x.theta + 0.5 eps, 7 candidates; bias and standard
deviation over 20 seeds of the estimate minus the exact value (0.5 log det(I + x S x / s^2)
for the parameters, 0.5 log(Var q / Var q|y) for q = a.theta), at several draw counts.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from atlas_bayes import design  # noqa: E402
from atlas_bayes.fitting.draws import LawDraws  # noqa: E402


def chinchilla_posterior(n, seed=0):
    rng = np.random.default_rng(seed)
    p = {"E": rng.uniform(1.3, 1.5, n), "A": np.exp(rng.normal(6, 0.3, n)),
         "B": np.exp(rng.normal(7.4, 0.3, n)), "alpha": rng.uniform(0.3, 0.38, n),
         "beta": rng.uniform(0.28, 0.34, n)}
    return design.Posterior(LawDraws("chinchilla", p), rng.uniform(0.008, 0.012, n), 4.0)


def best_of(fn, repeats=3):
    fn()                                          # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(quick):
    sizes = (1000, 2000) if quick else (1000, 2000, 4000)
    draws = (256, 512) if quick else (256, 512, 1000)
    print("scoring speed (CPU, warm; seconds):")
    print(f"{'candidates':>10} {'draws':>6} {'params':>8} {'loss@N,D':>9} {'linear':>7} "
          f"{'batch k=4':>9}")
    for M in draws:
        post = chinchilla_posterior(M)
        for C in sizes:
            grid = design.candidate_grid(n_params=np.geomspace(1e7, 1e10, C // 20),
                                         tokens_per_param=np.geomspace(2, 200, 20))
            target = design.loss_target(1e10, 2e11)
            mu = post.log_mean(grid["n_params"], grid["n_tokens"])
            q = target.values(post)
            t_par = best_of(lambda: design.eig_scores(mu, post.sigma, nu=post.nu))
            t_q = best_of(lambda: design.eig_scores(mu, post.sigma, q, nu=post.nu))
            t_lin = best_of(lambda: design.eig_scores(mu, post.sigma, q, nu=post.nu,
                                                      method="linear"))
            t_batch = best_of(lambda: design.choose_batch(post, grid, target, k=4), repeats=1)
            print(f"{len(grid):>10} {M:>6} {t_par:>8.2f} {t_q:>9.2f} {t_lin:>7.3f} {t_batch:>9.2f}")


def accuracy(quick):
    S = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.2], [0.0, 0.2, 0.5]])
    X = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.3, -0.5, 1.0],
                  [2, 0, 0], [0.2, 0.2, 0.2]], dtype=float)
    a, sigma = np.array([1.0, 0.5, -0.5]), 0.5
    exact_p = np.array([0.5 * np.log(1 + x @ S @ x / sigma ** 2) for x in X])
    exact_q = []
    for x in X:
        post = S - np.outer(S @ x, S @ x) / (sigma ** 2 + x @ S @ x)
        exact_q.append(0.5 * np.log(a @ S @ a / (a @ post @ a)))
    exact_q = np.array(exact_q)
    seeds = 8 if quick else 20
    print(f"\naccuracy vs exact linear-Gaussian EIG (nats; exact params {exact_p.min():.2f}-"
          f"{exact_p.max():.2f}, scalar {exact_q.min():.2f}-{exact_q.max():.2f}); "
          f"{seeds} seeds, mean over 7 candidates:")
    print(f"{'draws':>6} {'estimator':>18} {'bias':>7} {'max |bias|':>10} {'sd':>6} {'rmse':>6}")
    for M in (128, 512) if quick else (128, 256, 512, 1024):
        est = {"params (PCE)": [], "scalar (reweight)": [], "scalar (linear)": []}
        for seed in range(seeds):
            theta = np.random.default_rng(seed).multivariate_normal(np.zeros(3), S, size=M)
            mu, q = theta @ X.T, theta @ a
            est["params (PCE)"].append(design.eig_scores(mu, sigma, nu=np.inf, seed=seed)[0])
            est["scalar (reweight)"].append(design.eig_scores(mu, sigma, q, nu=np.inf,
                                                              seed=seed)[0])
            est["scalar (linear)"].append(design.eig_scores(mu, sigma, q, nu=np.inf, seed=seed,
                                                            method="linear")[0])
        for name, values in est.items():
            err = np.array(values) - (exact_p if name.startswith("params") else exact_q)
            bias = err.mean(axis=0)
            print(f"{M:>6} {name:>18} {bias.mean():>+7.3f} {np.abs(bias).max():>10.3f} "
                  f"{err.std(axis=0).mean():>6.3f} {np.sqrt((err ** 2).mean()):>6.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    accuracy(args.quick)
    speed(args.quick)
