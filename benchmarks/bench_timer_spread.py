"""Benchmark: the profiler's CPU timer -- spread over repeated runs, and warm-up exclusion.

Times the first (cold) calls separately, then the profiler's measured runs, and prints each
run, the median, IQR/median and p10-p90, so the effect of excluding warm-up is visible.

    python benchmarks/bench_timer_spread.py [--arch paper|tiny] [--lr-size 128] [--runs 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.methods.adcsr import AdcSRConfig, AdcSRNet
from harness.profiler.timing import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["paper", "tiny"], default="paper")
    ap.add_argument("--lr-size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cold", type=int, default=2, help="cold calls timed separately")
    args = ap.parse_args()
    cfg = AdcSRConfig.paper() if args.arch == "paper" else AdcSRConfig.tiny()
    net = AdcSRNet(cfg).eval()
    x = torch.rand(1, 3, args.lr_size, args.lr_size) * 2 - 1

    def call():
        with torch.inference_mode():
            net(x)

    cold = []
    for _ in range(args.cold):
        t0 = time.perf_counter()
        call()
        cold.append(time.perf_counter() - t0)
    t = measure(call, torch.device("cpu"), runs=args.runs, warmup=0)
    print(f"cold calls (excluded as warm-up): {[round(c, 4) for c in cold]}")
    print(f"timed runs: {[round(r, 4) for r in t.runs]}")
    print(
        f"median {t.median:.4f} s  IQR {t.iqr:.4f} s  IQR/median {t.iqr / t.median:.3%}  "
        f"p10-p90 {t.quantile(0.1):.4f}-{t.quantile(0.9):.4f} s"
    )
    print(f"first cold call / median: {cold[0] / t.median:.2f}")


if __name__ == "__main__":
    main()
