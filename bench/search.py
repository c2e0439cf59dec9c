"""How much compute does each search strategy need to reach a good config? Strategies side by side on offline
tasks, through a simulator that drives the very searcher and scheduler objects tuner's sweeps build (bench/sim.py),
with two trials at a time and one report grid for every strategy.

    python bench/search.py                                   # every offline task, 20 seeds, budget 64 full trials
    python bench/search.py --tasks mfh6,lcbench:3945 --seeds 20 --json results.json
    python bench/search.py --quick                           # mfh6 and mfh6-bad, 5 seeds: a minute or two

Tasks (bench/tasks.py): mfh6, mfh6-good, mfh6-bad, lm-tab, lcbench:<OpenML task id> (34 tasks; --lcbench DIR), and
lm-interp, any of them on a finite space, e.g. mfh6/grid3, and any of them as an objective that reports once,
e.g. mfh6/once (not by default).
Strategies: ``default`` (the default preset, mf-tpe: tuner's multi-fidelity TPE with its rung-based ASHA),
random+fifo (Ray Tune's default), random+asha, asha-tpe (the old default: HyperOpt TPE with Ray's ASHA), and Optuna's
own TPESampler with HyperbandPruner (the pairing Optuna recommends) and with MedianPruner. Not by default, searchers
without early stopping: ``fifo`` (a lone ``scheduler: fifo``, whose partner is mftpe), tpe+fifo (HyperOpt's TPE) and
``optuna tpe`` (Optuna's TPESampler, no pruner).

Compute is what trials spent until the budget (B full trials of a random config; training and evaluation). A
strategy's incumbent is its best loss at full fidelity so far. Reported per task:
- speedup: B divided by the median over seeds of the compute a strategy needed to reach random+fifo's pooled
  median final incumbent at B (0: not reached within B in most seeds);
- win rate of each strategy against each other at B (ties count half), with a Wilson 95% interval;
- average rank (1 = best) at B/8, B/4, B/2 and B;
- a PNG per task: normalized regret (0 = the best known loss, 1 = a random config's median; shown from 1e-3, and
  as 1 until a strategy has a full-length result) against compute, median and interquartile range over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sim import OptunaStrategy, Trace, TunerStrategy, simulate  # noqa: E402
from tasks import LCBENCH_DIR, make_task  # noqa: E402

BASELINE = "random+fifo"
STRATEGIES: dict[str, dict[str, Any]] = {
    "default": {},  # no algorithm or scheduler: the default preset
    "random+fifo": {"algorithm": "random", "scheduler": "fifo"},
    "random+asha": {"algorithm": "random", "scheduler": "asha"},
    "asha-tpe": {"preset": "asha-tpe"},
    "optuna tpe+hyperband": {"optuna": "hyperband"},
    "optuna tpe+median": {"optuna": "median"},
    # Without early stopping: a lone fifo gets its partner searcher (mftpe), against HyperOpt's and Optuna's TPE.
    "fifo": {"scheduler": "fifo"},
    "tpe+fifo": {"algorithm": "tpe", "scheduler": "fifo"},
    "optuna tpe": {"optuna": "none"},
}
DEFAULT_STRATEGIES = tuple(s for s in STRATEGIES if s not in ("fifo", "tpe+fifo", "optuna tpe"))
DEFAULT_TASKS = ("mfh6", "mfh6-good", "mfh6-bad", "lm-tab", "lcbench:3945", "lcbench:7593", "lcbench:34539",
                 "lcbench:126025", "lcbench:189909")
FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1)


def run_one(job: tuple[str, str, int, float, str]) -> tuple[str, str, int, Trace, float]:
    task_name, strategy, seed, budget_trials, lcbench = job
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    task = _task(task_name, lcbench)
    options = STRATEGIES[strategy]
    started = time.perf_counter()
    if "optuna" in options:
        runner: Any = OptunaStrategy(task, options["optuna"], seed, workers=2)
    else:
        runner = TunerStrategy(task, options, seed, workers=2)
    trace = simulate(task, runner, budget_trials * task.full_cost, workers=2)
    return task_name, strategy, seed, trace, time.perf_counter() - started


_TASKS: dict[str, Any] = {}


def _task(name: str, lcbench: str) -> Any:
    if name not in _TASKS:
        _TASKS[name] = make_task(name, Path(lcbench))
    return _TASKS[name]


def wilson(wins: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def analyse(task: Any, traces: dict[str, list[Trace]], budget_trials: float) -> dict[str, Any]:
    unit = task.full_cost
    budget = budget_trials * unit
    names = list(traces)
    finals = {s: [t.best_at(budget) for t in traces[s]] for s in names}
    target = statistics.median(finals[BASELINE])
    speedup, reach = {}, {}
    for s in names:
        costs = sorted(t.compute_to_reach(target) for t in traces[s])
        median = _median(costs)
        reach[s] = median / unit
        speedup[s] = round(budget / median, 3) if math.isfinite(median) and median > 0 else 0.0
    win_rate, win_ci = {}, {}
    for s in names:
        win_rate[s], win_ci[s] = {}, {}
        for p in names:
            if p == s:
                continue
            wins = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a, b in zip(finals[s], finals[p], strict=True))
            n = len(finals[s])
            win_rate[s][p] = round(wins / n, 3)
            win_ci[s][p] = [round(x, 3) for x in wilson(wins, n)]
    ranks = {}
    for frac in FRACTIONS:
        per_seed = []
        for i in range(len(traces[BASELINE])):
            values = [traces[s][i].best_at(frac * budget) for s in names]
            per_seed.append(_ranks(values))
        ranks[f"B/{round(1 / frac)}" if frac < 1 else "B"] = {
            s: round(float(np.mean([r[j] for r in per_seed])), 2) for j, s in enumerate(names)}
    regret = {s: round(_median([_regret(task, v) for v in finals[s]]), 4) for s in names}
    return {"target": target, "speedup": speedup, "compute_to_target": {s: round(v, 3) for s, v in reach.items()},
            "win_rate": win_rate, "win_rate_ci95": win_ci, "average_rank": ranks, "median_final_regret": regret,
            "median_final_loss": {s: round(statistics.median(finals[s]), 5) for s in names},
            "trials_per_run": {s: round(statistics.mean(t.trials for t in traces[s]), 1) for s in names},
            "optimum": task.optimum, "reference": task.reference, "full_trial_cost": unit}


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    if n == 0:
        return math.inf
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2  # inf-safe


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _regret(task: Any, value: float) -> float:
    span = task.reference - task.optimum
    return (value - task.optimum) / span if span > 0 and math.isfinite(value) else math.inf


def table(task_name: str, result: dict[str, Any], seeds: int, budget: float) -> str:
    names = list(result["speedup"])
    lines = [f"### {task_name}: {seeds} seeds, budget B = {budget:g} full trials; target = random+fifo's median final "
             f"{result['target']:.4g}",
             "",
             "| strategy | speedup | compute to target (full trials) | median final regret | win rate vs default "
             "(95% CI) | win rate vs optuna tpe+hyperband | avg rank B/8, B/4, B/2, B | trials |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in names:
        sp = result["speedup"][s]
        vs_default = "-" if s == "default" else (
            f"{result['win_rate'][s]['default']:.2f} ({result['win_rate_ci95'][s]['default'][0]:.2f}-"
            f"{result['win_rate_ci95'][s]['default'][1]:.2f})")
        vs_optuna = "-" if s == "optuna tpe+hyperband" else f"{result['win_rate'][s]['optuna tpe+hyperband']:.2f}"
        rank = ", ".join(f"{result['average_rank'][k][s]:.1f}" for k in result["average_rank"])
        reach = result["compute_to_target"][s]
        lines.append(f"| {s} | {sp:.1f}x | {'n/r' if not math.isfinite(reach) else f'{reach:.1f}'} | "
                     f"{result['median_final_regret'][s]:.3f} | {vs_default} | {vs_optuna} | {rank} | "
                     f"{result['trials_per_run'][s]:.0f} |")
    d = result["win_rate"]["default"]
    lo, hi = result["win_rate_ci95"]["default"]["optuna tpe+hyperband"]
    lines.append("")
    lines.append(f"default beats optuna tpe+hyperband on {d['optuna tpe+hyperband']:.0%} of seeds (95% CI "
                 f"{lo:.0%}-{hi:.0%}); speedup over random+fifo's B: {result['speedup']['default']:.1f}x")
    return "\n".join(lines)


def plot(task: Any, traces: dict[str, list[Trace]], budget_trials: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = task.full_cost
    xs = np.geomspace(0.5, budget_trials, 120)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, runs in traces.items():
        # No full-length result yet counts as regret 1 (a random config's); below the best known shows as 1e-3.
        curves = np.array([[min(_regret(task, t.best_at(x * unit)), 1.0) for x in xs] for t in runs])
        curves = np.clip(curves, 1e-3, None)
        med = np.median(curves, axis=0)
        lo, hi = np.percentile(curves, 25, axis=0), np.percentile(curves, 75, axis=0)
        line, = ax.plot(xs, med, label=s, lw=2 if s == "default" else 1.2)
        ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute (full trials of a random config)")
    ax.set_ylabel("normalized regret (median, IQR)")
    ax.set_title(f"{task.name}: {len(next(iter(traces.values())))} seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def real_ray(strategies: list[str], budget_trials: float, lcbench: str) -> None:
    """The integration check: each tuner strategy once on mfh6 (seed 0) through real Ray Tune sweeps (tuner's own
    Tuner, a trial per Ray actor, two at a time), beside the simulator's run of the same seed."""
    import logging
    import os
    import tempfile

    import ray
    from ray.tune import Callback, Stopper

    from tuner._util.rungs import HEDGE_TRIALS
    from tuner.spec import validate
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.tuner import build_tuner, make_trainable

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    task = make_task("mfh6", Path(lcbench))
    budget = budget_trials * task.full_cost
    print(f"### real Ray Tune against the simulator: mfh6, seed 0, budget {budget_trials:g} full trials\n")
    print("| strategy | simulator best | real Ray best | simulator trials | real Ray trials | simulator hedge pool | "
          "real Ray hedge pool |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in strategies:
        if "optuna" in STRATEGIES[name]:
            continue
        pooled = len(HEDGE_TRIALS)
        sim_trace = simulate(task, TunerStrategy(task, STRATEGIES[name], 0, workers=2), budget)
        sim_hedge, pooled = len(HEDGE_TRIALS) - pooled, len(HEDGE_TRIALS)
        trace = Trace(budget)

        class Record(Callback, Stopper):
            """Records each report's compute and full-fidelity loss; ends the sweep once the budget is spent."""

            def __init__(self, trace: Trace):
                self.trace, self.spent = trace, 0.0

            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                self.spent += result["cost"]
                self.trace.points.append((self.spent, result["loss"] if result["t"] >= task.max_t else None))

            def __call__(self, trial_id: str, result: dict) -> bool:
                return False

            def stop_all(self) -> bool:
                return self.spent >= self.trace.budget

        with tempfile.TemporaryDirectory() as d:
            raw = {"name": "real", "storage": d, "trainable": "objectives:train_hartmann",
                   "search": {"metric": "loss", "mode": "min", "seed": 0, "space": task.space, "time_attr": "t",
                              "max_t": task.max_t, "num_trials": 10_000, "max_concurrent": 2, **STRATEGIES[name]}}
            spec = validate(raw, spec_dir=HERE)
            trainable, _ = make_trainable(spec)
            record = Record(trace)
            grid = build_tuner(spec, fidelity(spec), trainable, None, callbacks=[record], stop=record).fit()
        print(f"| {name} | {sim_trace.best_at(budget):.4f} | {trace.best_at(budget):.4f} | {sim_trace.trials} | "
              f"{len(grid)} | {sim_hedge} | {len(HEDGE_TRIALS) - pooled} |", flush=True)
    ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=float, default=64, help="B, in full trials of a random config")
    ap.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plots", default=str(HERE / "results"), help="a PNG per task goes here ('' for none)")
    ap.add_argument("--lcbench", default=str(LCBENCH_DIR), help="the YAHPO LCBench surrogate's folder")
    ap.add_argument("--procs", type=int, default=2, help="processes running simulations at once")
    ap.add_argument("--quick", action="store_true", help="mfh6 and mfh6-bad, 5 seeds")
    ap.add_argument("--real-ray", type=float, metavar="B", help="instead: each tuner strategy once through real Ray "
                                                                "Tune on mfh6, B full trials, beside the simulator")
    args = ap.parse_args()
    tasks = ["mfh6", "mfh6-bad"] if args.quick else [t for t in args.tasks.split(",") if t]
    seeds = 5 if args.quick else args.seeds
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGIES:
            raise SystemExit(f"unknown strategy {s!r}; valid: {', '.join(STRATEGIES)}")
    for s in (BASELINE, "default", "optuna tpe+hyperband"):
        if s not in strategies:
            strategies.insert(0, s)
    if args.real_ray:
        return real_ray(strategies, args.real_ray, args.lcbench)
    for name in tasks:
        make_task(name, Path(args.lcbench))  # fail early on an unknown task or missing data
    jobs = [(t, s, seed, args.budget, args.lcbench) for t in tasks for seed in range(seeds) for s in strategies]
    started = time.perf_counter()
    traces: dict[str, dict[str, list[Trace | None]]] = {t: {s: [None] * seeds for s in strategies} for t in tasks}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    with mp.get_context("spawn").Pool(args.procs) as pool:
        for n, (t, s, seed, trace, secs) in enumerate(pool.imap_unordered(run_one, jobs), 1):
            traces[t][s][seed] = trace
            seconds[s] += secs
            if n % 20 == 0 or n == len(jobs):
                print(f"[{n}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"budget_full_trials": args.budget, "seeds": seeds, "concurrency": 2, "tasks": {},
                           "command": "python bench/search.py " + " ".join(sys.argv[1:])}
    for t in tasks:
        task = make_task(t, Path(args.lcbench))
        done = {s: [x for x in runs if x is not None] for s, runs in traces[t].items()}
        result = analyse(task, done, args.budget)  # type: ignore[arg-type]
        out["tasks"][t] = result
        print(table(t, result, seeds, args.budget))
        print()
        if args.plots:
            Path(args.plots).mkdir(parents=True, exist_ok=True)
            png = Path(args.plots) / f"{t.replace(':', '-').replace('/', '-')}.png"
            plot(task, done, args.budget, png)  # type: ignore[arg-type]
            print(f"plot: {png}\n")
    print(f"wall {time.perf_counter() - started:.0f} s; simulator seconds per strategy: "
          + ", ".join(f"{s} {v:.0f}" for s, v in seconds.items()))
    if args.json:  # strict JSON: a target never reached is null, not Infinity
        Path(args.json).write_text(json.dumps(_finite(out), indent=1))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


if __name__ == "__main__":
    main()
