"""ScaleBench moe task (Li et al. 2026): law instances as user laws (`--law moe.py:SL3`).

Formulas re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/moe_scaling_law/laws.py, commit e0a58ff); no code copied. Columns: n_params
is the dense parameter count N (the task's `dense_parameter_count`), num_experts is E. Bounds
are the authors' boxes made positive: a sign the law fixes is written into the formula (their
alpha in (-1.5, 0) is -a here), and a lower bound of 0 becomes a small positive one. Where
the authors' box also allows a sign the all-data fit does not take (SL3's C and D), the
positive half is kept; that is said at the law.
"""

FEATURES = ("n_params", "num_experts")


class SL1:
    """L_inf + B / (N^alpha E^beta); the authors' beta in (-0.5, 1.5) is b - 0.5 here."""
    PARAMS = {"L_inf": (1e-3, 3.0), "B": (0.1, 500.0), "alpha": (1e-3, 1.5), "b": (1e-3, 2.0)}
    FEATURES = FEATURES

    @staticmethod
    def predict(p, x):
        return p["L_inf"] + p["B"] / (x["n_params"] ** p["alpha"]
                                      * x["num_experts"] ** (p["b"] - 0.5))


class SL3:
    """A N^-a / (1 + B E^beta) + C N^(-0.6 a) + D: the best all-data fit of the ten (target
    R² 0.896 by the authors' full-data baseline). C and D keep the positive half of the
    authors' (-1e4, 1e4) and (-5, 5) (their fit: C 10.7, D 1.32)."""
    PARAMS = {"A": (1e-3, 5e3), "a": (1e-3, 1.5), "B": (1e-4, 20.0), "beta": (1e-3, 2.0),
              "C": (1e-3, 1e4), "D": (1e-3, 5.0)}
    FEATURES = FEATURES

    @staticmethod
    def predict(p, x):
        N, E = x["n_params"], x["num_experts"]
        return (p["A"] * N ** -p["a"] / (1.0 + p["B"] * E ** p["beta"])
                + p["C"] * N ** (-0.6 * p["a"]) + p["D"])
