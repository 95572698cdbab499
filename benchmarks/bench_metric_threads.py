"""Benchmark: thread schedules of the metric stage with the paper's network metrics on a CPU.

The same images and metrics (PSNR, SSIM, LPIPS, DISTS, NIQE, MUSIQ, CLIPIQA; fabricated random
weights, as in ``bench_end_to_end.py``) scored three ways, rounds interleaved:

  A  ``workers`` threads, each letting torch use every core (the stage before threads were
     shared: on 2 cores, 2 x 2 torch threads);
  B  ``workers`` threads with cores / workers torch threads each (the stage now,
     ``harness.evaluate.worker_threads``);
  C  one image at a time with every core for torch (``metric_workers=1``; what a per-image
     pyiqa loop does).

Prints wall and process CPU seconds of each and the seconds inside each metric (summed over
threads).

    python benchmarks/bench_metric_threads.py [--pairs 6] [--workers 0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr"
NAMES = ["psnr", "ssim", "lpips", "dists", "niqe", "musiq", "clipiqa"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--workers", type=int, default=0, help="0: every core")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    os.environ.setdefault("HARNESS_WEIGHTS", str(Path(tempfile.gettempdir()) / "harness-bench-w"))
    os.environ["HARNESS_NO_PROGRESS"] = "1"
    from harness.weights import configure_environment

    configure_environment()
    import torch

    import harness.evaluate as stage
    from harness.evaluate import Item, default_workers, score_items
    from harness.metrics import MetricSuite
    from harness.weights.fabricate import MAKERS, fabricate

    manifest = Path(os.environ["HARNESS_WEIGHTS"]) / "fabricated-manifest.json"
    if not manifest.is_file():
        print("fabricating random metric weights (scores will be meaningless) ...", flush=True)
        fabricate(list(MAKERS), manifest)
    os.environ["HARNESS_WEIGHTS_MANIFEST"] = str(manifest)

    names = sorted(p.name for p in (SHARED / "osediff").iterdir())[: args.pairs]
    items = [Item(n, SHARED / "osediff" / n, SHARED / "HR" / n) for n in names]
    warnings.simplefilter("ignore")
    suite = MetricSuite(NAMES, "cpu")
    if suite.unavailable:
        raise SystemExit(f"metrics unavailable: {suite.unavailable}")
    workers = args.workers or default_workers("cpu")
    score_items(suite, items[:1], lambda item, score: None, workers=1)  # warm-up
    shared = stage.worker_threads

    def unshared(n, device, networks=True):  # schedule A: torch keeps every core per worker
        return shared(n, device, networks=False)

    schedules = {
        f"A {workers} workers, torch on every core each": (workers, unshared),
        f"B {workers} workers, torch on cores/workers each": (workers, shared),
        "C 1 worker, torch on every core": (1, shared),
    }
    print(f"{len(items)} pairs, {torch.get_num_threads()} torch threads by default", flush=True)
    for _ in range(args.rounds):
        for label, (n, threads) in schedules.items():
            stage.worker_threads = threads
            suite.seconds.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                score_items(suite, items, lambda item, score: None, workers=n)
            finally:
                stage.worker_threads = shared
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            inside = ", ".join(f"{k} {v:.1f}" for k, v in suite.seconds.items())
            print(f"{label:46s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  ({inside})", flush=True)


if __name__ == "__main__":
    main()
