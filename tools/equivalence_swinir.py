"""SwinIR equivalence: the harness's ``swinir`` method against the official test script, pixel by
pixel.

The official ``main_test_swinir.py --task real_sr --scale 4`` (JingyunLiang/SwinIR checkout)
runs *unchanged* in its own Python (``--python``: an environment with torch, timm (the authors'
cog.yaml pins 0.4.12), opencv-python, requests and numpy), with ``--large_model`` for
``--size l`` and ``--tile N --tile_overlap K`` when given. It reads the LR images from a scratch
folder (DRealSR LR crops by default) and a release-format checkpoint written there: random
weights from the official ``SwinIR``'s own initialisation (seeded) under ``params_ema``, so the
file is found and no download happens. It picks the CPU by itself when there is no GPU.

The harness's ``swinir`` method loads the same file and upscales the same images; the script
compares the 8-bit images (max difference in levels, share of differing values) and the
networks' float outputs on the same padded input (the official ``SwinIR`` imported from the
checkout into this process; it needs timm, which the harness environment has).

    git clone https://github.com/JingyunLiang/SwinIR ../SwinIR
    python tools/equivalence_swinir.py ../SwinIR --python /path/to/official-env/bin/python

``--write-golden FILE`` instead writes the official network's outputs for the test-sized
configuration on seeded weights and inputs (``tests/data/swinir_official_tiny.json``, which
``tests/test_swinir.py`` checks the harness network against).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or by path
from eqkit import SHARED_LR, cleanup, finish, image_row, lr_crops, scratch  # noqa: E402
from eqkit import write_golden as write_golden_file  # noqa: E402

FILES = {"m": "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth",
         "l": "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"}  # fmt: skip
# the official define_model's real_sr networks
OFFICIAL = {
    "m": dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, resi_connection="1conv"),
    "l": dict(embed_dim=240, depths=[6] * 9, num_heads=[8] * 9, resi_connection="3conv"),
}


# the golden cases: (input height, width); one below the training size (masks computed), one
# at it (the stored masks used)
GOLDEN_SIZES = ((6, 5), (16, 16))


def write_golden(checkout: Path, path: Path) -> None:

    from harness.methods.swinir import SwinIRConfig
    from harness.methods.swinir.arch import random_state_dict

    sys.path.insert(0, str(checkout))
    from models.network_swinir import SwinIR as OfficialNet

    cfg = SwinIRConfig.tiny()
    weights = random_state_dict(cfg, seed=0)  # loaded into the official network
    net = OfficialNet(upscale=4, in_chans=3, img_size=cfg.img_size, window_size=cfg.window,
                      img_range=1.0, depths=list(cfg.depths), embed_dim=cfg.dim,
                      num_heads=list(cfg.heads), mlp_ratio=cfg.mlp_ratio, upsampler="nearest+conv",
                      resi_connection=cfg.resi).eval()  # fmt: skip
    net.load_state_dict(weights, strict=True)
    what = ("official SwinIR (models/network_swinir.py) outputs for SwinIRConfig.tiny(), weights: "
            "random_state_dict(SwinIRConfig.tiny(), seed=0) (methods/swinir/arch.py); "
            "input: torch.rand(1, 3, h, w) from Generator().manual_seed(h * 100 + w)")  # fmt: skip
    write_golden_file(path, what, GOLDEN_SIZES, net)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="checkout of JingyunLiang/SwinIR")
    ap.add_argument("--python", default=sys.executable,
                    help="the official environment's interpreter (default: this one)")  # fmt: skip
    ap.add_argument("--size", choices=("m", "l"), default="m")
    ap.add_argument("--images", type=Path, default=SHARED_LR, help="folder of LR PNGs")
    ap.add_argument("--limit", type=int, default=3, help="at most this many images")
    ap.add_argument("--crop", type=int, default=60, help="top-left NxN LR crop (0 = whole)")
    ap.add_argument("--tile", type=int, default=0, help="tile size for both (0 = whole image)")
    ap.add_argument("--tile-overlap", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (inputs, outputs)")
    ap.add_argument("--write-golden", type=Path, help="write the tiny golden file here and stop")
    args = ap.parse_args()
    if args.write_golden:
        write_golden(args.checkout, args.write_golden)
        return

    import torch

    from harness.imageio import from_tensor, read_rgb, to_tensor
    from harness.methods.swinir import SwinIRMethod
    from harness.methods.swinir.arch import mirror_pad

    sys.path.insert(0, str(args.checkout))
    from models.network_swinir import SwinIR as OfficialNet  # the checkout's network

    work = scratch("eq-swinir-")
    stems = lr_crops(args.images, args.limit, args.crop, work / "lq")
    torch.manual_seed(args.seed)  # the official network's own initialisation, seeded
    official = OfficialNet(upscale=4, in_chans=3, img_size=64, window_size=8, img_range=1.0,
                           mlp_ratio=2, upsampler="nearest+conv",
                           **OFFICIAL[args.size]).eval()  # fmt: skip
    pth = work / "model_zoo" / FILES[args.size]
    pth.parent.mkdir()
    torch.save({"params_ema": official.state_dict()}, pth)

    cmd = [args.python, str((args.checkout / "main_test_swinir.py").resolve()), "--task", "real_sr",
           "--scale", "4", "--model_path", str(pth), "--folder_lq", str(work / "lq")]  # fmt: skip
    if args.size == "l":
        cmd.append("--large_model")
    if args.tile:
        cmd += ["--tile", str(args.tile), "--tile_overlap", str(args.tile_overlap)]
    subprocess.run(cmd, cwd=work, check=True)
    results = work / "results" / ("swinir_real_sr_x4" + ("_large" if args.size == "l" else ""))

    ours = SwinIRMethod({"size": args.size, "weights": str(pth), "tile": args.tile,
                         "tile_overlap": args.tile_overlap})  # fmt: skip
    ours.load(torch.device("cpu"), torch.float32)
    rows = []
    for stem in stems:
        lr = read_rgb(work / "lq" / f"{stem}.png")
        theirs = read_rgb(results / f"{stem}_SwinIR.png")
        x = to_tensor(lr)
        with torch.inference_mode():
            mine = from_tensor(ours.upscale(x)[0])
            padded = mirror_pad(x, 8)
            a, b = official(padded), ours.net(padded)
        rows.append(image_row(stem, lr, theirs, mine, a, b))
    finish(rows, args.out, size=args.size, tile=args.tile)
    cleanup(work, args.keep)


if __name__ == "__main__":
    main()
