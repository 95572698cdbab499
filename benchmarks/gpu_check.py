"""The GPU check: one short script that measures what a CPU cannot (run it on a GPU machine).

1. Profiler timing path: AdcSR (128->512) and the OSEDiff core (512) with random weights, fp32,
   timed by CUDA events and by synchronised wall clock (the two must agree within a few %);
   records the AdcSR / OSEDiff-core latency ratio on this card (paper, A100: 0.03 s vs 0.11 s).
2. fp16 / bf16 AdcSR forward: finite or not (fp16 reportedly gives NaN with real weights; with
   random weights this only checks the kernels run).
3. Metric batching: LPIPS, DISTS, MUSIQ, CLIPIQA (fabricated weights) per image vs batches of 8.

    python benchmarks/gpu_check.py --out results.json      # ~5 minutes on an H100
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--skip-metrics", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HARNESS_WEIGHTS", str(Path(tempfile.gettempdir()) / "harness-gpu-w"))
    from harness.weights import configure_environment

    configure_environment()
    import torch

    from harness.envinfo import device_info
    from harness.methods.adcsr import AdcSRConfig, AdcSRNet
    from harness.methods.osediff.arch import OSEDiffCore
    from harness.profiler import environment
    from harness.profiler.timing import measure

    dev = torch.device("cuda")
    result: dict = {"environment": environment(dev, torch.float32), "timing": {}}
    for name, build, shape in (("adcsr", lambda: AdcSRNet(AdcSRConfig.paper()), 128),
                               ("osediff_core", OSEDiffCore, 512)):  # fmt: skip
        net = build().to(dev).eval()
        x = torch.rand(1, 3, shape, shape, device=dev) * 2 - 1

        def call(net=net, x=x):
            with torch.inference_mode():
                net(x)

        t = measure(call, dev, runs=args.runs, warmup=5)
        result["timing"][name] = {"event_median_s": t.median, "iqr_s": t.iqr,
                                  "wall_minus_event_s": t.wall_minus_event_s,
                                  "peak_memory_bytes": t.peak_memory_bytes}  # fmt: skip
        print(name, result["timing"][name], flush=True)
        if name == "adcsr":
            for dt in (torch.float16, torch.bfloat16):
                with torch.inference_mode():
                    y = net.to(dt)(x.to(dt))
                result[f"adcsr_{dt}"] = {"finite": bool(torch.isfinite(y).all())}
        del net
        torch.cuda.empty_cache()
    tm = result["timing"]
    result["adcsr_over_osediff_core"] = (
        tm["adcsr"]["event_median_s"] / tm["osediff_core"]["event_median_s"]
    )
    print("ratio", result["adcsr_over_osediff_core"], device_info(dev), flush=True)

    if not args.skip_metrics:
        from harness.metrics import MetricSuite
        from harness.weights.fabricate import MAKERS, fabricate

        manifest = Path(os.environ["HARNESS_WEIGHTS"]) / "fabricated-manifest.json"
        if not manifest.is_file():
            fabricate([k for k in MAKERS if "maniqa" not in k and "vit" not in k], manifest)
        os.environ["HARNESS_WEIGHTS_MANIFEST"] = str(manifest)
        names = ["lpips", "dists", "musiq", "clipiqa"]
        suite = MetricSuite(names, dev)
        sr, hr = torch.rand(16, 3, 512, 512), torch.rand(16, 3, 512, 512)
        suite.score(sr[:2], hr[:2])  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        single = [suite.score(sr[i : i + 1], hr[i : i + 1])[0].values for i in range(16)]
        torch.cuda.synchronize()
        t_single = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = [
            s.values for b in range(0, 16, 8) for s in suite.score(sr[b : b + 8], hr[b : b + 8])
        ]
        torch.cuda.synchronize()
        t_batch = time.perf_counter() - t0
        diff = max(abs(a[n] - b[n]) for a, b in zip(single, batched) for n in names)
        result["metric_batching"] = {
            "per_image_s": t_single, "batch8_s": t_batch, "speedup": t_single / t_batch,
            "max_abs_diff": diff,
        }  # fmt: skip
        print("metric batching", result["metric_batching"], flush=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
