"""Random RAM / DAPE files in the official formats and key layouts (tests, equivalence checks).

``ram_state_dict`` writes what ``torch.load(ram_swin_large_14m.pth)["model"]`` holds for the
tagger's part of RAM -- Swin with its (ignored) index/mask buffers, ``image_proj``,
``label_embed``, ``wordvec_proj``, ``tagging_head``, ``fc`` -- plus a few caption-module keys
(``tag_encoder`` / ``text_decoder``), including the two ``tag_encoder`` layers the official
model ties to the tagging head, given DIFFERENT values so a loader that lets them win is caught.
``dape_state_dict`` holds every LoRA pair the official model has for the tagger (Swin qkv,
tagging-head query/key) plus the tied ``tag_encoder`` pairs with non-zero ``lora_B`` (merged
into the shared weights officially) and some ignored caption pairs. Both load into the official
``ram(pretrained=..., pretrained_condition=...)`` as well as into :class:`DapeTagger`.
Their tags are MEANINGLESS.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.checkpoints import save_checkpoint
from harness.imageio import write_text
from harness.methods.dape.arch import RamConfig, RamTagger
from harness.methods.dape.convert import _HEAD, official_key

LORA_RANK = 8  # the official r (lora_alpha 1)


def random_model(cfg: RamConfig, seed: int = 0) -> RamTagger:
    """A RamTagger with every parameter random and informative: LayerNorms perturbed away from
    (1, 0), label embeddings spread, so logits vary across classes and images."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RamTagger(cfg)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name == "label_embed":
                    p.normal_()
                elif p.ndim == 1 and ("norm" in name.lower()):
                    p.add_(torch.randn_like(p) * 0.1)
    return model


def ram_state_dict(model: RamTagger, seed: int = 0) -> dict[str, torch.Tensor]:
    """The official ``model`` dict for ``model``'s weights (see the module doc)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed + 1)
    sd = {official_key(k): v.detach().clone() for k, v in model.state_dict().items()}
    for name, buf in model.visual_encoder.named_buffers():  # the official file keeps them
        if buf is not None and name.endswith(("relative_position_index", "attn_mask")):
            stage = name.split(".")
            if stage[0] == "layers":  # same stage numbering for blocks in both layouts
                sd[f"visual_encoder.{name}"] = buf.clone()
    for k in range(cfg.layers):  # tied to the head officially: the head's value must win
        for official in _HEAD.values():
            src = sd[f"tagging_head.encoder.layer.{k}.{official}.weight"]
            sd[f"tag_encoder.encoder.layer.{k}.{official}.weight"] = torch.randn(
                src.shape, generator=g
            )
    d = cfg.hidden_size
    sd["tag_encoder.encoder.layer.0.attention.self.query.weight"] = torch.randn(d, d, generator=g)
    sd["text_decoder.bert.encoder.layer.0.attention.self.query.weight"] = torch.randn(
        d, d, generator=g
    )
    return sd


def _pair(out_f: int, in_f: int, groups: int, g: torch.Generator, scale: float = 0.15):
    a = torch.randn(LORA_RANK * groups, in_f, generator=g) * scale
    b = torch.randn(out_f * groups, LORA_RANK, generator=g) * scale
    return a, b


def dape_state_dict(cfg: RamConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every official LoRA pair of the tagger, random (non-zero ``lora_B``); see module doc."""
    g = torch.Generator().manual_seed(seed + 2)
    sd: dict[str, torch.Tensor] = {}
    for i, depth in enumerate(cfg.depths):
        dim = cfg.embed_dim * 2**i
        for j in range(depth):
            a, b = _pair(dim, dim, 2, g)  # MergedLinear, LoRA on q and v
            sd[f"visual_encoder.layers.{i}.blocks.{j}.attn.qkv.lora_A"] = a
            sd[f"visual_encoder.layers.{i}.blocks.{j}.attn.qkv.lora_B"] = b
    d, w = cfg.hidden_size, cfg.embed_width
    for root in ("tag_encoder", "tagging_head"):
        for k in range(cfg.layers):
            for name, in_f in (("query", d), ("key", w)):
                a, b = _pair(d, in_f, 1, g)
                sd[f"{root}.encoder.layer.{k}.crossattention.self.{name}.lora_A"] = a
                sd[f"{root}.encoder.layer.{k}.crossattention.self.{name}.lora_B"] = b
    for key in ("tag_encoder.encoder.layer.0.attention.self.query",
                "text_decoder.bert.encoder.layer.0.attention.self.query"):  # fmt: skip
        a, b = _pair(d, d, 1, g)
        sd[f"{key}.lora_A"], sd[f"{key}.lora_B"] = a, b
    return sd


