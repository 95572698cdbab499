"""SinSR: the harness against the official sampler, same random weights, same noise, pixel by
pixel.

    python tools/equivalence_sinsr.py OFFICIAL_CHECKOUT [--python ../envs/sinsr/bin/python]

OFFICIAL_CHECKOUT is a clone of wyf0912/SinSR; its code runs, unchanged and imported from there,
in a separate environment (``--python``: a virtual environment with the checkout's pinned
requirements, see README). Steps:

1. random weights in the official key layouts (``SinSR_v1.pth`` as ``{"state_dict": module.*}``,
   ``autoencoder_vq_f4.pth`` as a plain state dict) -- paper widths by default;
2. LR crops of real photographs (default: DRealSR LR images in ../shared) written as PNGs: two
   64x64 (no padding), one 50x60 (reflect padding to 64), one 64x100 (wider than the chop size,
   so tiled: ``--chop-size 64 --chop-stride 56``, the official 512/448 scaled down for the CPU);
3. the harness upscales every crop (``vq_attention`` math and sdpa) and records the noise of
   every tile; the official ``Sampler.inference`` (run by ``tools/sinsr_official_driver.py``)
   upscales the same PNG files with exactly that noise;
4. both outputs are compared as floats and as the 8-bit PNGs each side writes, and the official
   shifted-window mask is compared with ``shifted_window_mask``.

Writes ``<out>/equivalence.json`` and prints a table. Exit status 0 when every 8-bit difference
is at most 1 (1/255) and the masks are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (a worktree sits one level deeper)
DEFAULT_LR = next(
    (p / "shared" / "data" / "drealsr" / "LR" for p in (ROOT.parent, ROOT.parent.parent)
     if (p / "shared" / "data" / "drealsr" / "LR").is_dir()),
    ROOT.parent / "shared" / "data" / "drealsr" / "LR",
)  # fmt: skip
DRIVER = Path(__file__).with_name("sinsr_official_driver.py")
# (index of the LR file in sorted order, top, left, height, width)
CROPS = ((0, 0, 0, 64, 64), (1, 32, 40, 64, 64), (2, 10, 20, 50, 60), (3, 16, 8, 64, 100))
MASKS = ((64, 8, 4, 64, 64), (64, 8, 4, 32, 48), (16, 4, 2, 16, 16), (8, 8, 0, 16, 16))


# the official environment, where the README sets it up (../envs beside the repository)
OFFICIAL_PYTHON = Path(__file__).resolve().parents[2] / "envs" / "sinsr" / "bin" / "python"


def _crops(lr_dir: Path, folder: Path) -> list[Path]:
    from harness.imageio import list_images, read_rgb, write_png

    files = list_images(lr_dir)
    if len(files) < 4:
        raise SystemExit(f"{lr_dir}: need 4 LR images, found {len(files)}")
    out = []
    for i, top, left, h, w in CROPS:
        rgb = read_rgb(files[i])[top : top + h, left : left + w]
        if rgb.shape[:2] != (h, w):
            raise SystemExit(f"{files[i]} is too small for a {h}x{w} crop at ({top}, {left})")
        path = folder / f"{files[i].stem}_{h}x{w}.png"
        write_png(path, rgb)
        out.append(path)
    return out


def _harness(images, weights, arch, chop, attention, device, dtype, method="sinsr"):
    """Harness outputs (float in [0, 1]) and the noise each image's tiles received."""
    from harness.imageio import read_rgb, to_tensor
    from harness.methods import METHODS

    m = METHODS.get(method)({"arch": arch, "weights_dir": str(weights), "chop_size": chop[0],
                             "chop_stride": chop[1], "vq_attention": attention})  # fmt: skip
    m.load(torch.device(device), dtype)
    used: list[torch.Tensor] = []
    draw = m._noise

    def record(shape, gens):
        noise = draw(shape, gens)
        used.append(noise.cpu().clone())
        return noise

    m._noise = record
    outputs, noises, seconds = {}, {}, {}
    for k, path in enumerate(images):
        used.clear()
        lr = to_tensor(read_rgb(path)).to(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            outputs[path.stem] = m.upscale(lr, seeds=[1000 + k])[0].float().cpu()
        seconds[path.stem] = time.perf_counter() - t0
        noises[path.stem] = list(used)
    return outputs, noises, seconds


def _eight_bit(x: torch.Tensor) -> np.ndarray:
    from harness.imageio import from_tensor

    return from_tensor(x).astype(np.int16)


def compare(ours, official, official_dir, images, noise, timing):
    """Rows of (attention mode, image) differences between the harness outputs ``ours``
    (mode -> name -> float image) and the official float outputs and PNGs; ``ok`` when every
    8-bit difference is at most 1."""
    from harness.imageio import read_rgb

    rows, ok = [], True
    for mode, outputs in ours.items():
        for path in images:
            name = path.stem
            theirs = official[name][0]
            mine = outputs[name]
            png = read_rgb(official_dir / f"{name}.png").astype(np.int16)
            diff8 = np.abs(_eight_bit(mine) - png)
            row = {
                "attention": mode, "image": name, "size": list(mine.shape[1:]),
                "tiles": len(noise[name]),
                "max_abs_float": float((mine - theirs).abs().max()),
                "max_8bit": int(diff8.max()),
                "pixels_differing_8bit": float((diff8 > 0).mean()),
                "clamped_fraction": float(((theirs <= 0) | (theirs >= 1)).float().mean()),
                "harness_s": round(timing[mode][name], 2),
            }  # fmt: skip
            ok &= row["max_8bit"] <= 1
            rows.append(row)
    return rows, ok


def print_rows(rows) -> None:
    print(f"{'attention':9s} {'image':28s} {'tiles':>5s} {'max|float|':>11s} {'max 8-bit':>9s} "
          f"{'px differ':>9s} {'clamped':>8s}")  # fmt: skip
    for r in rows:
        print(
            f"{r['attention']:9s} {r['image']:28s} {r['tiles']:5d} {r['max_abs_float']:11.3g} "
            f"{r['max_8bit']:9d} {r['pixels_differing_8bit']:9.2%} {r['clamped_fraction']:8.2%}"
        )


def tiny_params(u, vq) -> tuple[dict, dict]:
    """The official config's ``model.params`` and autoencoder params for tiny widths."""
    model = {
        "image_size": u.image_size, "model_channels": u.model_channels,
        "num_res_blocks": list(u.num_res_blocks),
        "attention_resolutions": list(u.attention_resolutions),
        "channel_mult": list(u.channel_mult), "num_head_channels": u.num_head_channels,
        "swin_depth": u.swin_depth, "swin_embed_dim": u.swin_embed_dim,
        "window_size": u.window_size, "mlp_ratio": u.mlp_ratio,
    }  # fmt: skip
    auto = {"ch": vq.ch, "ch_mult": list(vq.ch_mult), "num_res_blocks": vq.num_res_blocks,
            "n_embed": vq.n_embed}  # fmt: skip
    return model, auto


def run_official(python, driver: Path, job: dict, out: Path, checkout: Path):
    """Write ``job.json``, run ``driver`` with the official environment's ``python`` in the
    checkout, and return (its ``official.pt``, seconds)."""
    (out / "job.json").write_text(json.dumps(job, indent=2))
    print("official ...", flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([python, str(driver), str(out / "job.json")],
                          cwd=checkout, env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the official sampler failed (exit {proc.returncode})")
    return torch.load(out / "official" / "official.pt", weights_only=True), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="clone of github.com/wyf0912/SinSR")
    ap.add_argument("--python", default=str(OFFICIAL_PYTHON),
                    help="Python of the environment with the official requirements")  # fmt: skip
    ap.add_argument("--lr-dir", type=Path, default=DEFAULT_LR, help="LR photographs to crop")
    ap.add_argument("--arch", choices=["paper", "tiny"], default="paper")
    ap.add_argument("--chop-size", type=int, default=64)
    ap.add_argument("--chop-stride", type=int, default=56)
    ap.add_argument("--attention", default="math,sdpa", help="harness vq_attention modes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32",
                    help="fp16: the official use_fp16 scheme on both sides (GPU)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    if not (args.checkout / "sampler.py").is_file():
        raise SystemExit(f"{args.checkout}: not a SinSR checkout (no sampler.py)")

    from harness.methods.sinsr.arch import SwinUNetConfig, VQConfig, shifted_window_mask
    from harness.methods.sinsr.checkpoint import random_weights, save_official

    out = args.out or Path(tempfile.mkdtemp(prefix="sinsr-equivalence-"))
    out.mkdir(parents=True, exist_ok=True)
    unet_cfg, vq_cfg = (
        (SwinUNetConfig.paper(), VQConfig.paper())
        if args.arch == "paper"
        else (SwinUNetConfig.tiny(), VQConfig.tiny())
    )
    unet_sd, vq_sd = random_weights(unet_cfg, vq_cfg, seed=args.seed)
    unet_file, vq_file = save_official(out / "weights", unet_sd, vq_sd)
    images = _crops(args.lr_dir, out / "lr")
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    chop = (args.chop_size, args.chop_stride)

    ours, noise = {}, None
    timing = {}
    for mode in [a.strip() for a in args.attention.split(",") if a.strip()]:
        print(f"harness ({mode}) ...", flush=True)
        ours[mode], n, timing[mode] = _harness(images, out / "weights", args.arch, chop, mode,
                                               args.device, dtype)  # fmt: skip
        if noise is not None:  # the noise never depends on the attention mode
            assert all(torch.equal(a, b) for k in n for a, b in zip(n[k], noise[k]))
        noise = n
    torch.save(noise, out / "noise.pt")

    job = {
        "checkout": str(args.checkout.resolve()), "unet_weights": str(unet_file),
        "vq_weights": str(vq_file), "images": [str(p) for p in images],
        "noise": str(out / "noise.pt"), "fp16": args.dtype == "fp16",
        "chop_size": args.chop_size, "chop_stride": args.chop_stride,
        "out": str(out / "official"), "device": args.device,
        "masks": [list(m) for m in MASKS],
    }  # fmt: skip
    if args.arch == "tiny":
        job["model_params"], job["vq_params"] = tiny_params(unet_cfg, vq_cfg)
    official, official_seconds = run_official(args.python, DRIVER, job, out, args.checkout)

    rows, ok = compare(ours, official["images"], out / "official", images, noise, timing)
    masks = {}
    for key, theirs in official["masks"].items():
        res_, window, shift, h, w = (int(v) for v in key.split(","))
        if res_ <= window:
            window, shift = res_, 0
        mine = shifted_window_mask(h, w, window, shift)
        masks[key] = bool(torch.equal(mine, theirs))
        ok &= masks[key]
    report = {
        "arch": args.arch, "dtype": args.dtype, "device": args.device,
        "torch": torch.__version__, "chop": chop, "rows": rows, "masks_equal": masks,
        "official_seconds_total": round(official_seconds, 1), "pass": ok,
        "checkout": str(args.checkout.resolve()),
    }  # fmt: skip
    (out / "equivalence.json").write_text(json.dumps(report, indent=2))
    print_rows(rows)
    print(f"masks equal: {masks}")
    print(f"{'PASS' if ok else 'FAIL'}: report in {out / 'equivalence.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
