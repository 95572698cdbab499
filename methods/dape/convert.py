"""The official checkpoint layout of RAM (``ram_swin_large_14m.pth``) and DAPE (``DAPE.pth``), and
how it maps onto :class:`~harness.methods.dape.arch.RamTagger`.

What the official code does with the two files (OSEDiff's ``ram/models/ram_lora.py`` and
``utils.load_checkpoint_swinlarge``), reproduced here:

* RAM file: ``checkpoint["model"]``; keys with ``vision_multi`` renamed to ``tagging_head``;
  Swin's ``relative_position_index`` / ``attn_mask`` buffers dropped (rebuilt by the model);
  loaded with ``strict=False`` -- the caption modules (``tag_encoder``, ``text_decoder``) are
  loaded too but never used for tags.
* DAPE file: a flat dict of every ``lora_A`` / ``lora_B`` of the model (SeeSR's
  ``lora_state_dict``), loaded on top with ``strict=False``.
* LoRA (loralib, ``lora_alpha=1`` so scaling = 1/r, r = 8): Swin ``attn.qkv`` is a
  ``MergedLinear`` with LoRA on q and v only (``enable_lora=[True, False, True]``); the head's
  cross-attention ``query`` and ``key`` are ``lora.Linear``. ``model.eval()`` merges every LoRA
  into its weight (``W += B @ A / r``) in fp32 before the model is cast; merging at load time here
  is the same computation, done once.
* Tied weights: the official model ties the first two layers of ``tag_encoder`` to the tagging
  head (``tie_encoder_decoder_weights``): both key names load into one tensor (the
  ``tagging_head`` key, loaded later, wins), and both modules' LoRA deltas are merged into it --
  ``tag_encoder``'s first (it comes first in module order). Trained files hold zero
  ``lora_B`` for ``tag_encoder`` (it is unused in training), so this matters only for exotic
  files; it is reproduced anyway.

Strictness: every weight the tagger uses must be present with the right shape, and every key in a
namespace the tagger uses must be one it understands; otherwise a :class:`HarnessError` lists the
missing / unexpected keys. Keys of the caption modules are ignored, as their values never reach
a tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.methods.dape.arch import RamConfig

# ours -> official names inside one tagging-head layer
_HEAD = {
    "query": "crossattention.self.query",
    "key": "crossattention.self.key",
    "value": "crossattention.self.value",
    "attn_out": "crossattention.output.dense",
    "attn_norm": "crossattention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_HEAD_BACK = {v: k for k, v in _HEAD.items()}
_USED_ROOTS = ("visual_encoder.", "tagging_head.", "image_proj.", "wordvec_proj.", "fc.")
_IGNORED_ROOTS = ("tag_encoder.", "text_decoder.")  # caption modules: never reach a tag
_SWIN_BUFFERS = ("relative_position_index", "attn_mask")


def official_key(ours: str) -> str:
    """Our state-dict key -> the official one (timm downsamples at a stage's start, the
    original Swin at its end)."""
    m = re.match(r"visual_encoder\.layers\.(\d+)\.downsample\.(.*)", ours)
    if m:
        return f"visual_encoder.layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    m = re.match(r"tagging_head\.(\d+)\.([a-z_]+)\.(weight|bias)$", ours)
    if m:
        return f"tagging_head.encoder.layer.{m.group(1)}.{_HEAD[m.group(2)]}.{m.group(3)}"
    return ours


def our_key(official: str) -> str | None:
    """The official key -> ours; None for keys outside the tagger's graph."""
    m = re.match(r"visual_encoder\.layers\.(\d+)\.downsample\.(.*)", official)
    if m:
        return f"visual_encoder.layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
    m = re.match(r"tagging_head\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", official)
    if m:
        name = _HEAD_BACK.get(m.group(2))
        return f"tagging_head.{m.group(1)}.{name}.{m.group(3)}" if name else None
    return official


