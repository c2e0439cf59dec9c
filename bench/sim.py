"""An in-process simulator of a sweep: it drives the very Searcher/SearchAlgorithm and TrialScheduler objects a
tuner sweep builds from its spec (tuner's and Ray's), calling them as Ray Tune's TuneController does, on a task
whose trials report at a fixed grid (bench/tasks.py). Optuna's own samplers and pruners run through its ask/tell
API on the same grid, with the same concurrency.

Time is simulated: ``workers`` trials run at once, each report arrives when its compute is done, and reports are
processed in the order they would arrive. A sweep ends once it has spent its budget. The trace records, per
report, the compute spent so far and the loss if the trial is at full fidelity.
"""

from __future__ import annotations

import heapq
import itertools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks import Task

CONTINUE, STOP = "CONTINUE", "STOP"


@dataclass
class Trace:
    budget: float
    points: list[tuple[float, float | None]] = field(default_factory=list)  # (compute so far, full-fidelity loss)
    trials: int = 0

    def best_at(self, compute: float) -> float:
        best = math.inf
        for c, v in self.points:
            if c > compute + 1e-9:
                break
            if v is not None and v < best:
                best = v
        return best

    def compute_to_reach(self, target: float) -> float:
        for c, v in self.points:
            if v is not None and v <= target + 1e-12:
                return c
        return math.inf


# --- strategies: what proposes configs and decides stops ------------------------------------------------------

class TunerStrategy:
    """A sweep's searcher and scheduler, made from a tuner spec exactly as ``tuner run`` makes them."""

    def __init__(self, task: Task, search: dict[str, Any], seed: int, workers: int):
        from ray.tune.experiment import Experiment
        from ray.tune.search import Searcher, SearchGenerator

        from tuner.schedulers import make_scheduler
        from tuner.search import make_searcher
        from tuner.spec import validate
        from tuner.spec.fidelity import fidelity
        from tuner.sweep.tuner import param_space

        self._dir = tempfile.TemporaryDirectory(prefix="tuner-sim-")
        d = Path(self._dir.name)
        (d / "sim_objective.py").write_text("def train(config):\n    pass\n")
        max_t = task.notes.get("spec_max_t", task.max_t)  # None: the spec sets none (bench.tasks.reporting_once)
        raw = {"name": "sim", "storage": str(d / "sweeps"), "trainable": "sim_objective:train",
               "search": {"metric": "loss", "mode": "min", "seed": seed, "space": task.space, "time_attr": "t",
                          **({"max_t": max_t} if max_t is not None else {}), "num_trials": 100_000,
                          "max_concurrent": workers, **search}}
        spec = validate(raw, spec_dir=d)
        if spec.search.scheduler == "asha":  # Ray's ASHA starts at the first report, as tuner's LLM trial has it
            raw["search"]["grace_period"] = task.grid[0]
            spec = validate(raw, spec_dir=d)
        self.spec = spec
        f = fidelity(spec)
        space = param_space(spec, f, None)
        searcher = make_searcher(spec)
        self.alg = SearchGenerator(searcher) if isinstance(searcher, Searcher) else searcher
        self.alg.set_search_properties("loss", "min", space)
        self.alg.add_configurations([Experiment("sim", _noop, config=space, num_samples=100_000,
                                                storage_path=str(d / "experiments"))])
        self.scheduler = make_scheduler(spec, f)
        self.scheduler.set_search_properties("loss", "min")
        self.trials: dict[str, Any] = {}
        self.controller = _Controller(self.trials)

    def start(self) -> tuple[str, dict[str, Any]] | None:
        trial = self.alg.next_trial()
        if trial is None:
            return None
        self.trials[trial.trial_id] = trial
        self.scheduler.on_trial_add(self.controller, trial)
        return trial.trial_id, {k: trial.config[k] for k in self.spec.search.space}

    def report(self, trial_id: str, result: dict[str, Any], last: bool) -> str:
        trial = self.trials[trial_id]
        decision = self.scheduler.on_trial_result(self.controller, trial, result)
        if decision != STOP:  # Tune tells the searcher only of results that do not stop the trial
            self.alg.on_trial_result(trial_id, result)
        if decision == STOP or last:
            self.scheduler.on_trial_complete(self.controller, trial, result)
            self.alg.on_trial_complete(trial_id, result=result)
            trial.set_status("TERMINATED")
            return STOP
        return CONTINUE

    def close(self) -> None:
        self._dir.cleanup()


