"""The live one-line progress of a running sweep (a Ray Tune callback on the driver)."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback
from rich.console import Console

from tuner._util.objective import Objective


class ProgressLine(Callback):
    """Trials running/done and the best value so far, on one line that updates in place (a line per finished
    trial when the output is not a terminal)."""

    def __init__(self, metric: str, mode: str, total: int, console: Console | None = None):
        self.metric, self.mode, self.total = metric, mode, total
        self.console = console or Console(stderr=True)
        self.running: set[str] = set()
        self.done = self.errors = 0
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self._status: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a console holds locks.
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "_status")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, console=Console(stderr=True), _status=None)

    def _better(self, value: float) -> bool:
        return Objective(self.metric, self.mode).better(value, self.best[0] if self.best else None)

    def line(self) -> str:
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        errors = f", {self.errors} failed" if self.errors else ""
        return (f"trials: {len(self.running)} running, {self.done}/{self.total} done{errors} | {best} | "
                f"{time.monotonic() - self.started:.0f}s")

    def _refresh(self) -> None:
        if self.console.is_terminal:
            if self._status is None:
                self._status = self.console.status(self.line())
                self._status.start()
            self._status.update(self.line())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(value):
            self.best = (float(value), trial.trial_id)
        self._refresh()

    def _finished(self, trial: Any, error: bool) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self.errors += error
        self._refresh()
        if not self.console.is_terminal:
            self.console.print(self.line(), highlight=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finished(trial, error=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
