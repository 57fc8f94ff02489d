"""ScaleBench parallel task (Li et al. 2026): law instances as user laws (`--law parallel.py:SL2`).

Formulas re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/parallel_scaling_law/laws.py, commit e0a58ff); no code copied. Columns:
n_params is N (the task's `num_params`), parallel_size is S (parallel streams). Fitted per
group (pile, stack). Bounds are the authors' boxes made positive (a lower bound of 0 becomes a
small positive one; c0 and cS keep the positive half of (-5, 5) and (-50, 50), where both
groups' all-data fits lie: c0 1.36 / 0.75, cS 0.12 / 0.07).
"""


class SL2:
    """c0 + cN N^-alpha + cS S^-beta (all ten laws fit all data to R² >= 0.9996; this one to
    1.0000 by the authors' full-data baseline)."""
    PARAMS = {"c0": (1e-3, 5.0), "cN": (1e-3, 500.0), "alpha": (1e-3, 2.0), "cS": (1e-4, 50.0),
              "beta": (1e-3, 2.0)}
    FEATURES = ("n_params", "parallel_size")

    @staticmethod
    def predict(p, x):
        return (p["c0"] + p["cN"] * x["n_params"] ** -p["alpha"]
                + p["cS"] * x["parallel_size"] ** -p["beta"])
