"""NumPyro models of the scaling-law family (installed as `atlas_bayes.models`), and the registry
that names them.

May import: laws only (models see arrays, never pandas or run tables).

`LAWS[name]` gives the model function, its fixed options, and the natural-scale parameters a
summary reports. The single-language laws live side by side in `models/scaling.py`, the joint
per-language ATLAS in `models/hierarchical.py`, the curse-of-multilinguality law in
`models/curse.py`.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from atlas_bayes.models import curse, hierarchical, scaling

CORE = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class Law:
    name: str
    model: Callable
    parameters: tuple[str, ...]           # natural-scale sites reported by summaries
    description: str
    options: dict = field(default_factory=dict)
    hierarchical: bool = False            # one joint fit over all evaluated languages

    def bind(self, **extra) -> Callable:
        """The model with its fixed options (and any extra ones) applied."""
        return partial(self.model, **{**self.options, **extra})


LAWS = {
    law.name: law for law in [
        Law("chinchilla", scaling.chinchilla, CORE, "Chinchilla (CSL): E + A/N^alpha + B/D^beta"),
        Law("dcsl", scaling.dcsl, CORE + ("R_D_star", "R_N_star"),
            "Data-constrained (Muennighoff et al.): repeated tokens and excess parameters decay"),
        Law("msl", scaling.msl, CORE + ("gamma",),
            "Multilingual (He et al.): Chinchilla in total tokens x family share^-gamma"),
        Law("atlas", scaling.atlas, CORE + ("lambda", "R_D_star", "tau", "tau_other"),
            "ATLAS: effective data with repetition saturation, transfer languages and 'other'"),
        Law("atlas-dt", scaling.atlas, CORE + ("lambda", "R_D_star"),
            "ATLAS (D_t only): target-language tokens with repetition saturation",
            {"transfer": False, "other": False}),
        Law("atlas-other", scaling.atlas, CORE + ("lambda", "R_D_star", "tau_other"),
            "ATLAS (D_t + D_other): target tokens plus one weight for the rest of the mixture",
            {"transfer": False}),
        Law("chinchilla-h", hierarchical.hierarchical, CORE,
            "Chinchilla with per-language parameters pooled across languages",
            {"saturate": False}, hierarchical=True),
        Law("atlas-dt-h", hierarchical.hierarchical, CORE + ("lambda",),
            "ATLAS (D_t only) with per-language parameters pooled across languages",
            {"transfer": False, "other": False}, hierarchical=True),
        Law("atlas-other-h", hierarchical.hierarchical, CORE + ("lambda", "tau_other"),
            "ATLAS (D_t + D_other) with per-language parameters pooled across languages",
            {"transfer": False}, hierarchical=True),
        Law("atlas-h", hierarchical.hierarchical, CORE + ("lambda", "tau", "tau_other"),
            "ATLAS with per-language parameters (E, A, B, alpha, beta, tau) pooled across languages",
            {}, hierarchical=True),
        Law("curse", curse.curse, CORE + ("phi", "psi"),
            "Curse of multilinguality: E + A K^phi/N^alpha + B K^psi/D_t^beta, pooled over languages",
            {"pooling": "complete"}, hierarchical=True),
        Law("curse-h", curse.curse, CORE + ("phi", "psi"),
            "Curse of multilinguality with per-language parameters pooled across languages",
            {"pooling": "partial"}, hierarchical=True),
    ]
}
ALIASES = {"csl": "chinchilla"}


def get_law(name: str) -> Law:
    """Look up a law by name (or alias); the error lists the choices."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LAWS:
        raise ValueError(f"unknown law {name!r}; choose one of {', '.join(list(LAWS) + list(ALIASES))}")
    return LAWS[key]
