"""The GPU check: one short script that measures what a CPU cannot (run it on a GPU machine).

1. Profiler timing path: AdcSR (128->512) and the OSEDiff core (512) with random weights, fp32,
   timed by CUDA events and by synchronised wall clock (the two must agree within a few %);
   records the AdcSR / OSEDiff-core latency ratio on this card (paper, A100: 0.03 s vs 0.11 s).
2. fp16 / bf16 AdcSR forward: finite or not (fp16 reportedly gives NaN with real weights; with
   random weights this only checks the kernels run).
3. Metric batching: LPIPS, DISTS, MUSIQ, CLIPIQA (fabricated weights) per image vs batches of 8.
4. AdcSR through its adapter (random weights), 128->512: batch-1 latency and batched throughput
   in the official configuration and in fast mode (``set_fast``: channels_last, bf16 autocast,
   torch.compile), with the largest output difference between the two in 8-bit levels.

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
    ap.add_argument("--skip-fast", action="store_true", help="leave out section 4")
    ap.add_argument("--batches", default="1,8", help="AdcSR batch sizes of section 4")
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
        from harness.weights.fabricate import fabricate, metric_ids

        manifest = Path(os.environ["HARNESS_WEIGHTS"]) / "fabricated-manifest.json"
        if not manifest.is_file():
            fabricate([k for k in metric_ids() if "maniqa" not in k and "vit" not in k], manifest)
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
    if not args.skip_fast:
        result["adcsr_adapter"] = adcsr_fast(dev, [int(b) for b in args.batches.split(",")],
                                             args.runs)  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2, default=str))


def adcsr_fast(dev, batches: list[int], runs: int, arch: str = "paper") -> dict:
    """Section 4: the adapter's official configuration vs its fast mode, per batch size."""
    import torch

    from harness.methods.adcsr import AdcSR
    from harness.profiler.timing import measure

    m = AdcSR({"arch": arch})
    m.load(dev, torch.float32, random_init=True)
    out: dict = {"fast_mode": m.fast_mode}
    for bs in batches:
        lr = torch.rand(bs, 3, 128, 128, generator=torch.Generator().manual_seed(bs)).to(dev)
        row = {}
        outputs = {}
        for mode in ("official", "fast"):
            m.set_fast(mode == "fast")

            def call(lr=lr):
                with torch.inference_mode():
                    m.upscale(lr)

            t0 = time.perf_counter()
            t = measure(call, dev, runs=runs, warmup=3 if mode == "official" else 5)
            with torch.inference_mode():
                outputs[mode] = m.upscale(lr).float()
            row[mode] = {"median_s": t.median, "p10_s": t.quantile(0.1),
                         "p90_s": t.quantile(0.9), "images_per_s": bs / t.median,
                         "wall_incl_warmup_s": time.perf_counter() - t0,
                         "peak_memory_bytes": t.peak_memory_bytes}  # fmt: skip
        m.set_fast(False)
        a, b = (outputs["official"] * 255).round(), (outputs["fast"] * 255).round()
        row["max_diff_levels"] = int((a - b).abs().max())
        row["mean_diff_levels"] = float((a - b).abs().mean())
        row["speedup"] = row["official"]["median_s"] / row["fast"]["median_s"]
        out[f"batch{bs}"] = row
        print(f"adcsr adapter batch {bs}", row, flush=True)
    return out


if __name__ == "__main__":
    main()
