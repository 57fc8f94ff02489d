"""Design's outputs: the trainer's plan (JSONL) and the gain-per-FLOP plot.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.design.eig import Design
from atlas_bayes.tables.atomic_files import atomic_file, atomic_write


def plan_configs(chosen: pd.DataFrame, *, prefix: str = "design", base: dict | None = None) -> list[dict]:
    """One trainer config per chosen run (`trainers.train.RunConfig` fields): needs candidates
    with trainer shape names in `model`. `base` adds fields (seq_len, batch_size, corpus...)."""
    if chosen.empty:
        raise ValueError("no runs were chosen, so there is no plan to write")
    unnamed = chosen["candidate"][chosen["model"].astype(str) == ""].tolist()
    if unnamed:
        raise ValueError(f"the trainer plan needs trainer shape names, but candidates {unnamed[:3]} "
                         "give only n_params: build the grid from shapes (CLI: --shapes)")
    configs = []
    for row in chosen.itertuples():
        mixture = json.loads(row.mixture)
        config = {**(base or {}), "run_id": f"{prefix}-{row.candidate}",
                  "tokens": int(round(row.n_tokens)), "model": row.model, "mixture": mixture,
                  "notes": f"atlas-bayes design: pick {row.order}, expected gain "
                           f"{row.gain:.3g} nats, cost {row.cost:.3g} FLOPs"}
        if row.init != "scratch":
            config["init"] = row.init
        if row.language != "und":
            config.setdefault("eval_languages", [row.language])
        configs.append(config)
    return configs


def write_plan(configs: list[dict], path) -> Path:
    """The plan as JSONL, one config per line (`atlas-bayes train --plan`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(json.dumps(c) + "\n" for c in configs))
    return path


def plot_design(design: Design, path, *, data: pd.DataFrame | None = None):
    """Gain per FLOP over the candidate grid (N vs D), chosen runs numbered, fitted runs grey."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    s = design.scores
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if data is not None and len(data):
        ax.scatter(data["n_params"], data["n_tokens"], c="0.7", s=12, marker="x",
                   label="fitted runs")
    g = s["gain_per_flop"].clip(lower=np.finfo(float).tiny)
    points = ax.scatter(s["n_params"], s["n_tokens"], c=g, cmap="viridis", s=40,
                        norm=LogNorm(vmin=max(g.max() * 1e-6, g.min()), vmax=g.max()))
    fig.colorbar(points, ax=ax, label="expected gain per FLOP (nats / FLOP)")
    for row in design.chosen.itertuples():
        ax.scatter(row.n_params, row.n_tokens, s=220, facecolors="none", edgecolors="red", lw=1.5)
        ax.annotate(str(row.order), (row.n_params, row.n_tokens), color="red",
                    xytext=(6, 6), textcoords="offset points", weight="bold")
    spec = design.target.spec
    if design.target.kind == "loss":
        ax.scatter(spec["n_params"], spec["n_tokens"], marker="*", s=250, c="orange",
                   edgecolors="k", label="target")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="tokens D",
           title=f"Information about {design.target.name} per FLOP")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)
