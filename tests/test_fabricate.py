"""`harness weights fabricate` for the method weights (AdcSR, S3Diff, SinSR, ResShift,
Real-ESRGAN's release file, BSRGAN, SwinIR, FeMaSR): fabricate through the CLI, `weights check`
passes with the fabricated manifest, `harness run` uses the files, and the network the adapter
loads holds exactly the fabricated weights (a wrong key mapping on either side, writing or
loading, fails here).

Tiny architectures (``--tiny``, ``method.arch=tiny``). The fast runs use one crop of the embedded
set (LR 32x32 -> 128x128): tiny S3Diff and SinSR still take ~10-25 s per 128x128 LR on a 2-core
CPU, so the whole embedded set (6 images) runs under the ``slow`` marker."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

# method (as `harness run` names it), names for `weights fabricate/check`, extra run options
CASES = {
    "adcsr": ("adcsr", ()),
    "s3diff": ("s3diff", ()),
    "sinsr": ("sinsr", ()),
    "resshift_v3": ("resshift_v3", ()),
    "realesrgan": ("realesrgan-official", ("method.weights=official",)),
    "bsrgan": ("bsrgan", ()),
    "swinir": ("swinir", ()),
    "femasr": ("femasr", ()),
}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty weights folder (HARNESS_WEIGHTS, with the torch and Hugging Face caches in it)."""
    root = tmp_path / "weights"
    monkeypatch.setenv("HARNESS_WEIGHTS", str(root))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("HF_HOME", str(root / "huggingface"))
    monkeypatch.delenv("HARNESS_WEIGHTS_MANIFEST", raising=False)
    return root


@pytest.fixture(scope="module")
def crop(cache_dir, tmp_path_factory) -> Path:
    """One pair cut from the embedded set: LR 32x32, HR 128x128 (PATH/LR + PATH/HR)."""
    from harness.datasets.embedded import materialise
    from harness.imageio import list_images, read_rgb, write_png

    src = materialise(cache_dir / "datasets")
    out = tmp_path_factory.mktemp("crop") / "embedded_crop"
    lr, hr = (list_images(src / sub)[0] for sub in ("LR", "HR"))
    write_png(out / "LR" / lr.name, read_rgb(lr)[:32, :32])
    write_png(out / "HR" / hr.name, read_rgb(hr)[:128, :128])
    return out


def _fabricate(cli, tmp_path, name: str) -> Path:
    manifest = tmp_path / "fabricated.json"
    assert cli("weights", "fabricate", name, "--tiny", "--manifest-out", manifest) == 0
    return manifest


def _half(sd: dict) -> dict:  # what the files hold (fp16), as the loaded fp32 network has it
    return {k: v.half().float() if v.is_floating_point() else v for k, v in sd.items()}


def _expected(method: str) -> dict[str, dict[str, torch.Tensor]]:
    """The random networks the tiny fabrication draws (seed 0), per loaded module."""
    with torch.random.fork_rng(devices=[]):
        if method == "adcsr":
            from harness.methods.adcsr.arch import AdcSRConfig
            from harness.methods.adcsr.convert import random_net

            return {"net": _half(random_net(AdcSRConfig.tiny(), 0).state_dict())}
        if method == "s3diff":
            from harness.methods.s3diff.arch import S3DiffConfig
            from harness.methods.s3diff.convert import random_net

            return {"net": _half(random_net(S3DiffConfig.tiny(), 0).state_dict())}
        if method in ("sinsr", "resshift_v3"):  # the same networks
            from harness.methods.sinsr.arch import SwinUNetConfig, VQConfig
            from harness.methods.sinsr.checkpoint import random_weights

            unet, vq = random_weights(SwinUNetConfig.tiny(), VQConfig.tiny(), seed=0)
            return {"unet": _half(unet), "vq": _half(vq)}
        if method == "swinir":
            from harness.methods.swinir import SwinIRConfig
            from harness.methods.swinir.arch import random_state_dict

            return {"net": random_state_dict(SwinIRConfig.tiny(), 0)}
        if method == "femasr":
            from harness.methods.femasr.arch import FeMaSRConfig, random_state_dict

            return {"net": random_state_dict(FeMaSRConfig.tiny(), 0)}
        from harness.methods.realesrgan.arch import RRDBConfig, RRDBNet

        torch.manual_seed(0)
        sd = RRDBNet(RRDBConfig.tiny()).state_dict()  # BSRGAN's release is fp32, Real-ESRGAN's fp16
        return {"net": sd if method == "bsrgan" else _half(sd)}


