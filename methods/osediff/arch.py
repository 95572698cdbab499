"""OSEDiff's network: SD2.1-base text encoder, VAE (LoRA on the encoder) and UNet (three LoRA
adapters and a retrained ``conv_in``), one step at t=999 (diffusers / transformers / peft).

LoRA layout of the official code (cswry/OSEDiff ``osediff.py``), rebuilt here from its rules:

* UNet: every weight whose name contains one of ``to_k, to_q, to_v, to_out.0, conv, conv1,
  conv2, conv_in, conv_shortcut, conv_out, proj_out, proj_in, ff.net.2, ff.net.0.proj`` (norms
  and biases excluded) gets rank-4 LoRA; adapter ``default_encoder`` for names in ``down_blocks``
  or ``conv_in``, ``default_decoder`` for ``up_blocks`` or ``conv_out``, ``default_others`` for
  the rest (mid block, time embedding convs...). All three are active at inference.
* VAE: ``default_encoder`` on every encoder conv / attention projection and ``quant_conv``.
* ``lora_alpha`` is peft's default 8, so each LoRA branch is scaled by 8 / 4 = 2.

The checkpoint (``osediff.pkl``) carries the module lists, the ranks and the LoRA + ``conv_in``
tensors; the base weights come from SD2.1-base. ``OSEDiffCore`` (no prompt model, LoRA merged,
zero text) stays for the efficiency benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.methods.common import sd
from harness.methods.common.tiling import (
    LATENT_OVERLAP,
    LATENT_TILE,
    VAE_DECODER_PAD,
    VAE_DECODER_TILE,
    VAE_ENCODER_PAD,
    VAE_ENCODER_TILE,
    TiledVAE,
    tiled_latent,
)

UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
VAE_ADAPTER = "default_encoder"
LORA_RANK = 4
TIMESTEP = 999
_UNET_PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
    "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip
_VAE_PATTERNS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q",
                 "to_v", "to_out.0")  # fmt: skip


def sd21_unet() -> nn.Module:
    """SD2.1-base UNet2DConditionModel (865,910,724 parameters)."""
    return sd.build_unet(sd.SD21_BASE_UNET)


def sd_vae() -> nn.Module:
    """The SD (2.x) AutoencoderKL: 83,653,863 parameters, 8x down-sampling, 4 latent channels."""
    return sd.build_vae(sd.SD_VAE)


@dataclass(frozen=True)
class OSEDiffConfig:
    """Component configs (diffusers / transformers keyword arguments)."""

    unet: Mapping[str, Any] = field(default_factory=lambda: dict(sd.SD21_BASE_UNET))
    vae: Mapping[str, Any] = field(default_factory=lambda: dict(sd.SD_VAE))
    text: Mapping[str, Any] = field(default_factory=lambda: dict(sd.SD21_TEXT))

    @classmethod
    def paper(cls) -> OSEDiffConfig:
        return cls()

    @classmethod
    def tiny(cls) -> OSEDiffConfig:
        return cls(dict(sd.TINY_UNET), dict(sd.TINY_VAE), dict(sd.TINY_TEXT))


def _plain_weights(names: Iterable[str]) -> list[str]:
    return [n for n in names if "bias" not in n and "norm" not in n]


def unet_lora_targets(names: Iterable[str]) -> dict[str, list[str]]:
    """The official UNet module lists per adapter, from the UNet's parameter names (without
    adapters)."""
    out: dict[str, list[str]] = {a: [] for a in UNET_ADAPTERS}
    for n in _plain_weights(names):
        if not any(p in n for p in _UNET_PATTERNS):
            continue
        if "down_blocks" in n or "conv_in" in n:
            group = "default_encoder"
        elif "up_blocks" in n or "conv_out" in n:
            group = "default_decoder"
        else:
            group = "default_others"
        out[group].append(n.replace(".weight", ""))
    return out


def vae_lora_targets(names: Iterable[str]) -> list[str]:
    """The official VAE module list (the encoder's convs and projections, and quant_conv)."""
    out = []
    for n in _plain_weights(names):
        encoder = "encoder" in n and any(p in n for p in _VAE_PATTERNS)
        if encoder or ("quant_conv" in n and "post_quant_conv" not in n):
            out.append(n.replace(".weight", ""))
    return out


def param_names(module: nn.Module) -> list[str]:
    """Parameter names as in the plain (adapter-free) module."""
    names = (n for n, _ in module.named_parameters() if "lora_" not in n)
    return [n.replace(".base_layer.", ".") for n in names]


@dataclass
class Tiling:
    """Tile sizes (the official test script's defaults); ``enabled=False`` runs whole images."""

    enabled: bool = True
    latent_tile: int = LATENT_TILE
    latent_overlap: int = LATENT_OVERLAP
    encoder_tile: int = VAE_ENCODER_TILE
    decoder_tile: int = VAE_DECODER_TILE
    offload: bool = True  # park waiting VAE tiles on the CPU (matters on GPUs only)


class OSEDiffNet(nn.Module):
    """Text encoder + VAE + UNet with OSEDiff's LoRA adapters.

    ``unet_targets`` / ``vae_targets`` / ``rank`` come from a checkpoint; by default they are the
    official rules applied to this architecture. ``lora=False`` builds the plain SD networks (for
    checkpoints with LoRA already merged).
    """

    def __init__(
        self,
        cfg: OSEDiffConfig | None = None,
        unet_targets: Mapping[str, Sequence[str]] | None = None,
        vae_targets: Sequence[str] | None = None,
        rank: tuple[int, int] = (LORA_RANK, LORA_RANK),
        lora: bool = True,
    ) -> None:
        super().__init__()
        cfg = cfg or OSEDiffConfig.paper()
        self.cfg = cfg
        self.text_encoder = sd.build_text_encoder(cfg.text)
        self.vae = sd.build_vae(cfg.vae)
        self.unet = sd.build_unet(cfg.unet)
        self.tiling = Tiling()
        if lora:
            self.add_lora(unet_targets, vae_targets, rank)
        a = sd.alphas_cumprod()[TIMESTEP]
        self.register_buffer("alpha", a.reshape(1), persistent=False)

    def add_lora(
        self,
        unet_targets: Mapping[str, Sequence[str]] | None = None,
        vae_targets: Sequence[str] | None = None,
        rank: tuple[int, int] = (LORA_RANK, LORA_RANK),
    ) -> None:
        """Wrap the UNet and VAE with OSEDiff's adapters (all UNet adapters active)."""
        targets = unet_targets or unet_lora_targets(param_names(self.unet))
        for name in UNET_ADAPTERS:
            sd.add_lora(self.unet, targets[name], rank[0], name)
        sd.set_active_adapters(self.unet, UNET_ADAPTERS)
        vae_targets = vae_targets or vae_lora_targets(param_names(self.vae))
        sd.add_lora(self.vae, vae_targets, rank[1], VAE_ADAPTER)

    # -- the pipeline, step by step ----------------------------------------------------------
    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N, 77)`` token ids -> ``(N, 77, D)`` last hidden states (SD conditioning)."""
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def encode(
        self, x: torch.Tensor, generators: Sequence[torch.Generator] | None = None
    ) -> torch.Tensor:
        """Image in [-1, 1] -> scaled latent: the posterior mean, or (``generators``, one per
        image) a sample ``mean + std * randn`` with each image's noise from its own generator
        (``randn`` of the mean's shape, dtype and device, as diffusers draws it)."""
        t = self.tiling
        enc = TiledVAE(self.vae.encoder, False, t.encoder_tile, VAE_ENCODER_PAD, t.offload)
        h = enc(x) if t.enabled else self.vae.encoder(x)
        moments = self.vae.quant_conv(h.to(self.vae.quant_conv.weight.dtype))
        mean, logvar = moments.chunk(2, dim=1)
        z = mean
        if generators is not None:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            noise = [torch.randn(mean.shape[1:], generator=g, device=mean.device,
                                 dtype=mean.dtype) for g in generators]  # fmt: skip
            z = mean + std * torch.stack(noise)
        return z * sd.SCALING_FACTOR

    def eps(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction at t=999 (latent tiling for large latents)."""
        text = text.to(z.dtype)

        def unet(part: torch.Tensor) -> torch.Tensor:
            return self.unet(part, TIMESTEP, encoder_hidden_states=text).sample

        t = self.tiling
        return tiled_latent(unet, z, t.latent_tile, t.latent_overlap) if t.enabled else unet(z)

    def x0(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """DDPM x0 at t=999 in fp32 (the official scheduler step promotes to fp32 there):
        ``(z - sqrt(1 - a) * eps) / sqrt(a)``, a = alphas_cumprod[999]."""
        a = self.alpha
        return (z.float() - (1 - a) ** 0.5 * eps.float()) / a**0.5

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image (unclamped, about [-1, 1])."""
        dtype = self.vae.post_quant_conv.weight.dtype
        z = self.vae.post_quant_conv(x0.to(dtype) / sd.SCALING_FACTOR)
        t = self.tiling
        dec = TiledVAE(self.vae.decoder, True, t.decoder_tile, VAE_DECODER_PAD, t.offload)
        return dec(z) if t.enabled else self.vae.decoder(z)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Upscaled LR in [-1, 1] and prompt token ids -> SR in [-1, 1] (latent mode)."""
        z = self.encode(x)
        return self.decode(self.x0(z, self.eps(z, self.encode_text(ids)))).clamp(-1, 1)

    def base_unet_state(self) -> dict[str, torch.Tensor]:
        """The UNet's weights without LoRA, under plain diffusers names (``conv_in`` is
        OSEDiff's retrained one)."""
        out = {}
        for k, v in self.unet.state_dict().items():
            if "lora_" in k:
                continue
            out[k.replace(".base_layer.", ".")] = v
        return out


class OSEDiffCore(nn.Module):
    """VAE encode (latent mean) -> UNet at t=999 -> DDPM x0 -> VAE decode; no prompt model.

    Input: the x4-upscaled LR in [-1, 1] (512x512 at the papers' size). The text embedding is a
    fixed zero tensor of SD2.1's shape (1, 77, 1024): it costs the UNet the same as a real one.
    LoRA merged (no extra cost), no tiling: the benchmarks' architecture-only stand-in.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vae = sd_vae()
        self.unet = sd21_unet()
        self.register_buffer("alpha_999", sd.alphas_cumprod()[TIMESTEP].clone(), persistent=False)
        self.register_buffer("text", torch.zeros(1, 77, 1024), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(x).latent_dist.mean * sd.SCALING_FACTOR
        eps = self.unet(z, TIMESTEP, self.text.expand(x.shape[0], -1, -1)).sample
        a = self.alpha_999
        x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        return self.vae.decode(x0 / sd.SCALING_FACTOR).sample
