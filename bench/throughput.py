"""Tokens/s of tuner's LLM trial loop vs a plain PyTorch loop on the same model, data and threads.

    python bench/throughput.py [--steps 60] [--repeats 3] [--batch 16] [--layers 2] [--hidden 64] [--threads 1]
                               [--compile] [--profile] [--sync-check]

Both run in this process, interleaved (A B A B ...) so machine noise hits both alike; the table gives the median
tokens/s of each and their ratio. The trial's figure is its own ``tokens_per_s`` (training steps only, evaluation
and checkpoints excluded), and its evaluation + checkpoint overhead is shown separately. On a GPU both loops run
in bf16 autocast (the trial's ``mixed_precision: auto``). ``--compile`` compiles the model in both loops
(``train.compile``); the plain loop's AdamW is torch's default (foreach), the trial's is fused where torch has it.
``--profile`` prints, for each loop, the operators that took the most device (or CPU) time over one run, to see
where the trial's steps differ from the plain ones; ``--sync-check`` (CUDA) counts the host syncs torch reports
during one trial (``torch.cuda.set_sync_debug_mode``): one per report is expected (the reported loss).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tuner.spec import DataSpec, ModelSpec, ResourcesSpec, TrainSpec, TrialSpec
from tuner.spec.fidelity import Fidelity
from tuner.trial.data import TokenData, prepare
from tuner.trial.loop import fit
from tuner.trial.model import build_model, build_tokenizer


def plain_loop(spec: TrialSpec, data: TokenData, steps: int) -> float:
    t = spec.train
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(t.seed)
    model = build_model(spec.model, seq_len=spec.data.seq_len, tokenizer=build_tokenizer(spec.model)).to(device)
    if t.compile:
        model.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        x = torch.from_numpy(data.batch(t.seed, step, 0, t.batch_size, spec.data.seq_len)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    return steps * t.batch_size * spec.data.seq_len / (time.perf_counter() - start)


def tuner_loop(spec: TrialSpec, data_dir: Path, steps: int) -> tuple[float, float]:
    """(training tokens/s as the trial reports it, wall seconds spent outside training steps)."""
    reports = []
    start = time.perf_counter()
    fit(spec, Fidelity("step", steps, steps, steps), data_dir, lambda m, d: reports.append(m))
    wall = time.perf_counter() - start
    tps = reports[-1]["tokens_per_s"]
    train_s = steps * spec.train.batch_size * spec.data.seq_len / tps
    return tps, wall - train_s


def profile(spec: TrialSpec, data: TokenData, data_dir: Path, steps: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    for name, run in (("plain PyTorch", lambda: plain_loop(spec, data, steps)),
                      ("tuner trial (fit, with its one evaluation and checkpoint)",
                       lambda: tuner_loop(spec, data_dir, steps))):
        with torch_profile(activities=activities) as prof:
            run()
        print(f"\n#### {name}: {steps} steps, top operators by {sort}\n")
        print(prof.key_averages().table(sort_by=sort, row_limit=20))


def sync_check(spec: TrialSpec, data_dir: Path, steps: int) -> None:
    import warnings

    if not torch.cuda.is_available():
        print("sync check: needs CUDA")
        return
    reports: list[dict] = []
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(spec, Fidelity("step", steps, steps // 2, steps // 2), data_dir, lambda m, d: reports.append(m))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    print(f"sync check: {len(syncs)} host syncs over {steps} steps and {len(reports)} reports (set-up, evaluation and "
          f"checkpoints included)")
    for line, count in sorted({m: syncs.count(m) for m in syncs}.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {count} x {line}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="train.compile in both loops")
    ap.add_argument("--profile", action="store_true", help="the top operators of each loop")
    ap.add_argument("--sync-check", action="store_true", help="count the trial's host syncs (CUDA)")
    args = ap.parse_args()

    spec = TrialSpec(model=ModelSpec(hidden_size=args.hidden, num_layers=args.layers, num_heads=4),
                     data=DataSpec(seq_len=args.seq_len),
                     train=TrainSpec(max_steps=args.steps, eval_every=args.steps, batch_size=args.batch,
                                     warmup_steps=min(10, args.steps - 1), compile=args.compile),
                     resources=ResourcesSpec(cpus_per_worker=args.threads))
    cache = Path(tempfile.gettempdir()) / "tuner-bench-data"
    data_dir = prepare(["builtin:python-stdlib"], build_tokenizer(spec.model), cache, val_fraction=0.05).path
    data = TokenData(data_dir)
    torch.set_num_threads(args.threads)

    plain, ours, outside = [], [], []
    plain_loop(spec, data, 5)  # warm up allocator and kernels (and, with --compile, fill the compile cache)
    if args.compile:
        tuner_loop(spec, data_dir, 5)
    for _ in range(args.repeats):
        plain.append(plain_loop(spec, data, args.steps))
        tps, extra = tuner_loop(spec, data_dir, args.steps)
        ours.append(tps)
        outside.append(extra)
    p, o = statistics.median(plain), statistics.median(ours)
    cuda = torch.cuda.is_available()
    where = f"{torch.cuda.get_device_name()}, bf16 autocast" if cuda else f"CPU, {args.threads} thread(s)"
    where += ", compiled" if args.compile else ""
    print(f"model: llama hidden {args.hidden}, {args.layers} layers; batch {args.batch} x {args.seq_len}; {where}; "
          f"{args.steps} steps x {args.repeats} repeats, interleaved")
    print("| loop | tokens/s (median) | ratio to plain |")
    print("|---|---:|---:|")
    print(f"| plain PyTorch | {p:,.0f} | 1.00 |")
    print(f"| tuner trial (fit) | {o:,.0f} | {o / p:.2f} |")
    print(f"tuner trial outside training steps (setup, eval, checkpoint): {statistics.median(outside):.2f} s per run")
    if args.profile:
        profile(spec, data, data_dir, args.steps)
    if args.sync_check:
        sync_check(spec, data_dir, args.steps)


if __name__ == "__main__":
    main()
