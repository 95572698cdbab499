"""Stable Diffusion components built with diffusers / transformers / peft, for the adapters that
start from an SD checkpoint (OSEDiff, AdcSR's teacher; S3Diff builds its own from these too).

* Configurations: SD2.1-base's published UNet, VAE and text-encoder (OpenCLIP ViT-H as a
  Hugging Face ``CLIPTextModel``) configs, and ``tiny`` ones of the same structure for tests.
* The SD2 tokenizer: CLIP's BPE vocabulary (``vocab.json`` + ``merges.txt``), padded with ``!``
  (id 0) as SD2's ``special_tokens_map.json`` says -- not with end-of-text as SD1's.
  :func:`write_clip_tokenizer_files` derives both files from the BPE table that ships inside the
  ``openai-clip`` package (the same table OpenCLIP and SD2 use), so tests need no download.
* The DDPM ``scaled_linear`` noise schedule SD uses (0.00085 -> 0.012, 1000 steps).
* Loading weights by key, strictly, with a one-line error that names missing/unexpected keys;
  the renames that old diffusers / transformers checkpoints need are applied first.
* LoRA through peft: :func:`add_lora` wraps named modules with one named adapter.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError

SCALING_FACTOR = 0.18215  # SD (1.x/2.x) VAE latent scale
TOKEN_LENGTH = 77

SD21_BASE_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024, "use_linear_projection": True, "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}  # fmt: skip
SD_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512), "norm_num_groups": 32,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
}  # fmt: skip
SD21_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096,
    "num_hidden_layers": 23, "num_attention_heads": 16, "max_position_embeddings": TOKEN_LENGTH,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "projection_dim": 512,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}  # fmt: skip

# Same block structure, every width shrunk (8x VAE, 3 UNet resolutions): tests in seconds.
# Widths are multiples of 32 and the VAE keeps 2 resnets per block, as the official tiled VAE
# hard-codes both (32 GroupNorm groups, layers_per_block 2).
TINY_UNET: dict[str, Any] = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 64, 64), "attention_head_dim": (2, 4, 4),
    "cross_attention_dim": 32, "use_linear_projection": True, "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}  # fmt: skip
TINY_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": (32, 32, 64, 64), "norm_num_groups": 32,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
}  # fmt: skip
TINY_TEXT: dict[str, Any] = SD21_TEXT | {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "projection_dim": 32,
}  # fmt: skip


def build_unet(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**dict(config))


def build_vae(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**dict(config))


def build_text_encoder(config: Mapping[str, Any]) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**dict(config)))


def diffusers_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json`` content for a diffusers/transformers folder of this component."""
    cls = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    if kind == "text_encoder":
        return plain | {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model"}
    return {"_class_name": cls[kind]} | plain


# ----------------------------------------------------------------------------- schedule


def alphas_cumprod(steps: int = 1000, start: float = 0.00085, end: float = 0.012) -> torch.Tensor:
    """SD's ``scaled_linear`` DDPM schedule: betas = linspace(sqrt(start), sqrt(end))**2, in fp32
    as diffusers' ``DDPMScheduler`` computes it."""
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


# ----------------------------------------------------------------------------- tokenizer


def _clip_bpe_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("clip")
    if spec is None or spec.origin is None:
        raise HarnessError("the openai-clip package (CLIP's BPE table) is not installed")
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    keep += list(range(0xAE, 0xFF + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def write_clip_tokenizer_files(vocab_path: Path, merges_path: Path) -> None:
    """CLIP's tokenizer files in Hugging Face's layout, derived from openai-clip's BPE table.

    vocab: the 256 byte symbols, the same with ``</w>``, one entry per merge (48,894 merges), then
    ``<|startoftext|>`` and ``<|endoftext|>``: 49,408 ids, as SD2's ``tokenizer/vocab.json``.
    """
    from harness.imageio import write_text

    with gzip.open(_clip_bpe_path()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    write_text(vocab_path, json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    write_text(merges_path, "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def bundled_tokenizer():
    """SD2's tokenizer from :func:`write_clip_tokenizer_files` (random-weight and test builds):
    the files go to a temporary folder that is removed once the tokenizer has read them."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="harness-sd-tokenizer-") as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        write_clip_tokenizer_files(vocab, merges)
        return load_tokenizer(vocab, merges)


def load_tokenizer(vocab: Path, merges: Path):
    """SD2's tokenizer: CLIP BPE, 77 tokens, padded with ``!`` (id 0)."""
    from transformers import CLIPTokenizer

    for f in (vocab, merges):
        if not Path(f).is_file():
            raise HarnessError(f"tokenizer file {f} not found")
    return CLIPTokenizer(
        str(vocab), str(merges), pad_token="!", model_max_length=TOKEN_LENGTH,
        bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
    )  # fmt: skip


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """``(N, 77)`` int64 token ids: truncated and padded to 77 as SD pipelines do."""
    return tokenizer(
        list(prompts), max_length=TOKEN_LENGTH, padding="max_length", truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip


# ----------------------------------------------------------------------------- weights


def _legacy_vae_keys(key: str) -> str:
    # diffusers < 0.15 named the VAE's mid-block attention query/key/value/proj_attn
    for old, new in ((".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."),
                     (".proj_attn.", ".to_out.0.")):  # fmt: skip
        if "attentions." in key and old in key:
            return key.replace(old, new)
    return key


TEXT_PREFIX = "text_model."  # CLIPTextModel files name every tensor text_model.*


def normalise_keys(
    kind: str, sd: Mapping[str, torch.Tensor], model_keys: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Map a component file's keys to the model's: old diffusers' VAE attention names; the
    position-id buffer older transformers saved; the ``text_model.`` prefix of CLIPTextModel
    files, which transformers 5 no longer has in the module tree (``model_keys`` tells)."""
    strip = kind == "text_encoder" and not any(k.startswith(TEXT_PREFIX) for k in model_keys)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if kind == "text_encoder" and k.endswith("position_ids"):
            continue
        if strip:
            k = k.removeprefix(TEXT_PREFIX)
        out[_legacy_vae_keys(k) if kind == "vae" else k] = v
    return out


def text_encoder_file_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A text encoder's state dict under the file layout's ``text_model.`` names."""
    return {k if k.startswith(TEXT_PREFIX) else TEXT_PREFIX + k: v for k, v in sd.items()}


def key_report(missing: Iterable[str], unexpected: Iterable[str], limit: int = 6) -> str:
    """'N missing (a, b, ...); M unexpected (...)' for an error message."""
    parts = []
    for label, keys in (("missing", sorted(missing)), ("unexpected", sorted(unexpected))):
        if keys:
            more = f", ... {len(keys) - limit} more" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:limit])}{more})")
    return "; ".join(parts)


def load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], where: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` with a one-line error naming the keys."""
    own = model.state_dict()
    missing = set(own) - set(sd)
    unexpected = set(sd) - set(own)
    if missing or unexpected:
        raise HarnessError(f"{where}: keys do not fit the model: {key_report(missing, unexpected)}")
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise HarnessError(
            f"{where}: {len(bad)} tensors have the wrong shape, e.g. {k} "
            f"{tuple(sd[k].shape)} != {tuple(own[k].shape)}"
        )
    model.load_state_dict(dict(sd), strict=True)


# ----------------------------------------------------------------------------- LoRA


def add_lora(
    model: nn.Module,
    targets: Sequence[str],
    rank: int,
    adapter_name: str,
    alpha: float = 8.0,
    init: str | bool = "gaussian",
) -> None:
    """Wrap the modules named in ``targets`` (full module paths) with a peft LoRA adapter.

    ``alpha`` 8 is peft's default ``lora_alpha``, which OSEDiff's official code keeps: the LoRA
    branch is scaled by alpha / rank. The adapter is added active and trainable.
    """
    from peft import LoraConfig

    names = list(dict.fromkeys(targets))  # the official lists repeat names; peft does not care
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=names)
    with warnings.catch_warnings():  # several adapters on one model are the official design
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        model.add_adapter(config, adapter_name=adapter_name)


def set_active_adapters(model: nn.Module, names: Sequence[str]) -> None:
    """Make every adapter in ``names`` active at once (peft sums the active ones per layer)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in model.modules():
        if isinstance(m, BaseTunerLayer):
            m.set_adapter(list(names))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every active LoRA adapter into its base layer and drop the wrappers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, m in list(model.named_modules()):
        if isinstance(m, BaseTunerLayer):
            m.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, m.get_base_layer())
    return model
