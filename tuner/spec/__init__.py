"""The sweep spec: its schema, loading (YAML, ``--set`` overrides, presets) and validation, the search-space
dialect, the trial's fidelity, and the catalog of searchers and schedulers the checks know by name. Nothing here
imports Ray or torch."""

from tuner.spec.load import apply_overrides, load, validate
from tuner.spec.schema import (
    SECTIONS,
    CheckpointSpec,
    ComputeBudgetSpec,
    DataSpec,
    ModelSpec,
    Problem,
    ResourcesSpec,
    SearchSpec,
    Spec,
    SpecError,
    TrainSpec,
    TrialSpec,
    upper_bound,
)

__all__ = ["SECTIONS", "CheckpointSpec", "ComputeBudgetSpec", "DataSpec", "ModelSpec", "Problem", "ResourcesSpec",
           "SearchSpec", "Spec", "SpecError", "TrainSpec", "TrialSpec", "apply_overrides", "load", "upper_bound",
           "validate"]
