"""ResShift: the harness against the official sampler, same random weights, same noise, pixel
by pixel.

    python tools/equivalence_resshift.py OFFICIAL_CHECKOUT [--release v1|v2|v3]
        [--python ../envs/resshift/bin/python]

OFFICIAL_CHECKOUT is a clone of zsyOAOA/ResShift; its code runs, unchanged and imported from
there, in a separate environment (``--python``: a virtual environment with the checkout's
requirements, see README). Steps:

1. random weights in the official key layouts (``resshift_realsrx4_s<steps>_<release>.pth``
   with DistributedDataParallel / torch.compile prefixes, ``autoencoder_vq_f4.pth`` plain);
2. LR crops of real photographs (default: DRealSR LR images in ../shared), as for SinSR: two
   64x64, one 50x60 (reflect padding to 64), one 64x100 (tiled with ``--chop-size 64
   --chop-stride 48``, the official 64-pixel chop setting);
3. the harness upscales every crop and records the noise of every tile (the prior and one draw
   per step); the official ``ResShiftSampler.inference`` (run by
   ``tools/resshift_official_driver.py``) upscales the same PNG files with exactly that noise;
4. both outputs are compared as floats and as the 8-bit PNGs each side writes.

Writes ``<out>/equivalence.json`` and prints a table. Exit status 0 when every 8-bit difference
is at most 1 (1/255).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or by path
from equivalence_sinsr import (  # noqa: E402
    DEFAULT_LR,
    ROOT,
    _crops,
    _harness,
    compare,
    print_rows,
    run_official,
    tiny_params,
)

DRIVER = Path(__file__).with_name("resshift_official_driver.py")
METHOD = {"v1": "resshift", "v2": "resshift", "v3": "resshift_v3"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="clone of github.com/zsyOAOA/ResShift")
    ap.add_argument("--release", choices=sorted(METHOD), default="v3")
    ap.add_argument("--python", default=str(ROOT.parent / "envs" / "resshift" / "bin" / "python"),
                    help="Python of the environment with the official requirements")  # fmt: skip
    ap.add_argument("--lr-dir", type=Path, default=DEFAULT_LR, help="LR photographs to crop")
    ap.add_argument("--images", type=int, default=4, help="how many of the 4 crops to run")
    ap.add_argument("--arch", choices=["paper", "tiny"], default="paper")
    ap.add_argument("--chop-size", type=int, default=64)
    ap.add_argument("--chop-stride", type=int, default=48)
    ap.add_argument("--attention", default="math", help="harness vq_attention modes (math,sdpa)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    if not (args.checkout / "inference_resshift.py").is_file():
        raise SystemExit(f"{args.checkout}: not a ResShift checkout (no inference_resshift.py)")
    if not Path(args.python).is_file():
        raise SystemExit(f"--python: {args.python} does not exist")

    from harness.methods.resshift.checkpoint import save_official
    from harness.methods.sinsr.arch import SwinUNetConfig, VQConfig
    from harness.methods.sinsr.checkpoint import random_weights

    out = args.out or Path(tempfile.mkdtemp(prefix="resshift-equivalence-"))
    out.mkdir(parents=True, exist_ok=True)
    paper = args.arch == "paper"
    unet_cfg = SwinUNetConfig.paper() if paper else SwinUNetConfig.tiny()
    vq_cfg = VQConfig.paper() if paper else VQConfig.tiny()
    unet_sd, vq_sd = random_weights(unet_cfg, vq_cfg, seed=args.seed)
    unet_file, vq_file = save_official(out / "weights", args.release, unet_sd, vq_sd)
    images = _crops(args.lr_dir, out / "lr")[: args.images]
    chop = (args.chop_size, args.chop_stride)

    ours, noise, timing = {}, None, {}
    for mode in [a.strip() for a in args.attention.split(",") if a.strip()]:
        print(f"harness ({mode}) ...", flush=True)
        ours[mode], n, timing[mode] = _harness(
            images, out / "weights", args.arch, chop, mode, "cpu", torch.float32,
            METHOD[args.release],
        )  # fmt: skip
        if noise is not None:  # the noise never depends on the attention mode
            assert all(torch.equal(a, b) for k in n for a, b in zip(n[k], noise[k]))
        noise = n
    torch.save(noise, out / "noise.pt")

    job = {
        "checkout": str(args.checkout.resolve()), "release": args.release,
        "unet_weights": str(unet_file), "vq_weights": str(vq_file),
        "images": [str(p) for p in images], "noise": str(out / "noise.pt"),
        "chop_size": args.chop_size, "chop_stride": args.chop_stride,
        "out": str(out / "official"), "padding_offset": 64,
    }  # fmt: skip
    if not paper:
        job["model_params"], job["vq_params"] = tiny_params(unet_cfg, vq_cfg)
        # else the official UNet adds an LR feature extractor (lq_size != image_size)
        job["model_params"]["lq_size"] = unet_cfg.image_size
    official, official_seconds = run_official(args.python, DRIVER, job, out, args.checkout)

    rows, ok = compare(ours, official["images"], out / "official", images, noise, timing)
    tiles = sum(len(v) for v in noise.values())
    ok &= official["zero_draws"] == tiles  # one unused t = 0 draw per tile, no more
    report = {
        "release": args.release, "arch": args.arch, "torch": torch.__version__, "chop": chop,
        "rows": rows, "official_zero_draws": official["zero_draws"], "tiles": tiles,
        "official_seconds_total": round(official_seconds, 1), "pass": ok,
        "checkout": str(args.checkout.resolve()),
    }  # fmt: skip
    (out / "equivalence.json").write_text(json.dumps(report, indent=2))
    print_rows(rows)
    print(f"{'PASS' if ok else 'FAIL'}: report in {out / 'equivalence.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
