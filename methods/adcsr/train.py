"""Training AdcSR in the harness: stage 1 (pruned VAE decoder) and stage 2 (adversarial
distillation from OSEDiff in feature space), from a CPU smoke run to the paper's recipe.

Stage 1 (``stage=decoder``; the authors did not release it): a frozen SD VAE encoder gives the
latent mean of an HR crop; the half-width decoder (``HalfDecoder``: post_quant_conv, conv_in,
mid block, up blocks) reconstructs it. Loss: L1 + LPIPS + a patch-GAN term (hinge), the
latent-diffusion autoencoder recipe, weights configurable.

Stage 2 (``stage=distill``): the teacher OSEDiff (the ``osediff`` method's network and loaders,
``methods/osediff/teacher.py``) runs one step at t=999 on its VAE latent mean of the bicubic-x4
LR, conditioned on the LR's DAPE tags when the tagger and its weights are present
(``teacher.prompt=auto``); x0 = (z - sqrt(1-a) eps) / sqrt(a). Features are the stage-1
decoder's mid-block output: teacher = mid(conv_in(pqc(x0 / 0.18215))), real = the same on the
SD VAE's HR latent (OSEDiff's encoder LoRA switched off),
student = AdcSRNet.features(LR). L_G = L1(student, teacher) + softplus(-D(student));
L_D = softplus(D(student.detach())) + softplus(-D(real)). D is an SD UNet with a new conv_in
from the feature width and rank-4 LoRA (gaussian init) on attention, conv and feed-forward layers,
called at t=999 with the prompt embedding. Adam (G lr 1e-4 halved at ``lr_halve_step``, D lr
1e-6); autocast with one GradScaler for G and one for D; a non-finite loss skips the step and is
logged (official issue #32) instead of poisoning the weights.

Everything is deterministic on the CPU: batches are a function of the step (``TrainPairs``),
checkpoints hold model, optimizer, scaler and RNG state, and a resumed run reproduces
the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from harness.checkpoints import load_tensors
from harness.errors import HarnessError
from harness.imageio import write_text
from harness.methods.adcsr.arch import AdcSRConfig, AdcSRNet, DecoderMid, DecoderTail
from harness.methods.adcsr.convert import compress_unet
from harness.progress import log, progress_bar

SCALE_FACTOR = 0.18215  # SD VAE latent scaling


# ----------------------------------------------------------------------------- models


class HalfDecoder(nn.Module):
    """The pruned VAE decoder: latent (4 ch) -> RGB in [-1, 1]; AdcSR's tail is its up blocks."""

    def __init__(self, cfg: AdcSRConfig) -> None:
        super().__init__()
        width = cfg.latent_channels
        self.post_quant_conv = nn.Conv2d(4, 4, 1)
        self.conv_in = nn.Conv2d(4, width, 3, padding=1)
        self.mid = DecoderMid(width, cfg.decoder_norm_eps)
        self.tail = DecoderTail(cfg)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Mid-block features of an (unscaled) latent: the space stage 2 distils in."""
        return self.mid(self.conv_in(self.post_quant_conv(z)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.features(z))


def slice_into(target: nn.Module, source: dict[str, torch.Tensor], rename) -> int:
    """Initialise ``target`` by keeping the first channels of matching ``source`` tensors."""
    own = target.state_dict()
    done = 0
    for key, t in source.items():
        k = rename(key)
        if k is None or k not in own:
            continue
        want = own[k].shape
        if t.ndim != len(want) or any(a < b for a, b in zip(t.shape, want)):
            continue
        own[k] = t[tuple(slice(0, n) for n in want)].clone()
        done += 1
    target.load_state_dict(own)
    return done


def _sd_decoder_key(key: str) -> str | None:
    import re

    if key.startswith("post_quant_conv."):
        return key
    if not key.startswith("decoder."):
        return None
    k = key.removeprefix("decoder.")
    if k.startswith("mid_block."):
        k = "mid." + re.sub(r"^attentions\.0\.(to_q|to_k|to_v|to_out)", r"attentions.0.attn.\1",
                            k.removeprefix("mid_block."))  # fmt: skip
        return k
    if k.startswith(("up_blocks.", "conv_norm_out.", "conv_out.")):
        return "tail." + k
    return k  # conv_in


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix NLayerDiscriminator): conv-norm-LeakyReLU, logits per patch."""

    def __init__(self, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers + 1):
            nxt = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), nn.BatchNorm2d(nxt),
                     nn.LeakyReLU(0.2)]  # fmt: skip
            ch = nxt
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LoRA(nn.Module):
    """``base(x) + up(down(x)) * alpha/r`` around a frozen Linear or Conv2d (gaussian init of
    ``down``, zeros for ``up``: the wrapped layer starts out unchanged)."""

    def __init__(self, base: nn.Module, rank: int = 4, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.scale = (alpha or rank) / rank
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        else:
            self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride,
                                  base.padding, bias=False)  # fmt: skip
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.normal_(self.down.weight, std=1 / rank)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x)) * self.scale