def synthetic_tags(n: int) -> tuple[list[str], list[float]]:
    """``n`` tag names and thresholds shaped like the official files (0.65 / 0.8 / 0.9 ...)."""
    names = [f"tag{i:04d}" for i in range(n)]
    values = [(0.65, 0.8, 0.9, 0.65, 0.45, 1.0)[i % 6] for i in range(n)]
    return names, values


def write_official_files(
    folder: Path,
    cfg: RamConfig | None = None,
    seed: int = 0,
    fc_bias: float | None = None,
    half: bool = False,
    tag_files: tuple[Path, Path] | None = None,
) -> dict[str, Path]:
    """Write ``ram_swin_large_14m.pth`` (``{"model": ...}``), ``DAPE.pth`` and, unless
    ``tag_files`` (tag list, thresholds) are given, synthetic tag-list files into ``folder``.
    Returns the paths by manifest id (:attr:`DapeTagger.weight_ids`). ``fc_bias`` replaces the
    head's bias (to make tags fire); ``half`` stores fp16."""
    cfg = cfg or RamConfig.official()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "ram-swin-large-14m": folder / "ram_swin_large_14m.pth",
        "dape-lora": folder / "DAPE.pth",
    }
    if tag_files is None:
        names, values = synthetic_tags(cfg.num_classes)
        paths["ram-tag-list"] = folder / "ram_tag_list.txt"
        paths["ram-tag-list-threshold"] = folder / "ram_tag_list_threshold.txt"
        write_text(paths["ram-tag-list"], "\n".join(names))
        write_text(paths["ram-tag-list-threshold"], "".join(f"{v}\n" for v in values))
    else:
        paths["ram-tag-list"], paths["ram-tag-list-threshold"] = tag_files
    ram = ram_state_dict(random_model(cfg, seed), seed)
    if fc_bias is not None:
        ram["fc.bias"] = torch.full_like(ram["fc.bias"], fc_bias)
    dape = dape_state_dict(cfg, seed)
    if half:
        ram = {k: v.half() if v.is_floating_point() else v for k, v in ram.items()}
        dape = {k: v.half() for k, v in dape.items()}
    save_checkpoint({"model": ram, "epoch": 0}, paths["ram-swin-large-14m"])
    save_checkpoint(dape, paths["dape-lora"])
    return paths


def write_one(entry_id: str, path: Path, seed: int = 0) -> None:
    """One full-size fabricated file (fp16) for ``harness weights fabricate``: the four
    manifest entries of :attr:`DapeTagger.weight_ids`, consistent with each other."""
    cfg = RamConfig.official()
    if entry_id == "ram-swin-large-14m":
        ram = ram_state_dict(random_model(cfg, seed), seed)
        half = {k: v.half() if v.is_floating_point() else v for k, v in ram.items()}
        save_checkpoint({"model": half}, path)
    elif entry_id == "dape-lora":
        save_checkpoint({k: v.half() for k, v in dape_state_dict(cfg, seed).items()}, path)
    elif entry_id == "ram-tag-list":
        write_text(path, "\n".join(synthetic_tags(cfg.num_classes)[0]))
    elif entry_id == "ram-tag-list-threshold":
        write_text(path, "".join(f"{v}\n" for v in synthetic_tags(cfg.num_classes)[1]))
    else:
        raise ValueError(entry_id)
