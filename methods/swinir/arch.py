"""SwinIR for real-world x4 SR (Liang et al., ICCVW 2021), written from its published structure.

Structure (the ``real_sr`` models of JingyunLiang/SwinIR):

* the input (RGB in [0, 1]) minus the DIV2K mean ``(0.4488, 0.4371, 0.4040)``, reflect-padded on
  the bottom/right to a multiple of the window;
* ``conv_first`` (3x3, 3 -> ``dim``); tokens = pixels (patch size 1), ``patch_embed.norm``
  (LayerNorm);
* ``layers``: residual Swin transformer blocks (RSTB). Each holds ``residual_group.blocks``, Swin
  blocks alternating plain and shifted (by ``window // 2``) windows: pre-norm window attention
  with a learned relative-position bias (``attn.relative_position_bias_table`` indexed by
  ``attn.relative_position_index``; shifted windows add -100 between regions that the cyclic
  shift brought together, ``attn_mask``), then a pre-norm GELU MLP (ratio 2); the group's output
  goes back to an image, through ``conv`` (``1conv``: one 3x3; ``3conv``: 3x3 to dim/4,
  LeakyReLU 0.2, 1x1, LeakyReLU 0.2, 3x3 back), and is added to the RSTB's input;
* ``norm`` (LayerNorm), ``conv_after_body`` (as the RSTB ``conv``) + the ``conv_first`` output;
* ``nearest+conv`` reconstruction: ``conv_before_upsample`` (3x3 to 64, LeakyReLU with torch's
  default slope 0.01), two nearest x2 upsamplings each followed by a 3x3 conv and LeakyReLU 0.2
  (``conv_up1``, ``conv_up2``), ``conv_hr`` + LeakyReLU 0.2, ``conv_last``;
* plus the mean back, cropped to 4x the unpadded input.

Names of parameters and buffers are the official checkpoint's (``params_ema``), including the
two buffers it stores (``relative_position_index``, and ``attn_mask`` of shifted blocks, computed
for the training size ``img_size``): an official state dict loads with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.common.swin import WindowAttention

MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K RGB mean the network subtracts
MASK = -100.0  # the shifted-window mask value between regions
FEAT = 64  # channels of the reconstruction convs (fixed in the official network)


@dataclass(frozen=True)
class SwinIRConfig:
    """Widths of a real-SR SwinIR. ``m()``: Real-SwinIR-M (11.7M parameters); ``l()``: -L."""

    dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    window: int = 8
    mlp_ratio: float = 2.0
    img_size: int = 64  # the training patch: the size of the stored attention masks
    resi: str = "1conv"  # 1conv | 3conv

    @classmethod
    def m(cls) -> SwinIRConfig:
        return cls()

    @classmethod
    def l(cls) -> SwinIRConfig:  # noqa: E743 (the official size name)
        return cls(dim=240, depths=(6,) * 9, heads=(8,) * 9, resi="3conv")

    @classmethod
    def tiny(cls) -> SwinIRConfig:
        """For tests: every kind of part, a few thousand parameters."""
        return cls(dim=12, depths=(2, 2), heads=(2, 3), window=4, img_size=16, resi="3conv")


def mirror_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """The official pre-padding of SwinIR's and FeMaSR's test scripts: bottom/right to the next
    multiple of ``multiple`` strictly above the size (a multiple gains a whole ``multiple``),
    filled with the image's mirror image (edge row repeated). An image shorter than half of
    ``multiple`` is only doubled."""
    h, w = x.shape[-2:]
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, : (h // multiple + 1) * multiple, :]
    return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, : (w // multiple + 1) * multiple]


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/w * W/w, w, w, C)``, windows in row-major order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, w, w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w, w, C)`` -> ``(B, H, W, C)``."""
    b = int(windows.shape[0] / (h * wd / w / w))
    x = windows.view(b, h // w, wd // w, w, w, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, wd, -1)


def shift_mask(h: int, wd: int, w: int, shift: int) -> torch.Tensor:
    """``(nW, w*w, w*w)``: 0 within a region of the cyclically shifted image, -100 across."""
    region = torch.zeros(1, h, wd, 1)
    bands = (slice(0, -w), slice(-w, -shift), slice(-shift, None))
    label = 0
    for ys in bands:
        for xs in bands:
            region[:, ys, xs, :] = label
            label += 1
    win = window_partition(region, w).view(-1, w * w)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, MASK).masked_fill(diff == 0, 0.0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, cfg: SwinIRConfig, heads: int, shifted: bool) -> None:
        super().__init__()
        window, shift = cfg.window, cfg.window // 2 if shifted else 0
        if cfg.img_size <= window:  # the official rule: one window covers the training patch
            window, shift = cfg.img_size, 0
        self.window, self.shift, self.img_size = window, shift, cfg.img_size
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = WindowAttention(cfg.dim, window, heads)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))
        mask = shift_mask(cfg.img_size, cfg.img_size, window, shift) if shift else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(y, self.window).view(-1, self.window * self.window, c)
        mask = None
        if self.shift:
            same = (h, w) == (self.img_size, self.img_size)
            mask = self.attn_mask if same else shift_mask(h, w, self.window, self.shift).to(x)
        y = self.attn(windows, mask).view(-1, self.window, self.window, c)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


