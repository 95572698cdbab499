"""BSRGAN equivalence: the harness's ``bsrgan`` method against the official test script, pixel
by pixel.

The official ``main_test_bsrgan.py`` (cszn/BSRGAN checkout) runs *unchanged*, in its own Python
(``--python``: an environment with torch, opencv-python, matplotlib and numpy; the official
repository pins no versions), inside a scratch folder laid out as the script expects:

* ``model_zoo/BSRGAN.pth``: random weights from the official ``RRDBNet``'s own initialisation
  (seeded), saved as its plain state dict, i.e. the release's file format and key layout;
* ``testsets/RealSRSet/``: the LR images (DRealSR LR crops by default);
* ``models`` and ``utils``: links to the checkout's folders.

Its only CPU patch: ``torch.cuda.current_device`` (which the script logs) returns 0. The script
writes ``testsets/RealSRSet_results_x4/<name>_BSRGAN.png``. The harness's ``bsrgan`` method loads
the same file and upscales the same images; the script compares

* the 8-bit images (max difference in levels, share of differing values), and
* the two networks' float outputs on the same input tensor (the official ``RRDBNet`` imported
  from the checkout into this process; it needs torch only).

    git clone https://github.com/cszn/BSRGAN ../BSRGAN
    python tools/equivalence_bsrgan.py ../BSRGAN --python /path/to/official-env/bin/python
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or by path
from eqkit import SHARED_LR, cleanup, finish, image_row, lr_crops, scratch  # noqa: E402

# Run inside the official Python: the one CPU patch, then the script as __main__.
_DRIVER = """
import runpy, sys, torch
torch.cuda.current_device = lambda: 0
script = sys.argv[1]
sys.argv = [script]
runpy.run_path(script, run_name='__main__')
"""


def run_official(checkout: Path, python: str, work: Path) -> None:
    for name in ("models", "utils"):
        (work / name).symlink_to((checkout / name).resolve())
    env = dict(os.environ, PYTHONPATH=str(work))
    script = str((checkout / "main_test_bsrgan.py").resolve())
    subprocess.run([python, "-c", _DRIVER, script], cwd=work, env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="checkout of cszn/BSRGAN")
    ap.add_argument("--python", default=sys.executable,
                    help="the official environment's interpreter (default: this one)")  # fmt: skip
    ap.add_argument("--images", type=Path, default=SHARED_LR, help="folder of LR PNGs")
    ap.add_argument("--limit", type=int, default=4, help="at most this many images")
    ap.add_argument("--crop", type=int, default=64, help="top-left NxN LR crop (0 = whole)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (inputs, outputs)")
    args = ap.parse_args()

    import torch

    from harness.imageio import from_tensor, read_rgb, to_tensor
    from harness.methods.bsrgan import BSRGAN

    sys.path.insert(0, str(args.checkout))
    from models.network_rrdbnet import RRDBNet as OfficialNet  # the checkout's network

    work = scratch("eq-bsrgan-")
    stems = lr_crops(args.images, args.limit, args.crop, work / "testsets" / "RealSRSet")
    torch.manual_seed(args.seed)  # the official network's own initialisation, seeded
    official = OfficialNet(in_nc=3, out_nc=3, nf=64, nb=23, gc=32, sf=4).eval()
    (work / "model_zoo").mkdir()
    pth = work / "model_zoo" / "BSRGAN.pth"
    torch.save(official.state_dict(), pth)
    run_official(args.checkout, args.python, work)

    ours = BSRGAN({"arch": "paper", "weights": str(pth), "weights_dir": str(work)})
    ours.load(torch.device("cpu"), torch.float32)
    rows = []
    for stem in stems:
        lr = read_rgb(work / "testsets" / "RealSRSet" / f"{stem}.png")
        theirs = read_rgb(work / "testsets" / "RealSRSet_results_x4" / f"{stem}_BSRGAN.png")
        x = to_tensor(lr)
        with torch.inference_mode():
            mine = from_tensor(ours.upscale(x)[0])
            a = official(x)
            b = ours.net(x.contiguous(memory_format=torch.channels_last))
        rows.append(image_row(stem, lr, theirs, mine, a, b))
    finish(rows, args.out)
    cleanup(work, args.keep)


if __name__ == "__main__":
    main()
