"""Ray Tune's JSON and CSV result loggers, made safe for trials that restart.

When a trial restarts from a checkpoint (a PBT exploit, a retry), Tune's loggers copy the trial's result file back
from storage over the driver's local copy. The storage copy is only synced now and then, so the copy can be older
than the local file: every result row since the last sync is lost (seen here: a PBT-exploited trial kept only its
last two of eight rows). Here the copy happens only when there is no local file, as after a driver restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepLocal:
    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if Path(trial.local_path, file_name).is_file():
            return
        super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


class JsonLogger(_KeepLocal, JsonLoggerCallback):
    pass


class CsvLogger(_KeepLocal, CSVLoggerCallback):
    pass
