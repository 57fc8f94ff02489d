"""Targets from their text forms (the CLI's `--target`).
"""

from __future__ import annotations

from atlas_bayes.design.curves import parse_curve_target
from atlas_bayes.design.targets import Target, loss_target, optimal_size_target, parameters_target


TARGET_FORMS = ("'params', 'loss@N=1e9,D=2e10', 'nstar@C=1e21', 'crossover:sw@2e9' or "
                "'bts:en->sw[@N]'")


def parse_target(text: str) -> Target:
    """A target from its text form: params, loss@N=..,D=.., nstar@C=.., crossover:LANG@N or
    bts:SRC->TGT[@N] (the last two read curve fits: `atlas_bayes.design.curves`). Which model a
    target needs is decided by `design.study.study_for`."""
    text = str(text).strip()
    if text == "params":
        return parameters_target()
    curve = parse_curve_target(text)
    if curve is not None:
        return curve
    form, _, rest = text.partition("@")
    fields = {}
    for part in filter(None, rest.split(",")):
        name, eq, value = part.partition("=")
        try:
            fields[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"target {text!r}: cannot read {part!r}; expected NAME=NUMBER "
                             f"(forms: {TARGET_FORMS})")
    if form == "loss" and set(fields) == {"N", "D"}:
        return loss_target(fields["N"], fields["D"])
    if form == "nstar" and set(fields) == {"C"}:
        return optimal_size_target(fields["C"])
    raise ValueError(f"unknown target {text!r}; expected {TARGET_FORMS}")
