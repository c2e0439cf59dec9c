"""The offline tasks of bench/search.py: each is a search space, a fidelity with the grid where trials report, a
loss at any point of that grid, and the compute a stretch of training costs (evaluation included).

- ``mfh6``: the multi-fidelity Hartmann-6 of Kandasamy et al. (2017), as bench/objectives.py computes it.
- ``mfh6-good`` / ``mfh6-bad``: Hartmann-6 whose low fidelities are biased (the bumps' weights flattened by
  ``bias * (1 - z)^2``) and noisy (Gaussian noise of standard deviation ``noise * (1 - z)``), in the style of
  mf-prior-bench's mfh6 variants (closed forms written here: that package pins numpy<2): good (0.5, 0.1), bad
  (2.0, 0.4). At full fidelity each is Hartmann-6 itself (minimum -3.32237).
- ``lcbench:<OpenML task id>``: the YAHPO Gym surrogate of LCBench (34 tasks; 7 hyperparameters; 52 epochs), queried
  with onnxruntime from the folder given to ``--lcbench`` (default ../shared/bench-data/yahpo-lcbench). The loss is
  the validation error in percent; compute is the surrogate's training time.
- ``lm-tab``: the tabulated tiny LM of bench/lm_tab.py (256 Sobol configs of the quickstart space, each trained once
  with tuner's trial loop); a proposed config is answered by its nearest tabulated config (in the unit cube of the
  space, log scales for log ranges). Compute is tokens: trained, plus evaluated at each report.
- ``lm-interp``: the same table answered by inverse-distance weighting of the 8 nearest configs, a smooth surface
  through them. lm-tab answers every proposal near a tabulated config with that config's very curve, so a searcher
  that refines around its best configs runs them again and learns nothing; here a nearby config is a new one, as in a
  real sweep. Not among the default tasks (the issue names lm-tab); it shows what lm-tab's lookup costs a searcher.
- ``<task>/grid<N>``: the task on a finite space, each range a choice of N values (``on_a_grid``): searchers that
  propose a config twice spend compute on a curve they have seen.
- ``<task>/once``: the task as an objective that reports once, its final loss, with no ``max_t`` in the spec
  (``reporting_once``): one fidelity, as most Optuna objectives are.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from objectives import ALPHA, HARTMANN6_MIN, KEYS, A, P, mf_hartmann6

HERE = Path(__file__).resolve().parent
LCBENCH_DIR = HERE.parent.parent / "shared" / "bench-data" / "yahpo-lcbench"
LM_TAB = HERE / "data" / "lm-tab.json.gz"


@dataclass
class Task:
    name: str
    space: dict[str, Any]  # tuner's search-space dialect, plain names
    grid: list[float]  # where every trial reports (its fidelity, ascending); the last point is a full trial
    loss: Callable[[dict[str, Any], float, int], float]  # (config, fidelity, report index) -> loss, lower is better
    cost: Callable[[dict[str, Any], float, float], float]  # compute from one report's fidelity to the next
    optimum: float  # the best known loss at full fidelity (regret is measured against it)
    reference: float = math.nan  # the median full-fidelity loss of random configs (regret 1)
    full_cost: float = math.nan  # the mean compute of one full trial of a random config
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def max_t(self) -> float:
        return self.grid[-1]

    def calibrate(self, samples: int = 256) -> Task:
        """The reference loss and full-trial cost, from random configs (a fixed seed, the same for every run)."""
        rng = np.random.default_rng(12345)
        configs = [sample(self.space, rng) for _ in range(samples)]
        self.reference = float(np.median([self.loss(c, self.max_t, len(self.grid) - 1) for c in configs]))
        costs = []
        for c in configs:
            t0, total = 0.0, 0.0
            for t in self.grid:
                total += self.cost(c, t0, t)
                t0 = t
            costs.append(total)
        self.full_cost = float(np.mean(costs))
        return self


def sample(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, dim in space.items():
        (kind, args), = dim.items()
        if kind == "uniform":
            out[key] = float(rng.uniform(args[0], args[1]))
        elif kind == "loguniform":
            out[key] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        elif kind == "randint":
            out[key] = int(rng.integers(args[0], args[1]))
        elif kind == "choice":
            out[key] = args[int(rng.integers(len(args)))]
        else:
            raise ValueError(kind)
    return out


# --- Hartmann-6 ------------------------------------------------------------------------------------------------

HARTMANN_SPACE = {k: {"uniform": [0.0, 1.0]} for k in KEYS}
HARTMANN_STEPS = 27


def _noise(config: dict[str, Any], index: int, salt: str) -> float:
    """A standard normal draw fixed by the config and the report (the same query always answers the same)."""
    key = json.dumps([salt, index, [round(config[k], 12) for k in KEYS]]).encode()
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return float(np.random.default_rng(seed).standard_normal())


def biased_hartmann6(x: np.ndarray, z: float, bias: float) -> float:
    alpha = ALPHA - bias * (1.0 - z) ** 2
    return float(-np.sum(alpha * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))


def hartmann(name: str, bias: float | None = None, noise: float = 0.0) -> Task:
    grid = [float(i) for i in range(1, HARTMANN_STEPS + 1)]

    def loss(config: dict[str, Any], t: float, index: int) -> float:
        x = np.array([config[k] for k in KEYS])
        z = t / HARTMANN_STEPS
        if bias is None:
            return mf_hartmann6(x, z)
        return biased_hartmann6(x, z, bias) + noise * (1.0 - z) * _noise(config, index, name)

    return Task(name, HARTMANN_SPACE, grid, loss, lambda c, t0, t1: t1 - t0, HARTMANN6_MIN,
                notes={"bias": bias, "noise": noise})


# --- LCBench (YAHPO Gym surrogate) -----------------------------------------------------------------------------

LCBENCH_SPACE = {
    "batch_size": {"loguniform": [16, 512]},  # log-int in LCBench: rounded below
    "learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
    "momentum": {"uniform": [0.1, 0.99]},
    "weight_decay": {"uniform": [1.0e-5, 1.0e-1]},
    "num_layers": {"randint": [1, 6]},
    "max_units": {"loguniform": [64, 1024]},  # log-int: rounded below
    "max_dropout": {"uniform": [0.0, 1.0]},
}
LCBENCH_EPOCHS = 52


class Surrogate:
    """The LCBench surrogate: one onnxruntime session, answers cached per (config, epoch)."""

    def __init__(self, folder: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.encoding = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"]
        self.cache: dict[tuple, np.ndarray] = {}

    def curve(self, task_id: str, config: dict[str, Any]) -> np.ndarray:
        """(epochs, 2): the validation error (percent) and the cumulative time at epochs 1..52."""
        key = (task_id, *(round(float(config[k]), 10) for k in LCBENCH_SPACE))
        if key not in self.cache:
            epochs = np.arange(1, LCBENCH_EPOCHS + 1, dtype=np.float32)
            row = [round(config["batch_size"]), config["learning_rate"], config["momentum"], config["weight_decay"],
                   config["num_layers"], round(config["max_units"]), config["max_dropout"]]
            x_cont = np.column_stack([epochs, np.tile(np.array(row, np.float32), (len(epochs), 1))])
            x_cat = np.full((len(epochs), 1), self.encoding[task_id], np.int32)
            out = self.session.run(None, {"x_cat": x_cat, "x_cont": x_cont.astype(np.float32)})[0]
            self.cache[key] = np.column_stack([100.0 - out[:, 1], np.maximum.accumulate(np.maximum(out[:, 0], 0))])
        return self.cache[key]


_SURROGATES: dict[str, Surrogate] = {}


def lcbench(task_id: str, folder: Path) -> Task:
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"lcbench:{task_id} needs the YAHPO LCBench surrogate in {folder} (model.onnx, "
                         f"encoding.json): the lcbench folder of github.com/slds-lmu/yahpo_data; pass --lcbench DIR")
    surrogate = _SURROGATES.setdefault(str(folder), Surrogate(folder))
    if task_id not in surrogate.encoding:
        valid = ", ".join(k for k in surrogate.encoding if k != "#na#")
        raise SystemExit(f"lcbench:{task_id}: not an LCBench task; valid OpenML task ids: {valid}")
    grid = [float(e) for e in range(1, LCBENCH_EPOCHS + 1)]

    def loss(config: dict[str, Any], t: float, index: int) -> float:
        return float(surrogate.curve(task_id, config)[int(t) - 1, 0])

    def cost(config: dict[str, Any], t0: float, t1: float) -> float:
        times = surrogate.curve(task_id, config)[:, 1]
        return float(times[int(t1) - 1] - (times[int(t0) - 1] if t0 >= 1 else 0.0))

    rng = np.random.default_rng(7)  # the best known: the best of many random configs at full fidelity
    best = min(loss(sample(LCBENCH_SPACE, rng), LCBENCH_EPOCHS, 0) for _ in range(2000))
    return Task(f"lcbench:{task_id}", LCBENCH_SPACE, grid, loss, cost, best)


# --- the tabulated tiny LM -------------------------------------------------------------------------------------

def lm_tab(path: Path = LM_TAB, neighbours: int = 1) -> Task:
    if not path.is_file():
        raise SystemExit(f"lm-tab needs {path}: make it with `python bench/lm_tab.py` (about an hour on 2 cores)")
    with gzip.open(path, "rt") as f:
        table = json.load(f)
    space = table["space"]
    trials = [t for t in table["trials"] if t["seed"] == 0]
    keys = list(space)
    cube = np.array([_unit(space, t["config"]) for t in trials])
    curves = np.array([t["val_loss"] for t in trials])
    grid = [float(x) for x in trials[0]["tokens"]]
    eval_tokens = table["eval_tokens_per_report"]

    def loss(config: dict[str, Any], t: float, index: int) -> float:
        squared = ((cube - _unit(space, config)) ** 2).sum(axis=1)
        if neighbours == 1:
            return float(curves[int(np.argmin(squared)), index])
        near = np.argsort(squared)[:neighbours]
        weights = 1.0 / np.maximum(squared[near], 1e-12)  # inverse squared distance
        return float((weights * curves[near, index]).sum() / weights.sum())

    def cost(config: dict[str, Any], t0: float, t1: float) -> float:
        return t1 - t0 + eval_tokens

    return Task("lm-tab" if neighbours == 1 else "lm-interp", space, grid, loss, cost, float(curves[:, -1].min()),
                notes={"configs": len(trials), "keys": keys})


def _unit(space: dict[str, Any], config: dict[str, Any]) -> np.ndarray:
    out = []
    for key, dim in space.items():
        (kind, args), = dim.items()
        v = config[key]
        if kind == "loguniform":
            out.append((math.log(v) - math.log(args[0])) / (math.log(args[1]) - math.log(args[0])))
        elif kind == "uniform":
            out.append((v - args[0]) / (args[1] - args[0]))
        else:
            out.append(args.index(v) / max(1, len(args) - 1))
    return np.array(out)


def on_a_grid(task: Task, levels: int) -> Task:
    """The task on a finite space: each range becomes a choice of ``levels`` values, the midpoints of equal slices
    (on a log scale for log ranges; integer ranges rounded, repeats dropped). Choices stay as they are."""
    space: dict[str, Any] = {}
    for key, dim in task.space.items():
        (kind, args), = dim.items()
        mid = [(i + 0.5) / levels for i in range(levels)]
        if kind == "uniform":
            values = [args[0] + u * (args[1] - args[0]) for u in mid]
        elif kind == "loguniform":
            lo, hi = math.log(args[0]), math.log(args[1])
            values = [math.exp(lo + u * (hi - lo)) for u in mid]
        elif kind == "randint":
            values = sorted({round(args[0] + u * (args[1] - 1 - args[0])) for u in mid})
        else:
            values = list(args)
        space[key] = {"choice": values}
    return replace(task, name=f"{task.name}/grid{levels}", space=space)


def reporting_once(task: Task) -> Task:
    """The task as an objective that reports once (``def train(config): tune.report({...})``): each trial trains its
    whole length and reports its final loss at iteration 1, and the spec sets no ``max_t`` (a custom trainable's
    default then applies). The single report is a trial's full-length result; nothing can be stopped early."""
    full, last = task.max_t, len(task.grid) - 1

    def loss(config: dict[str, Any], t: float, i: int) -> float:
        return task.loss(config, full, last)

    def cost(config: dict[str, Any], t0: float, t1: float) -> float:
        return sum(task.cost(config, a, b) for a, b in zip([0.0, *task.grid[:-1]], task.grid, strict=True))

    return replace(task, name=f"{task.name}/once", grid=[1.0], loss=loss, cost=cost,
                   notes={**task.notes, "spec_max_t": None})


