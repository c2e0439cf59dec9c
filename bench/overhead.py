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
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

TRIVIAL = '''
from ray import tune


def trivial(config):
    tune.report({"loss": (config["x"] - 0.3) ** 2})
'''


def timing_callback() -> Any:
    from ray.tune import Callback

    class Timing(Callback):
        def __init__(self) -> None:
            self.fit_started = time.monotonic()
            self.start: dict[str, float] = {}
            self.first: dict[str, float] = {}
            self.end: dict[str, float] = {}

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.start.setdefault(trial.trial_id, time.monotonic())

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.first.setdefault(trial.trial_id, time.monotonic())

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.end[trial.trial_id] = time.monotonic()

        def cold(self) -> float:
            """From fit() to the first result of the sweep: actor start, imports, setup."""
            return min(self.first.values()) - self.fit_started

        def warm(self) -> float:
            """Median, over trials after the first, from Tune starting the trial to its first result."""
            order = sorted(self.start, key=self.start.get)  # type: ignore[arg-type]
            return statistics.median(self.first[t] - self.start[t] for t in order[1:] if t in self.first)

    return Timing()


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
    import json

    from tuner.spec import load
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    steps = max(20, int(seconds * 20000 / (16 * 128)))  # ~20k tokens/s on one CPU thread for the 2-layer model
    spec = load(REPO / "jobs" / "quickstart.yaml", [
        f"storage={storage}", "name=one-llm-trial", "search.algorithm=random", "search.scheduler=fifo",
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
    return {"wall": wall, "train": train_s, "first_result": timing.cold(),
            "reports": len(rows), "tokens_per_s": rows[-1]["tokens_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--trial-seconds", type=float, default=60.0)
    ap.add_argument("--raw-defaults", type=int, default=0, metavar="N",
                    help="also N trials through raw Ray Tune with its defaults (a fresh actor per trial: slow)")
    args = ap.parse_args()

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
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
    print(f"\n(command: python bench/overhead.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
