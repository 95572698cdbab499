"""SinSR's networks (Wang et al., "SinSR: Diffusion-Based Image Super-Resolution in a Single
Step", CVPR 2024), written from their published structure.

* :class:`SwinUNet`: ResShift's denoiser (``models.unet.UNetModelSwin``): a UNet of
  scale-shift ResBlocks with a Swin-Transformer layer after the first ResBlock of every level
  listed in ``attention_resolutions`` and in the middle; it predicts x0 directly. At the paper's
  widths it has 118,593,583 parameters.
* :class:`VQAutoencoder`: the LDM VQ-f4 autoencoder (``ldm.models.autoencoder.VQModelTorch``):
  encoder + ``quant_conv`` (no quantisation on the way in), nearest-code quantisation over 8192
  codes + ``post_quant_conv`` + decoder on the way out.
* :class:`SinSRNet`: one sampling step, ``(lq, noise) -> image`` in [-1, 1].

Parameter and buffer names are those of the official checkpoints (``input_blocks.1.1.blocks.0
.attn.qkv``, ``encoder.down.0.block.1.conv1``...), so they load strictly.

Numerics follow the official code operation by operation (the explicit window-attention
matmuls, GroupNorm computed in fp32, ``x * sigmoid(x)`` in the autoencoder, the quantiser's
distance formula), so that fp32 outputs agree bit for bit where the kernels are the same.
Two official details are reproduced on purpose:

* the shifted-window attention mask. The official block compares the stored resolution (a
  list) with the input size (a tuple), never equal, so the mask stored in the checkpoint is never
  used and is recomputed on every call -- by a routine that indexes its (1, 1, H, W) label image
  as if it were (1, H, W, 1) and transposes each window. The resulting mask
  (:func:`shifted_window_mask`) separates tokens by the *column* inside the window, with region
  boundaries taken from the window's *row* position; shift-0 blocks get an all-zero mask;
* mixed precision (``half_torso``): the official fp16 inference converts only the Conv/Linear
  layers of the UNet's input/middle/output blocks; GroupNorm runs in fp32, the time embedding
  and output head stay fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.common.swin import WindowAttention

GROUPS = 32  # GroupNorm groups everywhere (official normalization()/Normalize())


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class SwinUNetConfig:
    """ResShift's UNetModelSwin settings (``configs/SinSR.yaml`` ``model.params``)."""

    image_size: int = 64  # latent size the Swin layers are built for (window/shift choice)
    in_channels: int = 6  # latent (3) + LR (3)
    model_channels: int = 160
    out_channels: int = 3
    num_res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    attention_resolutions: tuple[int, ...] = (64, 32, 16, 8)
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_head_channels: int = 32
    swin_depth: int = 2
    swin_embed_dim: int = 192
    window_size: int = 8
    mlp_ratio: float = 4.0

    @classmethod
    def paper(cls) -> SwinUNetConfig:
        return cls()

    @classmethod
    def tiny(cls) -> SwinUNetConfig:
        """Widths stay multiples of 32 (GroupNorm(32)); two levels, 4x4 windows."""
        return cls(
            image_size=16, model_channels=32, num_res_blocks=(1, 1),
            attention_resolutions=(16, 8), channel_mult=(1, 2), num_head_channels=16,
            swin_depth=2, swin_embed_dim=32, window_size=4, mlp_ratio=2.0,
        )  # fmt: skip

    @property
    def downsample(self) -> int:
        """The latent side must be a multiple of this (windows at the deepest level)."""
        return 2 ** (len(self.channel_mult) - 1) * self.window_size


