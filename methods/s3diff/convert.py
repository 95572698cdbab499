"""The official S3Diff files and the harness network's state dict.

Official files (what the official inference loads):

* SD-Turbo in the diffusers layout: ``unet/diffusion_pytorch_model.safetensors``,
  ``vae/diffusion_pytorch_model.safetensors``, ``text_encoder/model.safetensors`` (keys
  ``text_model.*``, transformers 4's CLIPTextModel layout) and the CLIP
  tokenizer files in ``tokenizer/``;
* ``s3diff.pkl``: a pickled dict -- ``rank_unet`` (32), ``rank_vae`` (16), the LoRA target
  lists, ``state_dict_unet`` (every UNet LoRA tensor, ``<layer>.lora_{A,B}.default.weight``, and
  the retrained ``conv_in``), ``state_dict_vae`` (``<layer>.lora_{A,B}.vae_skip.weight``), the six
  modulation MLPs (``state_dict_{vae,unet}_{de,block,fuse}_mlp``), ``w`` (the 64 Fourier
  frequencies) and ``state_embeddings`` (``state_dict_{vae,unet}_block``: the block embeddings);
* ``de_net.pth``: the degradation estimator's state dict.

:func:`from_official` merges them into one :class:`S3DiffNet` state dict that must load strictly;
:func:`write_official` writes random weights in exactly these layouts (tests, equivalence).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints import save_checkpoint
from harness.errors import HarnessError
from harness.methods.s3diff.arch import (
    NEG_PROMPT,
    POS_PROMPT,
    UNET_TARGETS,
    VAE_TARGETS,
    S3DiffConfig,
    S3DiffNet,
)

SD_TURBO_WEIGHTS = {
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
}
TOKENIZER_FILES = (
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
)
S3DIFF_FILES = ("s3diff.pkl", "de_net.pth")
TEXT_PREFIX = "text_model."  # of every key in SD-Turbo's text_encoder/model.safetensors
MLPS = ("vae_de_mlp", "unet_de_mlp", "vae_block_mlp", "unet_block_mlp", "vae_fuse_mlp",
        "unet_fuse_mlp")  # fmt: skip
# Older diffusers VAE checkpoints name the mid-block attention projections differently.
_LEGACY_ATTN = {
    ".query.": ".to_q.",
    ".key.": ".to_k.",
    ".value.": ".to_v.",
    ".proj_attn.": ".to_out.0.",
}


def _wrap_base(sd: dict[str, torch.Tensor], wrapped: list[str]) -> dict[str, torch.Tensor]:
    """Move the weights of LoRA-wrapped layers under ``<layer>.base_layer``."""
    out = dict(sd)
    for name in wrapped:
        for p in ("weight", "bias"):
            if f"{name}.{p}" in out:
                out[f"{name}.base_layer.{p}"] = out.pop(f"{name}.{p}")
    return out


def _legacy_vae(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for old, new in _LEGACY_ATTN.items():
            if "attentions.0" in k and old in k:
                k = k.replace(old, new)
                v = v.squeeze(-1).squeeze(-1) if v.ndim == 4 else v  # 1x1 conv -> linear
        out[k] = v
    return out


def _text_key(key: str) -> str:
    """SD-Turbo's text encoder file holds ``text_model.<name>`` (transformers 4's CLIPTextModel);
    transformers 5's CLIPTextModel has no ``text_model`` level."""
    return key.removeprefix(TEXT_PREFIX)


def ranks(pkl: dict[str, Any], where: str) -> tuple[int, int]:
    """The LoRA ranks stored in ``s3diff.pkl``, after checking its target lists."""
    try:
        r_unet, r_vae = int(pkl["rank_unet"]), int(pkl["rank_vae"])
        t_unet, t_vae = pkl["unet_lora_target_modules"], pkl["vae_lora_target_modules"]
    except (KeyError, TypeError, ValueError):
        raise HarnessError(f"{where}: not an S3Diff checkpoint (no rank/target entries)") from None
    if list(t_unet) != list(UNET_TARGETS) or t_vae != VAE_TARGETS:
        raise HarnessError(f"{where}: LoRA targets differ from the released S3Diff's")
    return r_unet, r_vae


def from_official(
    net: S3DiffNet,
    pkl: dict[str, Any],
    unet: dict[str, torch.Tensor],
    vae: dict[str, torch.Tensor],
    text: dict[str, torch.Tensor],
    de_net: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """One state dict for ``net`` from the official pieces (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    u = _wrap_base(unet, net.unet_lora)
    u.update(pkl["state_dict_unet"])  # LoRA and the retrained conv_in
    v = _wrap_base(_legacy_vae(vae), net.vae_lora)
    v.update(pkl["state_dict_vae"])
    out.update({f"unet.{k}": t for k, t in u.items()})
    out.update({f"vae.{k}": t for k, t in v.items()})
    # position ids are a buffer that older transformers saved; current ones rebuild it
    out.update({f"text_encoder.{_text_key(k)}": t for k, t in text.items()
                if not k.endswith("position_ids")})  # fmt: skip
    out.update({f"de_net.{k}": t for k, t in de_net.items()})
    for name in MLPS:
        out.update({f"{name}.{k}": t for k, t in pkl[f"state_dict_{name}"].items()})
    out["W"] = pkl["w"]
    emb = pkl["state_embeddings"]
    out["vae_block_embeddings.weight"] = emb["state_dict_vae_block"]["weight"]
    out["unet_block_embeddings.weight"] = emb["state_dict_unet_block"]["weight"]
    return {k: t.detach() if isinstance(t, torch.Tensor) else t for k, t in out.items()}


def prompt_ids(tokenizer_dir: str | Path, prompts: tuple[str, str] = (POS_PROMPT, NEG_PROMPT)):
    """Token ids (1, 77) of the positive and negative prompts, padded as SD-Turbo's tokenizer
    pads (to its ``model_max_length`` with its pad token)."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    return tuple(
        tok([p], max_length=tok.model_max_length, padding="max_length", truncation=True,
            return_tensors="pt").input_ids
        for p in prompts
    )  # fmt: skip


