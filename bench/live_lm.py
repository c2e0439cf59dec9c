"""The live tiny-LM check: real sweeps on one local Ray, the default preset against random+fifo, on the quickstart's
space and model at the scale of the lm-tab task (bench/lm_tab.py: sequences of 64 tokens, a full trial 108 steps at
the largest batch, evaluation on 4,096 tokens at each report).

    python bench/live_lm.py [--seeds 5] [--budget 12] [--json OUT]

Each seed runs random+fifo for ``budget`` full trials, then the default preset until it has spent the same compute;
two trials at a time in both. Compute is tokens trained plus tokens evaluated, counted from each report. Reported:
per seed, random+fifo's best val_loss and the fraction of its compute the default needed to reach it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lm_tab import EVAL_TOKENS, FULL_STEPS, SEQ_LEN, SPACE, WARMUP  # noqa: E402
from sim import Trace  # noqa: E402

STRATEGIES = {"random+fifo": {"algorithm": "random", "scheduler": "fifo"}, "default": {}}


def spec_raw(strategy: str, seed: int, trials: int, storage: Path) -> dict[str, Any]:
    return {
        "name": f"live-{strategy.replace('+', '_')}-{seed}", "storage": str(storage),
        "model": {"family": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 4},
        "data": {"source": "builtin:python-stdlib", "seq_len": SEQ_LEN},
        "train": {"max_steps": FULL_STEPS, "eval_every": FULL_STEPS // 9, "batch_size": 16, "warmup_steps": WARMUP,
                  "eval_tokens": EVAL_TOKENS, "seed": 0},
        "search": {**STRATEGIES[strategy], "metric": "val_loss", "mode": "min", "seed": seed, "max_concurrent": 2,
                   "num_trials": trials, "space": SPACE},
        "resources": {"cpus_per_worker": 1},
    }


def run(strategy: str, seed: int, budget_trials: float, storage: Path) -> Trace:
    from ray.tune import Callback, Stopper

    from tuner.spec import validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    trials = int(budget_trials) if strategy == "random+fifo" else 100 * int(budget_trials)
    spec = validate(spec_raw(strategy, seed, trials, storage), spec_dir=HERE)
    f = fidelity(spec)
    unit = f.max_t + EVAL_TOKENS * round(f.max_t / f.eval_interval)  # a full trial: its tokens and evaluations
    trace = Trace(budget_trials * unit)
    spent = [0.0]
    seen: dict[str, float] = {}

    class Record(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            tokens = float(result["tokens"])
            spent[0] += tokens - seen.get(trial.trial_id, 0.0) + EVAL_TOKENS
            seen[trial.trial_id] = tokens
            trace.points.append((spent[0], result["val_loss"] if tokens >= f.max_t else None))

    class Budget(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return spent[0] >= trace.budget

    trainable, data_dir = make_trainable(spec)
    grid = build_tuner(spec, f, trainable, data_dir, callbacks=[Record()], stop=Budget()).fit()
    trace.trials = len(grid)
    trace.unit = unit  # type: ignore[attr-defined]
    return trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=12, help="random+fifo's full trials")
    ap.add_argument("--json")
    args = ap.parse_args()
    import ray

    from tuner._util.rungs import HEDGE_TRIALS

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tuner-live-") as d:
        for seed in range(args.seeds):
            base = run("random+fifo", seed, args.budget, Path(d))
            target = base.best_at(base.budget)
            pooled = len(HEDGE_TRIALS)
            ours = run("default", seed, args.budget, Path(d))
            reach = ours.compute_to_reach(target)
            rows.append({"seed": seed, "random_fifo_best": target, "default_best": ours.best_at(ours.budget),
                         "fraction_to_reach": reach / base.budget if math.isfinite(reach) else None,
                         "default_trials": ours.trials, "random_trials": base.trials,
                         "default_hedge_pool": len(HEDGE_TRIALS) - pooled})
            r = rows[-1]
            frac = r["fraction_to_reach"]
            print(f"seed {seed}: random+fifo best {target:.4f} ({r['random_trials']} trials); default best "
                  f"{r['default_best']:.4f} ({r['default_trials']} trials, {r['default_hedge_pool']} in its hedge "
                  f"pool), reached random's best with {'n/r' if frac is None else f'{frac:.2f}'} of its compute "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    ray.shutdown()
    ok = sum(r["fraction_to_reach"] is not None and r["fraction_to_reach"] <= 1 / 3 for r in rows)
    print(f"\ndefault reached random+fifo's best with <= 1/3 of its compute on {ok} of {len(rows)} seeds")
    print("| seed | random+fifo best | default best | default's compute to reach it (fraction) |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        frac = r["fraction_to_reach"]
        print(f"| {r['seed']} | {r['random_fifo_best']:.4f} | {r['default_best']:.4f} | "
              f"{'n/r' if frac is None else f'{frac:.2f}'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"budget_full_trials": args.budget, "seeds": rows}, indent=1))


if __name__ == "__main__":
    main()
