"""How fast does the dashboard answer on a big store? A SQLite store of 100 sweeps x 50 trials x 30 reports (150,000
result rows), the dashboard served by uvicorn on loopback, each endpoint asked N times (median and worst, ms).

    python bench/dashboard.py [--sweeps 100 --trials 50 --reports 30 --repeat 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support import DashboardServer  # noqa: E402

from tuner import store  # noqa: E402
from tuner.store.engine import now  # noqa: E402


def fill(engine: object, sweeps: int, trials: int, reports: int) -> None:
    """Bulk rows, as many sweep drivers would have written them one by one."""
    t0 = now()
    with engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(insert(store.Sweep), [
            {"id": i + 1, "name": f"sweep-{i:03d}", "spec": {}, "storage": f"/sweeps/sweep-{i:03d}",
             "status": "finished", "metric": "val_loss", "mode": "min", "created_at": t0 + timedelta(seconds=i),
             "best_trial_id": "t0", "best_value": 2.0} for i in range(sweeps)])
        c.execute(insert(store.Trial), [
            {"id": s * trials + k + 1, "sweep_id": s + 1, "trial_id": f"t{k}", "status": "completed",
             "config": {"train.lr": 1e-3 * (k + 1), "model.num_layers": 1 + k % 4}, "value": 2.0 + k / 100,
             "iterations": reports, "generation": 0, "tokens": 1000 * reports, "seconds": 60.0,
             "started_at": t0, "updated_at": t0} for s in range(sweeps) for k in range(trials)])
        rows = []
        for pk in range(1, sweeps * trials + 1):
            for it in range(1, reports + 1):
                rows.append({"trial_pk": pk, "generation": 0, "training_iteration": it, "created_at": t0,
                             "metrics": {"training_iteration": it, "tokens": 1000 * it, "time_total_s": 2.0 * it,
                                         "val_loss": 5 - it / 10 + pk % 7 / 10}})
            if len(rows) >= 20_000:
                c.execute(insert(store.Result), rows)
                rows = []
        if rows:
            c.execute(insert(store.Result), rows)


def timed(port: int, path: str, repeat: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
            size = len(r.read())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweeps", type=int, default=100)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--reports", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        engine = store.open_store(None, d)
        started = time.perf_counter()
        fill(engine, args.sweeps, args.trials, args.reports)
        print(f"store: {args.sweeps} sweeps x {args.trials} trials x {args.reports} reports "
              f"({args.sweeps * args.trials * args.reports:,} result rows) filled in "
              f"{time.perf_counter() - started:.1f} s, "
              f"{(Path(d) / store.DB_FILE).stat().st_size / 1e6:.0f} MB")
        mid = f"sweep-{args.sweeps // 2:03d}"
        paths = {"GET /api/sweeps": "/api/sweeps", "GET /api/sweeps/{name}": f"/api/sweeps/{mid}",
                 "GET /api/sweeps/{name}/view (figures)": f"/api/sweeps/{mid}/view", "GET / (page)": "/"}
        results = {}
        with DashboardServer(engine) as server:
            print(f"\n| endpoint | median ms | worst ms (of {args.repeat}) | bytes |\n|---|---:|---:|---:|")
            for label, path in paths.items():
                med, worst, size = timed(server.port, path, args.repeat)
                results[label] = {"median_ms": round(med, 1), "worst_ms": round(worst, 1), "bytes": size}
                print(f"| {label} | {med:.1f} | {worst:.1f} | {size:,} |")
        engine.dispose()
    if args.json:
        args.json.write_text(json.dumps({"store": vars(args) | {"json": None}, "endpoints": results}, indent=2))


if __name__ == "__main__":
    main()
