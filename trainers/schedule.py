"""The WSD learning-rate schedule: warmup, stable, decay (ATLAS Table B.2).

Step s (0-based) of `total` steps gets
  warmup  (s < warmup):            peak * (s + 1) / warmup
  stable  (warmup <= s < start):   peak
  decay   (s >= start):            peak * (final + (1 - final) * g(1 - (s - start + 1) / n_decay))
where n_decay = round(decay_fraction * total), start = total - n_decay, and g is the decay
shape: linear g(x) = x, cosine g(x) = (1 - cos(pi x)) / 2, or 1-sqrt g(x) = 1 - sqrt(1 - x)
(Hagele et al. 2024). The last step reaches peak * final. The paper decays over the last 10%
after 1,000 warmup steps; its decay shape is not stated, so linear is the default.
"""

from __future__ import annotations

import math

SHAPES = ("linear", "cosine", "1-sqrt")


def wsd(step: int, *, peak: float, total: int, warmup: int, decay_fraction: float = 0.1,
        final: float = 0.0, shape: str = "linear") -> float:
    """Learning rate at `step` (a Python number; see the module docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown decay shape {shape!r}; choose one of {SHAPES}")
    n_decay = max(1, round(decay_fraction * total)) if decay_fraction > 0 else 0
    start = total - n_decay
    warmup = min(warmup, start) if n_decay else min(warmup, total)
    if step < warmup:
        return peak * (step + 1) / warmup
    if step < start:
        return peak
    x = 1.0 - min(step - start + 1, n_decay) / n_decay        # 1 -> 0 over the decay
    if shape == "linear":
        g = x
    elif shape == "cosine":
        g = (1.0 - math.cos(math.pi * x)) / 2.0
    else:
        g = 1.0 - math.sqrt(1.0 - x)
    return peak * (final + (1.0 - final) * g)


def wsd_schedule(**kwargs):
    """`wsd` as a function of the step only (an optax-style schedule for host-side use)."""
    return lambda step: wsd(int(step), **kwargs)
