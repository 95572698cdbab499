"""SinSR on a GPU machine, paper widths, random weights in the official layout: one short script.

1. Latency per 128 -> 512 image (batch 1, CUDA events, warm-up excluded) in fp32 and in the
   official fp16 scheme (UNet torso + autoencoder in fp16); the paper reports 0.16 s on an A100.
2. fp16 / bf16 outputs against fp32: finite, mean and max difference.
3. Batches on the GPU: batch_invariant=true (default, one image per forward) must give the same
   bytes as four single calls; batch_invariant=false (one forward per batch) is reported with
   its speed-up and its largest difference.
4. The official tiling on a 600x600 LR (512 tiles, stride 448): peak memory and time.

    python benchmarks/gpu_check_sinsr.py --out sinsr_gpu.json      # a few minutes on an H100
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _method(folder: Path, dtype: torch.dtype, **cfg):
    from harness.methods.sinsr import SinSR

    m = SinSR({"arch": "paper", "weights_dir": str(folder), **cfg})
    m.load(torch.device("cuda"), dtype)
    return m


def _time(fn, runs: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("sinsr_gpu.json"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    from harness.envinfo import device_info
    from harness.methods.sinsr import SwinUNetConfig, VQConfig
    from harness.methods.sinsr.checkpoint import random_weights, save_official

    folder = Path(tempfile.mkdtemp(prefix="sinsr-gpu-"))
    save_official(folder, *random_weights(SwinUNetConfig.paper(), VQConfig.paper(), seed=0))
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(4, 3, 128, 128, generator=gen).cuda()
    report: dict = {"device": device_info(torch.device("cuda")), "torch": torch.__version__}

    outs = {}
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16),
                        ("bf16", torch.bfloat16)):  # fmt: skip
        m = _method(folder, dtype)
        with torch.inference_mode():
            report[f"latency_{name}_s"] = _time(lambda m=m: m.upscale(lr[:1], seeds=[1]), args.runs)
            outs[name] = m.upscale(lr[:1], seeds=[1]).float()
        del m
        torch.cuda.empty_cache()
    for name in ("fp16", "bf16"):
        d = (outs[name] - outs["fp32"]).abs()
        report[f"{name}_vs_fp32"] = {"finite": bool(torch.isfinite(outs[name]).all()),
                                     "mean": float(d.mean()), "max": float(d.max())}  # fmt: skip

    m = _method(folder, torch.float32)
    q = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8)  # noqa: E731
    with torch.inference_mode():
        singles = torch.cat([m.upscale(lr[i : i + 1], seeds=[i]) for i in range(4)])
        batch = m.upscale(lr, seeds=[0, 1, 2, 3])
        report["batch_invariant_bytes_equal"] = bool(torch.equal(q(singles), q(batch)))
        t_inv = _time(lambda: m.upscale(lr, seeds=[0, 1, 2, 3]), max(3, args.runs // 2))
        m.cfg["batch_invariant"] = False
        fused = m.upscale(lr, seeds=[0, 1, 2, 3])
        t_fused = _time(lambda: m.upscale(lr, seeds=[0, 1, 2, 3]), max(3, args.runs // 2))
    report["batch4"] = {
        "invariant_s": t_inv,
        "fused_s": t_fused,
        "fused_max_abs_diff": float((fused - singles).abs().max()),
        "fused_8bit_levels_differing": int((q(fused) != q(singles)).sum()),
    }

    m.cfg["batch_invariant"] = True
    big = torch.rand(1, 3, 600, 600, generator=gen).cuda()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = m.upscale(big, seeds=[7])
    torch.cuda.synchronize()
    report["tiled_600"] = {"seconds": time.perf_counter() - t0, "shape": list(out.shape),
                           "peak_bytes": torch.cuda.max_memory_allocated()}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
