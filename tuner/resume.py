"""`tuner resume`: finish a sweep whose driver died (SIGKILL, a lost head process, Ctrl+C).

Ray Tune restores the experiment from its directory: the searcher's and scheduler's state, every trial's status and
latest checkpoint. Trials that were running continue from their checkpoints; finished and errored trials are never
run again; the searcher goes on suggesting until the sweep's trial count is reached. The sweep store's callback is
restored with the experiment and keeps recording (a result replayed after the restore replaces its row).
"""

from __future__ import annotations

from pathlib import Path

from tuner.spec import SpecError
from tuner.sweep import (
    SweepResult,
    _end_in_store,
    finish,
    fit_to_cluster_or_stop,
    init_ray,
    is_sweep_dir,
    make_trainable,
    param_space,
    saved_spec,
    with_trial_resources,
)


def resume_sweep(sweep_dir: str | Path, *, address: str | None = None, verbose: bool = False,
                 store: str | None = None) -> SweepResult:
    from ray import tune

    from tuner.budget import budget
    from tuner.store import find_sweep, open_store, reopen_sweep

    d = Path(sweep_dir).expanduser().resolve()
    if not is_sweep_dir(d) or not (d / "tuner.pkl").is_file():
        raise SpecError([("name", f"{d} holds no sweep to resume")])
    spec = saved_spec(d)
    if spec.sweep_dir != d:  # moved since it ran: its results now live here
        spec = spec.model_copy(update={"storage": str(d.parent), "name": d.name})
    b = budget(spec)
    trainable, data_dir = make_trainable(spec)
    engine = open_store(store, d.parent)
    try:
        record = find_sweep(engine, spec.name)
        sweep_id = reopen_sweep(engine, spec.name) if record is not None else None
        started = init_ray(address, verbose, dashboard=spec.resources.workers_per_trial > 1)
        spec = fit_to_cluster_or_stop(spec, started)
        try:
            tuner = tune.Tuner.restore(str(d), trainable=with_trial_resources(trainable, spec),
                                       resume_unfinished=True, resume_errored=False, restart_errored=False,
                                       param_space=param_space(spec, b, data_dir))
            grid = tuner.fit()
        finally:
            if started:
                import ray

                ray.shutdown()
        summary = finish(spec, grid, b)
        _end_in_store(engine, sweep_id, summary=summary)
        return SweepResult(d, summary)
    finally:
        engine.dispose()