def _tied_alias(key: str, layers: int) -> str | None:
    """``tag_encoder`` key tied to a tagging-head weight -> the ``tagging_head`` key, else None."""
    m = re.match(r"tag_encoder\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
    if m and int(m.group(1)) < layers and m.group(2) in _HEAD_BACK:
        return f"tagging_head.encoder.layer.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return None


def _ignorable(key: str) -> bool:
    """Keys the official loader drops or that name modules the official model deletes."""
    if key.startswith(_IGNORED_ROOTS):
        return True
    if key.startswith("visual_encoder.") and key.rsplit(".", 1)[-1] in _SWIN_BUFFERS:
        return True
    # the official tagging head deletes its embeddings and self-attention
    return bool(re.match(r"tagging_head\.(embeddings\.|encoder\.layer\.\d+\.attention\.)", key))


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _lora_targets(cfg: RamConfig) -> list[tuple[str, str, str]]:
    """(official LoRA module, our weight key, kind) in the official merge order."""
    out = []
    for i, depth in enumerate(cfg.depths):
        for j in range(depth):
            out.append((f"visual_encoder.layers.{i}.blocks.{j}.attn.qkv",
                        f"visual_encoder.layers.{i}.blocks.{j}.attn.qkv.weight", "qv"))  # fmt: skip
    for root in ("tag_encoder", "tagging_head"):  # module order: tag_encoder merges first
        for k in range(cfg.layers):
            for name in ("query", "key"):
                out.append((f"{root}.encoder.layer.{k}.crossattention.self.{name}",
                            f"tagging_head.{k}.{name}.weight", "full"))  # fmt: skip
    return out


def required_lora(cfg: RamConfig) -> set[str]:
    """LoRA keys a DAPE file must hold: the image encoder's and the tagging head's."""
    return {f"{mod}.lora_{ab}" for mod, _, _ in _lora_targets(cfg)
            if not mod.startswith("tag_encoder") for ab in "AB"}  # fmt: skip


def lora_delta(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """loralib's merged update, without the 1/r scaling: ``B @ A`` for a Linear; for the q/v
    ``MergedLinear`` the grouped product (one conv1d, as loralib computes it) of shape
    (2 * out/3, in): q rows first, then v rows."""
    if kind == "full":
        return b @ a
    return F.conv1d(a.unsqueeze(0), b.unsqueeze(-1), groups=2).squeeze(0)


def _merge(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, kind: str, where: str) -> None:
    if a.ndim != 2 or b.ndim != 2 or b.shape[1] * (2 if kind == "qv" else 1) != a.shape[0]:
        raise HarnessError(f"{where}: LoRA shapes {tuple(a.shape)} / {tuple(b.shape)} do not fit")
    scaling = 1.0 / b.shape[1]  # lora_alpha = 1
    delta = lora_delta(a, b, kind) * scaling
    if kind == "full":
        if delta.shape != w.shape:
            raise HarnessError(f"{where}: LoRA product {tuple(delta.shape)} != {tuple(w.shape)}")
        w += delta
        return
    d = w.shape[0] // 3
    if delta.shape != (2 * d, w.shape[1]):
        raise HarnessError(f"{where}: LoRA product {tuple(delta.shape)} does not fit qkv")
    w[:d] += delta[:d]  # q
    w[2 * d :] += delta[d:]  # v (k has no LoRA)


def from_official(
    ram: Mapping[str, torch.Tensor],
    dape: Mapping[str, torch.Tensor] | None,
    expected: Mapping[str, torch.Tensor],
    cfg: RamConfig,
    names: tuple[str, str] = ("RAM checkpoint", "DAPE checkpoint"),
) -> dict[str, torch.Tensor]:
    """Our fp32 state dict (LoRA merged) from the official RAM state dict (``checkpoint["model"]``)
    and DAPE LoRA dict. ``expected``: our model's state dict (names and shapes)."""
    base: dict[str, torch.Tensor] = {}
    lora: dict[str, torch.Tensor] = {}
    lora_mods = {mod for mod, _, _ in _lora_targets(cfg)}
    for sd, name in ((ram, names[0]), (dape or {}, names[1])):
        unexpected: list[str] = []
        # tied tag_encoder keys load before the tagging head's (module order): the head wins
        keys = sorted(sd, key=lambda k: _tied_alias(k, cfg.layers) is None)
        for key in keys:
            value = sd[key]
            if sd is ram and "vision_multi" in key:
                key = key.replace("vision_multi", "tagging_head")
            if ".lora_" in key:
                if key.rsplit(".", 1)[0] in lora_mods:
                    lora[key] = value
                elif not key.startswith(_IGNORED_ROOTS):
                    unexpected.append(key)
                continue
            target = our_key(_tied_alias(key, cfg.layers) or key)
            if target in expected:
                base[target] = value
            elif not _ignorable(key):
                unexpected.append(key)
        if unexpected:
            raise HarnessError(f"{name}: unexpected keys {_listing(unexpected)}")
    if dape is not None:
        missing = required_lora(cfg) - set(lora)
        if missing:
            raise HarnessError(f"{names[1]}: missing LoRA keys {_listing(missing)}")
    missing = [official_key(k) for k in expected if k not in base]
    if missing:
        raise HarnessError(f"{names[0]}: missing keys {_listing(missing)}")
    wrong = [f"{official_key(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
             for k, v in base.items() if v.shape != expected[k].shape]  # fmt: skip
    if wrong:
        raise HarnessError(f"{names[0]}: wrong shapes: {_listing(wrong, 4)}")
    out = {k: v.detach().to(torch.float32).clone() for k, v in base.items()}
    for mod, target, kind in _lora_targets(cfg):
        a, b = lora.get(f"{mod}.lora_A"), lora.get(f"{mod}.lora_B")
        if a is None and b is None:
            continue  # the official keeps loralib's init: B = 0, no change
        if a is None:
            # the official would merge its randomly initialised A: not reproducible
            raise HarnessError(f"{names[1]}: {mod}.lora_B without {mod}.lora_A")
        if b is not None:
            _merge(out[target], a.float(), b.float(), kind, f"{names[1]}: {mod}")
    return out


def to_official(ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> official key names (the RAM file's ``model`` dict, tensors shared)."""
    return {official_key(k): v for k, v in ours.items()}
