"""tuner: hyperparameter tuning for transformer language-model training on Ray Tune, from one YAML spec.

The names below are loaded on first use, so that importing a part of tuner (``tuner.spec`` for ``tuner validate``)
does not load the rest."""

from __future__ import annotations

from typing import Any

_EXPORTS = {"Spec": "tuner.spec", "SpecError": "tuner.spec", "load_spec": "tuner.spec:load",
            "SweepResult": "tuner.sweep.driver", "run_sweep": "tuner.sweep.driver",
            "resume_sweep": "tuner.sweep.driver", "extend_sweep": "tuner.sweep.driver"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attr or name)
