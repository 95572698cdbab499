"""The ``s3diff`` method: S3Diff (SD-Turbo, degradation-guided LoRA) as its inference script runs.

Per image (official ``inference_s3diff.py`` with ``s3diff_tile``):

1. LR in [0, 1] -> bilinear x4 (``align_corners=False``) -> ``x * 2 - 1`` -> clamp to [-1, 1]
   -> reflect-pad right/bottom to multiples of 64;
2. degradation scores of the LR (in [0, 1]) modulate every LoRA layer;
3. VAE encode (posterior *sample*: mean + std * noise), UNet at t=999 with the positive and
   negative prompts, ``neg + 1.07 (pos - neg)``, DDPM x0 step, VAE decode, clamp, crop the
   padding;
4. ``y * 0.5 + 0.5`` truncated to 8 bits, the wavelet colour fix against the (8-bit truncated)
   upscaled LR, clamp, truncate to 8 bits again.

Randomness: the official script samples the VAE posterior from an unseeded generator, so its
outputs change from run to run. Here image i's noise (N(0, 1), drawn on the CPU in fp32) comes
from its own generator seeded with ``seeds[i]`` (the runner derives it from the run seed and the
image name): outputs repeat, and depend neither on file order nor on the batch. ``latent=mean``
uses the posterior mean instead (no noise; the seed is then unused).

Weights: ``s3diff.pkl`` and ``de_net.pth`` (``weights_dir``) and SD-Turbo in the diffusers
layout (``sd_turbo_dir``, default the Hugging Face cache snapshot that ``harness weights fetch
s3diff`` fills).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.checkpoints import file_digest, load_tensors, tensors_only
from harness.errors import HarnessError
from harness.methods.base import MethodCard, SRMethod, WeightFile
from harness.methods.common.colorfix import COLOR_FIXES, color_fix
from harness.methods.s3diff.arch import NEG_PROMPT, POS_PROMPT, S3DiffConfig, S3DiffNet
from harness.methods.s3diff.convert import (
    S3DIFF_FILES,
    SD_TURBO_WEIGHTS,
    TOKENIZER_FILES,
    from_official,
    prompt_ids,
    ranks,
)
from harness.methods.s3diff.tiling import Tiling

S3DIFF_HF = "https://huggingface.co/zhangap/S3Diff"
SD_TURBO_HF = "https://huggingface.co/stabilityai/sd-turbo"
MULTIPLE = 64
SD_TURBO_LICENSE = "Stability AI Non-Commercial Research Community License (SD-Turbo)"
DEFAULT_SEED = 0  # posterior noise seed for calls without per-image seeds (profiling, direct use)


def preprocess(lr: torch.Tensor, scale: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(upscaled LR in [0, 1], network input in [-1, 1] padded to multiples of 64)."""
    h, w = lr.shape[-2:]
    up = F.interpolate(lr, size=(h * scale, w * scale), mode="bilinear", align_corners=False)
    x = (up * 2 - 1).clamp(-1, 1)
    ph, pw = (-x.shape[-2]) % MULTIPLE, (-x.shape[-1]) % MULTIPLE
    return up, F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


def truncate8(x: torch.Tensor) -> torch.Tensor:
    """8-bit conversion as torchvision's ToPILImage does it (``mul(255).byte()``), back in
    [0, 1]: values are truncated, not rounded."""
    return torch.floor(x * 255).clamp(0, 255) / 255