def _resi_conv(dim: int, kind: str) -> nn.Module:
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        q = dim // 4
        return nn.Sequential(nn.Conv2d(dim, q, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(q, q, 1),
                             nn.LeakyReLU(0.2), nn.Conv2d(q, dim, 3, 1, 1))  # fmt: skip
    raise ValueError(f"resi_connection {kind!r}: 1conv or 3conv")


def _to_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


class ResidualGroup(nn.Module):
    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(cfg, heads, i % 2 == 1) for i in range(depth))


class RSTB(nn.Module):
    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int) -> None:
        super().__init__()
        self.residual_group = ResidualGroup(cfg, depth, heads)
        self.conv = _resi_conv(cfg.dim, cfg.resi)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = x
        for block in self.residual_group.blocks:
            y = block(y, size)
        return self.conv(_to_image(y, size)).flatten(2).transpose(1, 2) + x


class PatchNorm(nn.Module):
    """Holds the token LayerNorm under the official name ``patch_embed.norm``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class SwinIR(nn.Module):
    """``(N, 3, h, w)`` RGB in [0, 1] -> ``(N, 3, 4h, 4w)`` (not clamped); any h, w >= 1."""

    scale = 4

    def __init__(self, cfg: SwinIRConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SwinIRConfig.m()
        if len(cfg.depths) != len(cfg.heads):
            raise ValueError("SwinIRConfig: depths and heads need the same length")
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(3, cfg.dim, 3, 1, 1)
        self.patch_embed = PatchNorm(cfg.dim)
        self.layers = nn.ModuleList(RSTB(cfg, d, h) for d, h in zip(cfg.depths, cfg.heads))
        self.norm = nn.LayerNorm(cfg.dim)
        self.conv_after_body = _resi_conv(cfg.dim, cfg.resi)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(cfg.dim, FEAT, 3, 1, 1),
                                                  nn.LeakyReLU())  # fmt: skip
        self.conv_up1 = nn.Conv2d(FEAT, FEAT, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(FEAT, FEAT, 3, 1, 1)
        self.conv_hr = nn.Conv2d(FEAT, FEAT, 3, 1, 1)
        self.conv_last = nn.Conv2d(FEAT, 3, 3, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        t = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            t = layer(t, size)
        return _to_image(self.norm(t), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        win = self.cfg.window
        x = F.pad(x, (0, (win - w % win) % win, 0, (win - h % win) % win), "reflect")
        x = x - self.mean.to(x)
        x = self.conv_first(x)
        x = self.conv_after_body(self.features(x)) + x
        x = self.conv_before_upsample(x)
        for conv in (self.conv_up1, self.conv_up2):
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))
        return (x + self.mean.to(x))[:, :, : h * self.scale, : w * self.scale]


def random_state_dict(cfg: SwinIRConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in the official layout that exercise every part (a fresh
    network's position-bias tables are zero): see ``methods/common/release.py``; bias tables
    ~ N(0, 0.5^2)."""
    from harness.methods.common.release import seeded_state_dict

    return seeded_state_dict(SwinIR(cfg), seed, {"relative_position_bias_table": 0.5})