_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "conv1",
                 "conv2", "conv_shortcut", "proj_in", "proj_out")  # fmt: skip


def add_lora(model: nn.Module, rank: int) -> int:
    """Wrap attention, feed-forward and resnet conv layers of ``model`` in :class:`LoRA`."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv2d)) and n.endswith(_LORA_TARGETS)]  # fmt: skip
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRA(getattr(parent, child), rank))
    return len(names)


class UNetDiscriminator(nn.Module):
    """SD UNet with a new conv_in from the feature width, LoRA adapters; logits per position."""

    def __init__(self, unet: nn.Module, feature_channels: int, rank: int):
        super().__init__()
        for p in unet.parameters():
            p.requires_grad_(False)
        first = unet.conv_in.out_channels
        unet.conv_in = nn.Conv2d(feature_channels, first, 3, padding=1)
        self.adapters = add_lora(unet, rank)
        self.unet = unet
        self._trainable = [p for p in self.parameters() if p.requires_grad]

    def trainable(self) -> list[nn.Parameter]:
        """conv_in and the LoRA adapters (the base UNet stays frozen)."""
        return self._trainable

    def train_params(self, on: bool) -> None:
        for p in self._trainable:
            p.requires_grad_(on)

    def forward(self, f: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Logits for features ``f`` under the batch's text embedding ``(N, 77, D)``."""
        return self.unet(f, 999, text.to(f.dtype)).sample


# ----------------------------------------------------------------------------- teacher


def _unet(cfg: DictConfig) -> nn.Module:
    from diffusers import UNet2DConditionModel

    if cfg.arch == "sd21":
        from harness.methods.osediff.arch import sd21_unet

        return sd21_unet()
    return UNet2DConditionModel(**OmegaConf.to_container(cfg.unet_config))  # type: ignore[arg-type]


def _teacher_arch(cfg: DictConfig):
    from harness.methods.common.sd import TINY_TEXT
    from harness.methods.osediff.arch import OSEDiffConfig

    if cfg.arch == "sd21":
        return OSEDiffConfig.paper()
    unet = OmegaConf.to_container(cfg.unet_config)
    vae = OmegaConf.to_container(cfg.vae_config)
    text = dict(TINY_TEXT) | {"hidden_size": int(unet["cross_attention_dim"])}  # type: ignore[index]
    return OSEDiffConfig(unet, vae, text)  # type: ignore[arg-type]


