"""The ``swinir`` method: Real-SwinIR x4 (the GAN models trained on BSRGAN's degradations).

Inference follows the official ``main_test_swinir.py --task real_sr --scale 4`` (add
``--large_model`` for ``size=l``):

* the 8-bit RGB LR scaled to [0, 1], fp32, one image at a time;
* padded on the bottom and right by mirroring (the image concatenated with its flip, edge row
  repeated) to the next multiple of the window (8) *above* its size: an LR of 128 becomes 136;
* the network (``arch.py``) on the whole padded image, or, with ``tile`` > 0, on ``tile`` x
  ``tile`` windows ``tile - tile_overlap`` apart (the last flush with the border), their outputs
  averaged where they overlap (the official ``--tile`` / ``--tile_overlap``);
* cropped to 4x the LR, clamped to [0, 1], rounded to 8 bits.

Weights (``weights``): ``official`` (default): the release file of ``size`` (``m``:
``003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth``, ``l``: ``..._DFOWMFC_..._SwinIR-L_...``)
in ``weights_dir``, its ``params_ema``; or a file path in the same layout.
"""

from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.methods.base import MethodCard, SRMethod, WeightFile, load_strict
from harness.methods.common.release import ReleaseFile
from harness.methods.swinir.arch import SwinIR, SwinIRConfig, mirror_pad

RELEASE = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"
# size -> (weights manifest id, release file)
FILES = {
    "m": ("swinir-m", "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"),
    "l": ("swinir-l", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
}


def run_tiles(net: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int, scale: int):
    """``net(x)`` tile by tile as the official ``test()``: windows of ``min(tile, h, w)``,
    ``tile - overlap`` apart plus one flush with the far border, outputs summed and divided by
    how many windows covered each pixel."""
    b, c, h, w = x.shape
    tile = min(tile, h, w)
    stride = tile - overlap
    ys = [*range(0, h - tile, stride), h - tile]
    xs = [*range(0, w - tile, stride), w - tile]
    acc = x.new_zeros(b, c, h * scale, w * scale)
    count = torch.zeros_like(acc)
    for y in ys:
        for x0 in xs:
            part = net(x[..., y : y + tile, x0 : x0 + tile])
            area = (
                ...,
                slice(y * scale, (y + tile) * scale),
                slice(x0 * scale, (x0 + tile) * scale),
            )
            acc[area] += part
            count[area] += 1
    return acc.div_(count)


class SwinIRMethod(ReleaseFile, SRMethod):
    card = MethodCard(
        family="gan",
        name="swinir",
        display_name="SwinIR",
        paper="Liang et al., SwinIR: Image Restoration Using Swin Transformer, ICCV Workshops "
        "2021 (arXiv:2108.10257): the real-world x4 GAN models (Real-SwinIR)",
        license="Apache-2.0",
        scale=4,
        scales=(4,),
        code="https://github.com/JingyunLiang/SwinIR",
        weights=tuple(
            WeightFile(f, f"{RELEASE}/{f}", None, license="Apache-2.0") for _, f in FILES.values()
        ),  # fmt: skip
        deviations=(
            "Images are read as RGB by Pillow (the official script reads BGR with OpenCV "
            "IMREAD_COLOR and converts); grayscale, alpha and 16-bit inputs follow "
            "harness/imageio.py.",
            "Attention masks of shifted windows are computed for each input size as the "
            "official network does; the checkpoint's stored masks (training size 64) are used "
            "at that size only, as there.",
        ),
        notes="size=m (default): Real-SwinIR-M, 11,715,559 parameters; size=l: Real-SwinIR-L "
        "(3conv residual blocks, 9 groups of width 240). fp32, whole image (tile=0) as the "
        "official script without --tile. No sha256 is published for the release files: they "
        "are checked for presence and read by the restricted loader.",
    )
    version = "1"

    # -- options -------------------------------------------------------------------------------
    def _size(self) -> str:
        size = str(self.cfg.get("size", "m"))
        if size not in FILES:
            raise HarnessError(f"method.size: '{size}' is not one of m, l")
        return size

    def _arch(self) -> SwinIRConfig:
        arch = str(self.cfg.get("arch", "paper"))
        if arch not in ("paper", "tiny"):
            raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")
        if arch == "tiny":
            return SwinIRConfig.tiny()
        return SwinIRConfig.m() if self._size() == "m" else SwinIRConfig.l()

    def _tiling(self) -> tuple[int, int]:
        tile, overlap = int(self.cfg.get("tile", 0)), int(self.cfg.get("tile_overlap", 32))
        window = self._arch().window
        if tile < 0 or overlap < 0:
            raise HarnessError(f"method.tile={tile}, tile_overlap={overlap}: must be >= 0")
        if tile and (tile % window or overlap >= tile):
            raise HarnessError(
                f"method.tile={tile}: must be a multiple of the window ({window}) and larger "
                f"than method.tile_overlap={overlap}"
            )
        return tile, overlap

    def check_config(self) -> None:
        self._size()
        self._tiling()

    def build_model(self) -> SwinIR:
        self.check_config()
        return SwinIR(self._arch())

    # -- weights -------------------------------------------------------------------------------
    def release_id(self) -> str:
        return FILES[self._size()][0]

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)
        net = self.build_model()
        if not random_init:  # params_ema first, as the official real_sr loader
            sd = self.release_tensors(("params_ema", "params"))
            load_strict(net, sd, "swinir", str(self.cfg.get("arch", "paper")))
        self.net = net.to(device=device, dtype=dtype).eval()

    # -- inference -----------------------------------------------------------------------------
    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The LR batch in [0, 1], mirror-padded as the official script pads it."""
        return (mirror_pad(lr.to(self.device, self.dtype), self._arch().window),)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        (x,) = self.network_inputs(lr)
        tile, overlap = self._tiling()
        y = run_tiles(self.net, x, tile, overlap, 4) if tile else self.net(x)
        h, w = lr.shape[-2:]
        # like the official script: crop, clamp, then round to 8 bits
        return torch.round(y[..., : h * 4, : w * 4].float().clamp(0, 1) * 255) / 255
