"""The AdcSR network (Chen et al., "Adversarial Diffusion Compression for Real-World Image
Super-Resolution", CVPR 2025), written from its published structure.

Graph (LR side multiple of 16; 128x128 -> 512x512 at the paper's size)::

    RGB in [-1, 1] -> PixelUnshuffle(2) -> pruned SD2.1 UNet (no time embedding, no
    cross-attention) -> VAE-decoder mid block -> pruned VAE-decoder up blocks -> RGB

Every width is a config value: ``AdcSRConfig.paper()`` is the published model (SD2.1-base widths
kept to 75%: 240/480/960/960, 5/10/20/20 heads, decoder 64/128/256/256); ``AdcSRConfig.tiny()``
shrinks everything for tests. Parameter names follow diffusers (``down_blocks.0.resnets.0.conv1``,
``attn1.to_q``...) so that official and teacher checkpoints map onto them by prefix alone.

Unlike the official code, skip connections live in a local list: the forward pass has no global
state, is re-entrant (threads, nested calls) and traces under ``torch.compile``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GROUP_CHOICES = (32, 24, 16, 12, 8, 6, 4, 2, 1)


def num_groups(channels: int) -> int:
    """GroupNorm groups of the pruned model: the first of 32, 24, 16, ... dividing ``channels``."""
    return next(g for g in GROUP_CHOICES if channels % g == 0)


@dataclass(frozen=True)
class AdcSRConfig:
    """Widths of the (already pruned) network."""

    block_out_channels: tuple[int, ...] = (240, 480, 960, 960)
    heads: tuple[int, ...] = (5, 10, 20, 20)
    layers_per_block: int = 2
    in_channels: int = 12  # PixelUnshuffle(2) of RGB
    ff_mult: int = 4
    decoder_channels: tuple[int, ...] = (64, 128, 256, 256)
    decoder_layers_per_block: int = 2
    unet_norm_eps: float = 1e-5
    attn_norm_eps: float = 1e-6
    decoder_norm_eps: float = 1e-6

    @classmethod
    def paper(cls) -> AdcSRConfig:
        return cls()

    @classmethod
    def tiny(cls) -> AdcSRConfig:
        return cls(
            block_out_channels=(24, 48, 48, 48),
            heads=(2, 2, 4, 4),
            decoder_channels=(8, 16, 24, 24),
        )

    @property
    def latent_channels(self) -> int:
        """Width where UNet output meets the decoder mid block."""
        return self.decoder_channels[-1]


# ----------------------------------------------------------------------------- building blocks


class ResnetBlock(nn.Module):
    """diffusers' ResnetBlock2D without time embedding: two GroupNorm-SiLU-conv, residual."""

    def __init__(self, cin: int, cout: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(cin), cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups(cout), cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


class Attention(nn.Module):
    """Multi-head attention with diffusers' parameter names (``to_q``, ``to_out.0``)."""

    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(dim, dim, bias=bias)
        self.to_v = nn.Linear(dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C)
        b, n, c = x.shape
        q, k, v = (
            t.view(b, n, self.heads, c // self.heads).transpose(1, 2)
            for t in (self.to_q(x), self.to_k(x), self.to_v(x))
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, c))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.net = nn.ModuleList(
            [GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    """BasicTransformerBlock with the cross-attention (``attn2``, ``norm2``) removed."""

    def __init__(self, dim: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, bias=False)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer2DModel with linear projections (SD2.x), self-attention only."""

    def __init__(self, dim: int, heads: int, ff_mult: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(dim), dim, eps=eps)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, heads, ff_mult)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c))
        for block in self.transformer_blocks:
            t = block(t)
        t = self.proj_out(t)
        return x + t.reshape(b, h, w, c).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _transformers(dim: int, heads: int, n: int, cfg: AdcSRConfig) -> nn.ModuleList:
    return nn.ModuleList(
        [SpatialTransformer(dim, heads, cfg.ff_mult, cfg.attn_norm_eps) for _ in range(n)]
    )


class DownBlock(nn.Module):
    def __init__(self, cin, cout, heads, layers, attention, downsample, cfg: AdcSRConfig):
        super().__init__()
        eps = cfg.unet_norm_eps
        self.resnets = nn.ModuleList(
            [ResnetBlock(cin if i == 0 else cout, cout, eps) for i in range(layers)]
        )
        self.attentions = _transformers(cout, heads, layers, cfg) if attention else None
        self.downsamplers = nn.ModuleList([Downsample(cout)]) if downsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for i, res in enumerate(self.resnets):
            x = res(x)
            if self.attentions is not None:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x


class UpBlock(nn.Module):
    def __init__(self, prev, cout, skip_in, heads, layers, attention, upsample, cfg):
        super().__init__()
        eps = cfg.unet_norm_eps
        self.resnets = nn.ModuleList()
        for i in range(layers):
            res_skip = skip_in if i == layers - 1 else cout
            res_in = prev if i == 0 else cout
            self.resnets.append(ResnetBlock(res_in + res_skip, cout, eps))
        self.attentions = _transformers(cout, heads, layers, cfg) if attention else None
        self.upsamplers = nn.ModuleList([Upsample(cout)]) if upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for i, res in enumerate(self.resnets):
            x = res(torch.cat([x, skips.pop()], dim=1))
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """UNet mid block: resnet, self-attention transformer, resnet."""

    def __init__(self, dim: int, heads: int, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(dim, dim, cfg.unet_norm_eps) for _ in range(2)])
        self.attentions = nn.ModuleList(
            [SpatialTransformer(dim, heads, cfg.ff_mult, cfg.attn_norm_eps)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


# ----------------------------------------------------------------------------- the three parts


class PrunedUNet(nn.Module):
    """SD2.1-base UNet without time embedding or text, all widths set by the config."""

    def __init__(self, cfg: AdcSRConfig) -> None:
        super().__init__()
        ch, heads, n = cfg.block_out_channels, cfg.heads, len(cfg.block_out_channels)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for i in range(n):
            cin = ch[0] if i == 0 else ch[i - 1]
            last = i == n - 1
            self.down_blocks.append(
                DownBlock(
                    cin,
                    ch[i],
                    heads[i],
                    cfg.layers_per_block,
                    attention=not last,
                    downsample=not last,
                    cfg=cfg,
                )
            )
        self.mid_block = MidBlock(ch[-1], heads[-1], cfg)
        rch, rheads = ch[::-1], heads[::-1]
        self.up_blocks = nn.ModuleList()
        prev = ch[-1]
        for i in range(n):
            skip_in = rch[min(i + 1, n - 1)]
            self.up_blocks.append(
                UpBlock(
                    prev,
                    rch[i],
                    skip_in,
                    rheads[i],
                    cfg.layers_per_block + 1,
                    attention=i > 0,
                    upsample=i < n - 1,
                    cfg=cfg,
                )
            )
            prev = rch[i]
        self.conv_norm_out = nn.GroupNorm(num_groups(ch[0]), ch[0], eps=cfg.unet_norm_eps)
        self.conv_out = nn.Conv2d(ch[0], cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        skips = [x]  # local: no global state, re-entrant
        for block in self.down_blocks:
            x = block(x, skips)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VAEAttention(nn.Module):
    """The VAE mid block's single-head attention with GroupNorm and residual."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(num_groups(dim), dim, eps=eps)
        self.attn = Attention(dim, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        return x + self.attn(t).transpose(1, 2).reshape(b, c, h, w)


class DecoderMid(nn.Module):
    """VAE decoder mid block (resnet, attention, resnet); trained in stage 2 as the UNet's tail."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(dim, dim, eps) for _ in range(2)])
        self.attentions = nn.ModuleList([VAEAttention(dim, eps)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class DecoderTail(nn.Module):
    """The pruned VAE decoder's up blocks and output head (frozen stage-1 weights)."""

    def __init__(self, cfg: AdcSRConfig) -> None:
        super().__init__()
        ch, eps = cfg.decoder_channels[::-1], cfg.decoder_norm_eps
        layers = cfg.decoder_layers_per_block + 1
        self.up_blocks = nn.ModuleList()
        prev = ch[0]
        for i, cout in enumerate(ch):
            block = nn.Module()
            block.resnets = nn.ModuleList(
                [ResnetBlock(prev if j == 0 else cout, cout, eps) for j in range(layers)]
            )
            block.upsamplers = nn.ModuleList([Upsample(cout)]) if i < len(ch) - 1 else None
            self.up_blocks.append(block)
            prev = cout
        self.conv_norm_out = nn.GroupNorm(num_groups(ch[-1]), ch[-1], eps=eps)
        self.conv_out = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.up_blocks:
            for res in block.resnets:
                x = res(x)
            if block.upsamplers is not None:
                x = block.upsamplers[0](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AdcSRNet(nn.Module):
    """The whole network: ``(N, 3, h, w)`` in [-1, 1] -> ``(N, 3, 4h, 4w)`` (h, w multiples of
    16), before the test-time colour matching (done by the adapter)."""

    def __init__(self, cfg: AdcSRConfig | None = None) -> None:
        super().__init__()
        self.config = cfg or AdcSRConfig.paper()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.unet = PrunedUNet(self.config)
        self.mid = DecoderMid(self.config.latent_channels, self.config.decoder_norm_eps)
        self.decoder = DecoderTail(self.config)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stage-2 student feature: decoder mid block output (latent width, h/2 x w/2)."""
        return self.mid(self.unet(self.unshuffle(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))
