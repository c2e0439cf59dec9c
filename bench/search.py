"""How much compute does each search strategy need to reach a good config? Strategies at an equal compute budget,
side by side with the peer "Optuna default" (Optuna's own study.optimize, TPESampler + MedianPruner).

    python bench/search.py --quick    # < 10 minutes on 2 cores: Hartmann 5 seeds, LM 3 seeds x 4 strategies + peer
    python bench/search.py            # Hartmann 10 seeds, bigger budgets, every strategy on the LM too (~1 hour)

Objectives:
  (a) multi-fidelity Hartmann-6 (bench/objectives.py), 27 fidelity steps a trial (quick: 9), over 10 seeds (quick: 5);
  (b) the real tiny-LM sweep on the built-in corpus (jobs/quickstart.yaml, smaller), over >= 3 seeds.

Every tuner strategy runs through tuner itself (its spec, searchers, schedulers and trial), on one local Ray.
Compute is counted per report (a Hartmann iteration; an LM evaluation interval of tokens) in the order results
arrive; a sweep stops once it has spent the budget. A strategy's incumbent at any point is its best result at full
fidelity so far (a trial that ran its whole budget). Columns: the median over seeds of the incumbent at the budget,
and the compute a strategy needed to first match random search's final incumbent of the same seed, as a fraction of
random's compute (n/r: not reached within the budget; the median is over the seeds, with n/r counted as infinite).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from objectives import KEYS, mf_hartmann6  # noqa: E402

STRATEGIES: dict[str, dict[str, Any]] = {
    "random+fifo": {"algorithm": "random", "scheduler": "fifo"},  # Ray Tune's default
    "grid": {"algorithm": "grid", "scheduler": "fifo"},
    "tpe+fifo": {"algorithm": "tpe", "scheduler": "fifo"},
    "bayesopt+fifo": {"algorithm": "bayesopt", "scheduler": "fifo"},
    "random+asha": {"algorithm": "random", "scheduler": "asha"},
    "tpe+asha": {"preset": "asha-tpe"},
    "hyperband+tpe": {"preset": "hyperband-tpe"},
    "pbt": {"preset": "pbt"},
}
PEER = "optuna default (TPE+Median)"
QUICK_LM = ("random+fifo", "random+asha", "tpe+asha", "pbt")


# --- compute accounting -----------------------------------------------------------------------------------------

@dataclass
class Trace:
    """Reports in arrival order: (compute so far, value if at full fidelity else None)."""

    budget: float
    spent: float = 0.0
    points: list[tuple[float, float | None]] = field(default_factory=list)

    def add(self, cost: float, value: float | None) -> None:
        if self.spent < self.budget:
            self.spent += cost
            self.points.append((self.spent, value))

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def best_at(self, compute: float) -> float:
        values = [v for c, v in self.points if c <= compute + 1e-9 and v is not None]
        return min(values) if values else math.inf

    def compute_to_reach(self, target: float) -> float:
        best = math.inf
        for c, v in self.points:
            if v is not None:
                best = min(best, v)
            if best <= target + 1e-12:
                return c
        return math.inf


def recorder(trace: Trace, cost: Any, full: Any, value_key: str) -> tuple[Any, Any]:
    """A Tune callback that feeds the trace, and a stopper that ends the sweep when the budget is spent."""
    from ray.tune import Callback, Stopper

    class Record(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            trace.add(cost(result), float(result[value_key]) if full(result) else None)

    class Budget(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return trace.exhausted

    return Record(), Budget()


def run_tuner(raw: dict[str, Any], spec_dir: Path, trace: Trace, cost: Any, full: Any, value_key: str) -> None:
    from tuner.spec import validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    spec = validate(raw, spec_dir=spec_dir)
    trainable, data_dir = make_trainable(spec)
    record, stop = recorder(trace, cost, full, value_key)
    build_tuner(spec, fidelity(spec), trainable, data_dir, callbacks=[record], stop=stop).fit()


# --- (a) multi-fidelity Hartmann-6 ------------------------------------------------------------------------------

def hartmann_tuner(strategy: str, seed: int, budget_trials: int, max_t: int, storage: Path) -> Trace:
    trace = Trace(budget_trials * max_t)
    search = dict(STRATEGIES[strategy])
    grid = strategy == "grid"
    space = {k: ({"choice": [0.25, 0.75]} if grid else {"uniform": [0.0, 1.0]}) for k in KEYS}
    fifo = search.get("scheduler") == "fifo" or strategy in ("grid", "pbt")
    search.update(metric="loss", mode="min", seed=seed, max_concurrent=2, max_t=max_t, time_attr="i", space=space,
                  num_trials=budget_trials if fifo else 10 * budget_trials)
    if strategy == "pbt":
        search["perturbation_interval"] = 3
    if strategy == "hyperband+tpe":  # its paused trials count against max_concurrent: let its bracket fill
        from tuner.spec.fidelity import hyperband_bracket_size

        search["max_concurrent"] = hyperband_bracket_size(max_t, search.get("reduction_factor", 3.0))
    pauses = strategy in ("pbt", "hyperband+tpe")  # these restore trials from checkpoints
    if search.get("scheduler") == "asha" or search.get("preset") == "asha-tpe":
        search.update(grace_period=1, reduction_factor=3)
    raw = {"name": f"hartmann-{strategy.replace('+', '_')}-{seed}", "storage": str(storage),
           "trainable": f"objectives:train_hartmann_{max_t}{'_checkpointed' if pauses else ''}", "search": search,
           "resources": {"cpus_per_worker": 0.5}}  # two sweeps at a time, two trials each, on two cores
    run_tuner(raw, HERE, trace, lambda r: r["cost"], lambda r: r["i"] >= max_t, "true_loss")
    return trace


def hartmann_optuna(seed: int, budget_trials: int, max_t: int) -> Trace:
    import optuna

    trace = Trace(budget_trials * max_t)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner())

    def objective(trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(k, 0.0, 1.0) for k in KEYS])
        value = math.inf
        for i in range(1, max_t + 1):
            if trace.exhausted:
                study.stop()
                raise optuna.TrialPruned()
            value = mf_hartmann6(x, i / max_t)
            trace.add(1.0, value if i == max_t else None)
            trial.report(value, i)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    while not trace.exhausted:
        study.optimize(objective, n_trials=1)
    return trace


# --- (b) the tiny LM on the built-in corpus ---------------------------------------------------------------------

LM = {"data": {"seq_len": 64}, "model": {"hidden_size": 64, "num_heads": 4},
      "train": {"max_steps": 60, "eval_every": 10, "warmup_steps": 5, "eval_tokens": 8192}}
LM_SPACE = {"train.lr": {"loguniform": [1.0e-4, 3.0e-2]}, "train.batch_size": {"choice": [8, 16, 32]},
            "train.weight_decay": {"loguniform": [1.0e-4, 1.0e-1]}, "model.num_layers": {"choice": [1, 2]},
            "model.dropout": {"uniform": [0.0, 0.2]}}
LM_PBT_SPACE = {k: v for k, v in LM_SPACE.items() if k != "model.num_layers"}  # PBT cannot change the architecture


def lm_raw(strategy: str, seed: int, budget_trials: int, storage: Path) -> dict[str, Any]:
    from tuner._util.yamlio import loads

    raw = loads((REPO / "jobs" / "quickstart.yaml").read_text())
    for section, values in LM.items():
        raw[section].update(values)
    search = dict(STRATEGIES[strategy])
    fifo = search.get("scheduler") == "fifo" or strategy in ("grid", "pbt")
    space = LM_PBT_SPACE if strategy == "pbt" else LM_SPACE
    if strategy == "grid":
        space = {"train.lr": {"choice": [1e-3, 3e-3, 1e-2]}, "train.batch_size": {"choice": [8, 32]},
                 "model.num_layers": {"choice": [1, 2]}}
    raw["search"] = {**search, "metric": "val_loss", "mode": "min", "seed": seed, "max_concurrent": 1,
                     "space": space, "num_trials": budget_trials if fifo else 10 * budget_trials}
    raw.update(name=f"lm-{strategy.replace('+', '_')}-{seed}", storage=str(storage))
    return raw


def lm_tuner(strategy: str, seed: int, budget_trials: int, storage: Path) -> Trace:
    from tuner.spec import validate
    from tuner.spec.fidelity import fidelity

    raw = lm_raw(strategy, seed, budget_trials, storage)
    b = fidelity(validate(raw, spec_dir=REPO / "jobs"))
    trace = Trace(budget_trials * b.max_t)
    run_tuner(raw, REPO / "jobs", trace, lambda r: b.eval_interval, lambda r: r["tokens"] >= b.max_t, "val_loss")
    return trace


def lm_optuna(seed: int, budget_trials: int, storage: Path) -> Trace:
    """Optuna's own loop around the same trial code (tuner.trial.loop.fit), in this process."""
    import optuna

    from tuner.spec import TrialSpec, validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import prepare_data
    from tuner.trial.loop import fit

    raw = lm_raw("random+fifo", seed, budget_trials, storage)
    spec = validate(raw, spec_dir=REPO / "jobs")
    b = fidelity(spec)
    data_dir = prepare_data(spec)
    trace = Trace(budget_trials * b.max_t)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner())

    class Pruned(Exception):
        pass

    def objective(trial: optuna.Trial) -> float:
        params = {"train.lr": trial.suggest_float("train.lr", 1e-4, 3e-2, log=True),
                  "train.batch_size": trial.suggest_categorical("train.batch_size", [8, 16, 32]),
                  "train.weight_decay": trial.suggest_float("train.weight_decay", 1e-4, 1e-1, log=True),
                  "model.num_layers": trial.suggest_categorical("model.num_layers", [1, 2]),
                  "model.dropout": trial.suggest_float("model.dropout", 0.0, 0.2)}
        tree = {sec: getattr(spec, sec).model_dump() for sec in TrialSpec.model_fields}
        for key, value in params.items():
            sec, _, name = key.partition(".")
            tree[sec][name] = value
        last: list[float] = []

        def report(metrics: dict, _checkpoint: Path) -> None:
            if trace.exhausted:
                raise Pruned
            full = metrics["tokens"] >= b.max_t
            trace.add(b.eval_interval, metrics["val_loss"] if full else None)
            last.append(metrics["val_loss"])
            trial.report(metrics["val_loss"], metrics["tokens"])
            if trial.should_prune():
                raise Pruned

        try:
            fit(TrialSpec.model_validate(tree), b, data_dir, report)
        except Pruned:
            if trace.exhausted:
                study.stop()
            raise optuna.TrialPruned() from None
        return last[-1]

    while not trace.exhausted:
        study.optimize(objective, n_trials=1)
    return trace


