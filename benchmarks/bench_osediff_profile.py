"""Benchmark: OSEDiff's size and cost with and without its prompt model, next to AdcSR.

Full-size architectures with random weights (counts and latency need no trained weights), fp32,
batch 1, LR 128x128 -> 512x512, one process, through the profiler (``profile_method``):

* ``adcsr``: the AdcSR network;
* ``osediff`` with ``prompt=dape``: DAPE tagger (RAM Swin-L + head, LoRA merged) + SD2.1 text
  encoder + VAE encoder (LoRA) + UNet (LoRA) + VAE decoder;
* ``osediff`` with ``prompt=empty``: the same without the tagger.

MACs: fvcore (the papers' convention: attention matmuls not counted) and fvcore plus the
attention matmuls. The AdcSR paper credits OSEDiff with 1775M parameters and 2265 GMACs
(prompt extractor included). Latency: median of ``--runs`` timed runs after ``--warmup``.

    python benchmarks/bench_osediff_profile.py [--runs 3] [--warmup 1] [--device cpu|cuda]
        [--skip-adcsr] [--merge-lora]
"""

from __future__ import annotations

import argparse
import gc
import json

import torch

from harness.methods.adcsr import AdcSR
from harness.methods.osediff import OSEDiff
from harness.profiler import profile_method

PAPER = {"params_m": 1775, "gmacs": 2265}  # AdcSR paper's efficiency table, OSEDiff row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-adcsr", action="store_true")
    ap.add_argument("--merge-lora", action="store_true", help="method.merge_lora=true")
    args = ap.parse_args()
    device = torch.device(args.device)
    cases = [] if args.skip_adcsr else [("adcsr", AdcSR, {})]
    extra = {"precision": "fp32", "merge_lora": args.merge_lora}
    cases += [("osediff+dape", OSEDiff, {"prompt": "dape"} | extra),
              ("osediff", OSEDiff, {"prompt": "empty"} | extra)]  # fmt: skip
    rows = {}
    for name, cls, cfg in cases:
        method = cls(cfg)
        row = profile_method(method, 128, device, torch.float32, runs=args.runs,
                             warmup=args.warmup, random_init=True,
                             counters=("fvcore",))  # fmt: skip
        keep = ("params", "params_components", "macs_fvcore", "macs_attention",
                "macs_fvcore_plus_attention", "latency_median_s", "device", "dtype")  # fmt: skip
        rows[name] = {k: row.get(k) for k in keep}
        print(json.dumps({name: rows[name]}), flush=True)
        del method
        gc.collect()
    with_p, without = rows["osediff+dape"], rows["osediff"]
    summary = {
        "osediff_params_m": round(with_p["params"] / 1e6, 2),
        "osediff_without_prompt_params_m": round(without["params"] / 1e6, 2),
        "osediff_gmacs_fvcore": round(with_p["macs_fvcore"] / 1e9, 1),
        "osediff_without_prompt_gmacs_fvcore": round(without["macs_fvcore"] / 1e9, 1),
        "osediff_gmacs_with_attention": round(with_p["macs_fvcore_plus_attention"] / 1e9, 1),
        "paper": PAPER,
    }
    if "adcsr" in rows and with_p.get("latency_median_s"):
        summary["latency_ratio_adcsr_over_osediff"] = round(
            rows["adcsr"]["latency_median_s"] / with_p["latency_median_s"], 3
        )
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
