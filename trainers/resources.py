"""What one run asks a Ray cluster for (GPUs, CPUs, host memory), from its shape and batch.

- GPUs (only where the cluster has any): `gpus_per_run` when given; else a whole GPU for
  the ATLAS shapes (s0-s26) and custom shapes, and an eighth of one for the tiny CPU shapes
  t0-t2, which are latency-bound: eight share a GPU (each told to take only its share of the
  GPU's memory, `gpu_env`).
- CPUs: `cpus_per_run` (default 1: as many runs at once as the cluster has cores).
- Host memory: `BASE_BYTES` (Python, JAX, the corpus) + 16 bytes per parameter (float32
  parameters, Adam's two moments, gradients; a host copy when checkpointing) + on a CPU the
  activations kept for the backward pass, about 4 bytes x batch x seq_len x layers x
  (6 d_model + 2 d_ff + heads x seq_len) x 2. An estimate for placing runs, not a limit Ray
  enforces on the task.
"""

from __future__ import annotations

from atlas_bayes.trainers.config import RunConfig
from atlas_bayes.trainers.model import get_shape

BASE_BYTES = 1 << 30
SHARED_SHAPES = ("t0", "t1", "t2")
SHARED_GPU = 1 / 8


def run_memory(config: RunConfig, on_gpu: bool) -> int:
    """Bytes of host memory a run is expected to hold at most (see the module's docstring)."""
    shape = get_shape(config.model)
    memory = BASE_BYTES + 16 * shape.n_params()
    if not on_gpu:
        per_token = shape.layers * (6 * shape.d_model + 2 * shape.d_ff + shape.heads * config.seq_len)
        memory += 8 * config.batch_size * config.seq_len * per_token
    return int(memory)


def run_resources(config: RunConfig, gpus: bool, gpus_per_run: float | None = None,
                  cpus_per_run: float = 1.0) -> dict:
    """Ray's `num_cpus`, `num_gpus` and `memory` for one run; `gpus`: whether the cluster has
    GPUs (without, a run asks for none)."""
    share = 0.0
    if gpus:
        share = gpus_per_run if gpus_per_run is not None else (
            SHARED_GPU if config.model in SHARED_SHAPES else 1.0)
    return {"num_cpus": cpus_per_run, "num_gpus": share,
            "memory": run_memory(config, on_gpu=share > 0)}


def gpu_env(share: float) -> dict:
    """Environment of a task holding `share` of a GPU: JAX allocates as it goes and takes at
    most 90% of its share of the GPU's memory (a whole GPU: JAX's defaults)."""
    if not 0 < share < 1:
        return {}
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * share:.3f}"}
