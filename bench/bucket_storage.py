"""A sweep's wall time with its storage in a bucket against the same sweep on local disk.

    python bench/bucket_storage.py [--reps 2] [--trials 4] [--spec jobs/quickstart.yaml]

The bucket is a real S3 API on loopback (moto's server, from the test extra `moto[server]`), so the figure is what
tuner and Ray add for object storage (uploads through pyarrow, the driver's copies), not network latency; a cloud
bucket adds its round trips on top. The runs alternate (local, bucket, local, ...) on one embedded Ray.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--spec", default=str(REPO / "jobs" / "quickstart.yaml"))
    ap.add_argument("--trials", type=int, default=4, help="search.num_trials")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    import logging

    import ray
    from support import ThrowawayS3

    from tuner.spec import load
    from tuner.sweep.driver import run_sweep

    s3 = ThrowawayS3().start()
    root = Path(tempfile.mkdtemp(prefix="bench-bucket-"))
    os.environ["TUNER_CACHE"] = str(root / "cache")
    bucket = s3.bucket("bench")
    ray.init(address="local", log_to_driver=False, logging_level=logging.WARNING)
    times: dict[str, list[float]] = {"local": [], "bucket": []}
    try:
        for rep in range(args.reps):
            for kind in ("local", "bucket"):
                storage = {"storage": str(root / "sweeps")} if kind == "local" else {
                    "storage": f"{bucket}/sweeps", "storage_endpoint": s3.endpoint}
                sets = [f"name=bench-{kind}-{rep}", f"search.num_trials={args.trials}"]
                spec = load(args.spec, overrides=sets + [f"{k}={v}" for k, v in storage.items()])
                started = time.monotonic()
                result = run_sweep(spec)
                times[kind].append(time.monotonic() - started)
                print(f"rep {rep} {kind:6s} {times[kind][-1]:6.1f} s, {len(result.trials)} trials", flush=True)
    finally:
        ray.shutdown()
        s3.stop()
    local, remote = statistics.median(times["local"]), statistics.median(times["bucket"])
    print(f"\n| storage | median wall time (s) | runs |\n|---|---:|---:|\n| local disk | {local:.1f} | {args.reps} |\n"
          f"| bucket (S3 API on loopback) | {remote:.1f} | {args.reps} |\n\nbucket / local: {remote / local:.2f}")


if __name__ == "__main__":
    main()
