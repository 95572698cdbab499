"""Benchmark: the harness metric stage vs a per-image pyiqa reference loop, in one process.

The reference is what the papers' evaluation scripts do: for each pair, decode SR and HR with
PIL, convert to [0, 1] tensors, and call pyiqa ``psnr`` and ``ssim`` (papers' settings) one image
at a time. The harness side is ``harness.evaluate.score_items`` with a ``MetricSuite``, decoding
included. Both score the same pairs; the script prints both times, the ratio and the largest
per-image difference of each metric.

Whole process: the same two sides as fresh processes, timed from start to exit (interpreter
start, imports, metric construction, decode, scoring, and for the harness the journal, tables
and report): the reference as ``python this_script --reference-process``, the harness as
``harness eval --sr DIR --hr DIR --metrics psnr,ssim``.

    python benchmarks/bench_metric_stage.py [--sr DIR --hr DIR | --embedded] [--limit N]
        [--json FILE]

Defaults to the 93 DRealSR pairs in ../shared/data/drealsr (OSEDiff outputs vs HR);
``--embedded``: the embedded set's 6 HR images against their bicubic x4 SR.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyiqa
import torch
from PIL import Image

from harness.datasets.base import match_by_stem
from harness.evaluate import Item, score_items
from harness.imageio import list_images
from harness.metrics import METRICS, MetricSuite

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr"


def reference_loop(pairs, names):
    nets = {
        n: pyiqa.create_metric(
            METRICS.get(n).pyiqa_id, device="cpu", **dict(METRICS.get(n).options)
        )
        for n in names
    }
    out = {n: [] for n in names}
    t0 = time.perf_counter()
    for sr_path, hr_path in pairs:
        sr = torch.from_numpy(np.array(Image.open(sr_path).convert("RGB"))).permute(2, 0, 1)
        hr = torch.from_numpy(np.array(Image.open(hr_path).convert("RGB"))).permute(2, 0, 1)
        # contiguous CHW like torchvision's ToTensor, the papers' loader
        sr, hr = sr[None].float().contiguous() / 255.0, hr[None].float().contiguous() / 255.0
        for n, net in nets.items():
            out[n].append(float(net(sr, hr)))
    return time.perf_counter() - t0, out


def harness_stage(pairs, names):
    suite = MetricSuite(names)
    out = {n: [] for n in names}

    def keep(item, score):
        for n in names:
            out[n].append(score.values[n])

    items = [Item(sr.stem, sr, hr) for sr, hr in pairs]
    t0 = time.perf_counter()
    score_items(suite, items, keep)
    return time.perf_counter() - t0, out


def whole_processes(args, n_pairs: int) -> dict:
    """Wall time of each side as a fresh process, start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        sr, hr = args.sr, args.hr
        if args.limit:  # the same subset for both sides
            sr, hr = Path(tmp, "sr"), Path(tmp, "hr")
            sr.mkdir(), hr.mkdir()
            pairs = match_by_stem(list_images(args.sr), list_images(args.hr), args.sr, args.hr)
            for a, b in pairs[:n_pairs]:
                shutil.copy(a, sr / a.name), shutil.copy(b, hr / b.name)
        ref_cmd = [
            sys.executable,
            __file__,
            "--reference-process",
            "--sr",
            str(sr),
            "--hr",
            str(hr),
        ]
        harness_bin = Path(sys.executable).with_name("harness")
        har_cmd = [str(harness_bin), "eval", "--sr", str(sr), "--hr", str(hr), "--metrics",
                   "psnr,ssim", "--out", str(Path(tmp, "run")), "--force"]  # fmt: skip
        env = dict(os.environ, HARNESS_NO_PROGRESS="1")
        times = {}
        for name, cmd in (("reference", ref_cmd), ("harness", har_cmd)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            times[name] = time.perf_counter() - t0
    return times


def embedded_folders(root: Path) -> tuple[Path, Path]:
    """The embedded set's HR images and bicubic x4 SR of its LR images, as two folders."""
    from harness.datasets.embedded import embedded
    from harness.imageio import from_tensor, read_rgb, to_tensor, write_png
    from harness.methods import METHODS

    ds = embedded(root / "cache")
    bicubic = METHODS.get("bicubic")({"name": "bicubic", "scale": 4})
    for s in ds:
        write_png(root / "sr" / f"{s.name}.png",
                  from_tensor(bicubic.upscale(to_tensor(read_rgb(s.lr)))[0]))  # fmt: skip
        shutil.copy(s.hr, root / "hr" / f"{s.name}{s.hr.suffix}")
    return root / "sr", root / "hr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sr", type=Path, default=SHARED / "osediff")
    ap.add_argument("--hr", type=Path, default=SHARED / "HR")
    ap.add_argument("--embedded", action="store_true", help="the embedded set (bicubic SR)")
    ap.add_argument("--limit", type=int, default=0, help="use the first N pairs only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--reference-process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.embedded:
        tmp = tempfile.TemporaryDirectory()
        (Path(tmp.name) / "hr").mkdir()
        args.sr, args.hr = embedded_folders(Path(tmp.name))
    pairs = match_by_stem(list_images(args.sr), list_images(args.hr), args.sr, args.hr)
    if args.limit:
        pairs = pairs[: args.limit]
    names = ["psnr", "ssim"]
    if args.reference_process:  # one side of the whole-process comparison
        reference_loop(pairs, names)
        return
    # warm-up: first calls allocate and load libraries; neither side is charged for it
    reference_loop(pairs[:2], names)
    harness_stage(pairs[:2], names)
    t_ref, ref = reference_loop(pairs, names)
    t_har, har = harness_stage(pairs, names)
    diffs = {n: max(abs(a - b) for a, b in zip(ref[n], har[n])) for n in names}
    proc = whole_processes(args, len(pairs))
    result = {
        "process_reference_s": proc["reference"],
        "process_harness_s": proc["harness"],
        "process_speedup": proc["reference"] / proc["harness"],
        "pairs": len(pairs),
        "torch_threads": torch.get_num_threads(),
        "reference_s": t_ref,
        "harness_s": t_har,
        "speedup": t_ref / t_har,
        "max_abs_diff": diffs,
        "means": {n: float(np.mean(har[n])) for n in names},
    }
    print(f"pairs: {len(pairs)}  torch threads: {torch.get_num_threads()}")
    print(f"reference loop (pyiqa per image): {t_ref:8.2f} s  {t_ref / len(pairs):.3f} s/pair")
    print(f"harness metric stage:             {t_har:8.2f} s  {t_har / len(pairs):.3f} s/pair")
    print(f"speedup: {t_ref / t_har:.2f}x")
    ratio = proc["reference"] / proc["harness"]
    print(f"whole process: reference {proc['reference']:.2f} s, harness eval "
          f"{proc['harness']:.2f} s, speedup {ratio:.2f}x")  # fmt: skip
    for n in names:
        print(f"max |difference| {n}: {diffs[n]:.3g}   mean {result['means'][n]:.6f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