def _noop(config: dict) -> None:
    pass


class _Controller:
    """What the schedulers used here call of TuneController."""

    def __init__(self, trials: dict[str, Any]):
        self._trials = trials

    def get_trials(self) -> list[Any]:
        return list(self._trials.values())

    def get_live_trials(self) -> set[Any]:
        return {t for t in self._trials.values() if not t.is_finished()}


class OptunaStrategy:
    """Optuna's TPESampler with a pruner (HyperbandPruner, the pairing Optuna recommends, MedianPruner, or none),
    through ask/tell; the report step is the grid index."""

    def __init__(self, task: Task, pruner: str, seed: int, workers: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruners = {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=len(task.grid),
                                                                        reduction_factor=3),
                   "median": lambda: optuna.pruners.MedianPruner(), "none": lambda: optuna.pruners.NopPruner()}
        # A fixed study name: HyperbandPruner assigns trials to brackets by a hash of it and the trial number.
        self.study = optuna.create_study(study_name=f"sim-{seed}", direction="minimize",
                                         sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruners[pruner]())
        self.task, self.live = task, {}

    def start(self) -> tuple[str, dict[str, Any]]:
        trial = self.study.ask()
        config = {}
        for key, dim in self.task.space.items():
            (kind, args), = dim.items()
            if kind in ("uniform", "loguniform"):
                config[key] = trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")
            elif kind == "randint":
                config[key] = trial.suggest_int(key, args[0], args[1] - 1)
            else:
                config[key] = trial.suggest_categorical(key, args)
        self.live[str(trial.number)] = trial
        return str(trial.number), config

    def report(self, trial_id: str, result: dict[str, Any], last: bool) -> str:
        import optuna

        trial = self.live[trial_id]
        if last:
            self.study.tell(trial, result["loss"])
        else:
            trial.report(result["loss"], result["training_iteration"])
            if not trial.should_prune():
                return CONTINUE
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        del self.live[trial_id]
        return STOP

    def close(self) -> None:
        pass


# --- the simulation --------------------------------------------------------------------------------------------

def simulate(task: Task, strategy: Any, budget: float, workers: int = 2) -> Trace:
    """Run trials of ``strategy`` on ``task``, ``workers`` at once, until ``budget`` compute is spent."""
    trace = Trace(budget)
    events: list[tuple[float, int, str]] = []  # (time the report arrives, tie-break, trial id)
    state: dict[str, dict[str, Any]] = {}
    order = itertools.count()
    spent = 0.0

    def launch(now: float) -> bool:
        started = strategy.start()
        if started is None:
            return False
        trial_id, config = started
        state[trial_id] = {"config": config, "k": 0, "t": 0.0, "time": 0.0}
        trace.trials += 1
        _schedule(trial_id, now)
        return True

    def _schedule(trial_id: str, now: float) -> None:
        s = state[trial_id]
        cost = task.cost(s["config"], s["t"], task.grid[s["k"]])
        s["cost"] = cost
        heapq.heappush(events, (now + cost, next(order), trial_id))

    for _ in range(workers):
        launch(0.0)
    while events and spent < budget:
        now, _, trial_id = heapq.heappop(events)
        s = state[trial_id]
        t = task.grid[s["k"]]
        loss = task.loss(s["config"], t, s["k"])
        spent += s["cost"]
        s["time"] += s["cost"]
        last = s["k"] == len(task.grid) - 1
        trace.points.append((spent, loss if last else None))
        result = {"loss": loss, "t": t, "training_iteration": s["k"] + 1, "time_total_s": s["time"],
                  "time_this_iter_s": s["cost"], "done": last}
        decision = strategy.report(trial_id, result, last)
        if decision == STOP:
            del state[trial_id]
            launch(now)
        else:
            s["k"], s["t"] = s["k"] + 1, t
            _schedule(trial_id, now)
    strategy.close()
    return trace
