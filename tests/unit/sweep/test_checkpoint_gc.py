"""GC keeps what it must: the checkpoint policy rule by rule, the Tune callback driven through its hooks on real
checkpoint directories (a sharded trial's pointer takes its Ray Train checkpoint with it), the end-of-sweep prune."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.train._internal.session import _FutureTrainingResult, _TrainingResult
from ray.tune import Checkpoint
from ray.tune.schedulers.pbt import _PBTTrialState

from tuner.schedulers.pbt import CheckpointedPBT, donor_checkpoints
from tuner.sweep.callbacks.checkpoint_gc import CheckpointGC
from tuner.sweep.checkpoint_policy import Saved, plan, prune
from tuner.trial.parallel import write_pointer

# --- the policy -------------------------------------------------------------------------------------------------------


def ck(tid: str, n: int, score: float | None = None, *, latest: bool = False, superseded: float = 0.0,
       live: bool = False, needed: bool = False, size: int = 10, value: float | None = None) -> Saved:
    return Saved(tid, Path(f"/sweep/trial_{tid}/checkpoint_{n:06d}"), score=score, size=size,
                 superseded_at=None if latest else superseded, live=live, needed=needed, trial_value=value)


def names(paths: list[Path]) -> set[str]:
    return {f"{p.parent.name.removeprefix('trial_')}/{int(p.name.split('_')[1])}" for p in paths}


def test_a_live_trial_keeps_its_latest_its_best_and_what_was_superseded_within_the_grace_period():
    cks = [ck("a", 0, 0.5, live=True, superseded=10), ck("a", 1, 0.9, live=True, superseded=20),
           ck("a", 2, 0.7, live=True, superseded=70), ck("a", 3, 0.8, live=True, superseded=71),
           ck("a", 4, 1.0, live=True, latest=True)]
    delete, over = plan(cks, mode="min", keep_best=0, now=100.0, grace_s=30.0)
    assert names(delete) == {"a/1", "a/2"}  # superseded 80 s and exactly 30 s ago
    assert over == 0


def test_a_pbt_donor_checkpoint_is_kept_even_for_an_ended_trial_outside_the_best():
    cks = [ck("a", 0, 0.1), ck("a", 1, 0.2, latest=True),
           ck("b", 0, 0.5, needed=True), ck("b", 1, 0.6), ck("b", 2, 0.7, latest=True)]
    delete, _ = plan(cks, mode="min", keep_best=1, now=0.0)
    assert names(delete) == {"b/1", "b/2"}


@pytest.mark.parametrize(("mode", "winner"), [("min", "a"), ("max", "c")])
def test_ended_trials_outside_the_best_k_keep_nothing(mode, winner):
    cks = [ck("a", 0, 0.1), ck("a", 1, 0.4, latest=True),
           ck("b", 0, 0.5), ck("b", 1, 0.6, latest=True),
           ck("c", 0, 0.9), ck("c", 1, 0.3), ck("c", 2, 0.2, latest=True)]
    delete, _ = plan(cks, mode=mode, keep_best=1, now=0.0)
    kept = {c.path for c in cks} - set(delete)
    best = {"a": {"a/0", "a/1"}, "c": {"c/0", "c/2"}}[winner]
    assert names(list(kept)) == best
    delete, _ = plan(cks, mode=mode, keep_best=2, now=0.0)
    assert names(delete) == {"min": {"b/0", "b/1", "c/0", "c/1"}, "max": {"a/0", "a/1", "b/0", "c/1"}}[mode]


def test_trials_rank_by_the_best_value_they_reported_not_only_by_their_checkpoints():
    cks = [ck("a", 0, 0.5, latest=True, value=0.1), ck("b", 0, 0.3, latest=True, value=0.3)]
    delete, _ = plan(cks, mode="min", keep_best=1, now=0.0)
    assert names(delete) == {"b/0"}


def test_keep_best_none_keeps_every_ended_trials_best_and_latest():
    cks = [ck("a", 0, 0.1), ck("a", 1, 0.4), ck("a", 2, 0.3, latest=True),
           ck("b", 0), ck("b", 1, latest=True),  # never scored: its latest only
           ck("c", 0, 0.2), ck("c", 1, 0.2, latest=True)]  # a tie: both are its best
    delete, over = plan(cks, mode="min", keep_best=None, now=0.0)
    assert names(delete) == {"a/1", "b/0"} and over == 0


def test_a_live_trial_counts_in_the_ranking():
    cks = [ck("a", 0, 0.1, live=True, latest=True), ck("b", 0, 0.2, latest=True), ck("c", 0, 0.3, latest=True)]
    delete, _ = plan(cks, mode="min", keep_best=2, now=0.0)
    assert names(delete) == {"c/0"}


def sized_sweep() -> list[Saved]:
    """Ended trials a (best), b, c (worst), each with a best and a later latest; a live trial d; a PBT donor in c."""
    return [ck("a", 0, 0.1), ck("a", 1, 0.2, latest=True),
            ck("b", 0, 0.3), ck("b", 1, 0.4, latest=True),
            ck("c", 0, 0.5, needed=True), ck("c", 1, 0.6), ck("c", 2, 0.7, latest=True),
            ck("d", 0, 0.15, live=True, latest=True)]


@pytest.mark.parametrize(("limit", "deleted", "over"), [
    (70, {"c/1"}, 0),
    (60, {"c/1", "c/2"}, 0),
    (50, {"c/1", "c/2", "b/1"}, 0),
    (40, {"c/1", "c/2", "b/1", "a/1"}, 0),
    (30, {"c/1", "c/2", "b/1", "a/1", "b/0"}, 0),
    # Left: a's best (the sweep's best checkpoint), c's donor checkpoint and the live trial's.
    (20, {"c/1", "c/2", "b/1", "a/1", "b/0"}, 10),
    (0, {"c/1", "c/2", "b/1", "a/1", "b/0"}, 30),
])
def test_over_the_size_limit_ended_trials_shed_latest_then_best_worst_first(limit, deleted, over):
    delete, over_by = plan(sized_sweep(), mode="min", keep_best=None, max_total_bytes=limit, now=0.0)
    assert names(delete) == deleted and over_by == over


def test_the_sweeps_best_checkpoint_survives_any_limit():
    cks = [ck("a", 0, 0.1, size=100), ck("a", 1, 0.2, latest=True, size=100)]
    delete, over = plan(cks, mode="min", max_total_bytes=0, now=0.0)
    assert names(delete) == {"a/1"} and over == 100


def test_keep_best_must_not_be_negative():
    with pytest.raises(ValueError, match="keep_best"):
        plan([], mode="min", keep_best=-1, now=0.0)


# --- the callback -----------------------------------------------------------------------------------------------------


class FakeTrial(SimpleNamespace):
    def __hash__(self) -> int:  # PBT keys its states by trial
        return id(self)


class Sweep:
    """Drives a CheckpointGC as Tune does: a result, then the checkpoint saved with it, which the trial registers as
    its latest only after the callbacks ran."""

    def __init__(self, root: Path, gc: CheckpointGC, *ids: str):
        self.root, self.gc = root, gc
        self.trials = {t: FakeTrial(trial_id=t, status="RUNNING", checkpoint=None, experiment_tag=t) for t in ids}
        self.index = dict.fromkeys(ids, 0)

    def write(self, tid: str, size: int = 100) -> Checkpoint:
        d = self.root / f"trial_{tid}" / f"checkpoint_{self.index[tid]:06d}"
        self.index[tid] += 1
        d.mkdir(parents=True)
        (d / "state.bin").write_bytes(b"x" * size)
        return Checkpoint(str(d))

    def report(self, tid: str, loss: float, checkpoint: Checkpoint | None = None) -> Checkpoint:
        trial, trials = self.trials[tid], list(self.trials.values())
        checkpoint = checkpoint or self.write(tid)
        self.gc.on_trial_result(iteration=0, trials=trials, trial=trial, result={"loss": loss})
        self.gc.on_checkpoint(iteration=0, trials=trials, trial=trial, checkpoint=checkpoint)
        trial.checkpoint = checkpoint
        assert Path(checkpoint.path).is_dir()
        return checkpoint

    def end(self, tid: str, error: bool = False) -> None:
        trial, trials = self.trials[tid], list(self.trials.values())
        if error:
            trial.status = "ERROR"
            self.gc.on_trial_error(iteration=0, trials=trials, trial=trial)
        else:
            self.gc.on_trial_complete(iteration=0, trials=trials, trial=trial)  # the status still reads RUNNING
            trial.status = "TERMINATED"

    def left(self, tid: str) -> list[int]:
        return sorted(int(p.name.split("_")[1]) for p in (self.root / f"trial_{tid}").glob("checkpoint_*"))


def test_a_running_trial_keeps_its_best_and_latest(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=1, grace_s=0), "a")
    for loss in (0.5, 0.3, 0.4, 0.6):
        sweep.report("a", loss)
    # Tune registers checkpoint 3 as the trial's latest only after the callbacks ran: 2 goes at the next pass.
    assert sweep.left("a") == [1, 2, 3]
    sweep.end("a")
    assert sweep.left("a") == [1, 3]


def test_checkpoints_superseded_within_the_grace_period_stay(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=0), "a")
    for loss in (0.5, 0.3, 0.4, 0.6):
        sweep.report("a", loss)
    assert sweep.left("a") == [0, 1, 2, 3]


def test_ended_trials_outside_the_best_lose_their_checkpoints(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "max", keep_best=1, grace_s=0), "a", "b", "c")
    for loss in (0.5, 0.9, 0.7):
        sweep.report("a", loss)
        sweep.report("b", loss - 0.1)
        sweep.report("c", loss - 0.2)
    sweep.end("b")
    sweep.end("c", error=True)
    assert sweep.left("b") == [] and sweep.left("c") == []
    assert sweep.left("a") == [1, 2]  # still running
    sweep.end("a")
    assert sweep.left("a") == [1, 2]  # the best trial: its best and its latest


def test_a_trial_that_just_ended_keeps_its_latest_for_the_grace_period(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=1, grace_s=30), "a", "b")
    sweep.report("a", 0.1)
    sweep.report("b", 0.5)
    sweep.end("b")
    assert sweep.left("b") == [0]
    sweep.gc.grace_s = 0
    sweep.gc.on_experiment_end(trials=list(sweep.trials.values()))
    assert sweep.left("b") == [] and sweep.left("a") == [0]


def test_a_pbt_donor_and_an_exploited_trials_restore_point_are_kept(tmp_path):
    scheduler = CheckpointedPBT(time_attr="training_iteration", max_t=10, metric="loss", mode="min",
                                hyperparam_mutations={"x": [0.0, 1.0]})
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=1, scheduler=scheduler, grace_s=0), "a", "b")
    state = _PBTTrialState(sweep.trials["a"])
    scheduler._trial_state[sweep.trials["a"]] = state
    state.last_checkpoint = sweep.report("a", 0.9)  # a's perturbation: a is a donor from its checkpoint 0
    for loss in (0.5, 0.4, 0.3):
        sweep.report("a", loss)
    assert sweep.left("a") == [0, 2, 3]
    sweep.trials["b"].checkpoint = state.last_checkpoint  # b exploits a: it will restart from a's checkpoint 0
    state.last_checkpoint = None  # a's next perturbation found it outside the upper quantile
    sweep.report("a", 0.2)
    assert sweep.left("a") == [0, 3, 4]
    sweep.trials["b"].checkpoint = None  # (b restored and checkpointed elsewhere)
    sweep.report("a", 0.1)
    assert sweep.left("a") == [4, 5]


def test_donor_checkpoints_reads_checkpoints_and_resolved_saves():
    scheduler = CheckpointedPBT(time_attr="training_iteration", max_t=10, metric="loss", mode="min",
                                hyperparam_mutations={"x": [0.0, 1.0]})
    saved, pending = _FutureTrainingResult(None), _FutureTrainingResult(None)
    saved.resolve = lambda block=True: _TrainingResult(checkpoint=Checkpoint("/s/b/checkpoint_000001"), metrics={})
    pending.resolve = lambda block=True: None  # the save is under way
    for tid, last in [("a", Checkpoint("/s/a/checkpoint_000000")), ("b", saved), ("c", pending), ("d", None)]:
        trial = FakeTrial(trial_id=tid, experiment_tag=tid)
        scheduler._trial_state[trial] = _PBTTrialState(trial)
        scheduler._trial_state[trial].last_checkpoint = last
    assert donor_checkpoints(scheduler) == ["/s/a/checkpoint_000000", "/s/b/checkpoint_000001"]
    assert donor_checkpoints(None) == [] and donor_checkpoints(object()) == []


def test_a_sharded_trials_train_checkpoint_goes_with_its_pointer(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=1, grace_s=0), "a")
    train = []
    for i, loss in enumerate((0.5, 0.9, 0.7, 0.8)):
        target = tmp_path / "train" / "run" / f"checkpoint_{i}"
        target.mkdir(parents=True)
        (target / "shard.bin").write_bytes(b"x" * 1000)
        train.append(target)
        pointer = write_pointer(tmp_path / "trial_a" / f"checkpoint_{i:06d}", str(target))
        sweep.report("a", loss, Checkpoint(str(pointer)))
    assert sweep.left("a") == [0, 2, 3]
    assert [t.is_dir() for t in train] == [True, False, True, True]
    assert sweep.gc._disks[str(tmp_path / "trial_a" / "checkpoint_000000")].size > 1000  # the Train checkpoint counts


def test_the_size_limit_and_its_single_warning(tmp_path, caplog):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", max_total_gb=250e-9, grace_s=0), "a", "b", "c")
    for tid, loss in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        sweep.report(tid, loss)
        sweep.report(tid, loss + 1)
        sweep.end(tid)
    # While c ran, b (ended, worse than a) made room for it; under 250 bytes now: a's best (the sweep's) and c's.
    assert (sweep.left("a"), sweep.left("b"), sweep.left("c")) == ([0], [], [0])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tuner.sweep.callbacks.checkpoint_gc"):
        sweep.gc.max_total_bytes = 50
        sweep.gc.on_experiment_end(trials=list(sweep.trials.values()))
        sweep.gc.on_experiment_end(trials=list(sweep.trials.values()))
    assert sweep.left("a") == [0] and sweep.left("c") == []
    assert len([r for r in caplog.records if "max_total_gb" in r.getMessage()]) == 1


def test_checkpoints_it_never_recorded_are_kept_and_remote_ones_ignored(tmp_path):
    sweep = Sweep(tmp_path, CheckpointGC("loss", "min", keep_best=0, grace_s=0), "a")
    sweep.write("a")  # written before this (restored) callback's time
    remote = SimpleNamespace(path=str(tmp_path / "bucket"), filesystem=None)
    sweep.gc.on_checkpoint(iteration=0, trials=list(sweep.trials.values()), trial=sweep.trials["a"], checkpoint=remote)
    sweep.report("a", 0.5)
    sweep.report("a", 0.4)
    sweep.end("a")
    assert sweep.left("a") == [0]


def test_it_never_raises_into_tune(tmp_path, caplog):
    gc = CheckpointGC("loss", "min", keep_best=0, grace_s=0)
    with caplog.at_level(logging.WARNING, logger="tuner.sweep.callbacks.checkpoint_gc"):
        gc.on_checkpoint(iteration=0, trials=[object()], trial=SimpleNamespace(trial_id="a"),
                         checkpoint=Checkpoint(str(tmp_path)))
    assert "on_checkpoint failed" in caplog.text


def test_it_survives_pickling_with_its_records_and_scheduler(tmp_path):
    scheduler = CheckpointedPBT(time_attr="training_iteration", max_t=10, metric="loss", mode="min",
                                hyperparam_mutations={"x": [0.0, 1.0]})
    gc = CheckpointGC("loss", "min", keep_best=1, max_total_gb=1.0, scheduler=scheduler, grace_s=0)
    initial = pickle.dumps(gc)  # what Tune stores before the sweep starts
    sweep = Sweep(tmp_path, gc, "a")
    sweep.report("a", 0.5)
    sweep.report("a", 0.9)
    copy = pickle.loads(pickle.dumps(gc))
    assert isinstance(copy.scheduler, CheckpointedPBT)
    sweep.gc = copy
    sweep.report("a", 0.7)
    sweep.report("a", 0.8)
    assert sweep.left("a") == [0, 2, 3]  # the copy knew checkpoints 0 (the best: its score came along) and 1
    sweep.gc = pickle.loads(initial)
    for loss in (0.6, 0.55, 0.65):
        sweep.report("a", loss)
    assert sweep.left("a") == [0, 2, 3, 5, 6]  # the initial copy deleted only what it recorded: 4


# --- the end-of-sweep pass --------------------------------------------------------------------------------------------


def summary_trial(root: Path, tid: str, losses: list[float], size: int = 100) -> dict:
    d = root / f"trial_{tid}"
    for i in range(len(losses)):
        (d / f"checkpoint_{i:06d}").mkdir(parents=True)
        (d / f"checkpoint_{i:06d}" / "state.bin").write_bytes(b"x" * size)
    best = min(range(len(losses)), key=lambda i: losses[i])
    return {"trial_id": tid, "path": str(d), "value": losses[best], "checkpoint": str(d / f"checkpoint_{best:06d}")}


def left(trial: dict) -> list[str]:
    return sorted(p.name for p in Path(trial["path"]).glob("checkpoint_*"))


def test_prune_called_the_old_way_keeps_each_trials_best_and_latest(tmp_path):
    trials = [summary_trial(tmp_path, "a", [0.5, 0.1, 0.3, 0.4]), summary_trial(tmp_path, "b", [0.2, 0.6])]
    pruned = prune(trials)
    assert pruned == (2, 200, 0) and pruned.deleted == 2 and pruned.freed_bytes == 200
    assert left(trials[0]) == ["checkpoint_000001", "checkpoint_000003"]
    assert left(trials[1]) == ["checkpoint_000000", "checkpoint_000001"]


def test_prune_keeps_the_best_trials_and_deletes_sharded_train_checkpoints(tmp_path):
    trials = [summary_trial(tmp_path, "a", [0.5, 0.1, 0.3]), summary_trial(tmp_path, "b", [0.2, 0.6])]
    target = tmp_path / "train" / "run" / "checkpoint_0"
    target.mkdir(parents=True)
    (target / "shard.bin").write_bytes(b"x" * 1000)
    write_pointer(Path(trials[1]["path"]) / "checkpoint_000002", str(target))
    pruned = prune(trials, mode="min", keep_best=1)
    assert pruned.deleted == 4 and pruned.freed_bytes > 1200
    assert left(trials[0]) == ["checkpoint_000001", "checkpoint_000002"] and left(trials[1]) == []
    assert not target.exists()


def test_prune_under_a_size_limit_reports_what_is_left_over(tmp_path):
    trials = [summary_trial(tmp_path, "a", [0.5, 0.1, 0.3]), summary_trial(tmp_path, "b", [0.2, 0.6])]
    pruned = prune(trials, mode="min", max_total_gb=50e-9)
    assert left(trials[0]) == ["checkpoint_000001"] and left(trials[1]) == []  # the sweep's best checkpoint stays
    assert pruned == (4, 400, 50)


def test_prune_needs_a_mode_to_rank():
    with pytest.raises(ValueError, match="mode"):
        prune([], keep_best=1)