@dataclass(frozen=True)
class VQConfig:
    """The LDM VQ-f4 autoencoder (``autoencoder.params`` of ``configs/SinSR.yaml``)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 3
    embed_dim: int = 3
    n_embed: int = 8192

    @classmethod
    def paper(cls) -> VQConfig:
        return cls()

    @classmethod
    def tiny(cls) -> VQConfig:
        return cls(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, n_embed=64)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


# ----------------------------------------------------------------------------- UNet parts


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in fp32 whatever the input dtype (official GroupNorm32)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(GROUPS, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f), sin(t f)]``, ``f_i = max_period^(-i / (dim/2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs.to(t.device)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM by the time embedding (scale/shift), GroupNorm-SiLU-conv."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out = out_channels or channels
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out, out, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = torch.chunk(self.emb_layers(emb).type(h.dtype)[..., None, None], 2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[1:](h)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """``(n_windows, w*w, w*w)`` additive mask (0 or -100) exactly as the official block builds
    it for an input of ``height x width`` tokens (see the module docstring).

    The official routine labels rows ``[0, H-w)``, ``[H-w, H-s)``, ``[H-s, H)`` of a label image
    and then, through its index mix-up, gives token (i, j) of window (r, c) the label of row
    ``r*w + j``. Tokens with different labels may not attend to each other.
    """
    n_r, n_c = height // window, width // window
    if shift == 0:  # every token has the same label
        return torch.zeros(n_r * n_c, window * window, window * window)
    rows = torch.arange(n_r)[:, None] * window + torch.arange(window)[None, :]  # (n_r, w): r*w+j
    label = torch.zeros_like(rows)
    label[rows >= height - window] = 1
    label[rows >= height - shift] = 2
    per_token = label[:, None, None, :].expand(n_r, n_c, window, window)
    per_token = per_token.reshape(n_r * n_c, window * window)
    differ = per_token[:, None, :] != per_token[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, -100.0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and a 1x1-conv MLP on ``(B, C, H, W)``, GroupNorm before
    each, residual around each."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int,
                 mlp_ratio: float) -> None:  # fmt: skip
        super().__init__()
        if resolution <= window:  # official: no partition when the window covers the input
            window, shift = resolution, 0
        self.window, self.shift = window, shift
        self.norm1 = GroupNorm32(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = GroupNorm32(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0:  # stored like the official block (and never used by it either)
            self.register_buffer(
                "attn_mask", shifted_window_mask(resolution, resolution, window, shift)
            )

    def _partition(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.window
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).contiguous()
        return x.view(-1, s * s, c)

    def _merge(self, windows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        s = self.window
        x = windows.view(b, h // s, w // s, s, s, -1).permute(0, 5, 1, 3, 2, 4).contiguous()
        return x.view(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(2, 3))
        mask = None
        if s:
            mask = shifted_window_mask(h, w, self.window, s).to(x.device, x.dtype)
        y = self._merge(self.attn(self._partition(y), mask), b, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class _Proj(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SwinLayer(nn.Module):
    """1x1 conv in to the embedding width, ``depth`` Swin blocks (odd ones shifted by half a
    window), 1x1 conv back. No residual around the layer (official ``BasicLayer``)."""

    def __init__(self, channels: int, cfg: SwinUNetConfig, resolution: int) -> None:
        super().__init__()
        dim = cfg.swin_embed_dim
        heads = dim // cfg.num_head_channels
        self.patch_embed = _Proj(channels, dim)
        self.patch_unembed = _Proj(dim, channels)
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, cfg.window_size,
                      0 if i % 2 == 0 else cfg.window_size // 2, cfg.mlp_ratio)
            for i in range(cfg.swin_depth)
        )  # fmt: skip

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.patch_unembed(x)


class EmbedSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class SwinUNet(nn.Module):
    """``forward(x, t, lq)``: latent ``x`` (already divided by the input scale), integer
    timesteps ``t`` and the LR image ``lq`` in [-1, 1] at the latent's size -> predicted x0."""

    def __init__(self, cfg: SwinUNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.torso_dtype = torch.float32
        mc = cfg.model_channels
        temb = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, temb), nn.SiLU(), nn.Linear(temb, temb))
        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        )
        skips = [ch]
        ds = cfg.image_size
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.num_res_blocks[level]):
                layers: list[nn.Module] = [ResBlock(ch, temb, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_resolutions and j == 0:
                    layers.append(SwinLayer(ch, cfg, ds))
                self.input_blocks.append(EmbedSequential(*layers))
                skips.append(ch)
            if level != last:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skips.append(ch)
                ds //= 2
        self.middle_block = EmbedSequential(
            ResBlock(ch, temb), SwinLayer(ch, cfg, ds), ResBlock(ch, temb)
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks[level] + 1):
                layers = [ResBlock(ch + skips.pop(), temb, int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_resolutions and i == 0:
                    layers.append(SwinLayer(ch, cfg, ds))
                if level and i == cfg.num_res_blocks[level]:
                    layers.append(Upsample(ch))
                    ds *= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1)
        )

    def half_torso(self, dtype: torch.dtype) -> None:
        """The official fp16 scheme: Conv/Linear weights of the input, middle and output blocks
        in ``dtype``; GroupNorm, the Swin bias tables, time embedding and head stay fp32."""
        self.torso_dtype = dtype
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.to(dtype)

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        if lq.shape[2:] != x.shape[2:]:
            raise ValueError(f"lq {tuple(lq.shape)} and latent {tuple(x.shape)} sizes differ")
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        emb = emb.type(self.torso_dtype)
        x = torch.cat([x, lq], dim=1)
        h = x.type(self.torso_dtype)
        hs = []
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


# ----------------------------------------------------------------------------- VQ-f4


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)  # the LDM code's nonlinearity (not F.silu: bits differ)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=1e-6)


class VQResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class VQAttention(nn.Module):
    """Single-head self-attention over all positions (LDM ``AttnBlock``), with a residual.

    ``math=True`` computes it with explicit batched matmuls like the official code without
    xformers (bit-compatible); otherwise ``scaled_dot_product_attention`` (memory-efficient
    kernels, as the official code uses xformers on a GPU): the score matrix has (H*W)^2
    entries, 1 GiB in fp32 for a 128x128 LR already.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.math = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        if self.math:
            w = torch.bmm(q.reshape(b, c, hh * ww).permute(0, 2, 1), k.reshape(b, c, hh * ww))
            w = torch.softmax(w * (int(c) ** (-0.5)), dim=2)
            out = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        else:
            q, k, v = (t.reshape(b, 1, c, hh * ww).transpose(-1, -2) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class _Mid(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.block_1 = VQResBlock(ch, ch)
        self.attn_1 = VQAttention(ch)
        self.block_2 = VQResBlock(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Down(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom by one (LDM ``Downsample``)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class _Up(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            setattr(self, name, resample)


class VQEncoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        mults = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        for i, m in enumerate(cfg.ch_mult):
            cin, cout = cfg.ch * mults[i], cfg.ch * m
            blocks = [VQResBlock(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks)]
            last = i == len(cfg.ch_mult) - 1
            self.down.append(_Level(blocks, None if last else _Down(cout), "downsample"))
        top = cfg.ch * cfg.ch_mult[-1]
        self.mid = _Mid(top)
        self.norm_out = _norm(top)
        self.conv_out = nn.Conv2d(top, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VQDecoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        ch = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, ch, 3, padding=1)
        self.mid = _Mid(ch)
        levels: list[nn.Module] = []
        for i in reversed(range(len(cfg.ch_mult))):
            cout = cfg.ch * cfg.ch_mult[i]
            blocks = [
                VQResBlock(ch if j == 0 else cout, cout) for j in range(cfg.num_res_blocks + 1)
            ]
            ch = cout
            levels.insert(0, _Level(blocks, _Up(cout) if i else None, "upsample"))
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Quantizer(nn.Module):
    """Nearest of ``n_embed`` codes by squared distance ``|z|^2 + |e|^2 - 2 z.e`` (the official
    formula; ties and near-ties resolve as there). Distances are computed in chunks of
    ``CHUNK`` positions per image, so an image's codes never depend on its batch."""

    CHUNK = 16384

    def __init__(self, n_embed: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).contiguous().view(b, -1, c)
        e = self.embedding.weight
        e2 = torch.sum(e**2, dim=1)
        et = e.t()
        index = torch.empty(b, h * w, dtype=torch.long, device=z.device)
        for i in range(b):
            for s in range(0, h * w, self.CHUNK):
                rows = zf[i, s : s + self.CHUNK]
                d = (
                    torch.sum(rows**2, dim=1, keepdim=True)
                    + e2
                    - 2 * torch.einsum("bd,dn->bn", rows, et)
                )
                index[i, s : s + self.CHUNK] = torch.argmin(d, dim=1)
        zq = self.embedding(index).view(b, h, w, c)
        zp = z.permute(0, 2, 3, 1)
        return (zp + (zq - zp)).permute(0, 3, 1, 2).contiguous()  # the official z + (zq - z)


class VQAutoencoder(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VQEncoder(cfg)
        self.decoder = VQDecoder(cfg)
        self.quantize = Quantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> continuous latent (no quantisation, as SinSR encodes)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize(z)))


