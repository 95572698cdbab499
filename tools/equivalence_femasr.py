"""FeMaSR equivalence: the harness's ``femasr`` method against the official inference script,
pixel by pixel.

The official ``inference_femasr.py -s 4`` (chaofengc/FeMaSR checkout) runs *unchanged* in its
own Python (``--python``: an environment with the checkout's ``requirements.txt``; its
``basicsr`` package is the checkout's own), on LR images in a scratch folder (DRealSR LR crops
by default) with ``-w`` pointing at a release-format checkpoint written there: seeded random
weights (``methods/femasr/arch.py: random_state_dict``, every part exercised) under ``params``.
It picks the CPU by itself when there is no GPU. ``--max-size`` is passed on, so small values
exercise its tiled path.

The harness's ``femasr`` method loads the same file and upscales the same images; the script
compares the 8-bit images (max difference in levels, share of differing values) and the
networks' float outputs through the official ``test()`` (the official ``FeMaSRNet`` imported
from the checkout into this process).

    git clone https://github.com/chaofengc/FeMaSR ../FeMaSR
    python tools/equivalence_femasr.py ../FeMaSR --python /path/to/official-env/bin/python

``--write-golden FILE`` instead writes the official network's outputs on seeded weights and
small inputs (``tests/data/femasr_official.json``, checked by ``tests/test_femasr.py``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or by path
from eqkit import SHARED_LR, cleanup, finish, image_row, lr_crops, scratch  # noqa: E402
from eqkit import write_golden as write_golden_file  # noqa: E402

GOLDEN_SIZES = ((16, 16), (20, 13))  # LR sizes of the golden cases (padded to 32 and 32x16)


def _official_net(checkout: Path):
    sys.path.insert(0, str(checkout))
    from basicsr.archs.femasr_arch import FeMaSRNet  # the checkout's network

    return FeMaSRNet(codebook_params=[[32, 1024, 512]], LQ_stage=True, scale_factor=4).eval()


def write_golden(checkout: Path, path: Path) -> None:

    from harness.methods.femasr.arch import FeMaSRConfig, random_state_dict

    net = _official_net(checkout)
    net.load_state_dict(random_state_dict(FeMaSRConfig.paper(), seed=0), strict=True)
    what = ("official FeMaSRNet.test() (basicsr/archs/femasr_arch.py) outputs, weights: "
            "random_state_dict(FeMaSRConfig.paper(), seed=0) (methods/femasr/arch.py); "
            "input: torch.rand(1, 3, h, w) from Generator().manual_seed(h * 100 + w)")  # fmt: skip
    write_golden_file(path, what, GOLDEN_SIZES, net.test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="checkout of chaofengc/FeMaSR")
    ap.add_argument("--python", default=sys.executable,
                    help="the official environment's interpreter (default: this one)")  # fmt: skip
    ap.add_argument("--images", type=Path, default=SHARED_LR, help="folder of LR PNGs")
    ap.add_argument("--limit", type=int, default=3, help="at most this many images")
    ap.add_argument("--crop", type=int, default=60, help="top-left NxN LR crop (0 = whole)")
    ap.add_argument("--max-size", type=int, default=600, help="tiles from max_size^2 LR pixels")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (inputs, outputs)")
    ap.add_argument("--write-golden", type=Path, help="write the golden file here and stop")
    args = ap.parse_args()
    if args.write_golden:
        write_golden(args.checkout, args.write_golden)
        return

    import torch

    from harness.imageio import from_tensor, read_rgb, to_tensor
    from harness.methods.femasr import FeMaSR
    from harness.methods.femasr.arch import FeMaSRConfig, random_state_dict

    official = _official_net(args.checkout)
    work = scratch("eq-femasr-")
    stems = lr_crops(args.images, args.limit, args.crop, work / "lq")
    sd = random_state_dict(FeMaSRConfig.paper(), seed=0)
    official.load_state_dict(sd, strict=True)
    pth = work / "FeMaSR_SRX4_model_g.pth"
    torch.save({"params": sd}, pth)
    cmd = [args.python, str((args.checkout / "inference_femasr.py").resolve()), "-s", "4",
           "-i", str(work / "lq"), "-o", str(work / "out"), "-w", str(pth),
           "--max_size", str(args.max_size)]  # fmt: skip
    subprocess.run(cmd, cwd=args.checkout, check=True)

    ours = FeMaSR({"weights": str(pth), "max_size": args.max_size})
    ours.load(torch.device("cpu"), torch.float32)
    rows = []
    for stem in stems:
        lr = read_rgb(work / "lq" / f"{stem}.png")
        theirs = read_rgb(work / "out" / f"{stem}.png")
        x = to_tensor(lr)
        with torch.inference_mode():
            mine = from_tensor(ours.upscale(x)[0])
            a, b = official.test(x), ours._whole(x)
        rows.append(image_row(stem, lr, theirs, mine, a, b))
    finish(rows, args.out, max_size=args.max_size)
    cleanup(work, args.keep)


if __name__ == "__main__":
    main()
