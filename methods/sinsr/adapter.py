"""The ``sinsr`` method: SinSR (one ResShift step) from the official weights.

Per image, as the official ``inference.py --one_step`` (``sampler.py``, ``gaussian_diffusion.py``):

1. LR in [0, 1] -> ``(x - 0.5) / 0.5``; bottom/right reflect padding to a multiple of 64;
2. ``z_y`` = VQ encoder + ``quant_conv`` of the bicubic x4 upsampling (``F.interpolate``);
3. ``x_T = z_y + kappa * sqrt(eta_T) * noise`` (kappa 2, sqrt(eta_T) 0.99);
4. the Swin-UNet sees ``x_T / sqrt(kappa^2 eta_T + 1)``, timestep index 14 and the padded LR,
   and returns x0;
5. VQ decode (nearest code, ``post_quant_conv``, decoder), crop, clamp to [-1, 1], ``*0.5+0.5``.

LR images larger than ``chop_size`` (official 512, stride 448) are cut into overlapping tiles,
each sampled on its own and averaged where they overlap, as the official ``ImageSpliterTh``.

Noise: the official script seeds once per run (12345), so an image's output depends on the
images processed before it. Here image i's noise comes from its own generator seeded with
``seeds[i]`` (the runner derives it from the run seed and the image name) and is drawn on the
CPU in fp32 for every tile in order: an image's output depends neither on file order nor on
batch size or composition, nor on the device's random number generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.checkpoints import file_digest
from harness.errors import HarnessError
from harness.methods.base import MethodCard, SRMethod, WeightFile
from harness.methods.sinsr.arch import SinSRNet, SwinUNetConfig, VQAttention, VQConfig
from harness.methods.sinsr.checkpoint import UNET_PREFIXES, VQ_PREFIXES, read_state_dict

SINSR_RELEASE = "https://github.com/wyf0912/SinSR/releases/download/v1.0"
RESSHIFT_RELEASE = "https://github.com/zsyOAOA/ResShift/releases/download/v2.0"
UNET_FILE, VQ_FILE = "SinSR_v1.pth", "autoencoder_vq_f4.pth"
PAD_MULTIPLE = 64  # official Sampler desired_min_size (method.pad_multiple)
DEFAULT_SEED = 12345  # the official --seed, for calls without per-image seeds


def reflect_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple of ``multiple`` by reflection (official). Where the
    padding exceeds what one reflection can give (side <= padding), reflect again on the
    already padded image; a side of 1 pixel is replicated."""
    h, w = x.shape[-2:]
    need_h, need_w = (-h) % multiple, (-w) % multiple
    while need_h or need_w:
        ph = min(need_h, x.shape[-2] - 1)
        pw = min(need_w, x.shape[-1] - 1)
        if (need_h and ph == 0) or (need_w and pw == 0):
            x = F.pad(x, (0, need_w, 0, need_h), mode="replicate")
            break
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        need_h, need_w = need_h - ph, need_w - pw
    return x


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Tile origins along one side (official ``ImageSpliterTh.extract_starts``)."""
    if length <= size:
        return [0]
    starts = [min(s, length - size) for s in range(0, length, stride)]
    return list(dict.fromkeys(starts))


class SinSR(SRMethod):
    card = MethodCard(
        family="diffusion",
        name="sinsr",
        display_name="SinSR",
        paper="Wang et al., SinSR: Diffusion-Based Image Super-Resolution in a Single Step, "
        "CVPR 2024 (arXiv:2311.14760)",
        license="CC BY-NC-SA 4.0 (code and weights, academic use); ResShift parts: "
        "S-Lab License 1.0",
        scale=4,
        scales=(4,),
        steps=1,
        code="https://github.com/wyf0912/SinSR (on https://github.com/zsyOAOA/ResShift)",
        stochastic=True,
        weights=(
            WeightFile(UNET_FILE, f"{SINSR_RELEASE}/{UNET_FILE}", license="CC BY-NC-SA 4.0"),
            WeightFile(VQ_FILE, f"{RESSHIFT_RELEASE}/{VQ_FILE}", license="S-Lab License 1.0"),
        ),
        deviations=(
            "Noise per image from its own generator (seeded from the run seed and the image "
            "name, drawn on the CPU in fp32), not one global seed (12345) per run: the official "
            "outputs depend on file order and on the device's random number generator.",
            "fp32 by default; the official inference.py runs the UNet torso in fp16 "
            "(convert_to_fp16) and the autoencoder in fp16. dtype=fp16 reproduces exactly that "
            "scheme, dtype=bf16 the same scheme in bf16.",
            "The autoencoder's mid-block attention uses scaled_dot_product_attention "
            "(vq_attention=sdpa, default; the official code uses xformers on a GPU, explicit "
            "matmuls otherwise); vq_attention=math reproduces the explicit matmuls.",
            "autoencoder_vq_f4.pth keys with a prefix shared by every key (_orig_mod., module.) "
            "are mapped as ResShift's loader does; SinSR's own loader fails on them (issue #45).",
            "LR sides too small for one reflection of the padding to 64 are reflected repeatedly "
            "(1-pixel sides replicated); the official code fails on them.",
            "Images of one batch share a tile grid only if they share a size (the runner "
            "batches same-size images only); the official script runs one image at a time.",
        ),
        notes="batch_invariant=true (default) sends the images of a batch through the networks "
        "one at a time, so batching never changes an image's bytes; false runs one forward per "
        "batch (faster on a GPU; the last bits then depend on the batch size). "
        "One step of ResShift's 15-step schedule (t index 14, kappa 2, eta_T 0.99^2); "
        "no colour fix. The shifted-window attention mask is the official one, which masks "
        "by the token's column within the window (see methods/sinsr/arch.py).",
    )
    version = "1"
    # official file names, key prefixes its loader removes, and where the files come from
    # (class attributes so that ResShift, the same networks, reuses this adapter)
    unet_file, vq_file = UNET_FILE, VQ_FILE
    unet_prefixes = UNET_PREFIXES
    sources = f"{UNET_FILE} from {SINSR_RELEASE}, {VQ_FILE} from {RESSHIFT_RELEASE}"

    # -- configuration -------------------------------------------------------------------------
    def _arch(self) -> tuple[SwinUNetConfig, VQConfig]:
        arch = str(self.cfg.get("arch", "paper"))
        if arch == "paper":
            return SwinUNetConfig.paper(), VQConfig.paper()
        if arch == "tiny":
            return SwinUNetConfig.tiny(), VQConfig.tiny()
        raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")

    def _chop(self) -> tuple[int, int]:
        size, stride = int(self.cfg.get("chop_size", 512)), int(self.cfg.get("chop_stride", 448))
        if size < 1 or not 1 <= stride <= size:
            raise HarnessError(
                f"{self.card.name}: chop_stride ({stride}) must be between 1 and chop_size ({size})"
            )
        return size, stride

    def _pad_multiple(self) -> int:
        multiple = int(self.cfg.get("pad_multiple", PAD_MULTIPLE))
        need = self._arch()[0].downsample
        if multiple < 1 or multiple % need:
            raise HarnessError(
                f"{self.card.name}: pad_multiple ({multiple}) must be a multiple of {need}"
            )
        return multiple

    def _vq_attention(self) -> str:
        attention = str(self.cfg.get("vq_attention", "sdpa"))
        if attention not in ("sdpa", "math"):
            raise HarnessError(f"method.vq_attention: '{attention}' is not one of sdpa, math")
        return attention

    def check_config(self) -> None:
        self._arch()
        self._chop()
        self._pad_multiple()
        self._vq_attention()

    def build_model(self) -> SinSRNet:
        unet, vq = self._arch()
        return SinSRNet(unet, vq)

    # -- weights -------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        folder = Path(str(self.cfg.get("weights_dir", "."))).expanduser()
        unet = self.cfg.get("unet_weights") or folder / self.unet_file
        vq = self.cfg.get("vq_weights") or folder / self.vq_file
        return [Path(str(unet)).expanduser(), Path(str(vq)).expanduser()]

    def _check_files(self) -> list[Path]:
        files = self._files()
        missing = [f for f in files if not f.is_file()]
        if missing:
            names = ", ".join(str(f) for f in missing)
            raise HarnessError(
                f"{self.card.name}: weights file(s) not found: {names}; get them with "
                f"`harness weights fetch {self.fetch_name()}` ({self.sources}) or "
                "`harness weights import DIR`, or pass method.weights_dir=DIR"
            )
        return files

    def fetch_name(self) -> str:
        """The ``harness weights fetch`` name of the files in use."""
        return self.card.name

    def weights_digest(self) -> str:
        self._chop()
        self._pad_multiple()
        return "+".join(file_digest(f)[:16] for f in self._check_files())

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)
        self._chop()
        self.pad = self._pad_multiple()
        net = self.build_model()
        if not random_init:
            unet_file, vq_file = self._check_files()
            who = self.card.name
            sd, _ = read_state_dict(unet_file, net.unet, self.unet_prefixes, "Swin-UNet", who)
            net.unet.load_state_dict(sd, strict=True)
            sd, _ = read_state_dict(vq_file, net.vq, VQ_PREFIXES, "VQ-f4 autoencoder", who)
            net.vq.load_state_dict(sd, strict=True)
        attention = self._vq_attention()
        for m in net.modules():
            if isinstance(m, VQAttention):
                m.math = attention == "math"
        self.net = self._precision(net.to(device).eval(), dtype)

    def _precision(self, net: nn.Module, dtype: torch.dtype) -> nn.Module:
        """The official reduced-precision scheme for ``dtype`` (fp32: nothing to do)."""
        if dtype != torch.float32:
            net.unet.half_torso(dtype)
            net.vq.to(dtype)
        return net

    def _forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(x, noise)

    # -- inference -----------------------------------------------------------------------------
    def _noise(self, shapes: tuple[int, int], gens: Sequence[torch.Generator]) -> torch.Tensor:
        shape = self._noise_shape(self.net.vq.cfg.embed_dim, *shapes)
        noise = [torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]
        return torch.cat(noise).to(self.device)

    def _noise_shape(self, c: int, h: int, w: int) -> tuple[int, ...]:
        """One image's noise for one tile: a latent's worth (one step)."""
        return (1, c, h, w)

    def _sample(self, lr: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """One tile: LR in [0, 1] -> SR in [-1, 1] (cropped, clamped)."""
        h, w = lr.shape[-2:]
        x = reflect_pad((lr.to(self.device, torch.float32) - 0.5) / 0.5, self.pad)
        noise = self._noise(x.shape[-2:], gens)
        if self.cfg.get("batch_invariant", True):
            # kernels sum in another order for another batch size (~1e-6, now and then one
            # 8-bit level): one image per forward keeps every image's bytes batch-independent
            y = torch.cat([self._forward(x[i : i + 1], noise[i : i + 1]) for i in range(len(x))])
        else:
            y = self._forward(x, noise)
        return y[..., : h * self.scale, : w * self.scale].clamp(-1.0, 1.0)

    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(padded LR in [-1, 1], noise) as :meth:`upscale` feeds ``SinSRNet`` (one tile)."""
        x = reflect_pad((lr.to(self.device, torch.float32) - 0.5) / 0.5, self.pad)
        gens = [torch.Generator().manual_seed(DEFAULT_SEED) for _ in range(lr.shape[0])]
        return x, self._noise(x.shape[-2:], gens)

    def components(self, model: nn.Module) -> dict[str, nn.Module]:
        vq = model.vq
        return {
            "unet": model.unet,
            "vq_encoder": nn.ModuleList([vq.encoder, vq.quant_conv]),
            "vq_codebook": vq.quantize,
            "vq_decoder": nn.ModuleList([vq.post_quant_conv, vq.decoder]),
        }

    def upscale(self, lr: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``(N, 3, h, w)`` in [0, 1] -> ``(N, 3, 4h, 4w)`` in [0, 1]; ``seeds[i]`` seeds image
        i's noise (default: 12345 for every image, the official seed)."""
        n, _, h, w = lr.shape
        seeds = list(seeds) if seeds is not None else [DEFAULT_SEED] * n
        if len(seeds) != n:
            raise ValueError(f"{self.card.name}: {len(seeds)} seeds for {n} images")
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        size, stride = self._chop()
        if h <= size and w <= size:
            return self._sample(lr, gens) * 0.5 + 0.5
        sf = self.scale
        total = torch.zeros(n, 3, h * sf, w * sf, device=self.device)
        count = torch.zeros_like(total)
        for top in tile_starts(h, size, stride):
            for left in tile_starts(w, size, stride):
                tile = lr[:, :, top : top + size, left : left + size]
                out = self._sample(tile, gens)
                rows = slice(top * sf, (top + size) * sf)
                cols = slice(left * sf, (left + size) * sf)
                total[:, :, rows, cols] += out
                count[:, :, rows, cols] += 1
        return total.div(count) * 0.5 + 0.5