# --- the table --------------------------------------------------------------------------------------------------

def table(title: str, traces: dict[str, list[Trace]]) -> str:
    random_final = [t.best_at(t.budget) for t in traces["random+fifo"]]
    peer_final = [t.best_at(t.budget) for t in traces[PEER]]
    lines = [f"### {title}", "",
             "| strategy | median best loss at the budget | compute to reach random's final best "
             "(median, fraction of random's) | seeds that reached it | seeds better than the Optuna peer |",
             "|---|---:|---:|---:|---:|"]
    for name, runs in traces.items():
        finals = [t.best_at(t.budget) for t in runs]
        best = statistics.median(finals)
        fractions = [t.compute_to_reach(target) / t.budget for t, target in zip(runs, random_final, strict=True)]
        frac = statistics.median(fractions)
        reached = sum(math.isfinite(f) for f in fractions)
        beats = "-" if name == PEER else f"{sum(a < b for a, b in zip(finals, peer_final, strict=True))}/{len(runs)}"
        lines.append(f"| {name} | {best:.4f} | {'n/r' if math.isinf(frac) else f'{frac:.2f}'} | "
                     f"{reached}/{len(runs)} | {beats} |")
    return "\n".join(lines)


# --- running: sweeps two at a time, each in a worker process that drives the one Ray cluster -----------------------

