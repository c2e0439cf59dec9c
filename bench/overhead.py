"""What tuner costs on top of Ray Tune, and what a trial spends outside its training steps.

    python bench/overhead.py [--trials 1000] [--trial-seconds 60]

1. N trivial trials (one report each) through tuner, and through raw Ray Tune in the same run with
   reuse_actors=True as tuner runs them (and, with --raw-defaults M, M trials with Ray's defaults: a fresh actor
   per trial). Per-trial ratios to raw Ray.
2. Trial start latency: from fit() to the first result (cold: actor start, imports), and from Tune starting a trial
   to its first result for the trials after the first (a reused actor); for the LLM trial, fit() to its first
   evaluation (imports torch and transformers, builds the model, trains one evaluation interval).
3. One LLM trial sized to run about --trial-seconds: the fraction of its wall time (from fit() to the trial's end)
   spent outside training steps (actor start, imports, model build, evaluation, checkpoints, reporting).
4. The driver's resident memory over the N tuner trials: its growth from the 100th trial to the last.
5. The sweep store's size per report: two sweeps through tuner's driver (store on), of trials that report the LLM
   trial's metrics --store-reports times; the growth of the SQLite store (and of Tune's experiment directory) from
   the smaller sweep to the larger, per reported row.

With --json OUT it also runs a sharded trial against one plain Ray Train run (bench/sharded_overhead.py's runners)
and sweeps of 2-worker trials on a Ray that holds one at a time, whose trials rung-asha cuts or a spent budget
stops, watching their placement groups, and writes {"in_trial_overhead", "first_step_s", "sharded_ratio",
"driver_rss_growth_mb", "max_hold_s", "max_hold_s_by_stop", "store_bytes_per_report",
"experiment_bytes_per_report"}.
``first_step_s`` is an upper bound: fit() to the first result, less the first interval's training time (the first
evaluation and checkpoint stay in it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # bench.sharded_overhead, with --json

TRIVIAL = '''
from ray import tune


def trivial(config):
    tune.report({"loss": (config["x"] - 0.3) ** 2})


def llm_shaped(config):
    """Reports as many rows as asked, each with the LLM trial's metrics (bench/overhead.py's store figure)."""
    for i in range(1, config["reports"] + 1):
        loss = 5.0 / i + config["x"]
        tune.report({"step": 25 * i, "tokens": 51200 * i, "train_loss": loss + 0.01, "val_loss": loss,
                     "val_ppl": 2.718 ** loss, "lr": 3.0e-4 * config["x"], "tokens_per_s": 24000.0 + i,
                     "resumed_at_step": 0, "resumed_from": "", "world_size": 1, "wrapper": "none",
                     "params_total": 112448, "params_local": 112448})
'''


def timing_callback() -> Any:
    from ray.tune import Callback

    class Timing(Callback):
        def __init__(self) -> None:
            self.fit_started = time.monotonic()
            self.start: dict[str, float] = {}
            self.first: dict[str, float] = {}
            self.end: dict[str, float] = {}
            self.rss: list[float] = []  # the driver's, as each trial completes

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.start.setdefault(trial.trial_id, time.monotonic())

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.first.setdefault(trial.trial_id, time.monotonic())

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.end[trial.trial_id] = time.monotonic()
            self.rss.append(_rss_mb())

        def cold(self) -> float:
            """From fit() to the first result of the sweep: actor start, imports, setup."""
            return min(self.first.values()) - self.fit_started

        def warm(self) -> float:
            """Median, over trials after the first, from Tune starting the trial to its first result."""
            order = sorted(self.start, key=self.start.get)  # type: ignore[arg-type]
            return statistics.median(self.first[t] - self.start[t] for t in order[1:] if t in self.first)

        def rss_growth(self, after: int = 100) -> float:
            """MB the driver's resident memory grew from the ``after``-th completed trial to the last."""
            return self.rss[-1] - self.rss[min(after, len(self.rss)) - 1]

    return Timing()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tuner_trivial(n: int, storage: Path, spec_dir: Path) -> tuple[float, Any]:
    from tuner.spec import validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    spec = validate({"name": f"trivial-tuner-{time.time_ns()}", "storage": str(storage),
                     "trainable": "trivial_objective:trivial",
                     "search": {"metric": "loss", "algorithm": "random", "scheduler": "fifo", "num_trials": n,
                                "max_t": 1, "space": {"x": {"uniform": [0.0, 1.0]}}}}, spec_dir=spec_dir)
    trainable, data_dir = make_trainable(spec)
    tuner = build_tuner(spec, fidelity(spec), trainable, data_dir, callbacks=[timing := timing_callback()])
    started = timing.fit_started = time.monotonic()
    tuner.fit()
    return time.monotonic() - started, timing


