"""DAPE, OSEDiff's default prompt extractor: RAM Swin-L + DAPE LoRA -> a tag string per image.

What the official ``test_osediff.py`` does, and this class reproduces:

1. The input image is the LR after OSEDiff's own resizing: PIL bicubic x4 (after enlarging LR
   images whose short side is below ``process_size // 4``), then a Lanczos resize to sides that
   are multiples of 8 -- i.e. exactly the image OSEDiff super-resolves, as ``ToTensor()``
   makes it: float RGB in [0, 1], shape (1, 3, H, W). ``tags`` takes that tensor (N images).
2. ``Resize((384, 384))`` on that tensor: bilinear, ``align_corners=False`` and, under the
   official pins (torch 2.0.1 / torchvision 0.15.2), NO antialiasing -- torchvision < 0.17
   resizes tensors without it (``antialias=None`` means False); newer torchvision defaults to
   antialiasing, which changes the tags. ``resize_antialias=False`` follows the pins.
3. ImageNet normalisation in fp32, then a cast to the tagger's dtype (fp16 officially).
4. ``sigmoid(logits) > threshold`` per class (thresholds from ``ram_tag_list_threshold.txt``,
   fp32; the sigmoid in the model dtype); tags joined with ``", "`` in tag-list order.
   The prompt OSEDiff builds from it is ``f"{tags}, {user_prompt},"``.

Images are tagged one at a time, as the official script does: batched matmuls can round
differently, and a tag sitting at its threshold could flip.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.checkpoints import load_tensors, tensors_only
from harness.errors import HarnessError
from harness.methods.dape.arch import RamConfig, RamTagger
from harness.methods.dape.convert import from_official

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the official RAMLora defaults (class_threshold = value if value > max else min(value + add, max))
MAX_THRESHOLD = 0.9
ADD_THRESHOLD = 0.0


def read_tag_list(path: Path) -> list[str]:
    """One tag per line (``str.splitlines``, as the official ``load_tag_list``)."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_thresholds(path: Path) -> torch.Tensor:
    """Per-class thresholds (fp32) from one number per line, with the official adjustment."""
    values = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                values.append(float(line.strip()))
            except ValueError:
                raise HarnessError(
                    f"{path}: line {n} is not a number ({line.strip()[:40]!r})"
                ) from None
    adjusted = [v if v > MAX_THRESHOLD else min(v + ADD_THRESHOLD, MAX_THRESHOLD) for v in values]
    return torch.tensor(adjusted, dtype=torch.float32)


