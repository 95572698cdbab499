"""Benchmark: a whole paper table row, end to end -- ``harness run --methods adcsr suite=paper``
on the DRealSR pairs -- against the official chain a researcher would otherwise run, in one
process, on the same weights and images.

Official chain (rebuilt from the harness's architecture, with the same weights):
  1. AdcSR's official ``test.py`` loop: for each LR, PIL decode, ``ToTensor() * 2 - 1``, the
     network, per-channel mean/std matching to the LR, ``ToPILImage`` (truncation), PNG save;
  2. the per-image pyiqa loop of OSEDiff's/AdcSR's evaluation: every metric built once, then for
     each SR/HR pair PIL decode and one call per metric; FID folder against folder.
Harness: ``harness.runner.run`` with a fresh cache (SR stage, metric stage with its default
threads/batching, journal, tables, report; the profiler off: it is not part of either chain).

Weights are random (speed does not depend on their values): AdcSR from a random-init network
saved as safetensors, the metrics' files fabricated in their real formats
(``harness weights fabricate``). Both sides load them the same way. Scores are meaningless and
are compared between the two sides only (largest per-image difference per metric).

    python benchmarks/bench_end_to_end.py [--limit N] [--no-maniqa] [--device cpu|cuda]
        [--metric-batch 1] [--json FILE] [--data DIR]

On a 2-core CPU the full suite costs ~36 s per image per side (MANIQA is 90% of it): use
``--limit 8 --no-maniqa`` there. Set HARNESS_WEIGHTS to a folder to reuse fabricated files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr"
PAPER = ["psnr", "ssim", "lpips", "dists", "fid", "niqe", "musiq", "maniqa-pipal", "clipiqa"]


def official_chain(names, lr_dir, hr_dir, sr_dir, weights, device):
    """AdcSR's test.py loop, then the per-image pyiqa loop; returns (seconds, per-metric values)."""
    import numpy as np
    import pyiqa
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from torchvision import transforms

    from harness.methods.adcsr import AdcSRConfig, AdcSRNet
    from harness.metrics import METRICS
    from harness.weights import load_manifest, path_of

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    net = AdcSRNet(AdcSRConfig.paper())
    net.load_state_dict(load_file(str(weights)))
    net = net.to(device).eval()
    sr_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for path in sorted(lr_dir.glob("*.png")):
            lr = transforms.ToTensor()(Image.open(path).convert("RGB")).to(device)[None] * 2 - 1
            sr = net(lr)
            sr = (sr - sr.mean(dim=[2, 3], keepdim=True)) / sr.std(dim=[2, 3], keepdim=True)
            sr = sr * lr.std(dim=[2, 3], keepdim=True) + lr.mean(dim=[2, 3], keepdim=True)
            img = transforms.ToPILImage()((sr[0] / 2 + 0.5).clamp(0, 1).cpu())
            img.save(sr_dir / path.name)
    del net
    sync()
    t_sr = time.perf_counter() - t0

    nets = {}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            spec = METRICS.get(n)
            opts = {k: v for k, v in spec.options.items() if spec.per != "set" or k != "mode"}
            if n == "clipiqa":
                opts["backbone"] = str(path_of(load_manifest()["clip-rn50"]))
            nets[n] = pyiqa.create_metric(spec.pyiqa_id, device=device, **opts)
    values = {n: [] for n in names if METRICS.get(n).per == "image"}
    for path in sorted(sr_dir.glob("*.png")):
        sr = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        hr = torch.from_numpy(np.array(Image.open(hr_dir / path.name).convert("RGB")))
        sr = sr[None].float().contiguous().to(device) / 255
        hr = hr.permute(2, 0, 1)[None].float().contiguous().to(device) / 255
        for n in values:
            with torch.inference_mode():
                v = nets[n](sr, hr) if METRICS.get(n).reference == "FR" else nets[n](sr)
            values[n].append(float(v))
    for n in names:
        if METRICS.get(n).per == "set":
            values[n] = [float(nets[n](str(sr_dir), str(hr_dir), mode="clean", num_workers=0,
                                       verbose=False))]  # fmt: skip
    sync()
    return time.perf_counter() - t0, t_sr, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="first N pairs only (default: all)")
    ap.add_argument("--no-maniqa", action="store_true", help="leave out MANIQA (~33 s/img on CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--metric-batch", type=int, default=0,
                    help="harness metric batch size (0: 1 on a CPU, 8 on a GPU)")  # fmt: skip
    ap.add_argument("--json", type=Path)
    ap.add_argument("--data", type=Path, default=SHARED, help="a folder with LR/ and HR/")
    args = ap.parse_args()

    os.environ.setdefault("HARNESS_WEIGHTS", str(Path(tempfile.gettempdir()) / "harness-bench-w"))
    os.environ["HARNESS_NO_PROGRESS"] = "1"
    from harness.weights import configure_environment

    configure_environment()
    import torch
    from safetensors.torch import save_file

    from harness.config import compose_run
    from harness.methods.adcsr import AdcSRConfig, AdcSRNet
    from harness.runner import run
    from harness.weights.fabricate import fabricate, metric_ids

    device = torch.device(args.device)
    names = [n for n in PAPER if not (args.no_maniqa and n.startswith("maniqa"))]
    manifest = Path(os.environ["HARNESS_WEIGHTS"]) / "fabricated-manifest.json"
    if not manifest.is_file():
        print("fabricating random metric weights (scores will be meaningless) ...", flush=True)
        fabricate(metric_ids(), manifest)
    os.environ["HARNESS_WEIGHTS_MANIFEST"] = str(manifest)

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        root = work / "DRealSR"
        for sub in ("LR", "HR"):
            (root / sub).mkdir(parents=True)
            files = sorted((args.data / sub).glob("*.png"))
            for f in files[: args.limit] if args.limit else files:
                shutil.copy(f, root / sub / f.name)
        n_pairs = len(list((root / "LR").glob("*.png")))
        torch.manual_seed(0)
        weights = work / "adcsr_random.safetensors"
        save_file(AdcSRNet(AdcSRConfig.paper()).state_dict(), str(weights))

        from harness.metrics import MetricSuite

        probe = MetricSuite(names, device)  # resolves the weight files (and pyiqa's folder)
        if probe.unavailable:
            raise SystemExit(f"metrics unavailable: {probe.unavailable}")
        del probe
        batch = args.metric_batch or (8 if device.type == "cuda" else 1)
        cfg = compose_run([
            "methods=[adcsr]", "datasets=[drealsr]", f"dataset.drealsr.root={root}",
            f"method.adcsr.weights={weights}", f"metrics=[{','.join(names)}]",
            f"device={device.type}", f"metric_batch_size={batch}", "profile.enabled=false",
            f"cache_dir={work / 'cache'}", f"out={work / 'run'}",
        ])  # fmt: skip
        print(f"{n_pairs} pairs, metrics {', '.join(names)}, device {device}", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_off, t_off_sr, ref = official_chain(
                names, root / "LR", root / "HR", work / "official_sr", weights, device
            )
            print(f"official chain: {t_off:.1f} s (SR loop {t_off_sr:.1f} s)", flush=True)
            t0 = time.perf_counter()
            run(cfg)
            t_har = time.perf_counter() - t0
        print(f"harness run:    {t_har:.1f} s", flush=True)

        import csv

        with open(work / "run" / "per_image.csv") as f:
            rows = list(csv.DictReader(f))
        summary = json.loads((work / "run" / "summary.json").read_text())
        diffs = {}
        for n, vals in ref.items():
            if n == "fid":
                fid = summary["results"][0]["metrics"]["fid"]["mean"]
                diffs[n] = abs(fid - vals[0])
            else:
                diffs[n] = max(abs(float(r[n]) - v) for r, v in zip(rows, vals))
        result = {
            "pairs": n_pairs, "device": str(device), "metrics": names,
            "torch_threads": torch.get_num_threads(), "metric_batch": batch,
            "official_s": t_off, "official_sr_s": t_off_sr, "harness_s": t_har,
            "speedup": t_off / t_har, "max_abs_diff": diffs,
        }  # fmt: skip
        print(f"speedup: {t_off / t_har:.2f}x")
        for n, d in diffs.items():
            print(f"  max |difference| {n:13s} {d:.3g}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
