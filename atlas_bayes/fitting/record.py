"""What a fitted result is: one typed record, written to and read from a DataTree's attributes.

`FitRecord` holds what every reader of a fit needs (the law or kind of fit, languages,
scales, model options, sampler settings, diagnostics, the data's provenance); `to_attrs`
writes it as netCDF-safe attributes and `FitRecord.from_tree` reads it back, from a tree
just fitted or from a file saved by any version that wrote the same attribute names.
Kind-specific values that one decision alone reads live in `extra`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from atlas_bayes.fitting.diagnostics import NOT_CHECKED, Diagnostics

LAW = "law"    # the kind of a scaling-law fit (`fitting.inference.fit`); its name is `law`


@dataclass(frozen=True)
class Convergence:
    """Sampler diagnostics: divergences, the largest R-hat, the smallest bulk ESS (NaN where
    not checked, e.g. an approximation; R-hat infinite where its computation failed), the
    warnings they raised, the verdict (`converged`: True, False or "not checked") and the
    notes on chains that were rerun."""
    divergences: int = 0
    max_r_hat: float = float("nan")
    min_ess_bulk: float = float("nan")
    warnings: tuple[str, ...] = ()
    n_compilations: int | None = None     # XLA compilations during the fit (None: not counted)
    compile_seconds: float | None = None  # seconds lowering, compiling and loading programs
    restarted_chains: tuple[int, ...] = ()   # chains rerun because they got stuck (fitting/stuck.py)
    verdict: bool | str | None = None        # None: recorded before verdicts (derived)
    notes: tuple[str, ...] = ()              # what was done about stuck chains, in words

    @classmethod
    def of(cls, diagnostics: Diagnostics) -> Convergence:
        """The recorded part of `check_convergence`'s result."""
        return cls(int(diagnostics.divergences), float(diagnostics.max_r_hat),
                   float(diagnostics.min_ess_bulk), tuple(diagnostics.messages),
                   restarted_chains=tuple(diagnostics.restarted_chains),
                   verdict=diagnostics.converged, notes=tuple(diagnostics.notes))

    @property
    def converged(self) -> bool | str:
        """True, False or "not checked" (files written before verdicts: from their warnings)."""
        if self.verdict is not None:
            return self.verdict
        if not self.warnings and math.isnan(self.max_r_hat):
            return NOT_CHECKED
        return not self.warnings

    def as_dict(self) -> dict:
        """The `diagnostics` attribute (and the CLI's JSON) as written by every fit
        (`restarted_chains` only where a chain was rerun)."""
        counted = {"n_compilations": self.n_compilations, "compile_seconds": self.compile_seconds}
        return {"divergences": self.divergences, "max_r_hat": self.max_r_hat,
                "min_ess_bulk": self.min_ess_bulk,
                **{k: v for k, v in counted.items() if v is not None},
                **({"restarted_chains": list(self.restarted_chains)} if self.restarted_chains else {})}

    def as_json(self) -> dict:
        """`as_dict` for JSON output: R-hat "failed" where its computation failed (infinite),
        null where it was not computed; the verdict beside it."""
        values = {k: (("failed" if k == "max_r_hat" else None) if math.isinf(v) else None
                      if math.isnan(v) else v) if isinstance(v, float) else v
                  for k, v in self.as_dict().items()}
        return {**values, "converged": self.converged}


# field -> (attribute name, encoding); "json" attributes hold JSON text, the others scalars
_ENCODING = {
    "law": ("law", str), "law_description": ("law_description", str),
    "target_language": ("target_language", str), "languages": ("languages", "json"),
    "transfer_languages": ("transfer_languages", "json"), "options": ("options", "json"),
    "latent_sites": ("latent_sites", "json"), "parameters": ("parameters", "json"),
    "n_obs": ("n_obs", int), "left_out_runs": ("left_out_runs", "json"),
    "method": ("method", str), "sampler": ("sampler", "json"),
    "student_t_nu": ("student_t_nu", float), "centred": ("centred", bool),
    "log_N_ref": ("log_N_ref", float), "log_D_ref": ("log_D_ref", float),
    "scales": ("scales", "json"), "has_other": ("has_other", bool),
    "data_hash": ("data_hash", str), "source": ("source", str), "simulated": ("simulated", bool),
    "seconds": ("seconds", float), "version": ("atlas_bayes_version", str),
    "design_warnings": ("design_warnings", "json"), "approximation": ("approximation", str),
    "identifiability": ("identifiability_warnings", "json"),
}
_SEQUENCES = ("languages", "transfer_languages", "latent_sites", "parameters", "left_out_runs",
              "design_warnings", "identifiability")
