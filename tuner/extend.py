"""`tuner extend NAME --trials N`: more trials for a finished sweep, the searcher warm-started with every past
observation (tuner.search.warm). The new trials run as a Tune experiment inside the sweep's directory
(``extend-K/``); summary.json, the leaderboard and the best model then cover every trial of the sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.spec import SpecError
from tuner.sweep import (
    SweepResult,
    _end_in_store,
    build_tuner,
    ended_trials,
    fit_to_cluster_or_stop,
    init_ray,
    load_summary,
    make_trainable,
    prune_ended,
    saved_spec,
    summarize,
    write_results,
)


def extend_sweep(sweep_dir: str | Path, trials: int, *, address: str | None = None, verbose: bool = False,
                 store: str | None = None) -> SweepResult:
    from rich.console import Console

    from tuner.budget import budget
    from tuner.progress import ProgressLine
    from tuner.recorder import StoreCallback
    from tuner.search import make_searcher
    from tuner.search.warm import WarmStarted
    from tuner.store import find_sweep, open_store, reopen_sweep

    d = Path(sweep_dir).expanduser().resolve()
    if not (d / "summary.json").is_file():
        raise SpecError([("name", f"{d} holds no finished sweep to extend (tuner resume finishes one whose driver "
                                  f"died)")])
    old = load_summary(d)
    if old.get("interrupted"):
        raise SpecError([("name", f"{d.name} was interrupted: tuner resume {d.name} finishes it first")])
    spec = saved_spec(d)
    if spec.search.algorithm == "grid":
        raise SpecError([("search.algorithm", "a grid sweep has run every combination; there is nothing to add")])
    k = 1 + sum(1 for _ in d.glob("extend-*"))
    past = [t for t in old["trials"] if t["value"] is not None]
    learns = spec.search.algorithm not in ("random",)
    points = [t["config"] for t in past] if learns else []
    ext = spec.model_copy(update={"storage": str(d), "name": f"extend-{k}", "search": spec.search.model_copy(
        update={"num_trials": trials, "points_to_evaluate": points + list(spec.search.points_to_evaluate)})})
    b = budget(spec)
    trainable, data_dir = make_trainable(spec)  # the corpus prepared for the sweep, from its cache
    searcher = make_searcher(ext)
    if learns:
        searcher = WarmStarted(searcher, [t["value"] for t in past], spec.search.metric, spec.search.mode)
    engine = open_store(store, d.parent)
    try:
        sweep_id = reopen_sweep(engine, spec.name) if find_sweep(engine, spec.name) else None
        started = init_ray(address, verbose, dashboard=spec.resources.workers_per_trial > 1)
        ext = fit_to_cluster_or_stop(ext, started)
        progress = ProgressLine(spec.search.metric, spec.search.mode, trials, console=Console(stderr=True))
        callbacks: list[Any] = [progress]
        if sweep_id is not None:
            callbacks.append(StoreCallback(engine, sweep_id, list(spec.search.space), nested=not spec.is_custom,
                                           time_attr=b.time_attr,
                                           max_t=None if spec.search.scheduler == "fifo" else b.max_t))
        try:
            grid = build_tuner(ext, b, trainable, data_dir, callbacks=callbacks, searcher=searcher).fit()
        finally:
            progress.close()
            if started:
                import ray

                ray.shutdown()
        new = summarize(ext, grid, b)
        summary = merged(old, new, spec.search.mode)
        summary["interrupted"] = ended_trials(grid) < trials
        if not summary["interrupted"]:  # the best K over the old trials and the new
            summary["compute"]["checkpoints_pruned"] = prune_ended(spec, summary["trials"])
        summary["extensions"] = [*old.get("extensions", []), {"dir": ext.name, "trials": trials,
                                                               "warm_start": len(points)}]
        best = summary["best"]
        if not spec.is_custom and best and best.get("checkpoint") and best != old.get("best"):
            from tuner.trial import export_model

            summary["best_model"] = str(export_model(best["checkpoint"], d / "best_model"))
        write_results(d, summary)
        _end_in_store(engine, sweep_id, summary=summary)
        return SweepResult(d, summary)
    finally:
        engine.dispose()


def merged(old: dict[str, Any], new: dict[str, Any], mode: str) -> dict[str, Any]:
    """One summary over the sweep's trials and an extension's."""
    trials = [*old["trials"], *new["trials"]]
    ranked = [t for t in trials if t["value"] is not None]
    better = min if mode == "min" else max
    best = better(ranked, key=lambda t: t["value"]) if ranked else None
    compute = {k: v + (new["compute"].get(k) or 0) if isinstance(v, (int, float)) else v
               for k, v in old["compute"].items()}  # the sweep's budget report stays its own
    return {**old, "trials": trials, "compute": compute,
            "best": {k: best[k] for k in ("trial_id", "config", "value", "checkpoint")} if best else None}
