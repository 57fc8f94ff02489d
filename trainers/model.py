"""A decoder-only byte-level transformer in Flax NNX, sized by a table of shapes.

Architecture: token embedding (tied with the output layer), pre-norm blocks of multi-head
causal self-attention with rotary positions and a gated (SwiGLU) feed-forward layer, RMSNorm,
no biases. The vocabulary is the 256 byte values plus `N_SPECIAL` reserved ids, so the loss
per token is a loss per byte (vocabulary-insensitive; atlas-law.md section 7.8).

Parameter counting (stated in every run record): `n_params` is the exact number of trainable
parameters with the tied embedding counted once, the ATLAS convention (Table B.3:
N = V*d + layers*(4*d*heads*kv + 3*d*d_ff + d)); ours differs from that formula only by one
more d-vector (norm) per layer and the final norm. `n_params_nonembedding` leaves out V*d.
With a byte vocabulary the two are close; with ATLAS's 64,512-token vocabulary they are not,
so the paper's shapes give smaller N here than in Table B.3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
from flax import nnx

N_BYTES = 256
N_SPECIAL = 4                      # reserved: pad, bos, eos, mask (the training stream is bytes)
PAD, BOS, EOS, MASK = range(N_BYTES, N_BYTES + N_SPECIAL)
VOCAB = N_BYTES + N_SPECIAL


@dataclass(frozen=True)
class Shape:
    """One model size: heads x kv is the attention width (kv = head dimension)."""
    heads: int
    layers: int
    d_model: int
    d_ff: int
    kv: int

    def n_params(self, vocab: int = VOCAB) -> int:
        """Trainable parameters, tied embedding counted once (ATLAS convention)."""
        return vocab * self.d_model + self.n_params_nonembedding()

    def n_params_nonembedding(self) -> int:
        d, width = self.d_model, self.heads * self.kv
        per_layer = 4 * d * width + 3 * d * self.d_ff + 2 * d
        return self.layers * per_layer + d

    def flops_per_token(self, seq_len: int, vocab: int = VOCAB) -> float:
        """Training FLOPs per token: 6N (N with the output layer) + 12*layers*seq_len*width.

        The attention term counts QK^T and AV in the forward (2 matmuls x 2 FLOPs x seq_len x
        width per token per layer) times 3 for forward plus backward, without the causal
        halving (the PaLM appendix-B convention used for MFU).
        """
        return 6.0 * self.n_params(vocab) + 12.0 * self.layers * seq_len * self.heads * self.kv


# Tiny CPU shapes (t*), then the ATLAS Table B.3 shapes (s<scale>), used as is.
SHAPES: dict[str, Shape] = {
    "t0": Shape(heads=4, layers=2, d_model=64, d_ff=192, kv=16),         # ~123K
    "t1": Shape(heads=4, layers=4, d_model=128, d_ff=512, kv=32),        # ~1.0M
    "t2": Shape(heads=4, layers=6, d_model=256, d_ff=1024, kv=64),       # ~6.4M
    "s0": Shape(heads=4, layers=3, d_model=128, d_ff=512, kv=32),
    "s1": Shape(heads=7, layers=4, d_model=224, d_ff=896, kv=32),
    "s2": Shape(heads=7, layers=5, d_model=288, d_ff=1152, kv=32),
    "s4": Shape(heads=8, layers=8, d_model=512, d_ff=2048, kv=64),
    "s6": Shape(heads=10, layers=10, d_model=640, d_ff=2560, kv=64),
    "s8": Shape(heads=10, layers=16, d_model=640, d_ff=2560, kv=64),
    "s12": Shape(heads=14, layers=14, d_model=896, d_ff=3584, kv=64),
    "s14": Shape(heads=14, layers=18, d_model=896, d_ff=3584, kv=64),
    "s16": Shape(heads=16, layers=18, d_model=1024, d_ff=4096, kv=64),
    "s18": Shape(heads=10, layers=18, d_model=1280, d_ff=5120, kv=128),
    "s20": Shape(heads=11, layers=18, d_model=1408, d_ff=5632, kv=128),
    "s22": Shape(heads=11, layers=21, d_model=1408, d_ff=5632, kv=128),
    "s24": Shape(heads=11, layers=24, d_model=1408, d_ff=5632, kv=128),
    "s26": Shape(heads=12, layers=25, d_model=1536, d_ff=6144, kv=128),
}


def get_shape(name_or_dict) -> Shape:
    """A shape by name (`SHAPES`) or from a dict of its five fields."""
    if isinstance(name_or_dict, Shape):
        return name_or_dict
    if isinstance(name_or_dict, dict):
        return Shape(**name_or_dict)
    if name_or_dict not in SHAPES:
        raise ValueError(f"unknown model size {name_or_dict!r}; choose one of {', '.join(SHAPES)} "
                         "or give a dict with heads, layers, d_model, d_ff, kv")
    return SHAPES[name_or_dict]


def shape_record(shape: Shape) -> dict:
    return {**asdict(shape), "n_params": shape.n_params(),
            "n_params_nonembedding": shape.n_params_nonembedding(), "vocab": VOCAB}


def rope(x_BxLxHxK: jax.Array, base: float = 10_000.0) -> jax.Array:
    """Rotary position embedding on the last axis (half-split convention)."""
    length, k = x_BxLxHxK.shape[1], x_BxLxHxK.shape[-1]
    freq_K2 = base ** (-jnp.arange(0, k // 2, dtype=jnp.float32) / (k // 2))
    angle_LxK2 = jnp.arange(length, dtype=jnp.float32)[:, None] * freq_K2[None, :]
    sin_1xLx1xK2 = jnp.sin(angle_LxK2)[None, :, None, :]
    cos_1xLx1xK2 = jnp.cos(angle_LxK2)[None, :, None, :]
    x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos_1xLx1xK2 - x2 * sin_1xLx1xK2,
                           x2 * cos_1xLx1xK2 + x1 * sin_1xLx1xK2], axis=-1)
    return out.astype(x_BxLxHxK.dtype)


def _dropout(x, rate: float, key):
    if rate == 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class Block(nnx.Module):
    def __init__(self, shape: Shape, dtype, attention: str | None, rngs: nnx.Rngs):
        d, width = shape.d_model, shape.heads * shape.kv
        std = 0.02
        out_std = std / (2 * shape.layers) ** 0.5
        lin = dict(use_bias=False, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.heads, self.kv, self.attention = shape.heads, shape.kv, attention
        self.norm_attn = nnx.RMSNorm(d, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.qkv = nnx.Linear(d, 3 * width, kernel_init=nnx.initializers.normal(std), **lin)
        self.out = nnx.Linear(width, d, kernel_init=nnx.initializers.normal(out_std), **lin)
        self.norm_mlp = nnx.RMSNorm(d, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.gate_up = nnx.Linear(d, 2 * shape.d_ff, kernel_init=nnx.initializers.normal(std), **lin)
        self.down = nnx.Linear(shape.d_ff, d, kernel_init=nnx.initializers.normal(out_std), **lin)

    def __call__(self, x_BxLxD, dropout: float = 0.0, key=None):
        b, length, _ = x_BxLxD.shape
        keys = jax.random.split(key, 2) if key is not None else (None, None)
        qkv_BxLx3W = self.qkv(self.norm_attn(x_BxLxD))
        q, k, v = jnp.split(qkv_BxLx3W.reshape(b, length, 3 * self.heads, self.kv), 3, axis=2)
        q_BxLxHxK, k_BxLxHxK = rope(q), rope(k)
        att_BxLxHxK = jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v, is_causal=True,
                                                   implementation=self.attention)
        x_BxLxD = x_BxLxD + _dropout(self.out(att_BxLxHxK.reshape(b, length, -1)), dropout, keys[0])
        gate_BxLxF, up_BxLxF = jnp.split(self.gate_up(self.norm_mlp(x_BxLxD)), 2, axis=-1)
        mlp_BxLxD = self.down(jax.nn.silu(gate_BxLxF) * up_BxLxF)
        return x_BxLxD + _dropout(mlp_BxLxD, dropout, keys[1])


class Transformer(nnx.Module):
    """Byte-level decoder: tokens (B x L ints) -> logits (B x L x VOCAB, float32)."""

    def __init__(self, shape: Shape, *, dtype=jnp.float32, attention: str | None = None,
                 rngs: nnx.Rngs):
        self.shape = shape
        self.embed = nnx.Embed(VOCAB, shape.d_model, dtype=dtype, param_dtype=jnp.float32,
                               embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.blocks = nnx.List([Block(shape, dtype, attention, rngs) for _ in range(shape.layers)])
        self.norm = nnx.RMSNorm(shape.d_model, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, tokens_BxL, dropout: float = 0.0, key=None):
        x_BxLxD = self.embed(tokens_BxL)
        for i, block in enumerate(self.blocks):
            x_BxLxD = block(x_BxLxD, dropout, None if key is None else jax.random.fold_in(key, i))
        logits_BxLxV = self.embed.attend(self.norm(x_BxLxD))
        return logits_BxLxV.astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
    """Exact trainable parameters of a built model."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
