"""Helpers every layer may use: the name registry, YAML loading, key-path conversion and the objective (metric
and mode). Nothing here imports another part of tuner."""
