"""The end-of-sweep checkpoint policy: each trial keeps its best checkpoint and its latest.

During a sweep every checkpoint is kept. Pruning while trials run races Tune's experiment-state snapshots: a
snapshot may name a checkpoint deleted a moment later, and a sweep restored from it (`tuner resume` after a dead
driver) could not restore that trial. Population schedulers also restore from a donor's older checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tuner.distributed import POINTER, resolve_checkpoint


def prune(trials: list[dict[str, Any]]) -> int:
    """Delete every checkpoint of these (ended) trials but each one's best and latest; a sharded trial's Ray Train
    checkpoints go with their pointers. Returns how many checkpoints were deleted."""
    deleted = 0
    for t in trials:
        d = Path(t["path"])
        checkpoints = sorted(d.glob("checkpoint_*"))
        keep = {checkpoints[-1].name} if checkpoints else set()
        if t.get("checkpoint"):
            keep.add(Path(t["checkpoint"]).name)
        for c in checkpoints:
            if c.name in keep:
                continue
            if (c / POINTER).is_file():
                shutil.rmtree(resolve_checkpoint(c), ignore_errors=True)
            shutil.rmtree(c, ignore_errors=True)
            deleted += 1
    return deleted