def raw_ray_trivial(n: int, storage: Path, reuse: bool) -> tuple[float, Any]:
    import ray.cloudpickle
    from ray import tune

    sys.path.insert(0, str(storage))
    import trivial_objective  # type: ignore[import-not-found]

    ray.cloudpickle.register_pickle_by_value(trivial_objective)  # workers need not find it on their path
    trivial = trivial_objective.trivial

    timing = timing_callback()
    tuner = tune.Tuner(trivial, param_space={"x": tune.uniform(0.0, 1.0)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=n, reuse_actors=reuse),
                       run_config=tune.RunConfig(name=f"trivial-raw-{reuse}-{time.time_ns()}",
                                                 storage_path=str(storage), callbacks=[timing], verbose=0))
    started = timing.fit_started = time.monotonic()
    tuner.fit()
    return time.monotonic() - started, timing


def llm_trial(seconds: float, storage: Path) -> dict[str, float]:
    """One LLM trial of about ``seconds``: where its wall time went."""

    from tuner.spec import load
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    steps = max(20, int(seconds * 20000 / (16 * 128)))  # ~20k tokens/s on one CPU thread for the 2-layer model
    spec = load(REPO / "jobs" / "quickstart.yaml", [
        f"storage={storage}", "name=one-llm-trial", "search.preset=null", "search.algorithm=random",
        "search.scheduler=fifo",
        "search.num_trials=1", "search.max_concurrent=1", f"train.max_steps={steps}",
        f"train.eval_every={max(1, steps // 8)}", "search.space={train.lr: {loguniform: [1.0e-3, 3.0e-3]}}"])
    trainable, data_dir = make_trainable(spec)
    tuner = build_tuner(spec, fidelity(spec), trainable, data_dir, callbacks=[timing := timing_callback()])
    timing.fit_started = time.monotonic()
    tuner.fit()
    (trial_id,) = timing.end
    wall = timing.end[trial_id] - timing.fit_started
    (result,) = (spec.sweep_dir).glob("trial_*/result.json")
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    train_s, previous = 0.0, 0
    for r in rows:
        train_s += (r["tokens"] - previous) / r["tokens_per_s"]
        previous = r["tokens"]
    first_interval = rows[0]["tokens"] / rows[0]["tokens_per_s"]
    return {"wall": wall, "train": train_s, "first_result": timing.cold(), "first_step": timing.cold() - first_interval,
            "reports": len(rows), "tokens_per_s": rows[-1]["tokens_per_s"]}


def store_per_report(storage: Path, reports: int) -> dict[str, float]:
    """Bytes per reported row: the store (SQLite, with its WAL) and Tune's experiment directory, each as its growth
    from a sweep of 20 trials to one of 120, over the rows the larger sweep added."""
    from tuner.spec import validate
    from tuner.sweep.driver import run_sweep

    def sweep(trials: int) -> tuple[int, int, int]:
        root = storage / f"store-{trials}"
        spec = validate({"name": f"store-{trials}", "storage": str(root), "trainable": "trivial_objective:llm_shaped",
                         "search": {"metric": "val_loss", "algorithm": "random", "scheduler": "fifo",
                                    "num_trials": trials, "max_t": reports,
                                    "space": {"x": {"uniform": [0.0, 1.0]}, "reports": {"choice": [reports]}}}},
                        spec_dir=storage)
        run_sweep(spec)
        db = sum(f.stat().st_size for f in root.glob("tuner.db*"))
        experiment = sum(f.stat().st_size for f in spec.sweep_dir.rglob("*") if f.is_file())
        return trials * reports, db, experiment

    small, large = sweep(20), sweep(120)
    rows = large[0] - small[0]
    return {"store_bytes_per_report": (large[1] - small[1]) / rows,
            "experiment_bytes_per_report": (large[2] - small[2]) / rows}


