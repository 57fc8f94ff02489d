"""NumPyro models of the scaling-law family (installed as `atlas_bayes.models`), and the registry
that names them.

May import: laws only (models see arrays, never pandas or run tables).

`LAWS[name]` gives the model function, its fixed options, and the natural-scale parameters a
summary reports. The single-language laws live side by side in `models/scaling.py`, the joint
per-language ATLAS in `models/hierarchical.py`, the curse-of-multilinguality law in
`models/curse.py`; laws users define in their own files (`path/law.py[:NAME]`) are loaded by
`models/user.py` and looked up by the same `get_law` and `form_of`.
"""

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from atlas_bayes import laws
from atlas_bayes.models import curse, hierarchical, scaling
from atlas_bayes.models import user as user_laws

CORE = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class Form:
    """A law's monolingual natural-scale form, what decisions evaluate from its draws.

    `loss(N, D, U, params)` (`atlas_bayes.laws`), the parameters it reads beyond the core five,
    whether it reads unique tokens U, and, for the V-optimal least-squares baseline, a box for
    each parameter (None: the form has no least-squares version). A user law's form (`user`)
    names its own parameters and run-table columns (`names`, `features`).
    """
    name: str
    loss: Callable
    extra: tuple[str, ...] = ()
    uses_unique_tokens: bool = False
    bounds: tuple | None = None
    names: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    user: user_laws.UserLaw | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.names if self.names is not None else CORE + self.extra

    @property
    def inputs(self) -> tuple[str, ...]:
        """Run-table columns the form reads."""
        if self.features is not None:
            return self.features
        return ("n_params", "n_tokens") + (("unique_tokens",) if self.uses_unique_tokens else ())


# Chinchilla's bounds are ScaleBench's (its law file); DCSL's are ours (ScaleBench's ten
# data-constrained laws do not include the Muennighoff form with separate alpha and beta).
_CORE_BOUNDS = ((0.0, 5.0), (0.0, 1e4), (0.0, 1e4), (0.01, 2.0), (0.01, 2.0))
FORMS = {form.name: form for form in [
    Form("chinchilla", laws.chinchilla_form, bounds=_CORE_BOUNDS),
    Form("dcsl", laws.dcsl_form, ("R_D_star", "R_N_star"), True,
         _CORE_BOUNDS + ((0.1, 1e3), (0.1, 1e3))),
    Form("atlas", laws.atlas_form, ("lambda",), True),
]}


@dataclass(frozen=True)
class Law:
    """One law of the family: its NumPyro model and everything the rest of the package asks of it.

    `form` names the monolingual natural-scale form decisions evaluate (`FORMS`; None: the law
    supports no compute-optimal, design or loop decision). `shareable`: a model whose data are
    arguments of a compiled program (`fitting.compiled`), so fits of the same law and size
    reuse it. `needs` lists what the data must hold: "unique_tokens" (some
    finite unique-token counts) or "language_counts" (mixtures of different sizes K).
    """
    name: str
    model: Callable
    parameters: tuple[str, ...]           # natural-scale sites reported by summaries
    description: str
    options: dict = field(default_factory=dict)
    hierarchical: bool = False            # one joint fit over all evaluated languages
    form: str | None = None
    shareable: bool = False
    needs: tuple[str, ...] = ()
    target_accept: float = 0.9            # NUTS's default for this law (the sampler may override)
    user: user_laws.UserLaw | None = None      # a law from a user's file (`models/user.py`)

    def bind(self, **extra) -> Callable:
        """The model with its fixed options (and any extra ones) applied."""
        return partial(self.model, **{**self.options, **extra})

    def takes(self, option: str) -> bool:
        """Whether the model has an option (a keyword argument) of this name."""
        return option in inspect.signature(self.model).parameters

    @property
    def natural(self) -> Form | None:
        """The natural-scale form decisions evaluate, or None."""
        if self.user is not None:
            return user_form(self.user)
        return FORMS[self.form] if self.form else None


def _single(name, model, parameters, description, options=None, form=None, needs=()):
    return Law(name, model, parameters, description, options or {}, False, form, True, needs)


def _joint(name, model, parameters, description, options=None, form=None, needs=()):
    # 0.95: the population spreads' funnel necks (models/hierarchical.py SPREAD_SHAPE)
    return Law(name, model, parameters, description, options or {}, True, form, True, needs, 0.95)


