"""ScaleBench sparsity task (Li et al. 2026): law instances as user laws (`--law sparsity.py:SL2`).

Formulas re-expressed from the paper's law list (github.com/PlanarG/active-sl,
benchmark/dataset/sparsity_scaling_law/laws.py, commit e0a58ff); no code copied. Columns: P
(total / active parameter ratio) and n_params, the active parameters N (the task's
`N_active`); fitted per group (the three D2 values). The authors write each coefficient as
exp(d) with d in (-5, 5); here the coefficient itself is the parameter, in (e^-5, e^5): the
same law and box, and our default log-uniform prior is their uniform prior on d.
"""
import math

_EXP5 = (math.exp(-5.0), math.exp(5.0))


class SL2:
    """e^d1 P^-a N^-b + e^d3: the best all-data fit of the four (target R² 0.52 by the authors'
    full-data baseline)."""
    PARAMS = {"A": _EXP5, "a": (0.01, 3.0), "b": (0.01, 3.0), "C": _EXP5}
    FEATURES = ("P", "n_params")

    @staticmethod
    def predict(p, x):
        return p["A"] * x["P"] ** -p["a"] * x["n_params"] ** -p["b"] + p["C"]


class SL4:
    """e^d1 P^-a + e^d2 N^-b + e^d3 (all-data R² 0.40)."""
    PARAMS = {"A": _EXP5, "a": (0.01, 3.0), "B": _EXP5, "b": (0.01, 3.0), "C": _EXP5}
    FEATURES = ("P", "n_params")

    @staticmethod
    def predict(p, x):
        return p["A"] * x["P"] ** -p["a"] + p["B"] * x["n_params"] ** -p["b"] + p["C"]