class DapeTagger:
    """RAM + DAPE tagger. ``tags(images)`` -> one tag string per image (see the module doc)."""

    weight_ids: tuple[str, ...] = (
        "ram-swin-large-14m", "dape-lora", "ram-tag-list", "ram-tag-list-threshold",
    )  # fmt: skip
    fetch_hint = "harness weights fetch osediff"

    def __init__(
        self,
        model: RamTagger,
        tag_list: list[str],
        thresholds: torch.Tensor,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        resize_antialias: bool = False,
    ) -> None:
        n = model.cfg.num_classes
        if len(tag_list) != n or thresholds.shape != (n,):
            raise HarnessError(f"dape: {len(tag_list)} tags and {thresholds.numel()} thresholds "
                               f"for a head with {n} classes")  # fmt: skip
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.eval().requires_grad_(False).to(device=self.device, dtype=dtype)
        self.tag_list = list(tag_list)
        self.thresholds = thresholds.to(device=self.device, dtype=torch.float32)
        self.resize_antialias = resize_antialias
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(shape)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(shape)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        files: dict[str, Path],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        config: RamConfig | None = None,
    ) -> DapeTagger:
        """Load the official files (keys: :attr:`weight_ids`) through the restricted loader.

        ``config``: the widths (default: the official Swin-L); the class count comes from the
        tag list. LoRA is merged in fp32 before the cast to ``dtype``, as ``model.eval()``
        does officially."""
        absent = [i for i in cls.weight_ids if i not in files]
        if absent:
            raise HarnessError(f"dape: no file given for {', '.join(absent)}")
        paths = {i: Path(files[i]).expanduser() for i in cls.weight_ids}
        missing = [p for p in paths.values() if not p.is_file()]
        if missing:
            where = "; ".join(f"{p.name} (expected at {p})" for p in missing)
            raise HarnessError(f"dape: missing {where}; get them with `{cls.fetch_hint}`")
        tag_list = read_tag_list(paths["ram-tag-list"])
        thresholds = read_thresholds(paths["ram-tag-list-threshold"])
        if len(tag_list) != thresholds.numel():
            raise HarnessError(f"{paths['ram-tag-list-threshold']}: {thresholds.numel()} "
                               f"thresholds for {len(tag_list)} tags")  # fmt: skip
        cfg = replace(config or RamConfig.official(), num_classes=len(tag_list))
        ram_path, dape_path = paths["ram-swin-large-14m"], paths["dape-lora"]
        ram = load_tensors(ram_path, mmap=True)  # the file also holds unused caption weights
        if isinstance(ram, dict) and isinstance(ram.get("model"), dict):
            ram = ram["model"]
        ram = tensors_only(ram, str(ram_path))
        dape = tensors_only(load_tensors(dape_path), str(dape_path))
        model = RamTagger(cfg)
        sd = from_official(ram, dape, model.state_dict(), cfg, (str(ram_path), str(dape_path)))
        model.load_state_dict(sd, strict=True)
        return cls(model, tag_list, thresholds, device, dtype)

    @classmethod
    def random(
        cls,
        tiny: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> DapeTagger:
        """Random weights (tags meaningless): ``tiny`` widths for tests, else full size for
        profiling. Synthetic tag names ``tag0000``...; thresholds cycle 0.65/0.8/0.9 like most of
        the official ones. For ``tiny`` the head bias is set so that about a quarter of the tags
        fire on a mid-grey image (prompts are not empty)."""
        cfg = RamConfig.tiny() if tiny else RamConfig.official()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = RamTagger(cfg)
            with torch.no_grad():
                model.label_embed.normal_()
        tags = [f"tag{i:04d}" for i in range(cfg.num_classes)]
        thresholds = torch.tensor([(0.65, 0.8, 0.9)[i % 3] for i in range(cfg.num_classes)])
        tagger = cls(model, tags, thresholds, device, dtype)
        if tiny:
            grey = torch.full((1, 3, cfg.image_size, cfg.image_size), 0.5)
            margin = torch.logit(tagger.thresholds) - tagger.logits(grey)[0]
            with torch.no_grad():
                model.fc.bias.add_(margin.quantile(0.25).to(model.fc.bias.dtype))
        return tagger

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> DapeTagger:
        """Move / cast the network (weights already hold the merged LoRA, as officially)."""
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.model.to(device=self.device, dtype=self.dtype)
        self.thresholds = self.thresholds.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    # -- inference ---------------------------------------------------------------------------
    @property
    def module(self) -> RamTagger:
        """The network (input: a preprocessed (N, 3, 384, 384) tensor; output: logits)."""
        return self.model

    @property
    def input_size(self) -> int:
        return self.model.cfg.image_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB (N, 3, H, W) -> resized to 384, ImageNet-normalised, in the model dtype."""
        if not (torch.is_tensor(images) and images.ndim == 4 and images.shape[1] == 3):
            raise HarnessError("dape: images must be a float tensor of shape (N, 3, H, W)")
        if not images.is_floating_point():
            raise HarnessError("dape: images must be float RGB in [0, 1], not integers")
        x = images.to(device=self.device, dtype=torch.float32)
        size = (self.input_size, self.input_size)
        if tuple(x.shape[-2:]) != size:  # torchvision returns the tensor as is at the right size
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=self.resize_antialias)  # fmt: skip
        return ((x - self._mean) / self._std).to(self.dtype)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Raw tag logits (N, num_classes), computed in the model dtype, returned as fp32."""
        rows = [self.model(self.preprocess(images[i : i + 1])) for i in range(images.shape[0])]
        return torch.cat(rows).float()

    @torch.inference_mode()
    def fired(self, images: torch.Tensor) -> torch.Tensor:
        """Boolean (N, num_classes): ``sigmoid(logit) > threshold`` as the official compares
        (sigmoid in the model dtype, compared in fp32)."""
        rows = []
        for i in range(images.shape[0]):
            logits = self.model(self.preprocess(images[i : i + 1]))
            rows.append(torch.sigmoid(logits) > self.thresholds)
        return torch.cat(rows).cpu()

    def tags(self, images: torch.Tensor) -> list[str]:
        """One string per image: the firing tags in tag-list order, joined by ``", "`` (empty
        when none fires) -- what the official code puts before ``", {prompt},"``."""
        return [", ".join(self.tag_list[i] for i in row.nonzero().flatten().tolist())
                for row in self.fired(images)]  # fmt: skip
