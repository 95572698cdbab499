"""S3Diff networks: SD-Turbo parts with degradation-modulated LoRA, and the degradation estimator.

S3Diff (Zhang et al., arXiv:2409.17058) is SD-Turbo run one step at t=999 on the VAE latent of
the bilinear-x4 upscaled LR, with LoRA in the VAE encoder (rank 16) and the UNet (rank 32).
Every LoRA layer computes

    y = base(x) + B( einsum(A(x), M) ) * (alpha / rank),    alpha = 8,

where ``M`` (N, rank, rank) is produced per image from two degradation scores (blur, noise) of
the LR, estimated by :class:`DEResNet`, and from a learned embedding of the layer's block:

    f      = [sin(2 pi d0 W), cos(2 pi d0 W), sin(2 pi d1 W), cos(2 pi d1 W)]   (W: 64 frequencies)
    M[n,b] = fuse( [de_mlp(f)[n], block_mlp(block_embedding)[b]] ).reshape(rank, rank).

Because ``M`` depends on the image, the LoRA cannot be merged into the base weights. Blocks:
UNet ``down_blocks.i`` -> i, ``mid_block`` -> 4, ``up_blocks.i`` -> 5+i, anything else
(``conv_out``) -> 9; VAE encoder ``down_blocks.i`` -> i, ``mid_block`` -> 4, anything else
(``conv_in``, ``conv_out``) -> 5.

Module and parameter names mirror the official checkpoint (``<layer>.base_layer``,
``<layer>.lora_A.<adapter>``, ``<layer>.lora_B.<adapter>``; adapters ``default`` for the UNet and
``vae_skip`` for the VAE), so the official state dicts load with a renaming of base weights only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# The official LoRA targets (stored in s3diff.pkl as well; the loader checks they agree).
UNET_TARGETS: tuple[str, ...] = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
    "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip
VAE_TARGETS = (
    r"^encoder\..*(conv1|conv2|conv_in|conv_shortcut|conv|conv_out|to_k|to_q|to_v|to_out\.0)$"
)
LORA_ALPHA = 8  # peft's default lora_alpha, used by the official LoraConfig
NUM_FREQS = 64  # Fourier frequencies per degradation score
BLOCK_DIM = 64  # block embedding width
UNET_BLOCKS, VAE_BLOCKS = 10, 6
SCALING_FACTOR = 0.18215  # SD VAE latent scale
POS_PROMPT = (
    "A high-resolution, 8K, ultra-realistic image with sharp focus, vibrant colors, "
    "and natural lighting."
)
NEG_PROMPT = (
    "oil painting, cartoon, blur, dirty, messy, low quality, deformation, low resolution, "
    "oversmooth"
)


# ----------------------------------------------------------------------------- configurations


def _sd_unet(width: Sequence[int], heads: Sequence[int], cross: int) -> dict[str, Any]:
    return dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=tuple(width), attention_head_dim=tuple(heads),
        cross_attention_dim=cross, use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )  # fmt: skip


def _sd_vae(width: Sequence[int]) -> dict[str, Any]:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=tuple(width), norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )  # fmt: skip


@dataclass(frozen=True)
class S3DiffConfig:
    """Sizes of every part. ``paper()`` is SD-Turbo (the SD2.1 architecture at 512) with the
    released ranks; ``tiny()`` keeps every structural feature (4 UNet and VAE levels, 32-group
    norms the tiled VAE relies on) at toy widths, for tests."""

    unet: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)  # transformers CLIPTextConfig kwargs
    rank_unet: int = 32
    rank_vae: int = 16
    de_feats: tuple[int, ...] = (64, 64, 64, 128)

    @classmethod
    def paper(cls) -> S3DiffConfig:
        text = dict(
            vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
            num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
            layer_norm_eps=1e-5, projection_dim=512, bos_token_id=0, eos_token_id=2,
            pad_token_id=1,
        )  # fmt: skip
        return cls(
            unet=_sd_unet((320, 640, 1280, 1280), (5, 10, 20, 20), 1024),
            vae=_sd_vae((128, 256, 512, 512)),
            text=text,
        )

    @classmethod
    def tiny(cls) -> S3DiffConfig:
        text = dict(
            vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
            layer_norm_eps=1e-5, projection_dim=32, bos_token_id=0, eos_token_id=2,
            pad_token_id=1,
        )  # fmt: skip
        return cls(
            unet=_sd_unet((32, 64, 64, 64), (2, 2, 4, 4), 32),
            vae=_sd_vae((32, 32, 64, 64)),
            text=text,
            rank_unet=4,
            rank_vae=4,  # the estimator keeps its size: the official script hard-codes it
        )


# ---------------------------------------------------------------------- degradation estimator


class _ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus the input (BasicSR's ResidualBlockNoBN, res_scale 1)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class DEResNet(nn.Module):
    """Degradation estimator: one ResNet branch per degradation (blur, noise), each ending in
    global average pooling and an MLP with a sigmoid. Input: the LR in [0, 1]; output (N, 2)
    scores in (0, 1). Stage widths ``feats``, two residual blocks per stage, a stride-2 conv
    after stage 3 (64 -> 128 at full size)."""

    def __init__(self, feats: Sequence[int] = (64, 64, 64, 128), n_degradations: int = 2) -> None:
        super().__init__()
        downscales = (1, 1, 2, 1)
        self.conv_first = nn.ModuleList(
            nn.Conv2d(3, feats[0], 3, 1, 1) for _ in range(n_degradations)
        )
        self.body = nn.ModuleList()
        for _ in range(n_degradations):
            layers: list[nn.Module] = []
            for stage, ch in enumerate(feats):
                layers += [_ResBlock(ch), _ResBlock(ch)]
                nxt = feats[min(stage + 1, len(feats) - 1)]
                if downscales[stage] == 2:
                    layers.append(nn.Conv2d(ch, nxt, 3, 2, 1))
                elif stage < len(feats) - 1 and ch != nxt:
                    layers.append(nn.Conv2d(ch, nxt, 3, 1, 1))
            self.body.append(nn.Sequential(*layers))
        self.fc_degree = nn.ModuleList(
            nn.Sequential(nn.Linear(feats[-1], 512), nn.ReLU(), nn.Linear(512, 1), nn.Sigmoid())
            for _ in range(n_degradations)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = []
        for first, body, fc in zip(self.conv_first, self.body, self.fc_degree):
            feat = nn.functional.adaptive_avg_pool2d(body(first(x)), 1).flatten(1)
            scores.append(fc(feat).squeeze(-1))
        return torch.stack(scores, dim=1)


# ----------------------------------------------------------------------------- modulated LoRA


class Modulation:
    """Per-image LoRA mixing matrices of one network, shared by all its LoRA layers.

    Not a module (it holds no parameters): :meth:`S3DiffNet.modulate` sets ``embeds``
    (N, n_blocks, rank*rank) before each forward pass; a layer of block ``b`` reads
    ``embeds[:, b]`` as (N, rank, rank)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.embeds: torch.Tensor | None = None

    def matrix(self, block: int) -> torch.Tensor:
        if self.embeds is None:
            raise RuntimeError("LoRA modulation not set: call S3DiffNet.modulate(scores) first")
        return self.embeds[:, block].reshape(-1, self.rank, self.rank)