class S3Diff(SRMethod):
    card = MethodCard(
        family="diffusion",
        name="s3diff",
        display_name="S3Diff",
        paper="Zhang, Yue, Pei, Ren, Cao, Degradation-Guided One-Step Image Super-Resolution "
        "with Diffusion Priors (arXiv:2409.17058, 2024)",
        license="Apache-2.0 (code, s3diff.pkl, de_net.pth); " + SD_TURBO_LICENSE,
        scale=4,
        scales=(4,),
        steps=1,
        code="https://github.com/ArcticHare105/S3Diff",
        weights=(
            WeightFile(
                "s3diff.pkl",
                f"{S3DIFF_HF}/resolve/main/s3diff.pkl",
                "92bb59d026b44c8a19fe8df2df356a25fd4c39b37d8b67f51af9e2c7228d56b5",
                license="Apache-2.0",
            ),
            WeightFile(
                "de_net.pth", f"{S3DIFF_HF}/resolve/main/de_net.pth", None, license="Apache-2.0"
            ),
            WeightFile(
                "diffusion_pytorch_model.safetensors",
                f"{SD_TURBO_HF}/resolve/main/unet/diffusion_pytorch_model.safetensors",
                "438da6db739c8651ec4152341b8133d6896db452ea27afdb6b9b0344f0c40532",
                license=SD_TURBO_LICENSE,
            ),
            WeightFile(
                "diffusion_pytorch_model.safetensors",
                f"{SD_TURBO_HF}/resolve/main/vae/diffusion_pytorch_model.safetensors",
                "2aa1f43011b553a4cba7f37456465cdbd48aab7b54b9348b890e8058ea7683ec",
                license=SD_TURBO_LICENSE,
            ),
            WeightFile(
                "model.safetensors",
                f"{SD_TURBO_HF}/resolve/main/text_encoder/model.safetensors",
                "67e013543d4fac905c882e2993d86a2d454ee69dc9e8f37c0c23d33a48959d15",
                license=SD_TURBO_LICENSE,
            ),
        )
        + tuple(
            WeightFile(
                f.split("/")[-1], f"{SD_TURBO_HF}/resolve/main/{f}", None, license=SD_TURBO_LICENSE
            )
            for f in TOKENIZER_FILES
        ),  # fmt: skip
        deviations=(
            "The VAE posterior is sampled as officially (default latent=sample), but its noise "
            "comes from a generator per image seeded with the per-image seed (drawn on the CPU "
            "in fp32), so outputs repeat and do not depend on file order or batch; the official "
            "script samples from the global generator (on the GPU): unseeded by default, so its "
            "outputs differ from run to run (two seeds: up to 248 8-bit levels apart on tiny "
            "random weights), or "
            "seeded once per run with --seed, so an image's output depends on the files read "
            "before it. latent=mean (posterior mean, no noise) is an option.",
            "The DDPM step's added variance (1e-10 * noise at t=999) is left out.",
            "The prompts are encoded once when the weights load, not for every image (same "
            "values).",
            "Batches of several images (official: one at a time); float rounding may then "
            "differ from single-image runs by one 8-bit level in rare pixels.",
            "fp16/bf16 run the whole network in that dtype (official: accelerate autocast); "
            "the latent tiles are blended in fp32 and cast back.",
            "LR sides below 9 px are refused (the official reflect padding fails on them).",
            "Latent tiling on a latent side <= 32 (the official loop never ends there) uses an "
            "overlap of half the tile.",
            "The architecture is built from SD-Turbo's published configs, not read from the "
            "config.json files; current diffusers/transformers instead of the pinned "
            "0.25.1/4.35.2.",
            "Tiled VAE and latent tiling are re-implemented (same tile geometry, pooled "
            "GroupNorm statistics, per-tile attention, Gaussian blending).",
            "Options beyond the official ones: color_fix adain|nofix, quantize=round, "
            "tiling sizes, latent=mean.",
        ),
        notes="Two UNet passes per image (guidance 1.07 with fixed prompts). fp32 by default. "
        "The seed matters: the official code samples the VAE posterior, and so does the default "
        "here, from the per-image seed.",
        stochastic=True,  # default latent=sample: the output depends on the per-image seed
    )
    version = "2"

    # -- configuration -------------------------------------------------------------------------
    def _arch(self) -> S3DiffConfig:
        arch = str(self.cfg.get("arch", "paper"))
        if arch not in ("paper", "tiny"):
            raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")
        return S3DiffConfig.paper() if arch == "paper" else S3DiffConfig.tiny()

    def _options(self) -> dict[str, Any]:
        fix = str(self.cfg.get("color_fix", "wavelet"))
        if fix not in COLOR_FIXES:
            raise HarnessError(f"method.color_fix: '{fix}' is not one of {', '.join(COLOR_FIXES)}")
        latent = str(self.cfg.get("latent", "sample"))
        if latent not in ("sample", "mean"):
            raise HarnessError(f"method.latent: '{latent}' is not one of sample, mean")
        quantize = str(self.cfg.get("quantize", "truncate"))
        if quantize not in ("truncate", "round"):
            raise HarnessError(f"method.quantize: '{quantize}' is not one of truncate, round")
        return {"color_fix": fix, "latent": latent, "quantize": quantize}

    def _tiling(self) -> Tiling:
        t = Tiling()
        keys = {"latent_tiled_size": "latent_tile", "latent_tiled_overlap": "latent_overlap",
                "vae_encoder_tiled_size": "encoder_tile",
                "vae_decoder_tiled_size": "decoder_tile"}  # fmt: skip
        for key, attr in keys.items():
            if self.cfg.get(key) is not None:
                value = int(self.cfg[key])
                if value < 1:
                    raise HarnessError(f"method.{key}: must be a positive integer, got {value}")
                setattr(t, attr, value)
        t.enabled = bool(self.cfg.get("tiling", True))
        return t

    def check_config(self) -> None:
        self._arch()
        self._options()
        self._tiling()

    def build_model(self) -> S3DiffNet:
        net = S3DiffNet(self._arch())
        net.tiling = self._tiling()
        return net

    # -- weights -------------------------------------------------------------------------------
    def _sd_turbo_dir(self) -> Path:
        if self.cfg.get("sd_turbo_dir"):
            return Path(str(self.cfg["sd_turbo_dir"])).expanduser()
        from harness.weights.manager import location_dir
        from harness.weights.manifest import load_manifest

        return location_dir(load_manifest()["sd-turbo-unet"])

    def _files(self) -> dict[str, Path]:
        s3 = Path(str(self.cfg.get("weights_dir", "."))).expanduser()
        sd = self._sd_turbo_dir()
        files = {name: s3 / name for name in S3DIFF_FILES}
        files.update({rel: sd / rel for rel in (*SD_TURBO_WEIGHTS.values(), *TOKENIZER_FILES)})
        return files

    def _check_files(self) -> dict[str, Path]:
        files = self._files()
        missing = [name for name, path in files.items() if not path.is_file()]
        if missing:
            s3 = [m for m in missing if m in S3DIFF_FILES]
            sd = [m for m in missing if m not in S3DIFF_FILES]
            where = []
            if s3:
                where.append(f"{', '.join(s3)} in {files[s3[0]].parent} ({S3DIFF_HF})")
            if sd:
                where.append(f"SD-Turbo {', '.join(sd)} in {self._sd_turbo_dir()} ({SD_TURBO_HF})")
            raise HarnessError(
                f"s3diff: missing weights: {'; '.join(where)}; get them with "
                "`harness weights fetch s3diff` or `harness weights import DIR`, or pass "
                "method.weights_dir=DIR / method.sd_turbo_dir=DIR"
            )
        return files

    def weights_digest(self) -> str:
        return "+".join(file_digest(p)[:12] for p in self._check_files().values())

    def _load_weights(self) -> tuple[S3DiffNet, tuple[torch.Tensor, torch.Tensor]]:
        files = self._check_files()
        pkl = load_tensors(files["s3diff.pkl"])
        if not isinstance(pkl, dict):
            raise HarnessError(f"{files['s3diff.pkl']}: not an S3Diff checkpoint")
        r_unet, r_vae = ranks(pkl, str(files["s3diff.pkl"]))
        net = S3DiffNet(self._arch(), rank_unet=r_unet, rank_vae=r_vae)
        parts = {
            key: tensors_only(load_tensors(files[rel]), str(files[rel]))
            for key, rel in SD_TURBO_WEIGHTS.items()
        }
        de = tensors_only(load_tensors(files["de_net.pth"]), str(files["de_net.pth"]))
        try:
            sd = from_official(net, pkl, parts["unet"], parts["vae"], parts["text_encoder"], de)
        except (KeyError, TypeError, AttributeError) as e:
            raise HarnessError(f"{files['s3diff.pkl']}: missing entry {e}") from None
        try:
            net.load_state_dict(sd, strict=True, assign=True)
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            detail = " ".join(lines[1:3])[:300] if len(lines) > 1 else str(e)[:300]
            raise HarnessError(
                f"s3diff: weights do not fit the '{self.cfg.get('arch', 'paper')}' architecture "
                f"({detail})"
            ) from None
        ids = prompt_ids(files[TOKENIZER_FILES[0]].parent, self._prompts())
        return net, ids

    def _prompts(self) -> tuple[str, str]:
        return (str(self.cfg.get("pos_prompt") or POS_PROMPT),
                str(self.cfg.get("neg_prompt") or NEG_PROMPT))  # fmt: skip

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)
        self.options = self._options()
        if random_init:
            net = S3DiffNet(self._arch())
            ids = None
        else:
            net, ids = self._load_weights()
        net.tiling = self._tiling()
        net.guidance_scale = float(self.cfg.get("guidance_scale", 1.07))
        net = net.to(device=device, dtype=dtype).eval()
        if ids is not None:
            net.set_prompts(*ids)
        self.net = net

    # -- inference -----------------------------------------------------------------------------
    def check_input_size(self, height: int, width: int) -> None:
        super().check_input_size(height, width)
        if min(height, width) < 9:
            raise HarnessError(
                f"s3diff: LR size {width}x{height} is too small (sides of at least 9 px: the "
                "official reflect padding to multiples of 64 needs them)"
            )

    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(padded upscaled LR in [-1, 1], LR in [0, 1]) in the model's dtype."""
        lr = lr.to(self.device, torch.float32)
        _, x = preprocess(lr, self.scale)
        return x.to(self.dtype), lr.to(self.dtype)

    def components(self, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
        mods = torch.nn.ModuleList([getattr(model, n) for n in (
            "vae_de_mlp", "unet_de_mlp", "vae_block_mlp", "unet_block_mlp", "vae_fuse_mlp",
            "unet_fuse_mlp", "vae_block_embeddings", "unet_block_embeddings")])  # fmt: skip
        return {
            "de_net": model.de_net,
            "vae_encoder": torch.nn.ModuleList([model.vae.encoder, model.vae.quant_conv]),
            "unet": model.unet,
            "vae_decoder": torch.nn.ModuleList([model.vae.post_quant_conv, model.vae.decoder]),
            "text_encoder": model.text_encoder,
            "modulation": mods,
        }

    @staticmethod
    def posterior_noise(x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Posterior noise (N, 4, H/8, W/8) for the padded input ``x``: image i's N(0, 1) values
        drawn on the CPU in fp32 from a generator seeded with ``seeds[i]`` alone."""
        shape = (1, 4, x.shape[-2] // 8, x.shape[-1] // 8)
        return torch.cat([
            torch.randn(shape, generator=torch.Generator().manual_seed(int(s)))
            for s in seeds
        ])  # fmt: skip

    def upscale(self, lr: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``(N, 3, h, w)`` in [0, 1] -> ``(N, 3, 4h, 4w)`` in [0, 1], multiples of 1/255.

        ``seeds[i]`` seeds image i's posterior noise (default: ``DEFAULT_SEED`` for every
        image); unused with ``latent=mean``."""
        h, w = lr.shape[-2:]
        self.check_input_size(h, w)
        n = lr.shape[0]
        seeds = list(seeds) if seeds is not None else [DEFAULT_SEED] * n
        if len(seeds) != n:
            raise ValueError(f"s3diff: {len(seeds)} seeds for {n} images")
        lr = lr.to(self.device, torch.float32)
        up, x = preprocess(lr, self.scale)
        noise = None
        if self.options["latent"] == "sample":
            noise = self.posterior_noise(x, seeds).to(self.device)
        with torch.no_grad():
            y = self.net(x.to(self.dtype), lr.to(self.dtype), noise)
        y = y[..., : up.shape[-2], : up.shape[-1]].float()
        out = y * 0.5 + 0.5
        if self.options["quantize"] == "round":
            fixed = color_fix(self.options["color_fix"], out, up)
            return (fixed.clamp(0, 1) * 255).round() / 255
        out = truncate8(out)
        if self.options["color_fix"] == "nofix":
            return out
        fixed = color_fix(self.options["color_fix"], out, truncate8(up))
        return truncate8(fixed.clamp(0, 1))
