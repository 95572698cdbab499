"""Benchmark: the 2 methods x 2 datasets x 2 shards fan-out on 2 local joblib workers against
the same run in one process, on the same machine, in one invocation.

Both sides are ``python -m harness run`` processes with a fresh SR cache and run directory each
(SR stage and metric stage; the profiler off: it is not part of the fan-out), timed wall clock
from start to exit:

* one process: ``harness run --methods M1,M2 --datasets A,B``;
* fan-out: the same with ``--shards 2 --launcher joblib hydra.launcher.n_jobs=2`` (8 jobs in 2
  worker processes, then ``harness merge``).

Datasets: the DRealSR pairs in ../shared split into two halves (``drealsr_a``, ``drealsr_b``,
folders of symbolic links); without them, random 128 -> 512 pairs. The per-image values of the
two sides are compared (largest absolute difference per metric: float32 metric reductions may
differ in the last bit between thread counts; joblib gives each worker cores / workers threads).

    python benchmarks/bench_multirun.py [--limit N] [--methods bicubic,lanczos]
        [--metrics psnr,ssim] [--repeat 1] [--json FILE]

Timings depend on the machine's load: on a shared machine, say so next to the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr"


def make_datasets(root: Path, limit: int) -> tuple[list[str], str]:
    """Two folder datasets under ``root``; returns (their paths, where they came from)."""
    paths = [root / "drealsr_a", root / "drealsr_b"]
    if (SHARED / "HR").is_dir():
        names = sorted(p.name for p in (SHARED / "LR").glob("*.png"))[: 2 * limit]
        for i, name in enumerate(names):
            for sub in ("LR", "HR"):
                dst = paths[i % 2] / sub / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(SHARED / sub / name)
        return [str(p) for p in paths], f"{len(names)} DRealSR pairs from {SHARED}"
    import numpy as np

    from harness.imageio import write_png

    rng = np.random.default_rng(0)
    for i in range(2 * limit):
        hr = rng.integers(0, 256, (512, 512, 3), np.uint8)
        write_png(paths[i % 2] / "HR" / f"r{i:03d}.png", hr)
        write_png(paths[i % 2] / "LR" / f"r{i:03d}.png", hr[::4, ::4])
    return [str(p) for p in paths], f"{2 * limit} random 128->512 pairs (no ../shared data)"


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"harness {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def max_differences(a: Path, b: Path, metrics: list[str]) -> dict[str, float]:
    def rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
        with open(path / "per_image.csv", newline="") as f:
            return {(r["method"], r["dataset"], r["image"]): r for r in csv.DictReader(f)}

    ra, rb = rows(a), rows(b)
    if ra.keys() != rb.keys():
        raise SystemExit("the two runs scored different images")
    return {m: max(abs(float(ra[k][m]) - float(rb[k][m])) for k in ra) for m in metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=46, help="images per dataset (default 46)")
    ap.add_argument("--methods", default="bicubic,lanczos")
    ap.add_argument("--metrics", default="psnr,ssim")
    ap.add_argument("--repeat", type=int, default=1, help="alternating repetitions (median)")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-multirun-"))
    try:
        datasets, source = make_datasets(work / "data", args.limit)
        env = os.environ | {"HARNESS_NO_PROGRESS": "1"}
        base = ["run", "--methods", args.methods, "--datasets", ",".join(datasets),
                "--metrics", args.metrics, "profile.enabled=false"]  # fmt: skip
        fan = ["--shards", "2", "--launcher", "joblib", "hydra.launcher.n_jobs=2"]
        one_s, fan_s = [], []
        for i in range(args.repeat):
            sides = [("one", one_s, []), ("fan", fan_s, fan)]
            for name, times, extra in sides if i % 2 == 0 else sides[::-1]:
                out, cache = work / f"{name}{i}", work / f"cache-{name}{i}"
                times.append(timed([*base, "--out", str(out), "--cache-dir", str(cache), *extra],
                                   env))  # fmt: skip
                print(f"run {i} {name}: {times[-1]:.1f} s", file=sys.stderr, flush=True)
        diffs = max_differences(work / "one0", work / "fan0", args.metrics.split(","))
        one, fanned = statistics.median(one_s), statistics.median(fan_s)
        result = {
            "data": source,
            "methods": args.methods,
            "metrics": args.metrics,
            "jobs": 2 * 2 * 2,
            "workers": 2,
            "cpu_count": os.cpu_count(),
            "one_process_s": one_s,
            "joblib_2_workers_s": fan_s,
            "speedup_one_over_fanout": one / fanned,
            "max_abs_difference": diffs,
        }
        print(json.dumps(result, indent=2))
        print(
            f"one process {one:.1f} s, 2 joblib workers (8 jobs + merge) {fanned:.1f} s: "
            f"ratio {one / fanned:.2f}x on {os.cpu_count()} CPUs"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