def sharded_ratio(storage: Path) -> float:
    """Wall time of a tuner sweep of one 2-worker trial over one plain Ray Train run of the same loop."""
    from bench.sharded_overhead import plain_train, spec_raw, tuner_sweep
    from tuner.spec import validate

    corpus = _corpus(storage)
    _, plain = plain_train(validate(spec_raw(storage, "plain", 2, 1, corpus)), storage)
    _, sharded = tuner_sweep(validate(spec_raw(storage, "sharded", 2, 1, corpus)))
    return sharded / plain


# A PBT exploit's stop is measured by tests/integration/test_sharded.py::test_pbt_exploits_two_worker_fsdp_trials:
# an exploit needs two trials at once, kept in step.
HOLD_STOPS = ("asha", "budget")


def hold_times(storage: Path, stop: str) -> list[float]:
    """Seconds each Train run kept its placement group after its last report, in a sweep of 2-worker trials (1 CPU
    each, on 2 CPUs: one at a time, so the groups and the runs pair up in order) whose trials ``stop`` ends:

    - asha: three trials, rung-asha cuts the two with a useless learning rate at their first rung;
    - budget: a CPU budget that runs out during the first trial's run.
    """
    sys.path.insert(0, str(REPO / "tests"))
    from support import PlacementGroupWatch, train_run_ends  # type: ignore[import-not-found]

    from tuner.spec import validate
    from tuner.sweep.driver import run_sweep

    lrs = {"asha": [1.0e-2, 1.0e-6, 1.0e-6], "budget": [1.0e-2, 1.0e-2]}[stop]
    search = {"asha": {"scheduler": "rung-asha"}, "budget": {"scheduler": "fifo"}}[stop]
    spec = validate({"name": f"hold-{stop}", "storage": str(storage),
                     "model": {"family": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                     "data": {"seq_len": 32, "source": str(_corpus(storage))},
                     "train": {"max_steps": 54, "eval_every": 18, "batch_size": 4, "warmup_steps": 0,
                               "eval_tokens": 1024},
                     "search": {"algorithm": "random", "num_trials": len(lrs), **search,
                                "space": {"train.lr": {"choice": sorted(set(lrs))}},
                                "points_to_evaluate": [{"train.lr": lr} for lr in lrs]},
                     **({"budget": {"cpu_hours": 16 / 3600}} if stop == "budget" else {}),
                     "resources": {"workers_per_trial": 2, "cpus_per_worker": 1}})
    with PlacementGroupWatch() as watch:
        result = run_sweep(spec)
        deadline = time.monotonic() + 60
        while not all("REMOVED" in r for r in watch.runs(bundles=2)) and time.monotonic() < deadline:
            time.sleep(0.1)
    groups = watch.runs(bundles=2)
    # Each Train run's last report; one run at a time, so in the order the runs started.
    runs = sorted(train_run_ends(json.loads(line) for t in result.trials
                                 for line in (Path(t["path"]) / "result.json").read_text().splitlines()).values())
    if len(runs) != len(groups):
        raise RuntimeError(f"{stop}: {len(runs)} Train runs reported but {len(groups)} placement groups were seen")
    return [group.get("REMOVED", math.inf) - at for group, at in zip(groups, runs, strict=True)]


def _corpus(storage: Path) -> Path:
    from tuner.trial.data import stdlib_files

    corpus = storage / "corpus.txt"
    if not corpus.is_file():
        corpus.write_text("\n".join(f.read_text(errors="replace") for f in stdlib_files() if f.parent.name == "json"))
    return corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--trial-seconds", type=float, default=60.0)
    ap.add_argument("--raw-defaults", type=int, default=0, metavar="N",
                    help="also N trials through raw Ray Tune with its defaults (a fresh actor per trial: slow)")
    ap.add_argument("--store-reports", type=int, default=20, metavar="R", help="reports per trial, store figure")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also the sharded trial's figures; write all as JSON")
    args = ap.parse_args()

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # With the dashboard, as sharded sweeps start it (Ray Train frees a dead run's placement group through it).
    from tuner.sweep.tuner import start_embedded_ray

    start_embedded_ray(dashboard=bool(args.json))
    with tempfile.TemporaryDirectory(prefix="tuner-overhead-") as tmp:
        storage = Path(tmp)
        (storage / "trivial_objective.py").write_text(TRIVIAL)
        # Alternate the runners, twice each, so warm-up and machine noise fall on both.
        runs: dict[str, list[tuple[int, float, Any]]] = {}
        for _ in range(2):
            runs.setdefault("raw Ray Tune (reuse_actors=True)", []).append(
                (args.trials, *raw_ray_trivial(args.trials, storage, True)))
            runs.setdefault("tuner", []).append((args.trials, *tuner_trivial(args.trials, storage, storage)))
        if args.raw_defaults:
            runs["raw Ray Tune (defaults: an actor per trial)"] = [
                (args.raw_defaults, *raw_ray_trivial(args.raw_defaults, storage, False))]
        llm = llm_trial(args.trial_seconds, storage)
        store = store_per_report(storage, args.store_reports)
        sharded: dict[str, Any] = {}
        if args.json:
            holds = {stop: max(hold_times(storage, stop)) for stop in HOLD_STOPS}
            sharded = {"sharded_ratio": sharded_ratio(storage), "max_hold_s": max(holds.values()),
                       "max_hold_s_by_stop": holds}
    ray.shutdown()

    def per_trial(name: str) -> float:
        return statistics.mean(wall / n for n, wall, _ in runs[name])

    base = per_trial("raw Ray Tune (reuse_actors=True)")
    print(f"### Trivial trials (one report each), {os.cpu_count()} cores, one local Ray\n")
    print("| runner | trials x runs | s per trial | ratio to raw Ray (reuse) | first result after fit() | "
          "trial start to first result (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in runs.items():
        cold = statistics.mean(t.cold() for _, _, t in rs)
        warm = statistics.mean(t.warm() for _, _, t in rs)
        print(f"| {name} | {rs[0][0]} x {len(rs)} | {per_trial(name):.3f} | {per_trial(name) / base:.2f} | "
              f"{cold:.2f} s | {warm:.3f} s |")
    outside = 1 - llm["train"] / llm["wall"]
    print(f"\n### One LLM trial through tuner (quickstart model, {llm['reports']} reports)\n")
    print("| wall s (fit() to trial end) | in training steps s | outside training steps | first result after fit() |")
    print("|---:|---:|---:|---:|")
    print(f"| {llm['wall']:.1f} | {llm['train']:.1f} | {outside:.1%} | {llm['first_result']:.1f} s |")
    growth = max(t.rss_growth() for _, _, t in runs["tuner"])
    print(f"\nThe driver's resident memory over {args.trials} tuner trials grew {growth:.1f} MB after the 100th "
          f"(the larger of {len(runs['tuner'])} runs).")
    print(f"\nThe sweep store grew {store['store_bytes_per_report']:.0f} bytes per reported row (Tune's experiment "
          f"directory {store['experiment_bytes_per_report']:.0f}), trials reporting the LLM trial's metrics "
          f"{args.store_reports} times.")
    if args.json:
        figures = {"in_trial_overhead": outside, "first_step_s": llm["first_step"], "driver_rss_growth_mb": growth,
                   **sharded, **store}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"\n{json.dumps(figures)}")
    print(f"\n(command: python bench/overhead.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
