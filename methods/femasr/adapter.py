"""The ``femasr`` method: FeMaSR x4, run as the official ``inference_femasr.py -s 4`` runs it.

* the 8-bit RGB LR scaled to [0, 1], fp32, one image at a time;
* an LR with fewer than ``max_size``^2 pixels (600^2, the official default) goes whole through
  the official ``test()``: mirror-padded on the bottom/right to the next multiple of 16 strictly
  above its size, the network (``arch.py``), cropped to 4x the LR;
* a larger one goes through the official ``test_tile()``: ``tile`` x ``tile`` LR tiles (240),
  each read with ``tile_pad`` (16) pixels of context, run through ``test()``, their centres
  pasted (Real-ESRGAN's scheme);
* clamped to [0, 1] and rounded to 8 bits.

Weights (``weights``): ``official`` (default) ``FeMaSR_SRX4_model_g.pth`` of the release
(manifest entry ``femasr``) in ``weights_dir``, its ``params``; or a file in the same layout.
Every key the network needs must be in the file; keys it does not need are ignored and counted
in the log (the official script loads with ``strict=False``, which would also leave missing
weights random).
"""

from __future__ import annotations

import logging

import torch

from harness.errors import HarnessError
from harness.methods.base import MethodCard, SRMethod, WeightFile
from harness.methods.common.release import ReleaseFile
from harness.methods.femasr.arch import FeMaSRConfig, FeMaSRNet, mirror_pad16
from harness.methods.realesrgan.adapter import run_tiled

RELEASE = (
    "https://github.com/chaofengc/FeMaSR/releases/download/v0.1-pretrain_models/"
    "FeMaSR_SRX4_model_g.pth"
)
log = logging.getLogger(__name__)
MIN_SIDE = 8  # smallest LR side the official padding handles


class _Whole(torch.nn.Module):
    """The official ``test()``: pad to 16 (strictly above), the network, crop to 4x."""

    def __init__(self, net: FeMaSRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.net(mirror_pad16(x))[..., : h * 4, : w * 4]


class FeMaSR(ReleaseFile, SRMethod):
    card = MethodCard(
        family="gan",
        name="femasr",
        display_name="FeMaSR",
        paper="Chen et al., Real-World Blind Super-Resolution via Feature Matching with Implicit "
        "High-Resolution Priors, ACM Multimedia 2022 (arXiv:2202.13142)",
        license="CC BY-NC-SA 4.0",
        scale=4,
        scales=(4,),
        code="https://github.com/chaofengc/FeMaSR",
        weights=(WeightFile("FeMaSR_SRX4_model_g.pth", RELEASE, None, license="CC BY-NC-SA 4.0"),),
        deviations=(
            "Images are read as RGB by Pillow (the official script reads them with OpenCV "
            "IMREAD_UNCHANGED and converts BGR to RGB); grayscale, alpha and 16-bit inputs "
            "follow harness/imageio.py.",
            "Checkpoint keys are matched strictly for what the network needs (the official "
            "script uses strict=False); unneeded keys are ignored and logged.",
        ),
        notes="34,059,971 parameters (encoder with SwinIR's residual Swin groups, a 1024 x 512 "
        "codebook, decoder); fp32; whole image below max_size^2 LR pixels (600^2), official "
        "tiles above. No sha256 is published for the release file: it is checked for presence "
        "and read by the restricted loader.",
    )
    version = "1"

    # -- options -------------------------------------------------------------------------------
    def _arch(self) -> FeMaSRConfig:
        arch = str(self.cfg.get("arch", "paper"))
        if arch not in ("paper", "tiny"):
            raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")
        return FeMaSRConfig.paper() if arch == "paper" else FeMaSRConfig.tiny()

    def _tiling(self) -> tuple[int, int, int]:
        size, tile, pad = (int(self.cfg.get(k, d)) for k, d in
                           (("max_size", 600), ("tile", 240), ("tile_pad", 16)))  # fmt: skip
        # every tile the network sees must be >= 8 pixels (see check_input_size): a border tile
        # holds at least one pixel of its own plus tile_pad of context
        if size < 1 or tile < MIN_SIDE or pad < MIN_SIDE - 1:
            raise HarnessError(
                f"method.max_size={size}, tile={tile}, tile_pad={pad}: need max_size >= 1, "
                f"tile >= {MIN_SIDE} and tile_pad >= {MIN_SIDE - 1}"
            )
        return size, tile, pad

    def check_input_size(self, height: int, width: int) -> None:
        """Below 8 pixels the mirror padding cannot reach a multiple of 16 (it repeats the image
        once): the official code fails there too, deeper down."""
        if min(height, width) < MIN_SIDE:
            raise HarnessError(
                f"femasr: LR size {width}x{height} is below {MIN_SIDE} pixels on a side"
            )

    def check_config(self) -> None:
        self._arch()
        self._tiling()

    def build_model(self) -> FeMaSRNet:
        self.check_config()
        return FeMaSRNet(self._arch())

    # -- weights -------------------------------------------------------------------------------
    def release_id(self) -> str:
        return "femasr"

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)
        net = self.build_model()
        if not random_init:
            path = self.weights_file()
            sd = self.release_tensors(("params", "params_ema"))
            want = net.state_dict()
            missing = [k for k in want if k not in sd]
            if missing:
                raise HarnessError(
                    f"femasr: {path} lacks {len(missing)} of the network's {len(want)} tensors "
                    f"(first: {missing[0]}) for the '{self.cfg.get('arch', 'paper')}' architecture"
                )
            bad = [k for k in want if sd[k].shape != want[k].shape]
            if bad:
                raise HarnessError(
                    f"femasr: {path}: {bad[0]} has shape {tuple(sd[bad[0]].shape)}, the network "
                    f"{tuple(want[bad[0]].shape)} ('{self.cfg.get('arch', 'paper')}' architecture)"
                )
            extra = len(sd) - len(want)
            if extra:
                log.info("femasr: %d tensors in %s are not used by the network", extra, path.name)
            net.load_state_dict({k: sd[k] for k in want}, strict=True)
        self.net = net.to(device=device, dtype=dtype).eval()
        self._whole = _Whole(self.net)

    # -- inference -----------------------------------------------------------------------------
    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The LR batch in [0, 1], mirror-padded as the official ``test()`` pads it."""
        return (mirror_pad16(lr.to(self.device, self.dtype)),)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.to(self.device, self.dtype)
        max_size, tile, pad = self._tiling()
        h, w = x.shape[-2:]
        if h * w < max_size**2:
            y = self._whole(x)
        else:
            y = run_tiled(self._whole, x, tile, pad, 4)
        return torch.round(y.float().clamp(0, 1) * 255) / 255
