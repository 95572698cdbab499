"""Benchmark: AdcSR vs the OSEDiff inference core, latency on this machine, one process.

Both full-size, random weights (latency needs none), fp32, batch 1, at the papers' size:
AdcSR 128x128 LR -> 512x512; OSEDiff core = SD VAE encoder (512) + SD2.1-base UNet at t=999
(64x64 latent) + SD VAE decoder (methods/osediff/arch.py), without the DAPE prompt model.
Warm-up runs are excluded; each run is timed with perf_counter (CUDA events on a GPU).

    python benchmarks/bench_adcsr_vs_osediff.py [--runs 3] [--warmup 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json

import torch

from harness.envinfo import device_info
from harness.methods.adcsr import AdcSRConfig, AdcSRNet
from harness.methods.osediff.arch import OSEDiffCore
from harness.profiler.timing import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = {}
    cases = {
        "adcsr": (lambda: AdcSRNet(AdcSRConfig.paper()), (1, 3, 128, 128)),
        "osediff_core": (OSEDiffCore, (1, 3, 512, 512)),
    }
    for name, (build, shape) in cases.items():
        net = build().to(device).eval()
        x = torch.rand(shape, device=device) * 2 - 1

        def call(net=net, x=x):
            with torch.inference_mode():
                net(x)

        t = measure(call, device, runs=args.runs, warmup=args.warmup)
        results[name] = {"median_s": t.median, "runs_s": t.runs, "iqr_s": t.iqr}
        print(f"{name:13s} median {t.median:.3f} s  runs {[round(r, 3) for r in t.runs]}")
        del net
    ratio = results["adcsr"]["median_s"] / results["osediff_core"]["median_s"]
    print(
        f"AdcSR / OSEDiff-core latency: {ratio:.3f} ({1 / ratio:.2f}x faster)  "
        f"on {device_info(device)['name']}, {torch.get_num_threads()} threads"
    )
    print(json.dumps({"device": device_info(device), "ratio": ratio, **results}))


if __name__ == "__main__":
    main()
