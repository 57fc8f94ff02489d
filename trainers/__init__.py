"""The companion Flax/Optax trainer (see docs/architecture.md); not built yet."""
