"""The scheduler contract, over every scheduler tuner offers, bare and inside the compute budget: the hooks Ray
Tune's TuneController calls, the decisions it accepts, the grace period, the budget's hard stop, a stable choice of
the next trial, persistence (pickle, and save/restore where Ray implements it) and PBT/PB2 mutations that stay inside
the search space (in the shape of Optuna's ``optuna/testing/pytest_samplers.py`` and Syne Tune's
``tst/schedulers/test_schedulers_api.py``).

No Ray cluster and no training: a fake controller does what TuneController does at each call a Ray 2.60 scheduler
makes of it; the trials are real Ray Tune Trials, drawn by tuner's own searcher from the sweep's param space; the
results are the ones the LLM trial reports at its rung milestones (tokens, training_iteration, val_loss,
should_checkpoint)."""

from __future__ import annotations

import copy
import pickle
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import cloudpickle
from ray.train import Checkpoint
from ray.tune.experiment import Experiment, Trial
from ray.tune.schedulers import TrialScheduler
from threadpoolctl import threadpool_limits

from tuner._util import tree
from tuner.schedulers import SCHEDULERS, make_scheduler
from tuner.schedulers.compute_budget import ComputeBudgetScheduler, Ledger
from tuner.schedulers.factories import ClipToSpace
from tuner.search import make_searcher
from tuner.spec import validate
from tuner.spec.catalog import POPULATION_SCHEDULERS
from tuner.spec.fidelity import Fidelity, fidelity
from tuner.sweep.tuner import param_space
from tuner.trial.entry import decode

CONTINUE, PAUSE, STOP, NOOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP, TrialScheduler.NOOP
NAMES = SCHEDULERS.names()
VARIANTS = [(name, budget) for name in NAMES for budget in (False, True)]
IDS = [f"{name}+budget" if budget else name for name, budget in VARIANTS]
PRUNERS = ("asha", "rung-asha", "hyperband", "median")  # they stop trials early
# Ray 2.60 implements TrialScheduler.save/restore for ASHA only, as does tuner's rung-asha (the others raise
# NotImplementedError). Tune itself never calls them: it keeps the scheduler by pickling it with the Tuner
# (tuner.pkl), which test_pickle covers.
SAVES_TO_A_FILE = ("asha", "rung-asha")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # PB2's GP, on 9 trials

# What PBT/PB2 may mutate (tuner.spec.schema.PBT_MUTABLE), in ranges narrow enough that PBT's x0.8 / x1.2
# perturbations leave them: ClipToSpace has to bring every one back. An integer range too (warmup_steps: 2 or 3).
SPACE = {"train.lr": {"loguniform": [1.0e-3, 1.1e-3]}, "model.dropout": {"uniform": [0.1, 0.11]},
         "train.warmup_steps": {"randint": [2, 4]}}
CHOICE = {"train.batch_size": {"choice": [2, 4]}}  # pbt only: pb2 models numeric ranges
TRIALS = 9  # HyperBand's brackets here take 3 and 2 trials
CONCURRENCY = 3  # trials running at once
ERRING = 0  # fails at its second report (the best trial: no scheduler has stopped it by then)
REMOVED = TRIALS - 1  # stopped before it starts


