"""The companion Flax NNX trainer (installed as `atlas_bayes.trainers`): real byte-level multilingual
runs that write run tables.

May import: laws, tables (the run-table format); never fitting, decisions, design or cli.

Modules: `model` (transformer and the shapes table), `data` (corpora and the deterministic
stream), `sampling` (UNIMAX and other mixtures), `schedule` (WSD), `checkpoint` (Orbax),
`config` (`RunConfig`, the config schema, `read_configs`), `run_paths` (a run's folder and its
lock), `train` (`train`, `run_plan`), `distributed` (one run across processes), `ray_session`,
`ray_plan` and `resources` (a plan's runs as Ray tasks). Needs the `train` extra (flax, optax,
orbax); the Ray modules need the `cluster` extra (ray).
"""
