"""The ``osediff`` method: OSEDiff (NeurIPS 2024) as its official test script runs it.

Per image (official ``test_osediff.py`` + ``osediff.py``):

1. LR (8-bit) -> if a side is below ``process_size / 4`` (128), enlarge with PIL bicubic so the
   short side is 128; PIL bicubic x4; LANCZOS resize to a multiple of 8 (a no-op when it is one).
2. Prompt: DAPE tags of the upscaled image -> ``f"{tags}, {extra_prompt},"``; SD2 tokenizer (pad
   ``!``), SD2.1 text encoder.
3. VAE encoder (+LoRA) on the image in [-1, 1] -> latent (mean; ``latent=sample`` draws it) x
   0.18215 -> UNet (+3 LoRA adapters, retrained conv_in) at t=999 -> x0 = (z - sqrt(1-a) eps) /
   sqrt(a) -> VAE decoder -> clamp [-1, 1].
4. To 8 bits as ``ToPILImage`` does (x*0.5+0.5, x255, truncate), colour fix against the upscaled
   LR (``adain`` default, ``wavelet``, ``nofix``; clamp, truncate to 8 bits again).
5. If the processed size is not 4x the LR (small or odd-sized inputs), PIL bicubic to 4x.

Latent and VAE tiling with the official defaults keep large inputs within memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness.checkpoints import file_digest
from harness.errors import HarnessError
from harness.methods.base import DTYPES, MethodCard, SRMethod, WeightFile
from harness.methods.common import sd
from harness.methods.common.colorfix import COLOR_FIXES, color_fix
from harness.methods.osediff.arch import OSEDiffConfig, OSEDiffNet
from harness.methods.osediff.weights import CHECKPOINT, SD_FILES

OSEDIFF_URL = "https://raw.githubusercontent.com/cswry/OSEDiff/main/preset/models/osediff.pkl"
SD21_MIRROR = "https://huggingface.co/Manojb/stable-diffusion-2-1-base/resolve/main"
SD21_UNET_SHA256 = "6dfae3e5f7d459b50f4b0850ead945972c75bb0e1897628933e169eb43974214"
SD_LICENSE = "CreativeML Open RAIL++-M"
SD_SOURCES = {  # role -> path in the SD2.1-base repository
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
    "vocab": "tokenizer/vocab.json",
    "merges": "tokenizer/merges.txt",
}
# weights-manifest ids of the files this adapter reads (the DAPE tagger adds its own)
MANIFEST_IDS = {
    "checkpoint": "osediff-checkpoint",
    "unet": "sd21base-unet",
    "vae": "sd21base-vae",
    "text_encoder": "sd21base-text-encoder",
    "vocab": "sd21base-vocab",
    "merges": "sd21base-merges",
}
PROMPTS = ("dape", "empty", "text:...")
LATENTS = ("mode", "sample")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def dape_module():
    """The DAPE tagger package (a function, so tests can put a stand-in tagger in its place)."""
    from harness.methods import dape

    return dape


class OSEDiff(SRMethod):
    card = MethodCard(
        family="diffusion",
        name="osediff",
        display_name="OSEDiff",
        paper="Wu et al., One-Step Effective Diffusion Network for Real-World Image "
        "Super-Resolution, NeurIPS 2024 (arXiv:2406.08177)",
        license="Apache-2.0 (code, osediff.pkl); CreativeML Open RAIL++-M (SD2.1-base)",
        scale=4,
        scales=(4,),
        steps=1,
        code="https://github.com/cswry/OSEDiff",
        weights=(
            WeightFile(CHECKPOINT, OSEDIFF_URL, license="Apache-2.0"),
            WeightFile(
                SD_FILES["unet"],
                f"{SD21_MIRROR}/{SD_SOURCES['unet']}",
                SD21_UNET_SHA256,
                license=SD_LICENSE,
            ),  # fmt: skip
            WeightFile(SD_FILES["vae"], f"{SD21_MIRROR}/{SD_SOURCES['vae']}", license=SD_LICENSE),
            WeightFile(
                SD_FILES["text_encoder"],
                f"{SD21_MIRROR}/{SD_SOURCES['text_encoder']}",
                license=SD_LICENSE,
            ),  # fmt: skip
            WeightFile(
                SD_FILES["vocab"], f"{SD21_MIRROR}/{SD_SOURCES['vocab']}", license=SD_LICENSE
            ),  # fmt: skip
            WeightFile(
                SD_FILES["merges"], f"{SD21_MIRROR}/{SD_SOURCES['merges']}", license=SD_LICENSE
            ),  # fmt: skip
        ),
        deviations=(
            "Latent: the VAE posterior mean by default (deterministic); the official code samples "
            "it and never applies its --seed, so its runs are not repeatable. latent=sample "
            "draws each image's sample from its own per-image seed (the run seed then keys "
            "the SR cache).",
            "Inputs below the official minimum (a side < process_size/4 = 128) are enlarged as "
            "the official code does, and the result is resized back to 4x the input with PIL "
            "bicubic, as the official code intends: its resize-back line discards its result "
            "(the official output is larger than 4x).",
            "Inputs whose 4x size is not a multiple of 8: processed at the official "
            "LANCZOS-resized multiple-of-8 size, then PIL bicubic to exactly 4x (the official "
            "output is up to 7 px smaller).",
            "The scheduler step's extra noise (std 1e-10 in fp32, 0 in fp16) is left out; x0 is "
            "computed directly, in fp32 as the official step promotes it.",
            "Batches (batch_size > 1) encode prompts and run the networks on several images at "
            "once; the official script runs one image at a time (float rounding only).",
            "GroupNorm statistics of the tiled VAE are computed in fp32 (the official code "
            "computes them in the model's dtype): fp16 rounding only.",
            "precision=auto: fp16 on CUDA (official), fp32 on CPU (fp16 convolutions are not "
            "practical there); bf16 is offered as an extra option.",
            "prompt=empty and prompt=text:... replace the DAPE prompt (options the official "
            "script lacks).",
            "DAPE tagger (harness.methods.dape): RAM's Swin-L image encoder with DAPE's LoRA "
            "merged at load, and the tagging head only: RAM's caption/text modules, which the "
            "official tagging never uses, are not built; its 384 px resize runs without "
            "antialiasing, as under the official pins (torchvision < 0.17).",
            "LoRA branches of the UNet and VAE stay unmerged by default, as officially "
            "(method.merge_lora=true merges them at load: float rounding only).",
            "Runs on current diffusers/transformers/peft instead of the pinned diffusers 0.25 / "
            "transformers 4.28 / peft 0.9 (tools/equivalence_osediff.py: at most 1/255 with "
            "nofix; adain's gain std(LR)/std(out) can turn a 1-level truncation flip into 2 "
            "levels, seen on one of three tiny-weight crops, 1/255 at full size).",
        ),
        notes="osediff.pkl is the file shipped in the official repository "
        "(preset/models/osediff.pkl, git blob bc84dc9729aa6173e8b1087977025a4fc566a5db); "
        "SD2.1-base comes from the Manojb/stable-diffusion-2-1-base mirror (the stabilityai "
        "repository was removed in Nov 2025; the UNet's sha256 equals the original's).",
    )
    version = "1"

    def __init__(self, cfg=None) -> None:
        super().__init__(cfg)
        self._validate()
        if self._opt("latent", "mode") == "sample":  # the output depends on the seed
            self.card = replace(type(self).card, stochastic=True)
        self._info: list[dict[str, Any]] | None = None
        self.tagger = None

    # -- options -----------------------------------------------------------------------------
    def _opt(self, key: str, default: Any) -> Any:
        v = self.cfg.get(key, default)
        return default if v is None else v

    def _validate(self) -> None:
        arch = str(self._opt("arch", "paper"))
        if arch not in ("paper", "tiny"):
            raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")
        prompt = str(self._opt("prompt", "dape"))
        if prompt not in ("dape", "empty") and not prompt.startswith("text:"):
            raise HarnessError(f"method.prompt: '{prompt}' is not one of {', '.join(PROMPTS)}")
        fix = str(self._opt("color_fix", "adain"))
        if fix not in COLOR_FIXES:
            raise HarnessError(f"method.color_fix: '{fix}' is not one of {', '.join(COLOR_FIXES)}")
        latent = str(self._opt("latent", "mode"))
        if latent not in LATENTS:
            raise HarnessError(f"method.latent: '{latent}' is not one of {', '.join(LATENTS)}")
        precision = str(self._opt("precision", "auto"))
        if precision not in PRECISIONS:
            raise HarnessError(
                f"method.precision: '{precision}' is not one of {', '.join(PRECISIONS)}"
            )
        for key in ("process_size", "latent_tile", "vae_encoder_tile", "vae_decoder_tile"):
            if int(self._opt(key, 8)) < 8:
                raise HarnessError(f"method.{key}: must be at least 8")
        if not 0 <= int(self._opt("latent_overlap", 32)) < int(self._opt("latent_tile", 96)):
            raise HarnessError("method.latent_overlap: must be >= 0 and < method.latent_tile")

    @property
    def prompt_mode(self) -> str:
        return str(self._opt("prompt", "dape"))

    def _arch(self) -> OSEDiffConfig:
        return OSEDiffConfig.tiny() if self._opt("arch", "paper") == "tiny" else OSEDiffConfig()

    def resolve_dtype(self, device: torch.device, run_dtype: torch.dtype) -> torch.dtype:
        """``precision``: an explicit choice wins; ``auto`` is fp16 on CUDA (the official
        default), else the run's dtype (fp32 unless --dtype asks for fp16/bf16)."""
        p = str(self._opt("precision", "auto"))
        if p != "auto":
            return DTYPES[p]
        if run_dtype != torch.float32:
            return run_dtype
        return torch.float16 if device.type == "cuda" else torch.float32

    def output_signature(self, device: torch.device, dtype: torch.dtype) -> dict[str, str]:
        used = self.resolve_dtype(device, dtype)
        return {"device": device.type, "dtype": str(used).removeprefix("torch.")}

    # -- weights -----------------------------------------------------------------------------
    def weights_dir(self) -> Path:
        default = Path("~/.cache/harness/weights/osediff")
        return Path(str(self._opt("weights_dir", default))).expanduser()

    def files(self) -> dict[str, Path]:
        """Every file the configured method reads: role -> path."""
        folder = self.weights_dir()
        out = {"checkpoint": folder / CHECKPOINT} | {k: folder / v for k, v in SD_FILES.items()}
        if self.prompt_mode == "dape":
            out |= self._tagger_files()
        return out

    def _tagger_files(self) -> dict[str, Path]:
        """The tagger's files, in ``weights_dir`` under their manifest names (beside the
        OSEDiff files, where `harness weights fetch osediff` puts them)."""
        from harness.weights.manifest import load_manifest

        dape = dape_module()
        manifest = load_manifest()
        out = {}
        for wid in dape.DapeTagger.weight_ids:
            if wid not in manifest:
                raise HarnessError(f"osediff: the weights manifest has no entry '{wid}' "
                                   "(needed by the DAPE tagger)")  # fmt: skip
            out[f"dape:{wid}"] = self.weights_dir() / manifest[wid].name
        return out

    def _check_files(self) -> dict[str, Path]:
        files = self.files()
        missing = [p for p in files.values() if not p.is_file()]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise HarnessError(
                f"osediff: {len(missing)} weight files missing: {names}; get them with "
                "`harness weights fetch osediff` (or `harness weights import DIR`), or set "
                "method.weights_dir"
            )
        return files

    def weights_digest(self) -> str:
        files = self._check_files()
        return "+".join(f"{k}={file_digest(p)[:16]}" for k, p in sorted(files.items()))

    # -- model -------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        return OSEDiffNet(self._arch())

    def _tiling(self, net: OSEDiffNet, device: torch.device) -> None:
        net.tiling = replace(
            net.tiling,
            enabled=bool(self._opt("tiling", True)),
            latent_tile=int(self._opt("latent_tile", 96)),
            latent_overlap=int(self._opt("latent_overlap", 32)),
            encoder_tile=int(self._opt("vae_encoder_tile", 1024)),
            decoder_tile=int(self._opt("vae_decoder_tile", 224)),
            offload=device.type == "cuda",
        )

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)  # loaded_as: keyed by the requested dtype
        dtype = self.dtype = self.resolve_dtype(device, dtype)
        cfg = self._arch()
        tiny = self._opt("arch", "paper") == "tiny"
        if random_init:
            net = OSEDiffNet(cfg)
            self.tokenizer = sd.bundled_tokenizer()
        else:
            from harness.methods.osediff.weights import build

            files = self._check_files()
            net = build(cfg, files)
            self.tokenizer = sd.load_tokenizer(files["vocab"], files["merges"])
        if bool(self._opt("merge_lora", False)):
            sd.merge_lora(net.unet)
            sd.merge_lora(net.vae)
        self._tiling(net, device)
        self.model = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.tagger = None
        if self.prompt_mode == "dape":
            tagger_cls = dape_module().DapeTagger
            if random_init:
                self.tagger = tagger_cls.random(tiny=tiny, seed=0, device=device, dtype=dtype)
            else:
                from harness.methods.dape.arch import RamConfig

                files = {k.split(":", 1)[1]: p for k, p in self.files().items() if ":" in k}
                config = RamConfig.tiny() if tiny else None
                self.tagger = tagger_cls.from_files(files, device, dtype, config=config)
        self.net = PipelineNet(self.model, self.tagger)
        self.net.default_ids = sd.tokenize(self.tokenizer, [""]).to(device)

    # -- inference ---------------------------------------------------------------------------
    def prepare(self, lr: torch.Tensor) -> tuple[list[Image.Image], tuple[int, int]]:
        """PIL pre-processing of each LR image: (upscaled images, the LR's (w, h))."""
        u8 = (lr.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        h, w = lr.shape[-2:]
        ups = [preprocess(np.ascontiguousarray(im.transpose(1, 2, 0)), self.scale,
                          int(self._opt("process_size", 512))) for im in u8]  # fmt: skip
        return ups, (w, h)

    def prompts_for(self, up01: torch.Tensor) -> tuple[list[str], list[str | None]]:
        """(prompts, tags) for a batch of upscaled images in [0, 1]."""
        mode = self.prompt_mode
        n = up01.shape[0]
        if mode == "empty":
            return [""] * n, [None] * n
        if mode.startswith("text:"):
            return [mode[5:]] * n, [None] * n
        tags = list(self.tagger.tags(up01))
        extra = str(self._opt("extra_prompt", ""))
        return [f"{t}, {extra}," for t in tags], tags

    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(upscaled LR in [-1, 1], prompt token ids), as :meth:`upscale` computes them."""
        ups, _ = self.prepare(lr)
        up01 = _stack(ups).to(self.device)
        prompts, _ = self.prompts_for(up01)
        ids = sd.tokenize(self.tokenizer, prompts).to(self.device)
        return ((up01 * 2 - 1).to(self.dtype), ids)

    def components(self, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
        net = model.core if isinstance(model, PipelineNet) else model
        parts = {
            "text_encoder": net.text_encoder,
            "vae_encoder": torch.nn.ModuleList([net.vae.encoder, net.vae.quant_conv]),
            "unet": net.unet,
            "vae_decoder": torch.nn.ModuleList([net.vae.post_quant_conv, net.vae.decoder]),
        }
        prompt_model = getattr(model, "prompt_model", None)
        if prompt_model is not None:
            parts["prompt_model"] = prompt_model
        return parts

    def process(self, lr: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Steps 1-4 of the module docstring: uint8 ``(N, 3, H', W')`` at the processed size
        (the official script's output, which is not always 4x the input). ``seeds``: one per
        image for ``latent=sample`` (default 0 each)."""
        ups, _ = self.prepare(lr)
        up01 = _stack(ups).to(self.device)
        prompts, tags = self.prompts_for(up01)
        net = self.model
        text = net.encode_text(sd.tokenize(self.tokenizer, prompts).to(self.device))
        gens = None
        if str(self._opt("latent", "mode")) == "sample":
            seeds = list(seeds) if seeds is not None else [0] * up01.shape[0]
            gens = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        z = net.encode((up01 * 2 - 1).to(self.dtype), generators=gens)
        y = net.decode(net.x0(z, net.eps(z, text))).clamp(-1, 1)
        # 8 bits as ToPILImage: x*0.5+0.5 and x255 in the output's dtype, then truncation
        out8 = ((y * 0.5 + 0.5) * 255).to(torch.uint8).float() / 255
        fixed = color_fix(str(self._opt("color_fix", "adain")), out8, up01.float())
        self._info = [
            {"prompt": p, "tags": t, "prompt_mode": self.prompt_mode.split(":", 1)[0]}
            for p, t in zip(prompts, tags)
        ]
        return (fixed.clamp(0, 1) * 255).to(torch.uint8)

    def upscale(self, lr: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``seeds[i]`` draws image i's latent under ``latent=sample`` (ignored otherwise)."""
        h, w = lr.shape[-2:]
        out = self.process(lr, seeds)
        want = (w * self.scale, h * self.scale)
        if out.shape[-1] != want[0] or out.shape[-2] != want[1]:
            out = _resize_u8(out, want)  # step 5: what the official resize-back line intends
        return out.float() / 255

    def last_info(self) -> list[dict[str, Any]] | None:
        return self._info


class PipelineNet(torch.nn.Module):
    """OSEDiffNet plus the prompt model, as one module for the profiler: forward runs the
    tagger's network on the image (when there is one), the text encoder, and the one-step
    core. The tagger is a DAPE tagger (``preprocess`` + ``module``); its tag strings are not
    needed to count or time the networks, so the text encoder gets ``default_ids``."""

    def __init__(self, core: OSEDiffNet, tagger: Any = None) -> None:
        super().__init__()
        self.core = core
        self._tagger = [tagger]  # a list: the tagger object itself is not a module
        self.default_ids: torch.Tensor | None = None
        self.prompt_model = getattr(tagger, "module", None)  # None: a stand-in tagger

    def forward(
        self, x: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: upscaled LR in [-1, 1]; ``ids`` default to the empty prompt's. Returns the SR
        image in [-1, 1], and with a tagger also its tag logits (an unused output would be
        pruned from the traced graph that MAC counters read)."""
        sr = self.core(x, self.default_ids if ids is None else ids)
        tagger = self._tagger[0]
        if self.prompt_model is None:
            return sr
        return sr, self.prompt_model(tagger.preprocess((x.float() + 1) / 2))


def preprocess(rgb: np.ndarray, scale: int = 4, process_size: int = 512) -> Image.Image:
    """The official pre-processing of one uint8 ``(H, W, 3)`` LR image (see the module doc)."""
    im = Image.fromarray(rgb)
    w, h = im.size
    least = process_size // scale
    if w < least or h < least:
        s = least / min(w, h)
        im = im.resize((int(s * w), int(s * h)), Image.BICUBIC)
    im = im.resize((im.width * scale, im.height * scale), Image.BICUBIC)
    return im.resize((im.width - im.width % 8, im.height - im.height % 8), Image.LANCZOS)


def _stack(images: list[Image.Image]) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    # contiguous NCHW, as ToTensor gives: the memory format picks the conv kernels (rounding)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().float() / 255


def _resize_u8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL bicubic resize of uint8 ``(N, 3, H, W)`` images to ``size`` = (w, h)."""
    arr = x.permute(0, 2, 3, 1).cpu().numpy()
    out = [np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC)) for a in arr]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device)