# ----------------------------------------------------------------------------- one step


SINSR_FLOOR = math.sqrt(0.001)  # SinSR's code caps sqrt(eta_1) here; ResShift's no longer does


def exponential_sqrt_etas(
    steps: int, min_noise_level: float, etas_end: float, kappa: float, power: float,
    floor: float | None = SINSR_FLOOR,
) -> list[float]:  # fmt: skip
    """ResShift's ``exponential`` schedule of sqrt(eta_t), t = 0..steps-1, in float64.
    sqrt(eta_1) = min(min_noise_level / kappa, min_noise_level[, floor]): SinSR's copy of the
    code also takes ``floor`` (sqrt(0.001)); ResShift's current code does not (``floor=None``),
    which changes its 4-step schedule (0.1 instead of 0.0316) but not the 15-step one."""
    starts = [min_noise_level / kappa, min_noise_level] + ([floor] if floor is not None else [])
    start = min(starts)
    increaser = math.exp(1 / (steps - 1) * math.log(etas_end / start))
    out = []
    for i in range(steps):
        p = (i / (steps - 1)) ** power * (steps - 1)
        out.append(increaser**p * start)
    return out


@dataclass(frozen=True)
class Schedule:
    """SinSR's diffusion settings (``configs/SinSR.yaml`` ``diffusion.params``)."""

    steps: int = 15
    min_noise_level: float = 0.04
    etas_end: float = 0.99
    kappa: float = 2.0
    power: float = 0.3
    scale_factor: float = 1.0

    def last(self) -> tuple[float, float, int]:
        """(noise coefficient kappa*sqrt(eta_T), input divisor sqrt(kappa^2 eta_T + 1), T-1),
        the coefficients rounded to fp32 the way the official code applies them."""
        sqrt_eta = torch.tensor(exponential_sqrt_etas(
            self.steps, self.min_noise_level, self.etas_end, self.kappa, self.power
        )[-1], dtype=torch.float64)  # fmt: skip
        coef = (self.kappa * sqrt_eta).float()
        eta = (sqrt_eta**2).float()
        std = torch.sqrt(eta * self.kappa**2 + 1)
        return float(coef), float(std), self.steps - 1