def _loaded(method: str, home: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The weights the adapter loads from the fabricated files, as `harness run` finds them."""
    from harness.methods import METHODS

    folder = "resshift" if method.startswith("resshift") else method
    cfg = {"arch": "tiny", "weights_dir": str(home / folder)}
    if method == "realesrgan":
        cfg["weights"] = "official"
    m = METHODS.get(method)(cfg)
    m.load(torch.device("cpu"), torch.float32)
    if method in ("sinsr", "resshift_v3"):
        return {"unet": m.net.unet.state_dict(), "vq": m.net.vq.state_dict()}
    return {"net": m.net.state_dict()}


def _same_weights(loaded: dict, expected: dict) -> None:
    for part, want in expected.items():
        got = loaded[part]
        assert got.keys() == want.keys(), part
        differ = [k for k in want if not torch.equal(got[k].float(), want[k].float())]
        assert not differ, (
            f"{part}: {len(differ)} tensors differ from the fabricated ones: {differ[:3]}"
        )


@pytest.mark.parametrize("method", list(CASES))
def test_fabricate_check_run_and_load_exactly_the_fabricated_weights(
    method, home, crop, cache_dir, tmp_path, cli, monkeypatch, capsys
):
    name, options = CASES[method]
    assert cli("weights", "check", name) == 1  # nothing there yet
    manifest = _fabricate(cli, tmp_path, name)
    entries = json.loads(manifest.read_text())
    assert entries and all(e["sha256"] and name in e["used_by"] for e in entries)
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    capsys.readouterr()
    assert cli("weights", "check", name) == 0
    assert "\nok " in capsys.readouterr().out
    out = tmp_path / "run"
    argv = ("run", "--methods", method, "--datasets", crop, "--out", out, "method.arch=tiny",
            "profile.enabled=false", *options)  # fmt: skip
    assert cli(*argv) == 0
    [row] = json.loads((out / "summary.json").read_text())["results"]
    assert row["method"] == method and np.isfinite(row["metrics"]["psnr"]["mean"])
    _same_weights(_loaded(method, home), _expected(method))


_kit_spec = importlib.util.spec_from_file_location(
    "adcsrkit", Path(__file__).with_name("adcsrkit.py")
)
adcsrkit = importlib.util.module_from_spec(_kit_spec)
_kit_spec.loader.exec_module(adcsrkit)
TINY_TEACHER, BODY = adcsrkit.TINY_TEACHER, adcsrkit.BODY


def _tiny_decoder():
    from diffusers.models.autoencoders.vae import Decoder

    # the official test.py's Decoder, at AdcSRConfig.tiny()'s decoder widths
    return Decoder(in_channels=4, out_channels=3, up_block_types=["UpDecoderBlock2D"] * 4,
                   block_out_channels=[8, 16, 24, 24], layers_per_block=2, norm_num_groups=8,
                   act_fn="silu", norm_type="group", mid_block_add_attention=True)  # fmt: skip


def test_adcsr_files_have_the_released_layout(home, tmp_path, cli):
    """Checked against diffusers' modules, not against our loader: the halfDecoder's
    ``decoder`` keys load strictly into the official test.py's Decoder, ``module.body.2`` into
    its mid block, and ``module.body.1`` holds the official surgery's UNet keys, every block
    again under ``body.<position>`` sharing its tensors."""
    from diffusers import UNet2DConditionModel

    from harness.checkpoints import load_tensors

    _fabricate(cli, tmp_path, "adcsr")
    net = load_tensors(home / "adcsr" / "net_params_200.pkl")
    half = load_tensors(home / "adcsr" / "halfDecoder.ckpt")["state_dict"]
    decoder = _tiny_decoder()
    # as test.py: every key containing "decoder", with "decoder." removed, strictly
    decoder.load_state_dict({k.replace("decoder.", ""): v for k, v in half.items()
                             if "decoder" in k}, strict=True)  # fmt: skip
    mid = {k.removeprefix("module.body.2."): v for k, v in net.items()
           if k.startswith("module.body.2.")}  # fmt: skip
    decoder.mid_block.load_state_dict(mid, strict=True)
    teacher = UNet2DConditionModel(**TINY_TEACHER).state_dict()
    names = {k for k in teacher if not (k.startswith("time_embedding") or "time_emb_proj" in k
             or ".attn2." in k or ("transformer_blocks" in k and ".norm2." in k))}  # fmt: skip
    aliases = {k: v for k, v in net.items() if k.startswith("module.body.1.body.")}
    unet = {k.removeprefix("module.body.1."): v for k, v in net.items()
            if k.startswith("module.body.1.") and k not in aliases}  # fmt: skip
    assert set(unet) == names
    assert len(net) == len(unet) + len(aliases) + len(mid)
    for key, t in aliases.items():
        pos, _, rest = key.removeprefix("module.body.1.body.").partition(".")
        assert unet[f"{BODY[int(pos)]}.{rest}"].data_ptr() == t.data_ptr(), key
    assert len(aliases) == len(unet) - 2  # all but conv_in (weight, bias)


def test_s3diff_sd_turbo_snapshot_loads_with_diffusers_and_transformers(home, tmp_path, cli):
    """The SD-Turbo files land in the Hugging Face cache snapshot, a folder the official code's
    ``from_pretrained`` calls read."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from harness.weights.manager import location_dir
    from harness.weights.manifest import load_manifest

    _fabricate(cli, tmp_path, "s3diff")
    snap = location_dir(load_manifest()["sd-turbo-unet"])
    assert snap.is_relative_to(home / "huggingface" / "hub" / "models--stabilityai--sd-turbo")
    UNet2DConditionModel.from_pretrained(snap, subfolder="unet")
    AutoencoderKL.from_pretrained(snap, subfolder="vae")
    CLIPTextModel.from_pretrained(snap, subfolder="text_encoder")
    ids = CLIPTokenizer.from_pretrained(snap, subfolder="tokenizer")("a photo").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407  # start and end of text
    assert not list(home.glob(".fabricate-*"))  # the temporary folder is gone


def test_each_fabricate_call_writes_its_files(home, tmp_path, cli, monkeypatch):
    """Files written together are written once per call, not once per process: a second call
    into another folder writes there too."""
    _fabricate(cli, tmp_path, "sinsr")
    other = tmp_path / "other"
    monkeypatch.setenv("HARNESS_WEIGHTS", str(other))
    _fabricate(cli, tmp_path / "2", "sinsr")
    assert (other / "sinsr" / "SinSR_v1.pth").is_file()
    assert (other / "sinsr" / "autoencoder_vq_f4.pth").is_file()


@pytest.mark.slow  # four tiny SD-based methods on six 128x128 LR images: minutes on a 2-core CPU
def test_issue_command_on_the_embedded_set_with_tiny_fabricated_weights(
    home, cache_dir, tmp_path, cli, monkeypatch
):
    """`harness run --methods adcsr,osediff,s3diff,sinsr` on the embedded set gives every row
    (OSEDiff with the empty prompt: DAPE's tagger has no tiny size)."""
    osediff = ["osediff-checkpoint", "sd21base-unet", "sd21base-vae", "sd21base-text-encoder",
               "sd21base-vocab", "sd21base-merges"]  # fmt: skip
    manifests = []
    for names in (["adcsr"], osediff, ["s3diff"], ["sinsr"]):
        manifest = tmp_path / names[0] / "fabricated.json"
        assert cli("weights", "fabricate", *names, "--tiny", "--manifest-out", manifest) == 0
        manifests += json.loads(manifest.read_text())
    manifest = tmp_path / "all.json"
    manifest.write_text(json.dumps(manifests))
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    out = tmp_path / "run"
    methods = ["adcsr", "osediff", "s3diff", "sinsr"]
    argv = ("run", "--methods", ",".join(methods), "--out", out, "method.arch=tiny",
            "method.osediff.prompt=empty", "profile.enabled=false")  # fmt: skip
    assert cli(*argv) == 0
    rows = json.loads((out / "summary.json").read_text())["results"]
    assert sorted(r["method"] for r in rows) == methods
    assert all(r["dataset"] == "embedded" and r["n_images"] == 6 for r in rows)