def _load_into(model: nn.Module, sd: dict, where: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise HarnessError(f"{where}: does not fit the model ({str(e).splitlines()[0]})") from None


def build_teacher(cfg: DictConfig):
    """OSEDiff through the ``osediff`` method's code (``methods/osediff/teacher.py``): the
    release files in ``weights_dir``, AdcSR's merged ``weights`` file, or random weights."""
    from harness.methods.osediff.teacher import build_teacher as osediff_teacher

    return osediff_teacher(
        _teacher_arch(cfg),
        weights_dir=cfg.get("weights_dir"),
        merged=cfg.weights,
        prompt=str(cfg.prompt),
        sd_unet=cfg.sd_unet,
    )


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """Shared machinery: device, autocast, checkpoints, metrics log, NaN guard, and data
    parallelism under ``torchrun`` (one process per GPU, or gloo on CPUs): every rank builds the
    same models from the same seed, takes its own slots of each step's batch, and averages
    gradients before each optimizer step; rank 0 writes checkpoints, logs and weights."""

    def __init__(self, cfg: DictConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out
        want = str(cfg.device)
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            if want.startswith("cuda"):
                want = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
                torch.cuda.set_device(torch.device(want))
            if not dist.is_initialized():
                dist.init_process_group("nccl" if want.startswith("cuda") else "gloo")
        self.main = self.rank == 0
        self.device = torch.device(want)
        self.amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[str(cfg.precision)]
        self.step = 0
        self.skipped = 0
        out.mkdir(parents=True, exist_ok=True)
        self.modules: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def autocast(self):
        if self.amp is None:
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def scaler(self, name: str) -> torch.amp.GradScaler:
        enabled = self.amp == torch.float16  # bf16 and fp32 need no loss scaling
        self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=enabled)
        return self.scalers[name]

    def apply(self, name: str, loss: torch.Tensor) -> bool:
        """Backward + step for optimizer ``name``; a non-finite loss skips the step."""
        opt, scaler = self.optims[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        finite = torch.isfinite(loss.detach()).float().to(self.device)
        if self.world > 1:  # every rank skips together, or none does
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not bool(finite):
            self.skipped += 1
            log(f"step {self.step}: non-finite {name} loss, step skipped ({self.skipped} so far)")
            return False
        scaler.scale(loss).backward()
        if self.world > 1:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        scaler.step(opt)
        scaler.update()
        return True

    # -- checkpoints ---------------------------------------------------------------------------
    def mean(self, row: dict[str, Any]) -> dict[str, Any]:
        """Average the numbers of a log row over ranks (each rank saw part of the batch)."""
        if self.world == 1:
            return row
        keys = [k for k, v in row.items() if isinstance(v, float)]
        t = torch.tensor([row[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return row | {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def save(self) -> Path | None:
        if not self.main:
            dist.barrier()
            return None
        state = {
            "step": self.step, "skipped": self.skipped,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "rng": torch.get_rng_state(),
        }  # fmt: skip
        path = self.out / f"ckpt-{self.step:07d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        write_text(self.out / "latest.txt", path.name + "\n")
        if self.world > 1:
            dist.barrier()
        return path

    def resume(self) -> bool:
        latest = self.out / "latest.txt"
        if not latest.is_file():
            return False
        path = self.out / latest.read_text().strip()
        state = load_tensors(path)  # the restricted reader, as for every checkpoint
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optims.items():
            o.load_state_dict(state["optims"][k])
        for k, s in self.scalers.items():
            s.load_state_dict(state["scalers"][k])
        torch.set_rng_state(state["rng"])
        self.step, self.skipped = int(state["step"]), int(state["skipped"])
        log(f"resumed from {path} at step {self.step}")
        return True

    def log_row(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def _data(cfg: DictConfig, degrade_lr: bool):
    from harness.datasets.training import TrainPairs

    root = cfg.data.hr_dir
    if not root:  # the embedded photographs: a CPU smoke run needs nothing downloaded
        from harness.datasets.embedded import materialise

        root = materialise(Path(str(cfg.cache_dir)).expanduser() / "datasets") / "HR"
    return TrainPairs(root, int(cfg.data.crop), int(cfg.data.batch_size), int(cfg.seed),
                      degrade_lr=degrade_lr, hflip=bool(cfg.data.hflip),
                      fixed_batch=bool(cfg.data.fixed_batch))  # fmt: skip


def _arch(cfg: DictConfig) -> AdcSRConfig:
    return AdcSRConfig.paper() if cfg.arch == "paper" else AdcSRConfig.tiny()


def _loop(tr: Trainer, steps: int, body, label: str) -> list[dict[str, Any]]:
    rows = []
    with progress_bar(label, total=steps - tr.step) as advance:
        while tr.step < steps:
            t0 = time.perf_counter()
            row = tr.mean(body(tr.step))
            tr.step += 1
            row |= {"step": tr.step, "it_s": 1 / max(time.perf_counter() - t0, 1e-9),
                    "skipped": tr.skipped}  # fmt: skip
            tr.log_row(row)
            rows.append(row)
            if tr.step % int(tr.cfg.checkpoint_every) == 0 or tr.step == steps:
                tr.save()
            advance()
    return rows


def train_decoder(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Stage 1. Writes ``half_decoder.safetensors`` (HalfDecoder state dict)."""
    torch.manual_seed(int(cfg.seed))
    tr = Trainer(cfg, out)
    arch = _arch(cfg)
    teacher = build_teacher(cfg.teacher).to(tr.device)
    dec = HalfDecoder(arch).to(tr.device)
    if cfg.decoder.init_from_sd:
        n = slice_into(dec, teacher.net.vae.state_dict(), _sd_decoder_key)
        log(f"stage 1: {n} decoder tensors initialised by slicing the SD VAE decoder")
    disc = PatchDiscriminator(int(cfg.decoder.disc_width), int(cfg.decoder.disc_layers))
    disc = disc.to(tr.device)
    lp = _lpips(cfg).to(tr.device) if cfg.decoder.lpips_weight else None
    tr.modules = {"decoder": dec, "disc": disc}
    tr.optims = {
        "g": torch.optim.Adam(dec.parameters(), lr=float(cfg.decoder.lr)),
        "d": torch.optim.Adam(disc.parameters(), lr=float(cfg.decoder.disc_lr)),
    }
    tr.scaler("g"), tr.scaler("d")
    tr.resume()
    data = _data(cfg, degrade_lr=False)

    def body(step: int) -> dict[str, Any]:
        _, hr = data.batch(step, tr.rank, tr.world)
        x = hr.to(tr.device) * 2 - 1
        with torch.no_grad():
            z = teacher.sd_latent(x)
        gan_on = step >= int(cfg.decoder.disc_start)
        with tr.autocast():
            rec = dec(z)
            l1 = F.l1_loss(rec.float(), x)
            loss = l1
            row = {"l1": l1.item()}
            if lp is not None:
                lpips = lp(rec.float(), x).mean()
                loss = loss + float(cfg.decoder.lpips_weight) * lpips
                row["lpips"] = lpips.item()
            if gan_on:
                disc.requires_grad_(False)
                g_adv = -disc(rec).float().mean()
                disc.requires_grad_(True)
                loss = loss + float(cfg.decoder.gan_weight) * g_adv
                row["g_adv"] = g_adv.item()
        tr.apply("g", loss)
        row["loss_g"] = loss.item()
        if gan_on:
            with tr.autocast():
                d_loss = (F.relu(1 - disc(x)).float().mean()
                          + F.relu(1 + disc(rec.detach())).float().mean())  # fmt: skip
            tr.apply("d", d_loss)
            row["loss_d"] = d_loss.item()
        return row

    rows = _loop(tr, int(cfg.steps), body, "stage 1 (decoder)")
    if tr.main:
        _export(out / "half_decoder.safetensors", dec.state_dict(), {"arch": str(cfg.arch)})
    return {"rows": rows, "skipped": tr.skipped, "weights": str(out / "half_decoder.safetensors")}


def _lpips(cfg: DictConfig) -> nn.Module:
    import lpips

    from harness.weights.guard import guarded

    random_backbone = str(cfg.decoder.lpips_backbone) == "random"
    with guarded():  # lpips and torchvision unpickle their weight files with torch.load
        model = lpips.LPIPS(net="alex", pnet_rand=random_backbone, verbose=False)
    return model.requires_grad_(False).eval()


def _export(path: Path, sd: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def train_distill(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Stage 2. Writes ``adcsr.safetensors`` (AdcSRNet state dict, usable by ``harness run``)."""
    from harness.checkpoints import load_tensors

    torch.manual_seed(int(cfg.seed))
    tr = Trainer(cfg, out)
    arch = _arch(cfg)
    half = HalfDecoder(arch)
    _load_into(half, load_tensors(cfg.distill.half_decoder), str(cfg.distill.half_decoder))
    half = half.to(tr.device).requires_grad_(False).eval()
    teacher = build_teacher(cfg.teacher).to(tr.device)
    base = teacher.base_unet
    log(f"stage 2: teacher prompts: {teacher.prompt}")
    student = AdcSRNet(arch)
    student.unet.load_state_dict(compress_unet(base, float(cfg.distill.prune_ratio),
                                               arch.latent_channels))  # fmt: skip
    student.mid.load_state_dict(half.mid.state_dict())
    student.decoder.load_state_dict(half.tail.state_dict())
    student = student.to(tr.device)
    student.decoder.requires_grad_(False)
    d_unet = _unet(cfg.teacher)
    d_unet.load_state_dict(base)
    disc = UNetDiscriminator(d_unet, arch.latent_channels, int(cfg.distill.lora_rank))
    disc = disc.to(tr.device)
    g_params = [p for p in student.parameters() if p.requires_grad]
    tr.modules = {"student": student, "disc": disc}
    tr.optims = {
        "g": torch.optim.Adam(g_params, lr=float(cfg.distill.lr)),
        "d": torch.optim.Adam(disc.trainable(), lr=float(cfg.distill.disc_lr)),
    }
    tr.scaler("g"), tr.scaler("d")
    tr.resume()
    data = _data(cfg, degrade_lr=True)
    halve = int(cfg.distill.lr_halve_step)

    def body(step: int) -> dict[str, Any]:
        for g in tr.optims["g"].param_groups:
            g["lr"] = float(cfg.distill.lr) * (0.5 if halve and step >= halve else 1.0)
        lr, hr = data.batch(step, tr.rank, tr.world)
        lr, hr = lr.to(tr.device), hr.to(tr.device)
        with torch.no_grad():
            up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
            text = teacher.text(lr)
            x0 = teacher.x0(teacher.latent(up.clamp(0, 1) * 2 - 1), text)
            f_teacher = half.features(x0 / SCALE_FACTOR)
            f_real = half.features(teacher.sd_latent(hr * 2 - 1))
        with tr.autocast():
            f_student = student.features(lr * 2 - 1)
            disc.train_params(False)  # G's step must not accumulate into D
            adv = F.softplus(-disc(f_student, text)).float().mean()
            l1 = F.l1_loss(f_student.float(), f_teacher)
            loss_g = l1 + float(cfg.distill.adv_weight) * adv
        disc.train_params(True)
        tr.apply("g", loss_g)
        with tr.autocast():
            loss_d = (F.softplus(disc(f_student.detach(), text)).float().mean()
                      + F.softplus(-disc(f_real, text)).float().mean())  # fmt: skip
        tr.apply("d", loss_d)
        return {"l1": l1.item(), "adv": adv.item(), "loss_g": loss_g.item(),
                "loss_d": loss_d.item(), "lr_g": tr.optims["g"].param_groups[0]["lr"]}  # fmt: skip

    rows = _loop(tr, int(cfg.steps), body, "stage 2 (distill)")
    if tr.main:
        _export(out / "adcsr.safetensors", student.state_dict(), {"arch": str(cfg.arch)})
    return {"rows": rows, "skipped": tr.skipped, "weights": str(out / "adcsr.safetensors")}


def train(cfg: DictConfig) -> dict[str, Any]:
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "train_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.stage == "decoder":
        return train_decoder(cfg, out)
    if cfg.stage == "distill":
        return train_distill(cfg, out)
    raise HarnessError(f"stage: '{cfg.stage}' is not one of decoder, distill")
