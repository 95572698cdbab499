"""Benchmark: the full paper metric suite through the harness vs a per-image, per-metric pyiqa
loop, in one process, on a subset of the DRealSR pairs (OSEDiff outputs vs HR).

Weights: fabricated random weights (harness/weights/fabricate.py) unless real ones are
installed -- the compute is the same, the scores are meaningless. Prints a per-metric time table,
the largest per-image difference between the two paths, and the harness's own overhead
(decoding, bookkeeping, journal and result writes = total minus time inside metric calls).

    python benchmarks/bench_metric_suite.py [--pairs 5] [--no-maniqa] [--batch 1]

Run it with HARNESS_WEIGHTS pointing at a folder to reuse (fabrication takes ~20 s, 1.4 GB).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr"
PAPER = ["psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa-pipal", "clipiqa"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--no-maniqa", action="store_true", help="leave out MANIQA (~33 s/image)")
    ap.add_argument("--batch", type=int, default=1, help="harness metric batch size")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    os.environ.setdefault("HARNESS_WEIGHTS", str(Path(tempfile.gettempdir()) / "harness-bench-w"))
    from harness.weights import configure_environment

    configure_environment()
    import numpy as np
    import pyiqa
    import torch
    from PIL import Image

    from harness.config import compose_eval
    from harness.metrics import METRICS, MetricSuite
    from harness.runner import evaluate
    from harness.weights.fabricate import fabricate, metric_ids

    names = [n for n in PAPER if not (args.no_maniqa and n.startswith("maniqa"))]
    manifest = Path(os.environ["HARNESS_WEIGHTS"]) / "fabricated-manifest.json"
    if not manifest.is_file():
        print("fabricating random weights (scores will be meaningless) ...")
        fabricate(metric_ids(), manifest)
    os.environ["HARNESS_WEIGHTS_MANIFEST"] = str(manifest)

    work = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    pairs = sorted((SHARED / "osediff").glob("*.png"))[: args.pairs]
    for p in pairs:  # the same subset in two folders, for `harness eval`
        (work / "sr").mkdir(exist_ok=True)
        (work / "hr").mkdir(exist_ok=True)
        (work / "sr" / p.name).write_bytes(p.read_bytes())
        (work / "hr" / p.name).write_bytes((SHARED / "HR" / p.name).read_bytes())

    # reference: build each pyiqa metric (with the harness's resolved files), then loop
    probe = MetricSuite(names)  # resolves weight files exactly as the harness does
    assert not probe.unavailable, probe.unavailable
    ref_nets = {}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            spec = METRICS.get(n)
            opts = dict(spec.options)
            if n == "clipiqa":
                from harness.weights import load_manifest, path_of

                opts["backbone"] = str(path_of(load_manifest()["clip-rn50"]))
            ref_nets[n] = pyiqa.create_metric(spec.pyiqa_id, device="cpu", **opts)
    ref_vals = {n: [] for n in names}
    ref_time = {n: 0.0 for n in names}
    t_ref = time.perf_counter()
    for p in pairs:
        sr = torch.from_numpy(np.array(Image.open(work / "sr" / p.name).convert("RGB")))
        hr = torch.from_numpy(np.array(Image.open(work / "hr" / p.name).convert("RGB")))
        # contiguous CHW like torchvision's ToTensor, the papers' loader
        sr = sr.permute(2, 0, 1)[None].float().contiguous() / 255
        hr = hr.permute(2, 0, 1)[None].float().contiguous() / 255
        for n, net in ref_nets.items():
            t0 = time.perf_counter()
            with torch.inference_mode():
                v = net(sr, hr) if METRICS.get(n).reference == "FR" else net(sr)
            ref_time[n] += time.perf_counter() - t0
            ref_vals[n].append(float(v))
    t_ref = time.perf_counter() - t_ref
    del ref_nets

    # harness: the real `harness eval` path, run directory and all
    cfg = compose_eval([f"sr={work / 'sr'}", f"hr={work / 'hr'}", f"out={work / 'run'}",
                        f"metrics=[{','.join(names)}]", f"metric_batch_size={args.batch}",
                        "device=cpu"])  # fmt: skip
    import harness.runner as runner

    suites, build = [], []
    original = runner.MetricSuite

    def spy(*a, **k):  # times the one-off metric construction (excluded, as for the reference)
        t0 = time.perf_counter()
        s = original(*a, **k)
        build.append(time.perf_counter() - t0)
        suites.append(s)
        return s

    runner.MetricSuite = spy
    t_har = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(cfg)
    t_har = time.perf_counter() - t_har
    runner.MetricSuite = original
    har_time = suites[0].seconds
    import csv

    with open(work / "run" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    diffs = {n: max(abs(float(r[n]) - v) for r, v in zip(rows, ref_vals[n])) for n in names}
    inside = sum(har_time.values())
    t_har -= build[0]
    overhead = t_har - inside
    print(f"pairs: {len(pairs)}  torch threads: {torch.get_num_threads()}  batch {args.batch}")
    print(f"{'metric':14s} {'ref s/img':>10s} {'harness s/img':>14s} {'max |diff|':>11s}")
    for n in names:
        print(f"{n:14s} {ref_time[n] / len(pairs):10.3f} {har_time.get(n, 0) / len(pairs):14.3f} "
              f"{diffs[n]:11.2e}")  # fmt: skip
    print(
        f"total: reference loop {t_ref:.1f} s, harness eval {t_har:.1f} s "
        f"(speedup {t_ref / t_har:.2f}x); metric construction {build[0]:.1f} s excluded"
    )
    print(
        f"harness overhead (decode, bookkeeping, writes): {overhead:.2f} s = "
        f"{overhead / t_har:.1%} of its total"
    )
    if args.json:
        args.json.write_text(json.dumps({"pairs": len(pairs), "reference_s": t_ref,
                                         "harness_s": t_har, "overhead_s": overhead,
                                         "per_metric_ref_s": ref_time, "per_metric_harness_s":
                                         har_time, "max_abs_diff": diffs}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
