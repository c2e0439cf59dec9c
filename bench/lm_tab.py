"""Build the tabulated tiny-LM task of bench/search.py (``lm-tab``): Sobol configs of the quickstart space, each
trained once by tuner's own trial loop, with its validation loss at 27 evenly spaced token points.

    python bench/lm_tab.py [--configs 256] [--noise 32] [--workers 2] [--out bench/data/lm-tab.json.gz]

The model is the quickstart's (llama, hidden 64, 4 heads; layers tuned) at a smaller scale so that hundreds of
trials fit in an hour on two cores: sequences of 64 tokens, a full trial is 108 steps at the largest batch (32), so
221,184 tokens whatever batch size a config drew (tokens are the fidelity), warmup 4 steps, evaluation on 4,096
held-out tokens at each report. The data is the built-in corpus (the standard library's sources). ``--noise``
configs are trained a second time with another seed, to show the noise of a single run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

SPACE = {  # the quickstart's five hyperparameters (jobs/quickstart.yaml)
    "train.lr": {"loguniform": [1.0e-4, 3.0e-2]},
    "train.batch_size": {"choice": [8, 16, 32]},
    "train.weight_decay": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.num_layers": {"choice": [1, 2, 4]},
    "model.dropout": {"uniform": [0.0, 0.2]},
}
SEQ_LEN, MAX_BATCH, FULL_STEPS, POINTS, EVAL_TOKENS, WARMUP = 64, 32, 108, 27, 4096, 4
MAX_TOKENS = FULL_STEPS * MAX_BATCH * SEQ_LEN


def sobol_configs(n: int, seed: int = 0) -> list[dict]:
    from scipy.stats import qmc

    u = qmc.Sobol(d=len(SPACE), scramble=True, seed=seed).random(n)
    out = []
    for row in u:
        config = {}
        for x, (key, dim) in zip(row, SPACE.items(), strict=True):
            (kind, args), = dim.items()
            if kind == "loguniform":
                config[key] = float(math.exp(math.log(args[0]) + x * (math.log(args[1]) - math.log(args[0]))))
            elif kind == "uniform":
                config[key] = float(args[0] + x * (args[1] - args[0]))
            else:
                config[key] = args[min(int(x * len(args)), len(args) - 1)]
        out.append(config)
    return out


def _data_dir() -> str:
    from tuner.spec import ModelSpec
    from tuner.trial.data import prepare
    from tuner.trial.model import build_tokenizer

    cache = Path(tempfile.gettempdir()) / "tuner-bench-data"
    return str(prepare(["builtin:python-stdlib"], build_tokenizer(ModelSpec()), cache, val_fraction=0.05).path)


def train_one(job: tuple[int, dict, int, str]) -> dict:
    """One config trained to the full token budget; its curve at the POINTS report points."""
    import torch

    from tuner.spec import DataSpec, ModelSpec, ResourcesSpec, TrainSpec, TrialSpec
    from tuner.spec.fidelity import Fidelity
    from tuner.trial.loop import fit

    index, config, seed, data_dir = job
    torch.set_num_threads(1)
    spec = TrialSpec(
        model=ModelSpec(hidden_size=64, num_heads=4, num_layers=config["model.num_layers"],
                        dropout=config["model.dropout"]),
        data=DataSpec(seq_len=SEQ_LEN),
        train=TrainSpec(max_steps=FULL_STEPS, batch_size=config["train.batch_size"], lr=config["train.lr"],
                        weight_decay=config["train.weight_decay"], warmup_steps=WARMUP, eval_tokens=EVAL_TOKENS,
                        seed=seed),
        resources=ResourcesSpec(cpus_per_worker=1))
    interval = MAX_TOKENS / POINTS
    reports: list[dict] = []
    start = time.perf_counter()
    fit(spec, Fidelity("tokens", MAX_TOKENS, interval, interval), data_dir, lambda m, d: reports.append(m))
    return {"index": index, "config": config, "seed": seed, "tokens": [r["tokens"] for r in reports],
            "val_loss": [r["val_loss"] for r in reports], "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=256)
    ap.add_argument("--noise", type=int, default=32, help="configs trained again with seed 1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "data" / "lm-tab.json.gz"))
    args = ap.parse_args()
    data_dir = _data_dir()
    configs = sobol_configs(args.configs)
    jobs = [(i, c, 0, data_dir) for i, c in enumerate(configs)]
    jobs += [(i, configs[i], 1, data_dir) for i in range(0, args.configs, max(1, args.configs // args.noise))]
    started = time.perf_counter()
    rows = []
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for n, row in enumerate(pool.imap_unordered(train_one, jobs), 1):
            rows.append(row)
            if n % 16 == 0 or n == len(jobs):
                print(f"{n}/{len(jobs)} trained, {time.perf_counter() - started:.0f} s", flush=True)
    rows.sort(key=lambda r: (r["seed"], r["index"]))
    out = {"space": SPACE, "metric": "val_loss", "max_tokens": MAX_TOKENS, "eval_tokens_per_report": EVAL_TOKENS,
           "seq_len": SEQ_LEN, "points": POINTS, "warmup_tokens": WARMUP * MAX_BATCH * SEQ_LEN,
           "made_by": "python bench/lm_tab.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                             if k != "out"),
           "trials": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {args.out}: {len(rows)} trials in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
