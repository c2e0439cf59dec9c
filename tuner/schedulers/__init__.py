"""Trial schedulers by name (``search.scheduler``), each a lazily imported factory of a Ray Tune TrialScheduler;
the spec's compute budget wraps whichever one a sweep uses (``compute_budget``)."""

from __future__ import annotations

from typing import Any

from tuner._util.registry import Registry
from tuner.spec.fidelity import Fidelity

SCHEDULERS = Registry("scheduler", {
    "fifo": "tuner.schedulers.factories:fifo",
    "asha": "tuner.schedulers.factories:asha",
    "rung-asha": "tuner.schedulers.factories:rung_asha",
    "hyperband": "tuner.schedulers.factories:hyperband",
    "median": "tuner.schedulers.factories:median",
    "pbt": "tuner.schedulers.factories:pbt",
    "pb2": "tuner.schedulers.factories:pb2",
})


def make_scheduler(spec: Any, f: Fidelity) -> Any:
    return SCHEDULERS.get(spec.search.scheduler)(spec, f)
