"""Where a sweep is recorded: its directory (``<storage>/<name>``: Ray Tune's experiment, the saved spec, the
results) and its row in the sweep store. A sweep never lands on top of another one's results by accident."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tuner import store
from tuner._util import storage
from tuner.spec import Spec, SpecError, validate

SAVED_SPEC = "tuner_spec.json"


def check_destination(spec: Spec, overwrite: bool) -> None:
    """--overwrite deletes only a sweep; without it an existing sweep's directory is refused. A bucket is checked
    first (credentials, endpoint, the bucket itself): a StorageError names it before anything starts."""
    bucket = spec.bucket
    if bucket is not None:
        bucket.check()
        if not bucket.is_empty():
            if not overwrite:
                raise SpecError([("name", f"{bucket.uri} already holds a sweep; pass --overwrite to replace it, "
                                          f"or --set name=<another>")])
            if not bucket.exists(SAVED_SPEC):
                raise SpecError([("name", f"{bucket.uri} is not empty and holds no tuner sweep; refusing to delete "
                                          f"it (choose another name or storage)")])
        return
    d = spec.sweep_dir
    if not d.exists() or not any(d.iterdir()):
        return
    if not overwrite:
        raise SpecError([("name", f"{d} already holds a sweep; pass --overwrite to replace it, "
                                  f"or --set name=<another>")])
    if not is_sweep_dir(d):
        raise SpecError([("name", f"{d} is not empty and holds no tuner sweep; refusing to delete it "
                                  f"(choose another name or storage)")])


def is_sweep_dir(d: Path) -> bool:
    return ((d / "summary.json").is_file() or (d / "tuner.pkl").is_file() or (d / SAVED_SPEC).is_file()
            or any(d.glob("experiment_state-*.json")))


def save_spec(spec: Spec) -> None:
    """The validated spec beside the results, for `tuner resume` (absolute paths; the spec file may be gone)."""
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = spec.storage if spec.bucket is not None else str(spec.sweep_dir.parent)
    raw = {**spec.model_dump(mode="json", exclude_unset=True), "storage": storage}
    (spec.sweep_dir / SAVED_SPEC).write_text(json.dumps({"spec": raw, "spec_dir": spec.spec_dir}, indent=1))
    publish(spec, SAVED_SPEC)


DRIVER_FILES = (SAVED_SPEC, "summary.json", "leaderboard.csv", "budget.json")  # what the driver itself writes


def publish(spec: Spec, *names: str) -> None:
    """Copy files (or directories) the driver wrote in the sweep's directory to its bucket (a local sweep: none)."""
    bucket = spec.bucket
    if bucket is None:
        return
    for name in names:
        if (spec.sweep_dir / name).exists():
            bucket.upload(spec.sweep_dir / name, name)


def local_dir(where: str | Path) -> Path:
    """A sweep's local directory: the directory itself, or for a bucket URI (``s3://bucket/prefix/<name>``) the
    driver's mirror of it, refreshed with the driver's files from the bucket (the bucket alone holds the sweep)."""
    if not storage.is_remote(str(where)):
        return Path(where).expanduser().resolve()
    problem = storage.malformed(str(where))
    if problem:
        raise SpecError([("name", problem)])
    bucket = storage.Bucket(str(where).rstrip("/"))
    bucket.check()
    d = bucket.mirror()
    for name in DRIVER_FILES:
        if not bucket.download(name, d / name):
            (d / name).unlink(missing_ok=True)
    return d


def saved_spec(sweep_dir: Path) -> Spec:
    path = sweep_dir / SAVED_SPEC
    if not path.is_file():
        raise SpecError([("name", f"{sweep_dir} holds no sweep tuner can resume (no {SAVED_SPEC})")])
    saved = json.loads(path.read_text())
    return validate(saved["spec"], spec_dir=saved["spec_dir"], source=str(path))


def open_sweep_store(spec: Spec, url: str | None, overwrite: bool) -> tuple[Engine, bool]:
    """The sweep store's engine, and whether the store's record of an earlier sweep of this name is to be replaced:
    with --overwrite, or when it is the record of this very directory (whose results check_destination found gone).
    A sweep of this name elsewhere is a clash, refused before anything starts."""
    engine = store.open_store(url, spec.sweep_dir.parent)
    try:
        old = store.find_sweep(engine, spec.name)
    except BaseException:
        engine.dispose()
        raise
    if old is None or overwrite or old["storage"] == str(spec.sweep_dir):
        return engine, old is not None
    engine.dispose()
    raise SpecError([("name", f"the sweep store {store.safe_url(engine.url)} already holds a sweep named {spec.name} "
                              f"(results in {old['storage']}); pass --overwrite to replace it, "
                              f"or --set name=<another>")])


