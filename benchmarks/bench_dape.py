"""Benchmark: size and cost of the DAPE tagger (RAM Swin-L + Query2Label head) at 384x384.

Random weights (cost does not depend on them), batch 1. Reports parameters (each tensor once)
per component, MACs (1 multiply-add = 1) from fvcore per component -- the tagger's attention
runs as explicit matmuls, which fvcore counts -- cross-checked with torch's FlopCounterMode,
and the latency of ``DapeTagger.tags`` on one upscaled 512x512 image (resize, normalisation,
network, thresholds), warm-up excluded.

    python benchmarks/bench_dape.py [--device cpu|cuda] [--dtype fp32|fp16] [--runs 3] [--tiny]
"""

from __future__ import annotations

import argparse
import json

import torch

from harness.envinfo import device_info
from harness.methods.dape import DapeTagger
from harness.profiler.count import count_params, flopcounter_macs
from harness.profiler.timing import measure

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="tiny widths (a smoke run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    tagger = DapeTagger.random(tiny=args.tiny, seed=0, device=device)
    net = tagger.module
    size = tagger.input_size
    x = torch.rand(1, 3, size, size, device=device)
    parts = {
        "visual_encoder": net.visual_encoder,
        "image_proj": net.image_proj,
        "labels": [net.label_embed, *net.wordvec_proj.parameters()],
        "tagging_head": net.tagging_head,
        "fc": net.fc,
    }
    params = {k: (count_params(v) if isinstance(v, torch.nn.Module) else sum(p.numel() for p in v))
              for k, v in parts.items()}  # fmt: skip
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        analysis = FlopCountAnalysis(net, (x,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_module = analysis.by_module()
    macs = {k: int(by_module.get(k, 0)) for k in ("visual_encoder", "image_proj", "wordvec_proj",
                                                   "tagging_head", "fc")}  # fmt: skip
    total = int(by_module[""])
    cross = flopcounter_macs(net, (x,))
    tagger.to(dtype=DTYPES[args.dtype])
    image = torch.rand(1, 3, 512, 512, device=device)
    t = measure(lambda: tagger.tags(image), device, runs=args.runs, warmup=args.warmup)
    result = {
        "device": device_info(device), "dtype": args.dtype, "tiny": args.tiny, "input": size,
        "params": count_params(net), "params_by_component": params,
        "macs_fvcore": total, "macs_fvcore_by_component": macs, "macs_flopcounter": cross,
        "tags_latency_median_s": t.median, "tags_latency_runs_s": t.runs,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    print(f"params {result['params'] / 1e6:.2f} M  {params}")
    print(f"MACs (fvcore) {total / 1e9:.2f} G  {macs}; FlopCounter {cross / 1e9:.2f} G")
    print(f"tags() {t.median:.3f} s median on {device_info(device)['name']} ({args.dtype})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
