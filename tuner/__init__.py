"""tuner: hyperparameter tuning for transformer language-model training on Ray Tune, from one YAML spec."""

from tuner.spec import Spec, SpecError
from tuner.spec import load as load_spec
from tuner.sweep import SweepResult, run_sweep

__all__ = ["Spec", "SpecError", "SweepResult", "load_spec", "run_sweep"]
