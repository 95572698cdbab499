"""RAM's tagging network as DAPE runs it: Swin-L image encoder + Query2Label tagging head.

The graph follows the official ``RAMLora.generate_tag`` (OSEDiff's ``ram/models/ram_lora.py``):

* image encoder: Swin Transformer (timm's ``SwinTransformer``, patch 4, window 12 at 384x384);
  its normalised final tokens ``x`` (B, 144, 1536) are prefixed with their average
  (``AdaptiveAvgPool1d``) -> (B, 145, 1536), then ``image_proj`` -> (B, 145, 512);
* label queries: ``relu(wordvec_proj(label_embed))`` (C, 768), one per tag;
* tagging head: 2 Query2Label layers -- cross-attention from the label queries to the image
  tokens (4 heads), then BERT's feed-forward block; no self-attention and no embedding layer
  (the official code deletes both from its ``BertModel``);
* ``fc`` -> one logit per tag.

Attention runs the explicit ``softmax(q k^T / sqrt(d) + bias)`` path in the official order of
operations (timm's fused kernel is switched off) so logits agree with the official code to
float rounding. transformers' own ``BertLayer`` cannot express this head (it always runs
self-attention, and its cross-attention keys take the hidden width, not the 512-wide image
tokens), so the head is written here with the official widths.

Input: an image already resized to ``image_size`` and ImageNet-normalised (see
``tagger.preprocess``). Output: raw logits (B, num_classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RamConfig:
    """Widths of the tagger; ``official()`` is RAM Swin-L at 384 with the official q2l head."""

    image_size: int = 384
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    embed_width: int = 512  # image_proj output and label-embedding width (fixed 512 officially)
    hidden_size: int = 768  # Query2Label head (q2l_config.json)
    heads: int = 4
    layers: int = 2
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    num_classes: int = 4585

    @classmethod
    def official(cls) -> RamConfig:
        return cls()

    @classmethod
    def tiny(cls) -> RamConfig:
        """Same structure, tiny widths, 96x96 input with window 3: stages of 24, 12, 6, 3 tokens
        a side, so stages 0-2 shift every second window and the last stage (side = window) does
        not, as in the official 384 model (96, 48, 24, 12 with window 12)."""
        return cls(image_size=96, window_size=3, embed_dim=8, depths=(2, 2, 2, 2),
                   num_heads=(1, 2, 2, 4), embed_width=8, hidden_size=16, heads=2,
                   intermediate_size=32, num_classes=24)  # fmt: skip

    @property
    def vision_width(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def swin_encoder(cfg: RamConfig) -> nn.Module:
    """timm's Swin Transformer without a classifier, attention on the explicit (eager) path."""
    from timm.models.swin_transformer import SwinTransformer, WindowAttention

    net = SwinTransformer(
        img_size=cfg.image_size, patch_size=4, in_chans=3, num_classes=0, global_pool="",
        embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads,
        window_size=cfg.window_size, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0,
        proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
    )  # fmt: skip
    for m in net.modules():
        if isinstance(m, WindowAttention):
            m.fused_attn = False  # q*scale, q@k^T, +bias, +mask, softmax: the official order
    return net


class Q2LLayer(nn.Module):
    """Cross-attention (label queries -> image tokens) + feed-forward, post-LayerNorm (BERT)."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        d, w = cfg.hidden_size, cfg.embed_width
        self.heads = cfg.heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(w, d)
        self.value = nn.Linear(w, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            self._split(self.query(h)),
            self._split(self.key(image)),
            self._split(self.value(image)),
        )
        # the image mask is all ones: the official adds an all-zero mask, a no-op
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        ctx = torch.matmul(scores.softmax(dim=-1), v).permute(0, 2, 1, 3).contiguous()
        h = self.attn_norm(self.attn_out(ctx.view(h.shape)) + h)
        return self.ffn_norm(self.ffn_out(F.gelu(self.ffn_in(h))) + h)


class RamTagger(nn.Module):
    """Normalised image (B, 3, S, S) -> tag logits (B, num_classes); LoRA merged (convert.py)."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = swin_encoder(cfg)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.image_proj = nn.Linear(cfg.vision_width, cfg.embed_width)
        self.label_embed = nn.Parameter(torch.zeros(cfg.num_classes, cfg.embed_width))
        # the official head widens the 512-wide label embeddings only when its width differs
        self.wordvec_proj = (nn.Linear(cfg.embed_width, cfg.hidden_size)
                             if cfg.hidden_size != cfg.embed_width else nn.Identity())  # fmt: skip
        self.tagging_head = nn.ModuleList(Q2LLayer(cfg) for _ in range(cfg.layers))
        self.fc = nn.Linear(cfg.hidden_size, 1)

    def image_embeds(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + tokens, embed_width): the pooled token first, as the official encoder returns."""
        tokens = self.visual_encoder.forward_features(x).flatten(1, 2)  # NHWC -> (B, L, C)
        pooled = self.avgpool(tokens.transpose(1, 2)).transpose(1, 2)
        return self.image_proj(torch.cat([pooled, tokens], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.image_embeds(x)
        labels = F.relu(self.wordvec_proj(self.label_embed))
        h = labels.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.tagging_head:
            h = layer(h, image)
        return self.fc(h).squeeze(-1)