def _connect(address: str) -> None:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # No TensorBoard files: each trial's writer is a thread and a queue, and in a long-lived driver that runs many
    # sweeps they pile up (sweeps ran ~4x slower). tuner's JSON and CSV result loggers stay.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    logging.getLogger("optuna").setLevel(logging.WARNING)
    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)


def job(kind: str, strategy: str, seed: int, budget: int, max_t: int, storage: str, lm_steps: int) -> Trace:
    """One strategy on one seed (in a worker process). The peer runs its own loop, outside Ray."""
    LM["train"]["max_steps"] = lm_steps
    if kind == "hartmann":
        if strategy == PEER:
            return hartmann_optuna(seed, budget, max_t)
        return hartmann_tuner(strategy, seed, budget, max_t, Path(storage))
    if strategy == PEER:
        return lm_optuna(seed, budget, Path(storage))
    return lm_tuner(strategy, seed, budget, Path(storage))


def run_all(address: str, jobs: list[tuple], started: float) -> dict[tuple[str, str], list[Trace]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    traces: dict[tuple[str, str], list[Trace]] = {}
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn"), initializer=_connect,
                             initargs=(address,)) as pool:
        futures = {pool.submit(job, *j): j for j in jobs}
        for n, (future, j) in enumerate(futures.items(), 1):
            traces.setdefault((j[0], j[1]), []).append(future.result())
            print(f"[{n}/{len(jobs)}] {j[0]} {j[1]} seed {j[2]} ({time.monotonic() - started:.0f}s)", file=sys.stderr)
    return traces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the < 10 minute version")
    ap.add_argument("--seeds", type=int, help="Hartmann seeds (default 10; quick 5)")
    ap.add_argument("--lm-seeds", type=int, default=3, help="LM seeds")
    ap.add_argument("--budget", type=int, help="Hartmann budget in full trials (default 40; quick 16)")
    ap.add_argument("--max-t", type=int, choices=(9, 27), help="Hartmann iterations a trial (default 27; quick 9)")
    ap.add_argument("--lm-budget", type=int, help="LM budget in full trials (default 8; quick 4)")
    ap.add_argument("--skip-lm", action="store_true")
    ap.add_argument("--skip-hartmann", action="store_true")
    args = ap.parse_args()
    seeds = args.seeds or (5 if args.quick else 10)
    budget = args.budget or (16 if args.quick else 40)
    max_t = args.max_t or (9 if args.quick else 27)
    lm_budget = args.lm_budget or (4 if args.quick else 8)
    lm_steps = 30 if args.quick else 60
    lm_strategies = QUICK_LM if args.quick else tuple(STRATEGIES)

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    context = ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
        jobs = []
        if not args.skip_hartmann:
            jobs += [("hartmann", name, seed, budget, max_t, tmp, lm_steps)
                     for seed in range(seeds) for name in (*STRATEGIES, PEER)]
        if not args.skip_lm:
            jobs += [("lm", name, seed, lm_budget, max_t, tmp, lm_steps)
                     for seed in range(args.lm_seeds) for name in (*lm_strategies, PEER)]
        traces = run_all(context.address_info["address"], jobs, started)
    ray.shutdown()
    out = []
    if not args.skip_hartmann:
        out.append(table(f"Multi-fidelity Hartmann-6 (optimum -3.3224): {seeds} seeds, {max_t} iterations a "
                         f"trial, budget {budget} full trials ({budget * max_t} iterations)",
                         {name: traces[("hartmann", name)] for name in (*STRATEGIES, PEER)}))
    if not args.skip_lm:
        out.append(table(f"Tiny LM (llama, 1-2 layers, hidden 64, seq 64, {lm_steps} steps at the largest batch) on "
                         f"the built-in corpus, val_loss: {args.lm_seeds} seeds, budget {lm_budget} full trials of "
                         f"tokens", {name: traces[("lm", name)] for name in (*lm_strategies, PEER)}))
    print("\n\n".join(out))
    print(f"\n(wall {time.monotonic() - started:.0f}s on {os.cpu_count()} cores; command: python bench/search.py "
          f"{' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
