"""Stable Diffusion 2.1-base networks as OSEDiff uses them (diffusers classes, random weights).

OSEDiff's inference core: SD VAE encoder -> SD2.1-base UNet (one step at t=999) -> SD VAE
decoder, with LoRA merged (no extra cost) and a prompt from DAPE (RAM + tagger, not built here).
The configs below are SD2.1-base's published ones.
"""

from __future__ import annotations

import torch
from torch import nn


def sd21_unet() -> nn.Module:
    """SD2.1-base UNet2DConditionModel (865,910,724 parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024, use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )  # fmt: skip


def sd_vae() -> nn.Module:
    """The SD (2.x) AutoencoderKL: 83,653,863 parameters, 8x down-sampling, 4 latent channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )  # fmt: skip


class OSEDiffCore(nn.Module):
    """VAE encode (latent mean) -> UNet at t=999 -> DDPM x0 -> VAE decode; no prompt model.

    Input: the x4-upscaled LR in [-1, 1] (512x512 at the papers' size). The text embedding is a
    fixed zero tensor of SD2.1's shape (1, 77, 1024): it costs the UNet the same as a real one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vae = sd_vae()
        self.unet = sd21_unet()
        alphas = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0)
        self.register_buffer("alpha_999", alphas[999].clone(), persistent=False)
        self.register_buffer("text", torch.zeros(1, 77, 1024), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 0.18215
        z = self.vae.encode(x).latent_dist.mean * scale
        eps = self.unet(z, 999, self.text.expand(x.shape[0], -1, -1)).sample
        a = self.alpha_999
        x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        return self.vae.decode(x0 / scale).sample