# attributes of the verdict: `converged` and `warnings` are derived (written for readers of
# the file), `convergence_notes` records the notes on rerun chains
_CONVERGENCE = ("diagnostics", "convergence_warnings", "convergence_notes", "converged", "warnings")


@dataclass(frozen=True)
class FitRecord:
    """A fitted result's description. `kind` is "law" for a scaling law (named by `law`) or
    "bts", "crossover", "crossover_power_law", "transfer_matrix"; None marks what a kind does
    not record. Lists are tuples (nested for a joint fit's transfer slots)."""
    kind: str
    law: str | None = None
    law_description: str | None = None
    target_language: str | None = None
    languages: tuple[str, ...] | None = None
    transfer_languages: tuple | None = None
    options: dict | None = None
    latent_sites: tuple[str, ...] | None = None
    parameters: tuple[str, ...] | None = None
    n_obs: int | None = None
    left_out_runs: tuple[str, ...] | None = None
    method: str | None = None
    sampler: dict | None = None
    student_t_nu: float | None = None
    centred: bool | None = None
    log_N_ref: float | None = None
    log_D_ref: float | None = None
    scales: dict | None = None
    has_other: bool | None = None
    data_hash: str | None = None
    source: str | None = None
    simulated: bool | None = None
    seconds: float | None = None
    version: str | None = None
    diagnostics: Convergence | None = None
    # what the run table's design cannot identify, warned before sampling (`identifiability`)
    design_warnings: tuple[str, ...] | None = None
    # an approximate posterior: says so, and how its method was checked (`approximate.statement`)
    approximation: str | None = None
    # parameters the data barely inform (posterior close to prior: `fitting.informed`)
    identifiability: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)
    origin: str = field(default="", compare=False, repr=False)   # where it was read from

    def __post_init__(self):
        for name in _SEQUENCES:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _tuples(value))

    @property
    def converged(self) -> bool | str:
        """The fit's verdict: True, False or "not checked" (`Convergence.converged`; "not
        checked" where no diagnostics were recorded)."""
        return self.diagnostics.converged if self.diagnostics is not None else NOT_CHECKED

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every warning the fit raised, in words: the design's (tied sizes), the sampler's
        (convergence, rerun chains) and the identifiability ones."""
        sampler = (self.diagnostics.warnings + self.diagnostics.notes) if self.diagnostics else ()
        return tuple(self.design_warnings or ()) + sampler + tuple(self.identifiability or ())

    @property
    def model(self) -> str:
        """The law's name for a law fit, else the kind (for messages)."""
        return self.law if self.kind == LAW and self.law else self.kind

    def to_attrs(self) -> dict:
        """netCDF-safe attributes (str, float, int; lists and dicts as JSON), in the layout
        `inference.fit` has always written; a law fit has no `kind` attribute, only `law`."""
        attrs = {} if self.kind == LAW else {"kind": self.kind}
        for name, (attr, encoding) in _ENCODING.items():
            value = getattr(self, name)
            if value is None:
                continue
            if encoding == "json":
                attrs[attr] = json.dumps(value)
            elif encoding is bool:
                attrs[attr] = int(value)
            else:
                attrs[attr] = encoding(value)
        if self.diagnostics is not None:
            attrs["diagnostics"] = json.dumps(self.diagnostics.as_dict())
            attrs["convergence_warnings"] = json.dumps(list(self.diagnostics.warnings))
            attrs["convergence_notes"] = json.dumps(list(self.diagnostics.notes))
        attrs["converged"] = _verdict_text(self.converged)
        attrs["warnings"] = json.dumps(list(self.warnings))
        for attr, value in self.extra.items():
            attrs[attr] = _encode(value)
        return attrs

    @classmethod
    def from_tree(cls, tree, require=(), purpose: str | None = None) -> FitRecord:
        """The record of a fitted tree, from its attributes.

        `require` names fields a caller needs (e.g. ("law", "scales")); any that the tree does
        not record raise a ValueError naming the missing attribute(s), the tree's file and
        `purpose` (what needed them).
        """
        attrs = dict(tree.attrs)
        origin = _origin(tree)
        missing = [_attribute(name) for name in require
                   if not (name == "kind" and "law" in attrs) and _attribute(name) not in attrs]
        if missing:
            needed = f" that {purpose} needs" if purpose else ""
            raise ValueError(
                f"{origin} lacks attribute(s) {', '.join(repr(m) for m in missing)}{needed}; it "
                "was not written by atlas_bayes's fitting (fit, fit_bts, fit_crossover, "
                "fit_power_law, fit_transfer_matrix), or was edited: refit it")
        values = {"kind": str(attrs.pop("kind")) if "kind" in attrs else
                  (LAW if "law" in attrs else "")}
        for name, (attr, encoding) in _ENCODING.items():
            if attr in attrs:
                values[name] = _decode(attrs.pop(attr), attr, encoding, origin)
        if "diagnostics" in attrs:
            recorded = _decode(attrs.pop("diagnostics"), "diagnostics", "json", origin)
            messages = _decode(attrs.pop("convergence_warnings", "[]"), "convergence_warnings",
                               "json", origin)
            notes = _decode(attrs.pop("convergence_notes", "[]"), "convergence_notes", "json", origin)
            verdict = attrs.pop("converged", None)
            values["diagnostics"] = Convergence(
                int(recorded.get("divergences", 0)), float(recorded.get("max_r_hat", math.nan)),
                float(recorded.get("min_ess_bulk", math.nan)), tuple(messages),
                recorded.get("n_compilations"), recorded.get("compile_seconds"),
                tuple(int(c) for c in recorded.get("restarted_chains", ())),
                None if verdict is None else _verdict_value(_plain(verdict)), tuple(notes))
        extra = {attr: _decode_extra(value) for attr, value in attrs.items()
                 if attr not in _CONVERGENCE}
        return cls(**values, extra=extra, origin=origin)


