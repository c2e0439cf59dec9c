"""Helpers every layer may use: the name registry, YAML loading, key-path conversion, the objective (metric and
mode), and optional imports. Nothing here imports another part of tuner."""