def reopen_in_store(engine: Engine, name: str, *, drop_errored: bool = False) -> int | None:
    """Mark a known sweep running again (resume, extend); its id, or None if this store never knew it. With
    ``drop_errored`` its errored trials go: Tune restarts them from scratch as new trials."""
    if store.find_sweep(engine, name) is None:
        return None
    if drop_errored:
        store.drop_errored_trials(engine, name)
    return store.reopen_sweep(engine, name)


def end_in_store(engine: Engine, sweep_id: int | None, status: str | None = None,
                 summary: dict[str, Any] | None = None) -> None:
    """Mark the sweep ended in the store (with its summary's outcome, when it has one); a store that fails here costs
    a warning, never the sweep's outcome (its results are in summary.json) nor the error that ended it."""
    if sweep_id is None:  # no record of it: the sweep failed before one was made, or this store never knew it
        return
    final = {"best": summary["best"], "trials": summary["trials"]} if summary else {}
    status = status or ("interrupted" if summary and summary["interrupted"] else "finished")
    try:
        store.finish_sweep(engine, sweep_id, status, **final)
    except Exception as e:
        logging.getLogger(__name__).warning("sweep store: could not mark the sweep %s: %s", status, e)


REPORT = "report.html"


def write_report(engine: Engine, name: str, sweep_dir: Path, spec: Spec | None = None) -> Path | None:
    """``report.html`` beside summary.json: the sweep's page as one offline file (tuner.view). A report that cannot
    be made costs a warning, never the sweep's outcome."""
    from tuner.view import figures, report_html

    try:
        sweep = store.sweep_detail(engine, name)
        path = Path(sweep_dir) / REPORT
        path.write_text(report_html(sweep, figures(sweep)), encoding="utf-8")
        if spec is not None:
            publish(spec, REPORT)
        return path
    except Exception as e:
        logging.getLogger(__name__).warning("could not write %s for sweep %s: %s", REPORT, name, e)
        return None


def sweep_from_dir(sweep_dir: Path) -> dict[str, Any]:
    """A finished sweep as ``store.sweep_detail`` gives it, read from its directory alone (summary.json, the saved
    spec, each trial's result.json): for a report of a sweep whose store is not at hand."""
    from datetime import datetime, timezone

    from tuner._util.objective import Objective
    from tuner.sweep.summary import RAY_BOOKKEEPING, load_summary

    summary = load_summary(sweep_dir)
    try:
        spec = json.loads((sweep_dir / SAVED_SPEC).read_text())["spec"]
    except (OSError, ValueError, KeyError):
        spec = {}
    objective = Objective(summary["metric"], summary["mode"])
    ranked = objective.ranked(summary["trials"], lambda t: t.get("value"), full=lambda t: t.get("state") == "completed")
    trials = []
    for rank, t in enumerate(ranked, 1):
        rows = []
        result_file = Path(t.get("path") or sweep_dir / f"trial_{t['trial_id']}") / "result.json"
        if result_file.is_file():
            for line in result_file.read_text().splitlines():
                row = {k: v for k, v in json.loads(line).items() if k not in RAY_BOOKKEEPING}
                stamp = row.get("timestamp")
                row["created_at"] = datetime.fromtimestamp(stamp, timezone.utc) if stamp else None
                rows.append(row)
        last = t.get("last_result") or {}
        trials.append({"rank": rank, "trial_id": t["trial_id"], "state": t.get("state"), "value": t.get("value"),
                       "config": t.get("config") or {}, "iterations": t.get("iterations"), "tokens": last.get("tokens"),
                       "seconds": last.get("time_total_s"), "checkpoint": t.get("checkpoint"), "error": t.get("error"),
                       "results": rows, "exploits": []})
    best = summary.get("best") or {}
    compute = summary.get("compute") or {}
    return {"name": summary["name"], "status": "interrupted" if summary.get("interrupted") else "finished",
            "metric": summary["metric"], "mode": summary["mode"], "storage": str(sweep_dir), "trials": len(trials),
            "running": 0, "best_trial_id": best.get("trial_id"), "best_value": best.get("value"),
            "compute": {k: compute.get(k) for k in ("trial_seconds", "iterations", "tokens")}, "created_at": None,
            "finished_at": None, "spec": spec, "leaderboard": trials}
