"""Training throughput (tokens/s) and model FLOPs utilisation (MFU) of the companion trainer.

Times the trainer's own jitted step (`atlas_bayes.trainers.train`: forward, backward, AdamW with
clipping, data parallel over all local devices) on a fixed random batch already on the devices,
so the numbers are the model's, not the data pipeline's.

    MFU = tokens/s x FLOPs per token / (devices x peak FLOP/s)
    FLOPs per token = 6 N + 12 x layers x seq_len x (heads x kv)

N counts every trainable parameter (the tied embedding once: it is also the output layer's
matmul); the second term is attention's QK^T and AV (forward and backward, no causal
halving; PaLM appendix B). Peak: the dense bf16 tensor-core figure of the device (TF32 for
float32 runs), from the table below or --peak-tflops.

    .venv/bin/python benchmarks/train_throughput.py                        # CPU: t0, t1, t2
    .venv/bin/python benchmarks/train_throughput.py --sizes s8,s16,s26 --seq-len 2048 \\
        --batch 32,16,8 --dtype bfloat16 --attention cudnn                  # one GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from atlas_bayes.trainers.model import SHAPES, Transformer, count_params
from atlas_bayes.trainers.train import _optimizer, _train_step, make_mesh

# Dense peak TFLOP/s per device: (bf16, tf32). Vendor datasheets, without sparsity.
PEAK_TFLOPS = {
    "H200": (989.0, 494.0), "H100 PCIe": (756.0, 378.0), "H100": (989.0, 494.0),
    "A100": (312.0, 156.0), "L4": (121.0, 60.0), "A10G": (125.0, 62.5),
}


def peak_flops(device, dtype: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    kind = getattr(device, "device_kind", "")
    for name, (bf16, tf32) in PEAK_TFLOPS.items():      # "H100 PCIe" before "H100"
        if name in kind:
            return (bf16 if dtype == "bfloat16" else tf32) * 1e12
    return None


def measure(size: str, batch: int, seq_len: int, dtype: str, attention: str | None, steps: int,
            mesh, peak: float | None) -> dict:
    shape = SHAPES[size]
    model = Transformer(shape, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32,
                        attention=attention, rngs=nnx.Rngs(0))
    n_params = count_params(model)
    graphdef, params = nnx.split(model)
    params = nnx.to_pure_dict(params)
    del model
    opt_key = (0.9, 0.95, 1e-8, 0.1, 1.0)
    replicated = NamedSharding(mesh, P())
    state = jax.device_put({"params": params, "opt": _optimizer(*opt_key).init(params)}, replicated)
    tokens = np.random.default_rng(0).integers(0, 256, (batch, seq_len + 1), dtype=np.int32)
    tokens = jax.device_put(tokens, NamedSharding(mesh, P("data")))
    step = _train_step(graphdef, opt_key, 0.0)
    lr, key = jnp.float32(1e-4), jax.random.key(0)
    start = time.perf_counter()
    state, loss = step(state, tokens, lr, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    state, loss = step(state, tokens, lr, key)                 # one more untimed step
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = step(state, tokens, lr, key)
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch * seq_len / seconds
    flops_token = shape.flops_per_token(seq_len)
    achieved = tokens_per_s * flops_token
    n_dev = mesh.devices.size
    return {"size": size, "n_params": n_params, "n_params_nonembedding": shape.n_params_nonembedding(),
            "batch": batch, "seq_len": seq_len, "dtype": dtype, "attention": attention or "default",
            "devices": n_dev, "steps": steps, "compile_s": round(compile_s, 2),
            "step_ms": round(1e3 * seconds / steps, 2), "tokens_per_s": round(tokens_per_s, 1),
            "tflops_per_s": round(achieved / 1e12, 3),
            "mfu": None if peak is None else round(achieved / (n_dev * peak), 4),
            "final_loss": float(loss)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    gpu = jax.default_backend() != "cpu"
    parser.add_argument("--sizes", default="s8,s16,s26" if gpu else "t0,t1,t2",
                        help=f"comma-separated shapes from {', '.join(SHAPES)}")
    parser.add_argument("--batch", default="32,16,8" if gpu else "8",
                        help="global batch (sequences) per size, or one value for all")
    parser.add_argument("--seq-len", type=int, default=2048 if gpu else 256)
    parser.add_argument("--dtype", default="bfloat16" if gpu else "float32",
                        choices=("float32", "bfloat16"))
    parser.add_argument("--attention", default="cudnn" if gpu else "auto", choices=("auto", "xla", "cudnn"),
                        help="jax.nn.dot_product_attention implementation (auto: JAX chooses)")
    parser.add_argument("--steps", type=int, default=20 if gpu else 5, help="timed steps per size")
    parser.add_argument("--peak-tflops", type=float, help="peak TFLOP/s per device (for MFU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = parser.parse_args(argv)

    sizes = args.sizes.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    batches = batches * len(sizes) if len(batches) == 1 else batches
    if len(batches) != len(sizes):
        parser.error("--batch needs one value or one per size")
    mesh = make_mesh()
    device = jax.devices()[0]
    peak = peak_flops(device, args.dtype, args.peak_tflops)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} x "
          f"{getattr(device, 'device_kind', device.platform)}, host {platform.processor() or platform.machine()}, "
          f"peak {'unknown (MFU not computed)' if peak is None else f'{peak / 1e12:.0f} TFLOP/s per device'}")
    if not args.json:
        print(f"{'size':>5} {'N':>12} {'batch':>5} {'seq':>5} {'dtype':>8} {'step ms':>9} "
              f"{'tokens/s':>12} {'TFLOP/s':>8} {'MFU':>6} {'compile s':>9}")
    for size, batch in zip(sizes, batches):
        attention = None if args.attention == "auto" else args.attention
        if attention == "cudnn" and args.dtype != "bfloat16":
            attention = None                       # cuDNN flash attention needs bf16/fp16
        result = measure(size, batch, args.seq_len, args.dtype, attention, args.steps, mesh, peak)
        if args.json:
            print(json.dumps(result))
        else:
            mfu = "n/a" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
            print(f"{size:>5} {result['n_params']:>12,} {batch:>5} {args.seq_len:>5} {args.dtype:>8} "
                  f"{result['step_ms']:>9.1f} {result['tokens_per_s']:>12,.0f} "
                  f"{result['tflops_per_s']:>8.3f} {mfu:>6} {result['compile_s']:>9.1f}")


if __name__ == "__main__":
    main()
