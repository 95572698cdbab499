"""S3Diff on a GPU machine: latency per 128 -> 512 image in fp32/fp16/bf16, and the effect of the
VAE posterior sample (official) against the posterior mean.

    python benchmarks/bench_s3diff.py                 # random weights (latency only)
    python benchmarks/bench_s3diff.py --weights       # the real weights, if fetched
                                                      # (adds sample-vs-mean differences)

Latency: median of ``--runs`` calls of ``upscale`` after ``--warmup`` calls, CUDA events, batch 1,
the same process for every dtype. With real weights it also reports, on the DRealSR LR images in
../shared (or random LR crops without them), the max and mean 8-bit difference between two
posterior samples and between a sample and the mean: how much the per-image seed matters.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from harness.methods.s3diff import S3Diff

SHARED = next(
    (p / "shared" / "data" / "drealsr" / "LR" for p in Path(__file__).resolve().parents[1:4]
     if (p / "shared" / "data" / "drealsr" / "LR").is_dir()),
    Path("../shared/data/drealsr/LR"),
)  # fmt: skip


def latency(m: S3Diff, lr: torch.Tensor, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        m.upscale(lr)
    times = []
    for _ in range(runs):
        if lr.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            m.upscale(lr)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            import time

            t = time.perf_counter()
            m.upscale(lr)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def seed_effect(m: S3Diff, lrs: list[torch.Tensor]) -> None:
    mean = S3Diff({**m.cfg, "latent": "mean"})
    mean.load(m.device, m.dtype)
    for i, lr in enumerate(lrs):
        a = m.upscale(lr, seeds=[1])
        b = m.upscale(lr, seeds=[2])
        c = mean.upscale(lr)
        d_ab, d_ac = ((a - b).abs() * 255).round(), ((a - c).abs() * 255).round()
        print(f"image {i}: seed 1 vs 2 max {d_ab.max():.0f} mean {d_ab.mean():.3f} | "
              f"sample vs mean max {d_ac.max():.0f} mean {d_ac.mean():.3f} (8-bit)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", action="store_true", help="load the fetched official weights")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtypes", default="fp32,fp16,bf16")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lr = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)).to(device)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name in args.dtypes.split(","):
        m = S3Diff({})
        m.load(device, dtypes[name], random_init=not args.weights)
        with torch.inference_mode():
            t = latency(m, lr, args.runs, args.warmup)
        print(f"{device.type} {torch.cuda.get_device_name() if device.type == 'cuda' else ''} "
              f"{name}: {t:.3f} s per 128->512 image (median of {args.runs})")  # fmt: skip
        if args.weights and name == "fp32":
            from harness.imageio import read_rgb, to_tensor

            files = sorted(SHARED.glob("*.png"))[:3] if SHARED.is_dir() else []
            lrs = [to_tensor(read_rgb(f)).to(device) for f in files] or [lr]
            with torch.inference_mode():
                seed_effect(m, lrs)
        del m
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