class SinSRNet(nn.Module):
    """One SinSR step. ``forward(lq, noise)``: ``lq`` the LR in [-1, 1], sides multiples of
    the UNet's :attr:`SwinUNetConfig.downsample`; ``noise`` standard normal of the latent's
    shape -> image in [-1, 1] (not clamped), ``factor`` times larger."""

    def __init__(self, unet: SwinUNetConfig, vq: VQConfig, schedule: Schedule = Schedule()):
        super().__init__()
        self.unet = SwinUNet(unet)
        self.vq = VQAutoencoder(vq)
        self.schedule = schedule
        self.sf = vq.factor
        self.coef, self.std, self.t = schedule.last()

    def vq_dtype(self) -> torch.dtype:
        return self.vq.quant_conv.weight.dtype

    def _const(self, value: float, like: torch.Tensor) -> torch.Tensor:
        # an expanded fp32 tensor, not a Python scalar: the official code divides and
        # multiplies by broadcast tensors, and scalar kernels may round differently
        return torch.tensor(value, dtype=torch.float32, device=like.device).expand(like.shape)

    def forward(self, lq: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(lq, scale_factor=self.sf, mode="bicubic")
        z_y = self.vq.encode(y.type(self.vq_dtype())) * self.schedule.scale_factor
        z_y = z_y.type(lq.dtype)
        z_t = z_y + self._const(self.coef, z_y) * noise
        t = torch.full((lq.shape[0],), self.t, dtype=torch.long, device=lq.device)
        x0 = self.unet(z_t / self._const(self.std, z_t), t, lq)
        z = (1 / self.schedule.scale_factor * x0).type(self.vq_dtype())
        return self.vq.decode(z).type(lq.dtype)