LAWS = {
    law.name: law for law in [
        _single("chinchilla", scaling.chinchilla, CORE, "Chinchilla (CSL): E + A/N^alpha + B/D^beta",
                form="chinchilla"),
        _single("dcsl", scaling.dcsl, CORE + ("R_D_star", "R_N_star"),
                "Data-constrained (Muennighoff et al.): repeated tokens and excess parameters decay",
                form="dcsl", needs=("unique_tokens",)),
        _single("msl", scaling.msl, CORE + ("gamma",),
                "Multilingual (He et al.): Chinchilla in total tokens x family share^-gamma"),
        _single("atlas", scaling.atlas, CORE + ("lambda", "R_D_star", "tau", "tau_other"),
                "ATLAS: effective data with repetition saturation, transfer languages and 'other'",
                form="atlas"),
        _single("atlas-dt", scaling.atlas, CORE + ("lambda", "R_D_star"),
                "ATLAS (D_t only): target-language tokens with repetition saturation",
                {"transfer": False, "other": False}, form="atlas"),
        _single("atlas-other", scaling.atlas, CORE + ("lambda", "R_D_star", "tau_other"),
                "ATLAS (D_t + D_other): target tokens plus one weight for the rest of the mixture",
                {"transfer": False}, form="atlas"),
        _joint("chinchilla-h", hierarchical.hierarchical, CORE,
               "Chinchilla with per-language parameters pooled across languages",
               {"saturate": False}, form="chinchilla"),
        _joint("atlas-dt-h", hierarchical.hierarchical, CORE + ("lambda",),
               "ATLAS (D_t only) with per-language parameters pooled across languages",
               {"transfer": False, "other": False}, form="atlas"),
        _joint("atlas-other-h", hierarchical.hierarchical, CORE + ("lambda", "tau_other"),
               "ATLAS (D_t + D_other) with per-language parameters pooled across languages",
               {"transfer": False}, form="atlas"),
        _joint("atlas-h", hierarchical.hierarchical, CORE + ("lambda", "tau", "tau_other"),
               "ATLAS with per-language parameters (E, A, B, alpha, beta, tau) pooled across languages",
               {}, form="atlas"),
        _joint("curse", curse.curse, CORE + ("phi", "psi"),
               "Curse of multilinguality: E + A K^phi/N^alpha + B K^psi/D_t^beta, pooled over languages",
               {"pooling": "complete"}, needs=("language_counts",)),
        _joint("curse-h", curse.curse, CORE + ("phi", "psi"),
               "Curse of multilinguality with per-language parameters pooled across languages",
               {"pooling": "partial"}, needs=("language_counts",)),
    ]
}
ALIASES = {"csl": "chinchilla"}


def get_law(name) -> Law:
    """Look up a law by name (or alias), or load a user's law file (`path.py[:NAME]`); the error
    lists the choices (or names the file and its problem)."""
    if user_laws.is_user_law(name):
        return user_law(user_laws.load_user_law(name))
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in LAWS:
        raise ValueError(f"unknown law {name!r}; choose one of {', '.join(list(LAWS) + list(ALIASES))}")
    return LAWS[key]


def law_names(*, decisions: bool = False, aliases: bool = True) -> list[str]:
    """Law names (sorted), optionally only those decisions can evaluate (a natural form)."""
    names = [n for n, law in LAWS.items() if law.form or not decisions]
    names += [a for a, n in ALIASES.items() if aliases and n in names]
    return sorted(names)


def user_law(law: user_laws.UserLaw) -> Law:
    """A user law as a registry entry: one shared program per law file's content."""
    return Law(law.name, user_laws.user_model, law.params, law.description, {"law": law.key},
               False, law.name, True, (), 0.9, law)


def user_form(law: user_laws.UserLaw) -> Form:
    """A user law's natural form: its prediction on the features, its own parameters and box."""
    def loss(N, D, U, p):
        given = {"n_params": N, "n_tokens": D, "unique_tokens": U}
        missing = [f for f in law.features if f not in given]
        if missing:
            raise ValueError(f"{law.name}: the law reads {missing} besides n_params, n_tokens and "
                             "unique_tokens, so it has no loss at (N, D) alone; give those "
                             "columns (e.g. in a candidate file)")
        return law.predict(p, {f: given[f] for f in law.features})
    return Form(law.name, loss, (), "unique_tokens" in law.features,
                tuple(zip(law.lo.tolist(), law.hi.tolist())), law.params, law.features, law)


def form_of(name: str) -> Form:
    """The natural form of a law (or of a form's own name); a clear error when it has none."""
    if name in FORMS:
        return FORMS[name]
    if user_laws.is_user_law(name):
        return user_form(user_laws.load_user_law(name))
    law = get_law(name)
    if law.natural is None:
        raise ValueError(f"law {law.name!r} has no monolingual natural form, so compute-optimal "
                         f"allocation, design and the loop do not support it; they support "
                         f"{', '.join(law_names(decisions=True, aliases=False))}"
                         + (" (use atlas_bayes.decisions.curse.iso_loss for the curse law)"
                            if "language_counts" in law.needs else ""))
    return law.natural