class ModulatedLoRA(nn.Module):
    """``base(x) + lora_B(einsum(lora_A(x), M)) * alpha/rank`` for a Conv2d or Linear base."""

    def __init__(
        self, base: nn.Module, rank: int, adapter: str, block: int, modulation: Modulation
    ) -> None:
        super().__init__()
        self.base_layer = base
        if isinstance(base, nn.Conv2d):
            a: nn.Module = nn.Conv2d(
                base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False
            )
            b: nn.Module = nn.Conv2d(rank, base.out_channels, 1, 1, bias=False)
            self.equation = "...khw,...kr->...rhw"
        elif isinstance(base, nn.Linear):
            a = nn.Linear(base.in_features, rank, bias=False)
            b = nn.Linear(rank, base.out_features, bias=False)
            self.equation = "...lk,...kr->...lr"
        else:
            raise TypeError(f"LoRA supports Conv2d and Linear, not {type(base).__name__}")
        self.lora_A = nn.ModuleDict({adapter: a})
        self.lora_B = nn.ModuleDict({adapter: b})
        self.adapter, self.block, self.scaling = adapter, block, LORA_ALPHA / rank
        object.__setattr__(self, "modulation", modulation)  # shared, not a submodule

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        a, b = self.lora_A[self.adapter], self.lora_B[self.adapter]
        h = a(x.to(a.weight.dtype))
        h = torch.einsum(self.equation, h, self.modulation.matrix(self.block).to(h.dtype))
        return (out + b(h) * self.scaling).to(out.dtype)