def _verdict_text(value) -> str:
    """The `converged` attribute: "true", "false" or "not checked"."""
    return value if isinstance(value, str) else str(bool(value)).lower()


def _verdict_value(text: str) -> bool | str:
    return {"true": True, "false": False}.get(str(text), NOT_CHECKED)


def _attribute(name: str) -> str:
    """The attribute that records field `name` (fields not in the table keep their name)."""
    return _ENCODING[name][0] if name in _ENCODING else name


def _origin(tree) -> str:
    """The tree's file, or words for a tree that was never saved."""
    source = getattr(tree, "encoding", {}).get("source")
    return f"the fit in {source}" if source else "this fit (not read from a file)"


def _tuples(value):
    """Lists (nested too) as tuples, so the record does not change under its readers."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def _plain(value):
    """numpy scalars as Python scalars."""
    return value.item() if isinstance(value, np.generic) else value


def _decode(value, attr: str, encoding, origin: str):
    value = _plain(value)
    if encoding == "json":
        try:
            return json.loads(value)
        except (TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{origin}: attribute {attr!r} is not JSON ({value!r}): {err}") from None
    if encoding is bool:
        return bool(int(value))
    return encoding(value)


def _encode(value):
    """An `extra` value as an attribute: containers as JSON, booleans as 0/1."""
    value = _plain(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_lists(value))
    if isinstance(value, bool):
        return int(value)
    return value


def _lists(value):
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return _plain(value)


def _decode_extra(value):
    """An attribute outside the schema: JSON lists and objects decoded, scalars as they are."""
    value = _plain(value)
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
