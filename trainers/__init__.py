"""The companion Flax NNX trainer: real byte-level multilingual runs that write run tables.

Modules: `model` (transformer and the shapes table), `data` (corpora and the deterministic
stream), `sampling` (UNIMAX and other mixtures), `schedule` (WSD), `checkpoint` (Orbax),
`train` (`RunConfig`, `train`, `run_plan`). Needs the `train` extra (flax, optax, orbax).
"""