def is_target(name: str, targets: str | Sequence[str]) -> bool:
    """peft's rule: a regex must match the whole module name; a list entry must equal the name
    or be its dotted suffix."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def unet_block(name: str) -> int:
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "mid_block":
        return 4
    if parts[0] == "up_blocks":
        return 5 + int(parts[1])
    return UNET_BLOCKS - 1


def vae_block(name: str) -> int:
    parts = name.split(".")
    if parts[1] == "down_blocks":
        return int(parts[2])
    if parts[1] == "mid_block":
        return VAE_BLOCKS - 2
    return VAE_BLOCKS - 1


def inject_lora(
    model: nn.Module,
    targets: str | Sequence[str],
    rank: int,
    adapter: str,
    block_of: Callable[[str], int],
    modulation: Modulation,
) -> list[str]:
    """Wrap every Conv2d/Linear whose name is a target; return the wrapped names in order."""
    names = [
        n
        for n, m in model.named_modules()
        if n and isinstance(m, (nn.Conv2d, nn.Linear)) and is_target(n, targets)
    ]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child) if not child.isdigit() else parent[int(child)]
        wrapped = ModulatedLoRA(base, rank, adapter, block_of(name), modulation)
        if child.isdigit():
            parent[int(child)] = wrapped
        else:
            setattr(parent, child, wrapped)
    return names


# ----------------------------------------------------------------------------- the whole network


def alphas_cumprod() -> torch.Tensor:
    """SD-Turbo's training schedule (scaled_linear, 0.00085 -> 0.012, 1000 steps), float32 as
    diffusers computes it."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class S3DiffNet(nn.Module):
    """Every S3Diff part. ``forward(x, lr)`` is the per-image compute (without the colour fix):
    ``x`` the upscaled, padded LR in [-1, 1] (sides multiples of 64), ``lr`` the LR in [0, 1];
    returns the decoded image in [-1, 1], same size as ``x``.

    Tiling (``tiling`` attribute, a :class:`~harness.methods.s3diff.tiling.Tiling`) follows the
    official defaults; the prompt embeddings are buffers filled by :meth:`set_prompts`."""

    def __init__(
        self, cfg: S3DiffConfig, rank_unet: int | None = None, rank_vae: int | None = None
    ):
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        from harness.methods.s3diff.tiling import Tiling

        self.cfg = cfg
        self.rank_unet = rank_unet or cfg.rank_unet
        self.rank_vae = rank_vae or cfg.rank_vae
        self.de_net = DEResNet(cfg.de_feats)
        self.text_encoder = CLIPTextModel(CLIPTextConfig(**cfg.text))
        self.vae = AutoencoderKL(**cfg.vae)
        self.unet = UNet2DConditionModel(**cfg.unet)
        self.unet_mod, self.vae_mod = Modulation(self.rank_unet), Modulation(self.rank_vae)
        self.unet_lora = inject_lora(
            self.unet, UNET_TARGETS, self.rank_unet, "default", unet_block, self.unet_mod
        )
        self.vae_lora = inject_lora(
            self.vae, VAE_TARGETS, self.rank_vae, "vae_skip", vae_block, self.vae_mod
        )
        self.register_buffer("W", torch.randn(NUM_FREQS))
        self.vae_de_mlp = nn.Sequential(nn.Linear(NUM_FREQS * 4, 256), nn.ReLU())
        self.unet_de_mlp = nn.Sequential(nn.Linear(NUM_FREQS * 4, 256), nn.ReLU())
        self.vae_block_mlp = nn.Sequential(nn.Linear(BLOCK_DIM, 64), nn.ReLU())
        self.unet_block_mlp = nn.Sequential(nn.Linear(BLOCK_DIM, 64), nn.ReLU())
        self.vae_fuse_mlp = nn.Linear(256 + 64, self.rank_vae**2)
        self.unet_fuse_mlp = nn.Linear(256 + 64, self.rank_unet**2)
        self.vae_block_embeddings = nn.Embedding(VAE_BLOCKS, BLOCK_DIM)
        self.unet_block_embeddings = nn.Embedding(UNET_BLOCKS, BLOCK_DIM)
        width = cfg.unet["cross_attention_dim"]
        self.register_buffer("pos_embeds", torch.zeros(1, 77, width), persistent=False)
        self.register_buffer("neg_embeds", torch.zeros(1, 77, width), persistent=False)
        self.register_buffer("alpha_t", alphas_cumprod()[999].clone(), persistent=False)
        self.guidance_scale = 1.07
        self.tiling = Tiling()

    # -- conditioning --------------------------------------------------------------------------
    @torch.no_grad()
    def set_prompts(self, pos_ids: torch.Tensor, neg_ids: torch.Tensor) -> None:
        """Encode the positive and negative prompts (token ids (1, 77)) once."""
        dev = self.pos_embeds.device
        self.pos_embeds = self.text_encoder(pos_ids.to(dev))[0].to(self.pos_embeds.dtype)
        self.neg_embeds = self.text_encoder(neg_ids.to(dev))[0].to(self.neg_embeds.dtype)

    def modulate(self, scores: torch.Tensor) -> None:
        """Set every LoRA layer's mixing matrices from degradation scores (N, 2)."""
        proj = scores[..., None] * self.W[None, None, :] * 2 * math.pi
        proj = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
        feats = torch.cat([proj[:, 0], proj[:, 1]], dim=-1)  # (N, 4 * NUM_FREQS)
        for de_mlp, block_mlp, emb, fuse, mod in (
            (self.vae_de_mlp, self.vae_block_mlp, self.vae_block_embeddings, self.vae_fuse_mlp,
             self.vae_mod),
            (self.unet_de_mlp, self.unet_block_mlp, self.unet_block_embeddings,
             self.unet_fuse_mlp, self.unet_mod),
        ):  # fmt: skip
            de, blocks = de_mlp(feats), block_mlp(emb.weight)
            n, b = de.shape[0], blocks.shape[0]
            both = torch.cat(
                [de.unsqueeze(1).repeat(1, b, 1), blocks.unsqueeze(0).repeat(n, 1, 1)], -1
            )
            mod.embeds = fuse(both)

    # -- the three stages ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled VAE latent of ``x``: the posterior mean, plus ``std * noise`` when given (the
        official code samples the posterior)."""
        from harness.methods.s3diff.tiling import vae_encoder_forward

        h = vae_encoder_forward(self.vae.encoder, x, self.tiling)
        mean, logvar = self.vae.quant_conv(h).chunk(2, dim=1)
        if noise is not None:
            std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
            mean = mean + std * noise.to(std)
        return mean * SCALING_FACTOR

    def _eps(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.tensor([999], device=z.device)
        n = z.shape[0]
        pos = self.unet(z, t, encoder_hidden_states=self.pos_embeds.expand(n, -1, -1)).sample
        neg = self.unet(z, t, encoder_hidden_states=self.neg_embeds.expand(n, -1, -1)).sample
        return neg + self.guidance_scale * (pos - neg)

    def denoise(self, z: torch.Tensor) -> torch.Tensor:
        """One step at t=999 with classifier-free guidance; returns the predicted clean latent."""
        from harness.methods.s3diff.tiling import tiled_latent

        eps = tiled_latent(self._eps, z, self.tiling)
        a = self.alpha_t
        return (z - (1 - a) ** 0.5 * eps) / a**0.5

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        from harness.methods.s3diff.tiling import vae_decoder_forward

        h = self.vae.post_quant_conv(z0 / SCALING_FACTOR)
        return vae_decoder_forward(self.vae.decoder, h, self.tiling).clamp(-1, 1)

    def forward(
        self, x: torch.Tensor, lr: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.modulate(self.de_net(lr))
        return self.decode(self.denoise(self.encode(x, noise)))