class FakeController:
    """What Ray 2.60's schedulers call of TuneController, doing what it does there."""

    def __init__(self, scheduler: TrialScheduler, search_alg: Any, checkpoint_dir: Path, trials: list[Trial]):
        self.scheduler, self.search_alg, self.checkpoint_dir = scheduler, search_alg, checkpoint_dir
        self.trials = trials

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> set[Trial]:
        return {t for t in self.trials if not t.is_finished()}

    def add_trial(self, trial: Trial) -> None:
        trial.create_placement_group_factory()
        Path(trial.local_experiment_path).mkdir(parents=True, exist_ok=True)  # PBT logs its policy there
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def stop_trial(self, trial: Trial) -> None:
        if trial.is_finished():
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
            self.search_alg.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.search_alg.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.set_status(Trial.TERMINATED)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        trial.set_status(Trial.PAUSED)

    def _schedule_trial_save(self, trial: Trial, result: dict | None = None) -> Checkpoint:
        """PBT asks the trials it may clone for a checkpoint; this one is saved at once (Tune's is a future)."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return Checkpoint.from_directory(tempfile.mkdtemp(prefix=f"{trial.trial_id}-", dir=self.checkpoint_dir))


@dataclass
class Event:
    trial_id: str
    result: dict | None  # None: the trial failed, or ended without a report
    decision: str | None
    config: dict | None = None  # the trial's config after its scheduler paused it itself (PBT's exploit)


@dataclass
class Run:
    """A sweep without Ray: trials start as the scheduler chooses, and the running trial furthest behind reports
    next, until every trial has ended."""

    name: str
    spec: Any
    fidelity: Fidelity
    scheduler: TrialScheduler
    controller: FakeController
    progress: dict[str, int] = field(default_factory=dict)  # trial id -> reports so far
    seconds: dict[str, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def trials(self) -> list[Trial]:
        return self.controller.trials

    @property
    def reports(self) -> int:
        return round(self.fidelity.max_t / self.fidelity.eval_interval)

    def index(self, trial: Trial) -> int:
        return next(i for i, t in enumerate(self.trials) if t.trial_id == trial.trial_id)

    def result(self, trial: Trial, k: int, seconds: float) -> dict[str, Any]:
        i, f = self.index(trial), self.fidelity
        self.seconds[trial.trial_id] = self.seconds.get(trial.trial_id, 0.0) + seconds
        return {"tokens": k * f.eval_interval, "training_iteration": k, "step": k * self.spec.train.eval_every,
                "val_loss": 3.0 + 0.1 * ((5 * i) % TRIALS) + 1.0 / k, "should_checkpoint": True,
                "time_this_iter_s": seconds, "time_total_s": self.seconds[trial.trial_id]}

    def choose(self) -> Trial | None:
        chosen = self.scheduler.choose_trial_to_run(self.controller)
        again = self.scheduler.choose_trial_to_run(self.controller)
        assert again is chosen, f"choose_trial_to_run chose {chosen}, then {again}, from the same state"
        assert chosen is None or chosen.status in (Trial.PENDING, Trial.PAUSED)
        return chosen

    def running(self) -> list[Trial]:
        return [t for t in self.trials if t.status == Trial.RUNNING]

    def fill(self) -> None:
        while len(self.running()) < CONCURRENCY and (chosen := self.choose()) is not None:
            chosen.set_status(Trial.RUNNING)

    def step(self, seconds: float = 1.0) -> Event | None:
        """The next result (or failure) of the running trial furthest behind; None once no trial runs."""
        self.fill()
        running = self.running()
        if not running:
            return None
        trial = min(running, key=lambda t: (self.progress.get(t.trial_id, 0), self.index(t)))
        if self.progress.get(trial.trial_id, 0) >= self.reports:
            # Paused at its last report, then resumed: its trainable returns at once (Tune: on_trial_complete).
            self.controller.stop_trial(trial)
            self.events.append(Event(trial.trial_id, None, None))
            return self.events[-1]
        k = self.progress[trial.trial_id] = self.progress.get(trial.trial_id, 0) + 1
        if self.index(trial) == ERRING and k == 2:
            self.scheduler.on_trial_error(self.controller, trial)
            trial.set_status(Trial.ERROR)
            self.events.append(Event(trial.trial_id, None, None))
            return self.events[-1]
        result = self.result(trial, k, seconds)
        decision = self.scheduler.on_trial_result(self.controller, trial, result)
        trial.update_last_result(result)
        event = Event(trial.trial_id, result, decision)
        self.events.append(event)
        if decision == STOP or (k >= self.reports and trial.status == Trial.RUNNING):
            self.controller.stop_trial(trial)  # stopped, or its last report: on_trial_complete
        elif decision == PAUSE:
            self.controller.pause_trial(trial)
        elif decision == NOOP:
            assert trial.status == Trial.PAUSED, "NOOP: the scheduler pauses the trial itself"
            event.config = copy.deepcopy(trial.config)
        return event

    def finish(self, max_events: int = 500) -> list[Event]:
        start = len(self.events)
        for _ in range(max_events):
            if self.step() is None:
                break
        unfinished = [(t.trial_id, t.status) for t in self.trials if not t.is_finished()]
        assert not unfinished, f"trials left waiting with nothing running: {unfinished}"
        return self.events[start:]

    def twin(self, scheduler: TrialScheduler | None = None) -> Run:
        """An independent copy of this run, its scheduler and trials pickled together; ``scheduler`` replaces the
        copied one. Tune pickles the scheduler with ray.cloudpickle (tuner.pkl): plain pickle fails for HyperBand
        and the median stopping rule, whose __init__ keeps lambdas."""
        copied, trials = pickle.loads(cloudpickle.dumps((self.scheduler, self.trials)))
        for t, original in zip(trials, self.trials, strict=True):
            t.set_status(original.status)  # an unpickled Trial is PENDING where it was RUNNING (Tune restarts it)
        scheduler = scheduler or copied
        controller = FakeController(scheduler, self.controller.search_alg, self.controller.checkpoint_dir, trials)
        return Run(self.name, self.spec, self.fidelity, scheduler, controller, dict(self.progress),
                   dict(self.seconds), list(self.events))


def ledger(tmp_path: Path) -> Ledger:
    """One CPU-hour for the sweep: its trials take a second a report, unless a test spends it at once."""
    return Ledger(tmp_path / "budget.json", cpu_hours=1.0, cpus_per_trial=1)


def reseed(seed: int) -> None:
    random.seed(seed)  # PBT draws donors and perturbations from `random`
    np.random.seed(seed)  # PB2 its acquisition's starting points from numpy


def unwrapped(scheduler: TrialScheduler) -> TrialScheduler:
    return scheduler.inner if isinstance(scheduler, ComputeBudgetScheduler) else scheduler


def _noop(config: dict) -> None:
    pass


@pytest.fixture
def build(tiny_raw, tmp_path, monkeypatch):
    """A Run of scheduler ``name`` (inside the compute budget if ``budget``) from a validated tiny spec."""
    # A trial's driver-side directory (where PBT logs its policy) lies in the Ray session's; there is no session.
    monkeypatch.setattr("ray.train._internal.storage._get_ray_train_session_dir", lambda: str(tmp_path / "session"))
    # PB2 fits GPs to choose each exploited trial's config; one BLAS thread makes that ~3x faster on two cores.
    limits = threadpool_limits(1)

    def make(name: str, budget: bool, *, grace_reports: int | None = None) -> Run:
        space = {**SPACE, **(CHOICE if name == "pbt" else {})}
        search = {"algorithm": "random", "scheduler": name, "space": space, "max_concurrent": None, "seed": 0}
        # PBT perturbs every second report (its default) and never at max_t: 6 reports give each trial 2 chances.
        train = {"max_steps": 30} if name in POPULATION_SCHEDULERS else {}
        spec = validate(tiny_raw(search=search, train=train))
        if grace_reports is not None:
            search["grace_period"] = grace_reports * fidelity(spec).eval_interval
            spec = validate(tiny_raw(search=search, train=train))
        f = fidelity(spec)
        space = param_space(spec, f, None)
        scheduler = make_scheduler(spec, f)
        if budget:
            scheduler = ComputeBudgetScheduler(scheduler, ledger(tmp_path))
        # Tune passes metric and mode from TuneConfig, and the experiment's spec: a scheduler must take them.
        assert scheduler.set_search_properties(spec.search.metric, spec.search.mode, config=space) is True
        search_alg = make_searcher(spec)
        search_alg.add_configurations([Experiment(spec.name, _noop, config=space, num_samples=TRIALS + 3,
                                                  storage_path=str(tmp_path / "experiments"))])
        controller = FakeController(scheduler, search_alg, tmp_path / "checkpoints", [])
        for _ in range(TRIALS):
            controller.add_trial(search_alg.next_trial())
        reseed(0)
        run = Run(name, spec, f, scheduler, controller)
        run.controller.stop_trial(run.trials[REMOVED])  # stopped unstarted: on_trial_remove
        return run

    yield make
    limits.restore_original_limits()


def decisions(events: list[Event]) -> list[tuple[str, Any, str | None]]:
    return [(e.trial_id, e.result and e.result["tokens"], e.decision) for e in events]


@pytest.mark.parametrize(("name", "budget"), VARIANTS, ids=IDS)
def test_every_hook_works_and_every_decision_is_one_tune_takes(build, name, budget):
    """on_trial_add, on_trial_result, on_trial_complete, on_trial_error (trial 0) and on_trial_remove (the last
    trial, before it starts) all work; the sweep ends with every trial ended; choose_trial_to_run chose the same
    trial twice from the same state throughout (Run.choose)."""
    run = build(name, budget)
    events = run.finish()
    made = {e.decision for e in events if e.result is not None}
    # NOOP: PBT/PB2 exploited the trial, and paused it (for the clone) itself.
    allowed = {CONTINUE, PAUSE, STOP} | ({NOOP} if name in POPULATION_SCHEDULERS else set())
    assert made <= allowed
    assert run.trials[ERRING].status == Trial.ERROR and run.trials[REMOVED].status == Trial.TERMINATED
    assert run.progress.get(run.trials[REMOVED].trial_id) is None
    if name in PRUNERS:
        assert STOP in made, "no trial was pruned"
    else:
        assert STOP not in made
    if name in POPULATION_SCHEDULERS:
        assert NOOP in made, "no trial was exploited"


@pytest.mark.parametrize(("name", "budget"), VARIANTS, ids=IDS)
def test_no_stop_before_the_grace_period(build, name, budget, request):
    """With a grace period of two reports (one report, the default, is the first a trial makes)."""
    if name == "hyperband":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "Ray's HyperBandScheduler has no grace period: search.grace_period is ignored and its most aggressive "
            "bracket stops trials at their first report")))
    run = build(name, budget, grace_reports=2)
    events = run.finish()
    f = run.fidelity
    results = [e for e in events if e.result is not None]
    assert any(e.result[f.time_attr] < f.grace_period for e in results)
    early = [(e.trial_id, e.result[f.time_attr]) for e in results
             if e.result[f.time_attr] < f.grace_period and e.decision == STOP]
    assert not early, f"stopped before the grace period ({f.grace_period:g} {f.time_attr})"
    if name in PRUNERS:
        assert any(e.decision == STOP for e in results), "no trial was pruned after the grace period either"


@pytest.mark.parametrize("name", NAMES)
def test_a_spent_budget_stops_every_trial_at_once_and_starts_none(build, name):
    run = build(name, True, grace_reports=2)
    # Run until the scheduler has started a trial that has not reported yet: it reports next.
    while all(run.progress.get(t.trial_id, 0) for t in run.running()):
        assert run.step() is not None
    waiting = [t for t in run.trials if t.status in (Trial.PENDING, Trial.PAUSED)]
    assert waiting and not run.controller.search_alg.is_finished()
    event = run.step(seconds=3600.0)  # one CPU-hour: the budget is spent
    assert event.result["tokens"] < run.fidelity.grace_period and event.decision == STOP
    assert run.scheduler.ledger.exhausted() == "cpu_hours"
    assert run.choose() is None
    assert run.controller.search_alg.is_finished()
    assert all(t.status == Trial.TERMINATED for t in waiting), "waiting trials end unstarted"
    rest = [e for e in run.finish() if e.result is not None]  # (trial 0 may fail instead)
    assert rest and {e.decision for e in rest} == {STOP}, "every running trial stops at its next result"
    assert {t.trial_id for t in waiting}.isdisjoint(e.trial_id for e in rest)


@pytest.mark.parametrize(("name", "budget"), VARIANTS, ids=IDS)
def test_pickle_round_trip(build, name, budget):
    """Pickled mid-sweep with its trials, the copy decides the rest of the sweep exactly as the original."""
    run = build(name, budget)
    for _ in range(8):
        run.step()
    twin = run.twin()
    assert twin.choose() is None or twin.choose().trial_id == run.choose().trial_id
    reseed(1)
    rest = run.finish()
    reseed(1)
    assert decisions(twin.finish()) == decisions(rest)


@pytest.mark.parametrize(("name", "budget"), VARIANTS, ids=IDS)
def test_save_and_restore(build, name, budget, tmp_path):
    run = build(name, budget)
    for _ in range(8):
        run.step()
    path = str(tmp_path / "scheduler.pkl")
    if name not in SAVES_TO_A_FILE:
        with pytest.raises(NotImplementedError):
            run.scheduler.save(path)
        return
    run.scheduler.save(path)
    fresh = make_scheduler(run.spec, run.fidelity)
    if budget:
        fresh = ComputeBudgetScheduler(fresh, ledger(tmp_path))
    fresh.set_search_properties(run.spec.search.metric, run.spec.search.mode)
    fresh.restore(path)
    twin = run.twin(fresh)
    assert decisions(twin.finish()) == decisions(run.finish())


@pytest.mark.parametrize(("name", "budget"), [v for v in VARIANTS if v[0] in POPULATION_SCHEDULERS],
                         ids=[i for i, v in zip(IDS, VARIANTS, strict=True) if v[0] in POPULATION_SCHEDULERS])
def test_mutated_configs_stay_inside_the_search_space(build, name, budget):
    run = build(name, budget)
    scheduler = unwrapped(run.scheduler)
    explore = scheduler._custom_explore_fn
    assert isinstance(explore, ClipToSpace)
    proposed: list[dict] = []

    def recording(config: dict) -> dict:
        proposed.append(copy.deepcopy(config))
        return explore(config)

    scheduler._custom_explore_fn = recording
    events = run.finish()
    mutated = [e.config for e in events if e.config is not None]
    assert mutated and len(mutated) == len(proposed)
    dims = run.spec.dimensions()
    outside = [(key, tree.get_path(c, key)) for c in proposed for key, d in dims.items()
               if not d.contains(tree.get_path(c, key))]
    if name == "pbt":
        assert outside, "no perturbation left the space: nothing tested the clipping"
    for config in mutated:
        for key, dim in dims.items():
            assert dim.contains(tree.get_path(config, key)), f"{key}={tree.get_path(config, key)!r} is outside"
        decode(config)  # and the trial takes it
