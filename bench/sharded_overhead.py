"""What a sharded (Ray Train inside Tune) trial costs to start, against one plain Ray Train run of the same loop.

    python bench/sharded_overhead.py [--workers 2] [--parallel 2] [--repeats 2]

Runs, alternated --repeats times on one local Ray (with its dashboard, as sharded sweeps need):
1. one plain ``TorchTrainer.fit()`` of tuner's worker loop (the tiny LM, --workers gloo workers): the baseline;
2. a tuner sweep of one sharded trial with the same loop and workers;
3. a tuner sweep of --parallel such trials at once (Ray's own target: 8 parallel trials within 1.2x of one run).
Columns: time from fit() to the first result, and the whole wall time; ratios to the plain Train run. On a 2-core
machine parallel trials also share the CPUs, so their wall time measures contention as well as start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.overhead import timing_callback  # noqa: E402


def spec_raw(storage: Path, name: str, workers: int, trials: int, corpus: Path) -> dict[str, Any]:
    return {"name": name, "storage": str(storage),
            "model": {"family": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
            "data": {"seq_len": 32, "source": str(corpus)},
            "train": {"max_steps": 20, "eval_every": 10, "batch_size": 4, "warmup_steps": 2, "eval_tokens": 1024},
            "search": {"algorithm": "random", "scheduler": "fifo", "num_trials": trials, "seed": 0,
                       "space": {"train.lr": {"loguniform": [1.0e-3, 1.0e-2]}}},
            "resources": {"workers_per_trial": workers, "cpus_per_worker": 2 / (workers * trials)}}


def plain_train(spec: Any, storage: Path) -> tuple[float, float]:
    """One TorchTrainer.fit() of the trial's worker loop: (first result, wall) in seconds after fit()."""
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer
    from ray.train.v2.api.callback import UserCallback

    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import param_space, prepare_data
    from tuner.trial.entry import decode
    from tuner.trial.workers import _worker_loop, loop_config, scaling_config

    mark = storage / f"first-{time.monotonic_ns()}"

    class First(UserCallback):
        def after_report(self, run_context: Any, metrics: Any, checkpoint: Any) -> None:
            if not mark.exists():
                mark.write_text(str(time.time()))

    config = param_space(spec, fidelity(spec), prepare_data(spec))
    config["train"]["lr"] = 3.0e-3
    trial = decode(config)
    trainer = TorchTrainer(_worker_loop, train_loop_config=loop_config(trial.spec, trial.fidelity, trial.data_dir,
                                                                       None, "plain"),
                           scaling_config=scaling_config(spec.resources),
                           run_config=RunConfig(name=mark.name, storage_path=str(storage / "plain"),
                                                callbacks=[First()]))
    started = time.time()
    trainer.fit()
    wall = time.time() - started
    return float(mark.read_text()) - started, wall


def tuner_sweep(spec: Any) -> tuple[float, float]:
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.placement import fit_to_cluster
    from tuner.sweep.tuner import build_tuner, make_trainable

    spec = fit_to_cluster(spec)
    trainable, data_dir = make_trainable(spec)
    timing = timing_callback()
    started = time.monotonic()
    build_tuner(spec, fidelity(spec), trainable, data_dir, callbacks=[timing]).fit()
    return timing.cold(), time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import ray

    from tuner.spec import validate
    from tuner.sweep.tuner import start_embedded_ray
    from tuner.trial.data import stdlib_files

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_embedded_ray(dashboard=True)
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tuner-sharded-") as tmp:
        storage = Path(tmp)
        corpus = storage / "corpus.txt"
        corpus.write_text("\n".join(f.read_text(errors="replace") for f in stdlib_files()
                                    if f.parent.name == "json"))
        for i in range(args.repeats):
            one = validate(spec_raw(storage, f"one-{i}", args.workers, 1, corpus))
            many = validate(spec_raw(storage, f"many-{i}", args.workers, args.parallel, corpus))
            rows.setdefault("plain Ray Train run (TorchTrainer.fit)", []).append(plain_train(one, storage))
            rows.setdefault("tuner: 1 sharded trial", []).append(tuner_sweep(one))
            rows.setdefault(f"tuner: {args.parallel} sharded trials at once", []).append(tuner_sweep(many))
    ray.shutdown()

    base_first = statistics.mean(r[0] for r in rows["plain Ray Train run (TorchTrainer.fit)"])
    base_wall = statistics.mean(r[1] for r in rows["plain Ray Train run (TorchTrainer.fit)"])
    print(f"### Sharded trial start-up: {args.workers} gloo workers per trial, tiny LM, {os.cpu_count()} cores\n")
    print("| runner | runs | fit() to first result | ratio | wall | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in rows.items():
        first, wall = statistics.mean(r[0] for r in rs), statistics.mean(r[1] for r in rs)
        print(f"| {name} | {len(rs)} | {first:.1f} s | {first / base_first:.2f} | {wall:.1f} s | "
              f"{wall / base_wall:.2f} |")
    print(f"\n(command: python bench/sharded_overhead.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
