"""The ``bsrgan`` method: BSRGAN x4 (the RRDBNet generator trained on BSRGAN's degradation model).

Inference follows the official ``main_test_bsrgan.py`` (cszn/BSRGAN): the 8-bit RGB LR image
scaled to [0, 1] goes straight into the network (no normalisation, no padding, no tiling, fp32,
one image at a time); the output is clamped to [0, 1], multiplied by 255 and rounded to 8 bits.
The network is Real-ESRGAN's RRDBNet (``methods/realesrgan/arch.py``: same convolutions, same
forward); only the checkpoint's key names differ (``convert.py``).

Weights (``weights``):

* ``official`` (default): ``BSRGAN.pth`` of the KAIR v1.0 release (manifest entry ``bsrgan``)
  in ``weights_dir``, read through the restricted loader of ``harness/checkpoints.py``;
* a file path: a ``.pth`` / ``.safetensors`` state dict in BSRGAN's key layout or Real-ESRGAN's
  (your own fine-tune; BSRGAN's PSNR-oriented ``BSRNet.pth`` loads this way too).

Tiling (``tile``, ``tile_pad``) is a harness option the official script does not have, off by
default; it uses Real-ESRGAN's tile scheme.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.checkpoints import file_digest
from harness.errors import HarnessError
from harness.methods.base import MethodCard, WeightFile
from harness.methods.bsrgan.convert import is_official_layout, to_harness
from harness.methods.realesrgan.adapter import RealESRGAN

RELEASE = "https://github.com/cszn/KAIR/releases/download/v1.0/BSRGAN.pth"


class BSRGAN(RealESRGAN):
    official_id = "bsrgan"
    card = MethodCard(
        family="gan",
        name="bsrgan",
        display_name="BSRGAN",
        paper="Zhang et al., Designing a Practical Degradation Model for Deep Blind Image "
        "Super-Resolution, ICCV 2021 (arXiv:2103.14006)",
        license="Apache-2.0",
        scale=4,
        scales=(4,),
        code="https://github.com/cszn/BSRGAN",
        weights=(WeightFile("BSRGAN.pth", RELEASE, None, license="Apache-2.0"),),
        deviations=(
            "Images are read as RGB by Pillow (the official script reads BGR with OpenCV and "
            "converts); grayscale, alpha and 16-bit inputs follow harness/imageio.py, not "
            "OpenCV's IMREAD_COLOR conversion.",
            "The checkpoint's keys are renamed to Real-ESRGAN's RRDBNet names on loading (the "
            "same network; see methods/bsrgan/convert.py).",
            "tile / tile_pad (off by default) are a harness option; the official script runs "
            "the whole image.",
            "Only the x4 model (BSRGAN.pth); BSRGANx2.pth is not offered.",
        ),
        notes="RRDBNet, 23 RRDB blocks, 16,697,987 parameters; fp32, no padding, no tiling (the "
        "official script). No sha256 is published for BSRGAN.pth: the file is checked for "
        "presence and read by the restricted loader.",
    )
    version = "1"

    def _find(self) -> tuple[str, object]:
        choice = str(self.cfg.get("weights", "official"))
        if choice == "official":
            path = self._official(self._arch_name() == "paper")
        else:
            path = Path(choice).expanduser()
            if not path.is_file():
                raise HarnessError(
                    f"method.weights: '{choice}' is not official or an existing file"
                )
        return file_digest(path)[:32], path

    def _other_choices(self) -> str:
        return "; or give a file: method.weights=PATH"

    def _state_dict(self) -> dict[str, torch.Tensor]:
        sd = super()._state_dict()  # the restricted loader, params_ema / params opened
        return to_harness(sd) if is_official_layout(sd) else sd
