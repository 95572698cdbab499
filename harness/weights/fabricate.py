"""Random-initialised weight files in the exact formats, names and places the consumers expect.

For machines without internet (tests, CI, benchmarks): each file has the real architecture and
key layout, so every metric builds through pyiqa's real loading path and costs the same compute
as with the real weights -- but its SCORES ARE MEANINGLESS. Files are stored in fp16 to halve
their size (every consumer converts to fp32 on loading). ``fabricate`` also writes a manifest of
the fabricated files' hashes for ``HARNESS_WEIGHTS_MANIFEST``, since the real hashes cannot match.

Properties kept on purpose: LPIPS and DISTS weights are non-negative (as trained ones are), so
both are 0 for identical images and grow with distortion; the FID Inception's BatchNorm
statistics are calibrated on real photographs, so features differ between images.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from harness.checkpoints import save_checkpoint
from harness.hashing import sha256_file
from harness.imageio import write_bytes
from harness.weights.manager import path_of
from harness.weights.manifest import WeightEntry, load_manifest


def _half(sd: dict) -> dict:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def _alexnet(path: Path) -> None:
    import torchvision

    save_checkpoint(_half(torchvision.models.alexnet().state_dict()), path)


def _vgg16(path: Path) -> None:
    import torchvision

    save_checkpoint(_half(torchvision.models.vgg16().state_dict()), path)


def _lpips_lin(path: Path) -> None:
    chns = [64, 192, 384, 256, 256]  # AlexNet feature widths
    sd = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(chns)}
    save_checkpoint(_half(sd), path)


def _dists(path: Path) -> None:
    n = 3 + 64 + 128 + 256 + 512 + 512  # image + VGG16 stage widths
    save_checkpoint(
        {"alpha": torch.rand(1, n, 1, 1) + 0.1, "beta": torch.rand(1, n, 1, 1) + 0.1}, path
    )


def _niqe(path: Path) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    buf = io.BytesIO()
    savemat(buf, {"mu_prisparam": rng.normal(size=(1, 36)),
                  "cov_prisparam": a @ a.T / 36 + np.eye(36)})  # fmt: skip
    write_bytes(path, buf.getvalue())


def _musiq(path: Path) -> None:
    from pyiqa.archs.musiq_arch import MUSIQ

    save_checkpoint(_half(MUSIQ(pretrained=False, num_class=1).state_dict()), path)


def _vit(path: Path) -> None:
    import timm
    from safetensors.torch import save

    sd = timm.create_model("vit_base_patch8_224", pretrained=False).state_dict()
    write_bytes(path, save({k: v.contiguous() for k, v in _half(sd).items()}))
    refs = path.parents[2] / "refs"  # <repo>/snapshots/<rev>/model.safetensors
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(path.parent.name)


def _maniqa(path: Path) -> None:
    from pyiqa.archs.maniqa_arch import MANIQA

    # the ViT backbone must be in place first (MANIQA builds it through timm)
    save_checkpoint(_half(MANIQA(pretrained=False).state_dict()), path)


def _clip_rn50(path: Path) -> None:
    from clip.model import CLIP

    model = CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).half()

    class Archive(nn.Module):  # a TorchScript archive holding CLIP's parameters by their names
        def __init__(self, src: nn.Module) -> None:
            super().__init__()
            for name, child in src.named_children():
                setattr(self, name, child)
            for name, p in src.named_parameters(recurse=False):
                self.register_parameter(name, p)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1

    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(Archive(model), torch.zeros(1)), buf)
    write_bytes(path, buf.getvalue())


def _fid_inception(path: Path) -> None:
    import pyiqa.archs.inception as inc
    from skimage import data

    with mock.patch.object(inc, "load_pretrained_network", lambda *a, **k: None):
        net = inc.fid_inception_v3()
    for m in net.modules():  # calibrate BatchNorm on real photographs (cumulative averages)
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    x = torch.cat([
        nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)[None]
                                  .float() / 127.5 - 1, size=(299, 299), mode="bilinear")
        for p in photos
    ])  # fmt: skip
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x)
    save_checkpoint(_half(net.state_dict()), path)


_made: set[tuple[str, bool]] = set()  # (group, tiny) written in this fabricate() call


def _group(name: str, write: Callable[[bool, int], None]) -> Callable[..., None]:
    """A maker for one file of a group that one network writes together (a method's files):
    the first file asked for writes them all, the others find them written."""

    def make(path: Path, tiny: bool = False, seed: int = 0) -> None:
        if (name, tiny) not in _made:
            write(tiny, seed)
            _made.add((name, tiny))

    return make


def _place(src: Path, dest: Path) -> None:
    """Move a written file to its managed place, appearing there only complete."""
    import os
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".fabricating")
    shutil.move(src, part)  # a copy when ``dest`` is on another file system
    os.replace(part, dest)


_OSEDIFF_ROLES = {"osediff-checkpoint": "checkpoint", "sd21base-unet": "unet",
                  "sd21base-vae": "vae", "sd21base-text-encoder": "text_encoder",
                  "sd21base-vocab": "vocab", "sd21base-merges": "merges"}  # fmt: skip


def _osediff(tiny: bool, seed: int) -> None:
    """All OSEDiff files at once (one random network: osediff.pkl in the official layout, the
    SD2.1-base components in fp16, the tokenizer from CLIP's BPE table); ``tiny`` shrinks it."""
    from harness.methods.osediff.arch import OSEDiffConfig
    from harness.methods.osediff.weights import random_net, write_files

    entries = load_manifest()
    paths = {role: path_of(entries[i]) for i, role in _OSEDIFF_ROLES.items()}
    cfg = OSEDiffConfig.tiny() if tiny else OSEDiffConfig.paper()
    write_files(random_net(cfg, seed=seed), paths, half=True)


ADCSR_IDS = ("adcsr-net", "adcsr-halfdecoder")


def _adcsr(tiny: bool, seed: int) -> None:
    """net_params_200.pkl and halfDecoder.ckpt in the released layout (aliased UNet blocks,
    Lightning-style decoder checkpoint), fp16, from one random ``AdcSRNet``."""
    from harness.methods.adcsr.arch import AdcSRConfig
    from harness.methods.adcsr.convert import random_net, write_official

    cfg = AdcSRConfig.tiny() if tiny else AdcSRConfig.paper()
    folder = path_of(load_manifest()[ADCSR_IDS[0]]).parent
    write_official(folder, random_net(cfg, seed).state_dict(), seed=seed + 1, half=True)


S3DIFF_IDS = ("s3diff-model", "s3diff-de-net", "sd-turbo-unet", "sd-turbo-vae",
              "sd-turbo-text-encoder", "sd-turbo-tok-vocab", "sd-turbo-tok-merges",
              "sd-turbo-tok-special", "sd-turbo-tok-config")  # fmt: skip


def _s3diff(tiny: bool, seed: int) -> None:
    """s3diff.pkl and de_net.pth into the s3diff folder, SD-Turbo (weights in fp16, configs,
    tokenizer) into its Hugging Face cache snapshot, from one random ``S3DiffNet``."""
    import tempfile

    from harness.methods.s3diff.arch import S3DiffConfig
    from harness.methods.s3diff.convert import write_official
    from harness.weights.manager import location_dir, weights_root

    entries = load_manifest()
    s3_dest = path_of(entries["s3diff-model"]).parent
    sd_dest = location_dir(entries["sd-turbo-unet"])
    cfg = S3DiffConfig.tiny() if tiny else S3DiffConfig.paper()
    weights_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=weights_root(), prefix=".fabricate-") as tmp:
        sd_dir, s3_dir = write_official(tmp, cfg, seed=seed, half=True)
        for src_dir, dest in ((sd_dir, sd_dest), (s3_dir, s3_dest)):
            for src in sorted(p for p in src_dir.rglob("*") if p.is_file()):
                _place(src, dest / src.relative_to(src_dir))


SINSR_IDS = ("sinsr-unet", "sinsr-vq-f4")


def _sinsr(tiny: bool, seed: int) -> None:
    """SinSR_v1.pth and autoencoder_vq_f4.pth in the official layouts, fp16."""
    from harness.methods.sinsr.arch import SwinUNetConfig, VQConfig
    from harness.methods.sinsr.checkpoint import random_weights, save_official

    cfgs = (SwinUNetConfig.tiny(), VQConfig.tiny()) if tiny else (SwinUNetConfig.paper(),
                                                                  VQConfig.paper())  # fmt: skip
    unet, vq = (_half(sd) for sd in random_weights(*cfgs, seed=seed))
    save_official(path_of(load_manifest()[SINSR_IDS[0]]).parent, unet, vq)


RESSHIFT_IDS = ("resshift-v1", "resshift-v2", "resshift-v3", "resshift-vq-f4")


def _resshift(tiny: bool, seed: int) -> None:
    """The three ResShift releases (one random Swin-UNet) and autoencoder_vq_f4.pth in the
    official layouts, fp16."""
    from harness.methods.resshift.adapter import RELEASES
    from harness.methods.resshift.checkpoint import save_official
    from harness.methods.sinsr.arch import SwinUNetConfig, VQConfig
    from harness.methods.sinsr.checkpoint import random_weights

    cfgs = (SwinUNetConfig.tiny(), VQConfig.tiny()) if tiny else (SwinUNetConfig.paper(),
                                                                  VQConfig.paper())  # fmt: skip
    unet, vq = (_half(sd) for sd in random_weights(*cfgs, seed=seed))
    folder = path_of(load_manifest()[RESSHIFT_IDS[-1]]).parent
    for release in RELEASES:
        save_official(folder, release, unet, vq)


def _realesrgan_official(tiny: bool, seed: int) -> None:
    """RealESRGAN_x4plus.pth: the RRDBNet under ``params_ema``, as released (fp16 here)."""
    from harness.methods.realesrgan.arch import RRDBConfig, RRDBNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RRDBNet(RRDBConfig.tiny() if tiny else RRDBConfig.paper())
    save_checkpoint({"params_ema": _half(net.state_dict())},
                    path_of(load_manifest()["realesrgan-official"]))  # fmt: skip


def _bsrgan(tiny: bool, seed: int) -> None:
    """BSRGAN.pth: a plain state dict in BSRGAN's key layout (fp32, as released)."""
    from harness.methods.bsrgan.convert import to_official
    from harness.methods.realesrgan.arch import RRDBConfig, RRDBNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RRDBNet(RRDBConfig.tiny() if tiny else RRDBConfig.paper())
    save_checkpoint(to_official(net.state_dict()), path_of(load_manifest()["bsrgan"]))


def _swinir(tiny: bool, seed: int) -> None:
    """The Real-SwinIR release files (M and L): the network under ``params_ema``, fp32."""
    from harness.methods.swinir import SwinIRConfig
    from harness.methods.swinir.arch import random_state_dict

    for i, (size, cfg) in enumerate((("m", SwinIRConfig.m()), ("l", SwinIRConfig.l()))):
        sd = random_state_dict(SwinIRConfig.tiny() if tiny else cfg, seed + i)
        save_checkpoint({"params_ema": sd}, path_of(load_manifest()[f"swinir-{size}"]))


def _femasr(tiny: bool, seed: int) -> None:
    """FeMaSR_SRX4_model_g.pth: the network under ``params``, fp32."""
    from harness.methods.femasr.arch import FeMaSRConfig, random_state_dict

    cfg = FeMaSRConfig.tiny() if tiny else FeMaSRConfig.paper()
    save_checkpoint({"params": random_state_dict(cfg, seed)}, path_of(load_manifest()["femasr"]))


def _dape(entry_id: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:  # RAM / DAPE files in the official layout (OSEDiff's prompt)
        from harness.methods.dape.fabricate import write_one

        write_one(entry_id, path)

    return make


MAKERS: dict[str, Callable[..., None]] = {
    "torchvision-alexnet": _alexnet,
    "pyiqa-lpips-alex": _lpips_lin,
    "torchvision-vgg16": _vgg16,
    "pyiqa-dists": _dists,
    "pyiqa-niqe": _niqe,
    "pyiqa-musiq-koniq": _musiq,
    "timm-vit-b8": _vit,
    "pyiqa-maniqa-pipal": _maniqa,
    "pyiqa-maniqa-koniq": _maniqa,
    "clip-rn50": _clip_rn50,
    "pyiqa-fid-inception": _fid_inception,
    **{i: _group("osediff", _osediff) for i in _OSEDIFF_ROLES},
    **{
        i: _dape(i)
        for i in ("ram-swin-large-14m", "dape-lora", "ram-tag-list", "ram-tag-list-threshold")
    },  # fmt: skip
    **{i: _group("adcsr", _adcsr) for i in ADCSR_IDS},
    **{i: _group("s3diff", _s3diff) for i in S3DIFF_IDS},
    **{i: _group("sinsr", _sinsr) for i in SINSR_IDS},
    **{i: _group("resshift", _resshift) for i in RESSHIFT_IDS},
    "realesrgan-official": _group("realesrgan-official", _realesrgan_official),
    "bsrgan": _group("bsrgan", _bsrgan),
    **{i: _group("swinir", _swinir) for i in ("swinir-m", "swinir-l")},
    "femasr": _group("femasr", _femasr),
}
# makers that take tiny=True and seed (tiny architectures, for tests): method weights
SIZED = {
    *_OSEDIFF_ROLES,
    *ADCSR_IDS,
    *S3DIFF_IDS,
    *SINSR_IDS,
    *RESSHIFT_IDS,
    "realesrgan-official",
    "bsrgan",
    "swinir-m",
    "swinir-l",
    "femasr",
}


def metric_ids() -> list[str]:
    """The makers of metric weights (entries used by metrics only), in :data:`MAKERS` order:
    what scoring needs, without the methods' multi-gigabyte files."""
    from harness.metrics import METRICS

    entries = load_manifest()
    return [i for i in MAKERS if all(u in METRICS for u in entries[i].used_by)]


def fabricate(
    ids: list[str], manifest_out: Path, seed: int = 0, tiny: bool = False
) -> list[WeightEntry]:
    """Write random weights for ``ids`` into their managed places; return their entries with
    the fabricated files' sha256, also written to ``manifest_out`` (JSON list). ``tiny``: the
    makers that can (:data:`SIZED`) write tiny architectures (``method.arch=tiny``)."""
    entries = load_manifest()
    order = [i for i in MAKERS if i in ids]  # dependency order (ViT before MANIQA)
    made: list[WeightEntry] = []
    _made.clear()
    for i, entry_id in enumerate(order):
        torch.manual_seed(seed + i)
        entry = entries[entry_id]
        path = path_of(entry)
        if entry_id in SIZED:
            MAKERS[entry_id](path, tiny=tiny, seed=seed)
        else:
            MAKERS[entry_id](path)
        made.append(WeightEntry(**(entry.to_dict() | {
            "used_by": tuple(entry.used_by), "sha256": sha256_file(path),
            "sha256_prefix": None, "size": path.stat().st_size,
            "license": "fabricated: random weights, scores meaningless"})))  # fmt: skip
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    manifest_out.write_text(json.dumps([e.to_dict() for e in made], indent=2) + "\n")
    return made
