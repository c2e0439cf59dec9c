"""Can a trial actor start warm? Ray's options for taking torch/transformers imports off a trial's clock, measured.

    python bench/warm_start.py [--wait 8] [--repeats 2]

Each variant starts its own local Ray (2 CPUs) in a child process, waits --wait seconds (what a driver spends
preparing data and the searcher), then creates two 1-CPU actors, as Tune creates two trial actors, and times how
long they take to answer, and how long the trial's imports (torch, transformers with the llama model, accelerate)
still take inside them:

- cold: nothing done ahead (what tuner does);
- setup hook: ``runtime_env={"worker_process_setup_hook": ...}`` in ``ray.init`` imports them in every worker
  process as it starts (Ray's prestarted workers included);
- warm-up tasks: two 1-CPU tasks import them right after ``ray.init``; the actors could reuse those processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent('''
    import json, logging, os, sys, time
    import ray

    variant, wait = sys.argv[1], float(sys.argv[2])

    def preimport():
        import accelerate, torch, transformers  # noqa: F401
        from transformers.models.llama import modeling_llama  # noqa: F401

    hook = {"worker_process_setup_hook": preimport} if variant == "setup hook" else None
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env=hook)
    warmed = []
    if variant == "warm-up tasks":
        @ray.remote(num_cpus=1)
        def warm():
            preimport()
            return os.getpid()
        warmed = [warm.remote() for _ in range(2)]
    time.sleep(wait)
    warmed = ray.get(warmed)

    @ray.remote(num_cpus=1)
    class Trial:
        def start(self):
            t = time.perf_counter()
            preimport()
            return os.getpid(), time.perf_counter() - t

    t = time.perf_counter()
    trials = [Trial.remote() for _ in range(2)]
    answers = ray.get([a.start.remote() for a in trials])
    ready = time.perf_counter() - t
    print(json.dumps({"ready_s": ready, "imports_s": max(s for _, s in answers),
                      "reused": sum(pid in warmed for pid, _ in answers)}))
    ray.shutdown()
''')

VARIANTS = ("cold", "setup hook", "warm-up tasks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wait", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):  # variants alternated, so machine noise falls on each
        for v in VARIANTS:
            out = subprocess.run([sys.executable, "-c", CHILD, v, str(args.wait)], capture_output=True, text=True,
                                 timeout=300, check=True).stdout
            runs[v].append(json.loads(out.strip().splitlines()[-1]))
    print(f"two 1-CPU actors created {args.wait:g} s after ray.init on 2 CPUs, {args.repeats} runs each (median)\n")
    print("| variant | creation to both answering | the trial's imports in the actor | actors in a warmed process |")
    print("|---|---:|---:|---:|")
    for v, rs in runs.items():
        ready, imports = (statistics.median(r[k] for r in rs) for k in ("ready_s", "imports_s"))
        print(f"| {v} | {ready:.1f} s | {imports:.2f} s | {sum(r['reused'] for r in rs)} of {2 * len(rs)} |")
    print(f"\n(command: python bench/warm_start.py {' '.join(sys.argv[1:])})")


if __name__ == "__main__":
    main()
