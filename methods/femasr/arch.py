"""FeMaSR x4 (Chen et al., ACM MM 2022), the LQ-stage network, written from its published
structure (chaofengc/FeMaSR, ``FeMaSRNet(codebook_params=[[32, 1024, 512]], LQ_stage=True,
scale_factor=4)``, norm ``gn``, activation ``silu``).

For an LR ``x`` (RGB in [0, 1], already padded by the adapter to a multiple of 16):

* encoder: ``in_conv`` 4x4 conv, padding 1 (3 -> 256; the map loses one pixel per side pair),
  one down block (3x3 stride-2 conv, two residual blocks), four Swin groups (the RSTBs of
  SwinIR: 256 channels, 6 blocks, 8 heads, window 8, MLP ratio 4, training size 32), two up
  blocks (nearest x2, 3x3 conv, two residual blocks; 256 and 128 channels). The Swin output and
  the two up blocks' outputs are the features ``f0, f1, f2``;
* quantisation: 1x1 conv (256 -> 512), nearest of 1024 codes by squared distance
  ``|z|^2 + |e|^2 - 2 z.e`` (straight-through form ``z + (e - z)`` kept: it rounds), 3x3 conv
  back to 256;
* decoder: three blocks (nearest x2, 3x3 conv, two residual blocks: 256, 128, 64 channels), the
  second and third taking ``f1`` and ``f2`` added to their input; ``out_conv`` to RGB.

A residual block is ``x + conv(act(norm(conv(act(norm(x))))))`` with GroupNorm(32, eps 1e-6) and
SiLU. Module names are the official checkpoint's (``params``), so it loads with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.methods.swinir.arch import RSTB, SwinIRConfig, mirror_pad


@dataclass(frozen=True)
class FeMaSRConfig:
    """Widths. ``paper()``: the released x4 model; ``tiny()`` for tests."""

    wide: int = 256  # channels at the codebook scale and the first up block
    mid: int = 128  # second up block / second decoder block
    narrow: int = 64  # last decoder block
    codes: int = 1024
    code_dim: int = 512
    swin_groups: int = 4
    swin_depth: int = 6
    swin_heads: int = 8
    window: int = 8
    groups: int = 32  # GroupNorm groups

    @classmethod
    def paper(cls) -> FeMaSRConfig:
        return cls()

    @classmethod
    def tiny(cls) -> FeMaSRConfig:
        return cls(wide=16, mid=8, narrow=8, codes=32, code_dim=8, swin_groups=1, swin_depth=2,
                   swin_heads=2, window=4, groups=4)  # fmt: skip

    def swin(self) -> SwinIRConfig:
        return SwinIRConfig(dim=self.wide, depths=(self.swin_depth,) * self.swin_groups,
                            heads=(self.swin_heads,) * self.swin_groups, window=self.window,
                            mlp_ratio=4.0, img_size=32)  # fmt: skip


class Norm(nn.Module):
    """GroupNorm under the official name ``<i>.norm``."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ResBlock(nn.Module):
    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        half = (Norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1))
        self.conv = nn.Sequential(*half, *(Norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


def _up_block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, 1, 1),
                         ResBlock(cout, groups), ResBlock(cout, groups))  # fmt: skip


class SwinLayers(nn.Module):
    def __init__(self, cfg: SwinIRConfig) -> None:
        super().__init__()
        self.swin_blks = nn.ModuleList(RSTB(cfg, d, h) for d, h in zip(cfg.depths, cfg.heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.reshape(b, c, h * w).transpose(1, 2)
        for blk in self.swin_blks:
            t = blk(t, (h, w))
        return t.transpose(1, 2).reshape(b, c, h, w)


class Encoder(nn.Module):
    def __init__(self, cfg: FeMaSRConfig) -> None:
        super().__init__()
        g = cfg.groups
        self.in_conv = nn.Conv2d(3, cfg.wide, 4, padding=1)
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cfg.wide, cfg.wide, 3, stride=2, padding=1),
                          ResBlock(cfg.wide, g), ResBlock(cfg.wide, g)),
            SwinLayers(cfg.swin()),
            _up_block(cfg.wide, cfg.wide, g),
            _up_block(cfg.wide, cfg.mid, g),
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.in_conv(x)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats[-3:]


class Quantizer(nn.Module):
    def __init__(self, codes: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codes, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, z.shape[-1])
        book = self.embedding.weight
        dist = (torch.sum(flat**2, dim=1, keepdim=True) + torch.sum(book**2, dim=1)
                - 2 * torch.matmul(flat, book.t()))  # fmt: skip
        onehot = torch.zeros(flat.shape[0], book.shape[0]).to(z)
        onehot.scatter_(1, torch.argmin(dist, dim=1).unsqueeze(1), 1)
        zq = torch.matmul(onehot, book).view(z.shape)
        zq = z + (zq - z)  # the straight-through form, evaluated as the official code does
        return zq.permute(0, 3, 1, 2).contiguous()


class CombineQuant(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.block = _up_block(cin, cout, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FeMaSRNet(nn.Module):
    """``(N, 3, h, w)`` with h, w multiples of 16 -> ``(N, 3, 4h, 4w)`` (not clamped)."""

    def __init__(self, cfg: FeMaSRConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FeMaSRConfig.paper()
        g = cfg.groups
        self.multiscale_encoder = Encoder(cfg)
        self.decoder_group = nn.ModuleList([DecoderBlock(cfg.wide, cfg.wide, g),
                                            DecoderBlock(cfg.wide, cfg.mid, g),
                                            DecoderBlock(cfg.mid, cfg.narrow, g)])  # fmt: skip
        self.out_conv = nn.Conv2d(cfg.narrow, 3, 3, 1, 1)
        self.quantize_group = nn.ModuleList([Quantizer(cfg.codes, cfg.code_dim)])
        self.before_quant_group = nn.ModuleList([nn.Conv2d(cfg.wide, cfg.code_dim, 1)])
        self.after_quant_group = nn.ModuleList([CombineQuant(cfg.code_dim, cfg.wide)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0, f1, f2 = self.multiscale_encoder(x)
        z = self.quantize_group[0](self.before_quant_group[0](f0))
        y = self.decoder_group[0](self.after_quant_group[0](z))
        y = self.decoder_group[1](y + f1)
        y = self.decoder_group[2](y + f2)
        return self.out_conv(y)


def mirror_pad16(x: torch.Tensor) -> torch.Tensor:
    """The official ``test()`` padding: to the next multiple of 16 strictly above the size."""
    return mirror_pad(x, 16)


def random_state_dict(cfg: FeMaSRConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in the official layout that exercise every part: see
    ``methods/common/release.py``; the Swin bias tables ~ N(0, 0.5^2), the codebook ~ N(0, 1)."""
    from harness.methods.common.release import seeded_state_dict

    stds = {"relative_position_bias_table": 0.5, "embedding.weight": 1.0}
    return seeded_state_dict(FeMaSRNet(cfg), seed, stds)