def make_task(name: str, lcbench_dir: Path = LCBENCH_DIR) -> Task:
    if name.endswith("/once"):
        return reporting_once(make_task(name.removesuffix("/once"), lcbench_dir)).calibrate()
    base, _, grid = name.partition("/grid")
    if grid:
        if not grid.isdigit() or int(grid) < 2:
            raise SystemExit(f"task {name!r}: /grid takes the number of values per dimension, 2 or more")
        return on_a_grid(make_task(base, lcbench_dir), int(grid)).calibrate()
    if name == "mfh6":
        task = hartmann("mfh6")
    elif name == "mfh6-good":
        task = hartmann(name, bias=0.5, noise=0.1)
    elif name == "mfh6-bad":
        task = hartmann(name, bias=2.0, noise=0.4)
    elif name.startswith("lcbench:"):
        task = lcbench(name.split(":", 1)[1], lcbench_dir)
    elif name == "lm-tab":
        task = lm_tab()
    elif name == "lm-interp":
        task = lm_tab(neighbours=8)
    else:
        raise SystemExit(f"unknown task {name!r}: mfh6, mfh6-good, mfh6-bad, lm-tab, lm-interp, "
                         "lcbench:<OpenML task id>, any of them /grid<N> and /once")
    return task.calibrate()
