"""Tokens/s and model FLOPs utilization (MFU) of every trial of a finished sweep.

    python bench/mfu.py SPEC SWEEP_DIR [--peak-tflops 989]

FLOPs per token: 6 x parameters + 12 x layers x hidden x seq_len (the PaLM paper's count, attention included).
The peak is the GPU's dense bf16 rate: looked up by name (H100/H200 989, A100 312, L4 121, A10G 125 TFLOP/s) unless
--peak-tflops is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0}


def peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec")
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()

    import torch

    from tuner.spec import load
    from tuner.trial.model import build_model, build_tokenizer

    spec = load(args.spec)
    with torch.device("meta"):
        model = build_model(spec.model, seq_len=spec.data.seq_len, tokenizer=build_tokenizer(spec.model))
    params = sum(p.numel() for p in model.parameters())
    m = spec.model
    flops_per_token = 6 * params + 12 * m.num_layers * m.hidden_size * spec.data.seq_len
    peak = args.peak_tflops or peak_tflops()
    summary = json.loads((args.sweep_dir / "summary.json").read_text())
    print(f"\nmodel: {params / 1e6:.1f}M parameters, {flops_per_token / 1e9:.2f} GFLOP per token; "
          f"peak {peak or '?'} TFLOP/s (bf16 dense)\n")
    print("| trial | state | val_loss | tokens/s (median of reports) | MFU |")
    print("|---|---|---:|---:|---:|")
    for t in summary["trials"]:
        rows = [json.loads(line) for line in (Path(t["path"]) / "result.json").read_text().splitlines()]
        rates = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
        rate = statistics.median(rates) if rates else 0.0
        mfu = f"{rate * flops_per_token / (peak * 1e12):.1%}" if peak else "?"
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        print(f"| {t['trial_id']} | {t['state']} | {value} | {rate:,.0f} | {mfu} |")


if __name__ == "__main__":
    main()