# ----------------------------------------------------------------------------- fabrication


def _clip_bpe_files() -> tuple[dict[str, int], list[str]]:
    """CLIP's BPE vocabulary and merges (as in SD-Turbo's tokenizer files), rebuilt from the
    BPE table that ships with the openai-clip package."""
    import gzip
    from importlib.resources import files

    from clip.simple_tokenizer import bytes_to_unicode

    text = gzip.decompress(files("clip").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes())
    merges = text.decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    base = list(bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def _randomise(net: S3DiffNet, seed: int) -> None:
    """Random weights with useful magnitudes: every LoRA branch and the posterior variance
    matter, activations stay in range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p[0].numel() ** 0.5))
            elif name.startswith(("vae_", "unet_")) and "lora" not in name and p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
        net.W.copy_(torch.randn(net.W.shape, generator=g))


def random_net(cfg: S3DiffConfig, seed: int = 0) -> S3DiffNet:
    """The random network :func:`write_official` writes (seeds torch's global generator)."""
    torch.manual_seed(seed)
    net = S3DiffNet(cfg)
    _randomise(net, seed)
    return net


def write_official(
    folder: str | Path, cfg: S3DiffConfig, seed: int = 0, half: bool = False
) -> tuple[Path, Path]:
    """Random S3Diff weights in the official layouts: ``<folder>/sd-turbo/`` (diffusers
    layout, with configs and the scheduler config the official code reads) and
    ``<folder>/s3diff/`` (``s3diff.pkl``, ``de_net.pth``). Returns the two folders. The
    network is :func:`random_net` ``(cfg, seed)``; ``half`` stores every file in fp16
    (the released SD-Turbo files are fp32; loading upcasts)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    sd_dir, s3_dir = folder / "sd-turbo", folder / "s3diff"
    net = random_net(cfg, seed)
    if half:
        net.half()  # in place: no second full-size copy
    sd = net.state_dict()

    def part(prefix: str, wrapped: list[str]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in sd.items():
            if not k.startswith(prefix) or ".lora_" in k:
                continue
            out[k[len(prefix) :].replace(".base_layer.", ".")] = v.contiguous()
        return out

    configs = {
        "unet": {"_class_name": "UNet2DConditionModel", **cfg.unet},
        "vae": {"_class_name": "AutoencoderKL", **cfg.vae, "scaling_factor": 0.18215,
                "sample_size": 512},
        "text_encoder": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                         **cfg.text},
    }  # fmt: skip
    unet_base = part("unet.", net.unet_lora)
    # SD-Turbo's own conv_in differs from the retrained one in s3diff.pkl, as in the real files
    for k in ("conv_in.weight", "conv_in.bias"):
        unet_base[k] = (
            torch.randn(unet_base[k].shape, generator=torch.Generator().manual_seed(seed + 1)) * 0.1
        ).to(unet_base[k].dtype)
    weights = {
        "unet": unet_base,
        "vae": part("vae.", net.vae_lora),
        # the official layout: transformers 4's CLIPTextModel keys (``text_model.`` prefix)
        "text_encoder": {TEXT_PREFIX + k: v for k, v in part("text_encoder.", []).items()},
    }
    for key, rel in SD_TURBO_WEIGHTS.items():
        path = sd_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(weights[key], str(path), metadata={"format": "pt"})  # as transformers saves
        (path.parent / "config.json").write_text(json.dumps(configs[key], indent=1))
    (sd_dir / "scheduler").mkdir(exist_ok=True)
    (sd_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "interpolation_type": "linear", "num_train_timesteps": 1000,
        "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing",
        "timestep_type": "discrete", "trained_betas": None, "use_karras_sigmas": False,
    }, indent=1))  # fmt: skip
    vocab, merges = _clip_bpe_files()
    tok = sd_dir / "tokenizer"
    tok.mkdir(exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
               "unk_token": "<|endoftext|>"}  # fmt: skip
    (tok / "special_tokens_map.json").write_text(json.dumps(special))
    (tok / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
         "errors": "replace", **special}))  # fmt: skip

    def lora(prefix: str) -> dict[str, torch.Tensor]:
        return {
            k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and ".lora_" in k
        }

    state_unet = lora("unet.")
    state_unet.update({k[5:]: v for k, v in sd.items() if k.startswith("unet.conv_in.")})
    pkl: dict[str, Any] = {
        "unet_lora_target_modules": list(UNET_TARGETS),
        "vae_lora_target_modules": VAE_TARGETS,
        "rank_unet": net.rank_unet,
        "rank_vae": net.rank_vae,
        "state_dict_unet": state_unet,
        "state_dict_vae": lora("vae."),
        "w": torch.nn.Parameter(sd["W"].clone(), requires_grad=False),
        "state_embeddings": {
            "state_dict_vae_block": {"weight": sd["vae_block_embeddings.weight"]},
            "state_dict_unet_block": {"weight": sd["unet_block_embeddings.weight"]},
        },
    }
    for name in MLPS:
        pkl[f"state_dict_{name}"] = {k[len(name) + 1 :]: v for k, v in sd.items()
                                     if k.startswith(name + ".")}  # fmt: skip
    s3_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(pkl, s3_dir / "s3diff.pkl")
    save_checkpoint(
        {k[7:]: v for k, v in sd.items() if k.startswith("de_net.")}, s3_dir / "de_net.pth"
    )
    return sd_dir, s3_dir
