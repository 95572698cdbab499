"""The ``resshift`` and ``resshift_v3`` methods: ResShift from the official weights.

ResShift and SinSR share their networks (the Swin-UNet and the VQ-f4 autoencoder) and their
pre- and post-processing, so these adapters are the SinSR adapter (padding, tiling, per-image
noise, checkpoint reading) with ResShift's chain (:class:`~.net.ResShiftNet`) in place of
SinSR's single step. Per image, as the official ``inference_resshift.py --task realsr``:

1. LR in [0, 1] -> ``(x - 0.5) / 0.5``; bottom/right reflect padding to a multiple of 64;
2. the chain of :mod:`harness.methods.resshift.net` (15 steps for v1/v2, 4 for v3);
3. crop, clamp to [-1, 1], ``*0.5+0.5``. LR images larger than ``chop_size`` (official 512,
   stride 448) are tiled and averaged as the official ``ImageSpliterTh``.

Noise: one generator per image (seeded by the runner from the run seed and the image name),
drawn on the CPU in fp32: for every tile, ``steps`` latent-sized draws at once, the first
starting the chain and the others added after each step but the last.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from harness.errors import HarnessError
from harness.methods.base import MethodCard, WeightFile
from harness.methods.resshift.net import ResShiftNet, ResShiftSchedule
from harness.methods.sinsr.adapter import RESSHIFT_RELEASE, VQ_FILE, SinSR
from harness.methods.sinsr.checkpoint import VQ_PREFIXES

RELEASES = {  # release -> (checkpoint file, schedule)
    "v1": ("resshift_realsrx4_s15_v1.pth", ResShiftSchedule.conference()),
    "v2": ("resshift_realsrx4_s15_v2.pth", ResShiftSchedule.conference()),
    "v3": ("resshift_realsrx4_s4_v3.pth", ResShiftSchedule.journal()),
}
LICENSE = "S-Lab License 1.0 (ResShift; non-commercial)"
PAPER = (
    "Yue et al., ResShift: Efficient Diffusion Model for Image Super-resolution by Residual "
    "Shifting, NeurIPS 2023 (arXiv:2307.12348)"
)
CODE = "https://github.com/zsyOAOA/ResShift"


def _weights(*releases: str) -> tuple[WeightFile, ...]:
    files = [RELEASES[r][0] for r in releases] + [VQ_FILE]
    return tuple(WeightFile(f, f"{RESSHIFT_RELEASE}/{f}", license=LICENSE) for f in files)


DEVIATIONS = (
    "Noise per image from its own generator (seeded from the run seed and the image name, "
    "drawn on the CPU in fp32), not one global seed (12345) per run: the official outputs "
    "depend on file order and on the device's random number generator.",
    "fp32 by default; the official inference_resshift.py runs the whole chain under CUDA "
    "autocast (fp16), autoencoder included. dtype=fp16 (or bf16) runs the same autocast "
    "scheme, on any device.",
    "The autoencoder's mid-block attention uses scaled_dot_product_attention "
    "(vq_attention=sdpa, default; the official code uses xformers when installed, explicit "
    "matmuls otherwise); vq_attention=math reproduces the explicit matmuls.",
    "Checkpoints must hold exactly the model's keys (after removing a module. or _orig_mod. "
    "prefix shared by every key); the official loader also accepts files with extra keys.",
    "LR sides too small for one reflection of the padding to 64 are reflected repeatedly "
    "(1-pixel sides replicated); the official code fails on them.",
    "Images of one batch share a tile grid only if they share a size (the runner batches "
    "same-size images only); the official script runs one image at a time.",
)
NOTES = (
    "batch_invariant=true (default) sends the images of a batch through the networks one at a "
    "time, so batching never changes an image's bytes. Same Swin-UNet and VQ-f4 autoencoder as "
    "SinSR (which distilled ResShift into one step); x0 prediction, no colour fix."
)


class ResShift(SinSR):
    card = MethodCard(
        family="diffusion",
        name="resshift",
        display_name="ResShift",
        paper=PAPER,
        license=LICENSE,
        scale=4,
        scales=(4,),
        steps=15,
        code=CODE,
        stochastic=True,
        weights=_weights("v1", "v2"),
        deviations=DEVIATIONS,
        notes="The conference model: release=v1 (default, as the official script's --version) "
        "or v2 (trained longer), 15 steps (kappa 2, p 0.3, sqrt(eta) from 0.02 to 0.99). " + NOTES,
    )
    version = "1"
    releases: tuple[str, ...] = ("v1", "v2")  # the first is the default
    amp: torch.dtype | None = None  # autocast dtype (None: fp32)
    unet_prefixes = VQ_PREFIXES  # ResShift's loader removes module. and _orig_mod.
    sources = f"from {RESSHIFT_RELEASE}"

    def _release(self) -> str:
        release = str(self.cfg.get("release", self.releases[0]))
        if release not in self.releases:
            other = next((c for c in ("resshift", "resshift_v3") if c != self.card.name), "")
            raise HarnessError(
                f"method.release: '{release}' is not one of {', '.join(self.releases)} for "
                f"{self.card.name} (the other ResShift model is --methods {other})"
            )
        return release

    @property
    def unet_file(self) -> str:  # type: ignore[override]
        return RELEASES[self._release()][0]

    def check_config(self) -> None:
        self._release()
        self._arch()
        self._chop()
        self._pad_multiple()

    def fetch_name(self) -> str:
        release = self._release()
        return self.card.name if release == self.releases[0] else f"resshift-{release}"

    def build_model(self) -> ResShiftNet:
        unet, vq = self._arch()
        return ResShiftNet(unet, vq, RELEASES[self._release()][1])

    def output_signature(self, device: torch.device, dtype: torch.dtype) -> dict[str, str]:
        return {**super().output_signature(device, dtype), "release": self._release()}

    # -- precision: the official scheme is autocast over the whole chain -----------------------
    def _precision(self, net: nn.Module, dtype: torch.dtype) -> nn.Module:
        self.amp = None if dtype == torch.float32 else dtype
        return net

    def _forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        amp = self.amp
        ctx = torch.autocast(x.device.type, dtype=amp) if amp else contextlib.nullcontext()
        with ctx:
            return self.net(x, noise).float()

    def _noise_shape(self, c: int, h: int, w: int) -> tuple[int, ...]:
        return (1, self.net.schedule.steps, c, h, w)


class ResShiftV3(ResShift):
    card = MethodCard(
        family="diffusion",
        name="resshift_v3",
        display_name="ResShift v3",
        paper="Yue et al., Efficient Diffusion Model for Image Restoration by Residual "
        "Shifting, TPAMI 2024 (arXiv:2403.07319); " + PAPER,
        license=LICENSE,
        scale=4,
        scales=(4,),
        steps=4,
        code=CODE,
        stochastic=True,
        weights=_weights("v3"),
        deviations=DEVIATIONS,
        notes="The journal model (release v3), 4 steps (kappa 2, p 0.3, sqrt(eta) from 0.1 to "
        "0.99: ResShift's current code no longer caps the start at sqrt(0.001) as SinSR's copy "
        "does). " + NOTES,
    )
    releases = ("v3",)
