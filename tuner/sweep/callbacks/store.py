"""The sweep driver's Ray Tune callback that writes the sweep store (tuner.store): each trial as it starts and ends,
each reported result row as it arrives, committed at once."""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from tuner import store
from tuner._util import tree
from tuner.sweep.callbacks import best_effort
from tuner.sweep.summary import RAY_BOOKKEEPING, ran_its_course

log = logging.getLogger(__name__)


# A store that fails to write must not stop the sweep: its results still land in the experiment directory.
_guarded = best_effort(lambda callback: f"sweep store {store.safe_url(callback.url)}")


class StoreCallback(Callback):
    """Records one sweep's trials in the store. ``keys`` are the tuned keys (``search.space``), read from each trial's
    config by dotted path (``nested``, the LLM trial's config is the whole trial spec) or by name. A trial that ends
    is ``completed`` if it ran its whole fidelity (``tuner.sweep.summary.ran_its_course``: it reached ``max_t`` in
    ``time_attr``, nothing stops early, or it ended on its own), else ``stopped``."""

    def __init__(self, engine: Engine, sweep_id: int, keys: list[str], *, nested: bool, time_attr: str = "",
                 max_t: float | None = None):
        self.url = engine.url.render_as_string(hide_password=False)
        self.sweep_id, self.keys, self.nested = sweep_id, list(keys), nested
        self.time_attr, self.max_t = time_attr, max_t
        self._engine: Engine | None = engine
        self._configs: dict[str, dict[str, Any]] = {}
        self._improved: dict[str, bool] = {}
        self._stopped: dict[str, bool] = {}  # trial id -> whether Tune stopped it on its last result (marked done)
        self._population: Any = None  # a PBT/PB2 scheduler whose exploits become the sweep's lineage
        self._exploits_recorded = 0

    def follow_exploits(self, scheduler: Any) -> None:
        """Record ``scheduler``'s exploits (tuner.schedulers.pbt) as they happen. The scheduler is pickled with this
        callback in the experiment's state, so after a resume they are still one object."""
        if hasattr(scheduler, "exploits"):
            self._population = scheduler

    def _record_exploits(self) -> None:
        events = self._population.exploits if self._population is not None else []
        for e in events[self._exploits_recorded:]:
            store.record_exploit(self.engine, self.sweep_id, e["trial"], donor=e["donor"], at=e["at"],
                                 config=e["config"])
            self._exploits_recorded += 1

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state: no engine, and no password (a team database's
        # should come from the environment, e.g. PGPASSWORD or ~/.pgpass).
        state = {k: v for k, v in self.__dict__.items() if k != "_engine"}
        u = make_url(self.url)
        state["url"] = URL.create(u.drivername, u.username, None, u.host, u.port, u.database,
                                  u.query).render_as_string(hide_password=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_stopped": {}, **state}, _engine=None)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = store.open_store(self.url, ".")
        return self._engine

    def tuned(self, config: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k in self.keys:
            try:
                out[k] = tree.get_path(config, k) if self.nested else config[k]
            except (KeyError, TypeError):
                out[k] = None
        return store.jsonable(out)

    @_guarded
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        config = self.tuned(trial.config or {})
        self._configs[trial.trial_id] = config
        store.record_trial(self.engine, self.sweep_id, trial.trial_id, config=config, status="running")

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._record_exploits()  # an exploit happens while Tune handles a result: recorded at the next one
        config = self.tuned(trial.config or {})
        if config != self._configs.get(trial.trial_id):  # a new trial to this driver, or a PBT exploit
            self._configs[trial.trial_id] = config
            store.record_trial(self.engine, self.sweep_id, trial.trial_id, config=config)
        self._stopped[trial.trial_id] = bool(result.get("done"))
        metrics = {k: v for k, v in result.items() if k not in RAY_BOOKKEEPING}
        full = self.max_t is None or (result.get(self.time_attr) or 0) >= self.max_t  # the sweep's best is full-length
        self._improved[trial.trial_id] = store.record_result(self.engine, self.sweep_id, trial.trial_id, metrics,
                                                             full=full)

    @_guarded
    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        # A result comes before its checkpoint; the trial keeps the checkpoint of its best result.
        if self._improved.pop(trial.trial_id, False):
            store.record_trial(self.engine, self.sweep_id, trial.trial_id, checkpoint=checkpoint.path)

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record_exploits()
        last = trial.last_result or {}
        done = ran_its_course(last.get(self.time_attr), self.max_t, self._stopped.pop(trial.trial_id, True))
        store.record_trial(self.engine, self.sweep_id, trial.trial_id, status="completed" if done else "stopped")

    @_guarded
    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        store.record_trial(self.engine, self.sweep_id, trial.trial_id, error=_error(trial))  # and it is retried

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        store.record_trial(self.engine, self.sweep_id, trial.trial_id, status="error", error=_error(trial))


def _error(trial: Any) -> str:
    text = str(trial.get_error() or "").strip().splitlines()
    lines = [ln.strip() for ln in text if ln.strip()]
    return lines[-1] if lines else "the trial failed"
