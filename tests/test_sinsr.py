"""SinSR: sizes, official checkpoint layouts (and SinSR issue #45), the one-step pipeline,
per-image noise through the runner, tiling, precision, and failures that name their cause."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.datasets.base import ImageDataset, Sample
from harness.errors import HarnessError
from harness.imageio import read_rgb, write_png
from harness.methods.sinsr import SinSR, SinSRNet, SwinUNetConfig, VQConfig
from harness.methods.sinsr.adapter import reflect_pad, tile_starts
from harness.methods.sinsr.arch import Schedule, exponential_sqrt_etas, shifted_window_mask
from harness.methods.sinsr.checkpoint import random_weights, save_official

CPU = torch.device("cpu")


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_sizes():
    net = SinSRNet(SwinUNetConfig.paper(), VQConfig.paper())
    assert _count(net.unet) == 118_593_583  # "118.6M" (SinSR/ResShift papers)
    assert _count(net.vq) == 55_322_782
    assert net.vq.quantize.embedding.weight.shape == (8192, 3)
    keys = net.unet.state_dict()
    # the buffers the official blocks store: 9 Swin layers (4 down, middle, 4 up) of 2 blocks
    # each hold a relative-position index; the shifted blocks (latent sizes 64, 32, 16, down
    # and up; at 8 the window covers the input and nothing shifts) also hold a mask
    assert sum(k.endswith("relative_position_index") for k in keys) == 18
    assert sum(k.endswith("attn_mask") for k in keys) == 6
    assert keys["input_blocks.1.1.blocks.1.attn_mask"].shape == (64, 64, 64)


def test_schedule_constants_are_resshifts():
    sqrt_etas = exponential_sqrt_etas(15, 0.04, 0.99, 2.0, 0.3)
    assert sqrt_etas[0] == pytest.approx(0.02) and sqrt_etas[-1] == pytest.approx(0.99)
    coef, std, t = Schedule().last()
    assert t == 14
    assert coef == pytest.approx(2 * 0.99, abs=1e-6)
    assert std == pytest.approx((0.9801 * 4 + 1) ** 0.5, abs=1e-6)


def test_shifted_window_mask_is_the_official_one():
    """8x8 tokens, 4x4 windows, shift 2. The official routine labels window-row r's tokens by
    row r*4 + (token column): top windows get rows 0..3 (one label), bottom windows rows 4..7,
    split at H-shift = 6, i.e. between token columns 1 and 2 -- not between token rows."""
    m = shifted_window_mask(8, 8, 4, 2)
    assert m.shape == (4, 16, 16)
    assert (m[:2] == 0).all()  # top windows: nothing masked
    col = torch.arange(16) % 4
    left = col < 2
    expected = torch.where(left[:, None] == left[None, :], 0.0, -100.0)
    assert torch.equal(m[2], expected) and torch.equal(m[3], expected)
    assert (shifted_window_mask(8, 8, 4, 0) == 0).all()


# ----------------------------------------------------------------------------- official files


@pytest.fixture(scope="module")
def tiny_weights():
    return random_weights(SwinUNetConfig.tiny(), VQConfig.tiny(), seed=3)


@pytest.fixture(scope="module")
def official(tmp_path_factory, tiny_weights):
    """Tiny SinSR_v1.pth ({"state_dict": module.*}) and autoencoder_vq_f4.pth (plain)."""
    folder = tmp_path_factory.mktemp("sinsr_weights")
    save_official(folder, *tiny_weights)
    return folder


def _method(folder, **cfg):
    """Tiny SinSR; LR padded to a multiple of 8 unless ``pad_multiple`` says otherwise (the
    official 64 makes every test image at least 256x256 inside the autoencoder)."""
    m = SinSR({"arch": "tiny", "weights_dir": str(folder), "pad_multiple": 8, **cfg})
    m.load(CPU, torch.float32)
    return m


def _lr(n=1, h=24, w=20, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_official_files_load_strictly(official, tiny_weights):
    m = _method(official)
    unet_sd, vq_sd = tiny_weights
    for k, v in m.net.unet.state_dict().items():
        assert torch.equal(v, unet_sd[k]), k
    for k, v in m.net.vq.state_dict().items():
        assert torch.equal(v, vq_sd[k]), k


def _reference(m, lr, noise):
    """The one-step pipeline restated with the schedule's formulas, from the module parts."""
    x = (lr - 0.5) / 0.5
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (-w) % m.pad, 0, (-h) % m.pad), mode="reflect")
    net = m.net
    z_y = net.vq.quant_conv(net.vq.encoder(F.interpolate(xp, scale_factor=4, mode="bicubic")))
    sqrt_eta = exponential_sqrt_etas(15, 0.04, 0.99, 2.0, 0.3)[-1]
    x_t = z_y + 2.0 * sqrt_eta * noise
    x0 = net.unet(x_t / (4 * sqrt_eta**2 + 1) ** 0.5, torch.tensor([14]), xp)
    flat = x0.permute(0, 2, 3, 1).reshape(-1, 3)
    codes = net.vq.quantize.embedding.weight
    zq = codes[torch.cdist(flat, codes).argmin(1)].view(x0.shape[0], *x0.shape[2:], 3)
    y = net.vq.decoder(net.vq.post_quant_conv(zq.permute(0, 3, 1, 2)))
    return y[..., : 4 * h, : 4 * w].clamp(-1, 1) * 0.5 + 0.5


@pytest.mark.parametrize("pad", [8, 64])
def test_one_step_matches_the_formulas(official, pad):
    m = _method(official, pad_multiple=pad)
    lr = _lr(h=40, w=52)
    with torch.no_grad():
        out = m.upscale(lr, seeds=[7])
        g = torch.Generator().manual_seed(7)
        noise = torch.randn(1, 3, 40 + (-40) % pad, 52 + (-52) % pad, generator=g)
        expected = _reference(m, lr, noise)
    assert out.shape == (1, 3, 160, 208)
    assert (out - expected).abs().max() < 1e-4


_SLOW = pytest.mark.slow


@pytest.mark.parametrize("size,pad", [
    ((24, 20), 8), pytest.param((64, 64), 8, marks=_SLOW), pytest.param((70, 33), 8, marks=_SLOW),
    pytest.param((5, 9), 64, marks=_SLOW), ((1, 3), 64),
])  # fmt: skip
def test_any_lr_size_gives_4x_in_range(official, size, pad):
    h, w = size
    with torch.no_grad():
        out = _method(official, pad_multiple=pad).upscale(_lr(2, h, w), seeds=[1, 2])
    assert out.shape == (2, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_reflect_pad_reflects_like_the_official_padding():
    x = torch.rand(1, 3, 40, 50)
    assert torch.equal(reflect_pad(x, 64), F.pad(x, (0, 14, 0, 24), mode="reflect"))
    small = reflect_pad(torch.rand(1, 3, 5, 9), 64)  # padding larger than the image
    assert small.shape[-2:] == (64, 64) and torch.equal(small[..., 3, :9], small[..., 5, :9])


@pytest.mark.slow
def test_same_bytes_twice_and_seed_matters(official):
    m = _method(official)
    lr = _lr(2)
    with torch.no_grad():
        a, b = m.upscale(lr, seeds=[5, 6]), m.upscale(lr, seeds=[5, 6])
        c = m.upscale(lr, seeds=[5, 9])
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_wrong_layouts_are_refused_naming_the_keys(tmp_path, tiny_weights):
    unet_sd, vq_sd = tiny_weights
    extra = dict(unet_sd, **{"input_blocks.99.weight": torch.zeros(1)})
    save_official(tmp_path / "a", extra, vq_sd)
    with pytest.raises(HarnessError, match=r"Swin-UNet .*1 unexpected \(input_blocks\.99\.weight"):
        _method(tmp_path / "a")
    missing = {k: v for k, v in vq_sd.items() if k != "decoder.conv_out.bias"}
    save_official(tmp_path / "b", unet_sd, missing)
    with pytest.raises(HarnessError, match=r"VQ-f4 .*1 missing \(decoder\.conv_out\.bias\)"):
        _method(tmp_path / "b")
    shaped = dict(vq_sd, **{"quant_conv.weight": torch.zeros(4, 3, 1, 1)})
    save_official(tmp_path / "c", unet_sd, shaped)
    with pytest.raises(HarnessError, match=r"another shape \(quant_conv\.weight \(4, 3, 1, 1\)"):
        _method(tmp_path / "c")


def test_issue_45_prefixed_autoencoder_is_mapped(tmp_path, official, tiny_weights):
    """ResShift v2.0's autoencoder keys carry a prefix on every key (torch.compile's
    ``_orig_mod.``, ``module.``): mapped as ResShift's loader maps them, same outputs."""
    save_official(tmp_path / "p", *tiny_weights, vq_prefix="module._orig_mod.")
    lr = _lr()
    with torch.no_grad():
        ref = _method(official).upscale(lr, seeds=[1])
        out = _method(tmp_path / "p").upscale(lr, seeds=[1])
    assert torch.equal(ref, out)
    unet_sd, vq_sd = tiny_weights
    mixed = {("_orig_mod." + k if k.startswith("encoder.") else k): v for k, v in vq_sd.items()}
    save_official(tmp_path / "m", unet_sd, mixed)  # a prefix on some keys only: no guessing
    with pytest.raises(HarnessError, match=r"missing \(encoder\..*unexpected \(_orig_mod\.encoder"):
        _method(tmp_path / "m")


def test_hostile_pickles_never_run(tmp_path, tiny_weights, pickle_payload):
    trace = tmp_path / "PWNED"
    unet_sd, vq_sd = tiny_weights
    save_official(tmp_path, unet_sd, vq_sd)
    with open(tmp_path / "SinSR_v1.pth", "wb") as f:
        pickle.dump({"state_dict": pickle_payload(trace)}, f)
    with pytest.raises(HarnessError, match="SinSR_v1.pth"):
        _method(tmp_path)
    hostile = {"state_dict": dict(unet_sd), "opt": pickle_payload(trace)}
    torch.save(hostile, tmp_path / "SinSR_v1.pth")
    _method(tmp_path)  # the tensors load, the payload stays inert
    assert not trace.exists()


def test_missing_weights_name_both_files_and_the_fetch_command(tmp_path):
    m = SinSR({"arch": "tiny", "weights_dir": str(tmp_path)})
    with pytest.raises(HarnessError) as e:
        m.weights_digest()
    msg = str(e.value)
    assert "SinSR_v1.pth" in msg and "autoencoder_vq_f4.pth" in msg
    assert "harness weights fetch sinsr" in msg and len(msg.splitlines()) == 1


# ----------------------------------------------------------------------------- noise, batches


def _folder(tmp_path, n=4, h=24, w=20):
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        write_png(path, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        files.append(path)
    return files


def _run_stage(method, files, order, cache_dir, batch_size):
    from harness.cache import SRCache
    from harness.runner import sr_stage

    method.cfg["batch_size"] = batch_size
    ds = ImageDataset("set", [Sample(files[i].stem, files[i]) for i in order], 4)
    cache = SRCache(cache_dir, "sinsr", {"run": str(cache_dir)}).open()
    sr_stage(method, ds, cache, CPU, torch.float32, seed=0, force=True)
    return {files[i].stem: cache.path(files[i].stem).read_bytes() for i in order}


@pytest.mark.slow
def test_an_images_output_depends_on_nothing_but_itself(official, tmp_path):
    """Through the runner: each image alone, reversed in a batch of 4, shuffled in a batch of
    4: the same PNG bytes for every image."""
    files = _folder(tmp_path, h=16, w=12)
    m = _method(official)
    alone = {}
    for i in range(4):
        alone |= _run_stage(m, files, [i], tmp_path / f"alone{i}", 1)
    runs = [
        _run_stage(m, files, [3, 2, 1, 0], tmp_path / "rev4", 4),
        _run_stage(m, files, [2, 0, 3, 1], tmp_path / "mix4", 4),
    ]
    for run in runs:
        assert run == alone
    assert len(set(alone.values())) == 4


def test_batched_forward_is_an_option_and_close(official):
    """batch_invariant=false: one forward per batch; kernels then sum in another order, so
    values move by ~1e-6 (the reason the default sends images one at a time)."""
    lr = _lr(4, 16, 12)
    with torch.no_grad():
        one = _method(official).upscale(lr, seeds=[1, 2, 3, 4])
        batched = _method(official, batch_invariant=False).upscale(lr, seeds=[1, 2, 3, 4])
    assert (one - batched).abs().max() < 1e-4


def test_noise_is_one_generator_per_image(official):
    m = _method(official)
    seen = []
    draw = m._noise
    m._noise = lambda shape, gens: seen.append(draw(shape, gens)) or seen[-1]
    with torch.no_grad():
        m.upscale(_lr(3), seeds=[4, 5, 4])
    (noise,) = seen
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    g = torch.Generator().manual_seed(5)
    assert torch.equal(noise[1:2], torch.randn(1, 3, 24, 24, generator=g))  # 24x20 padded to 8


# ----------------------------------------------------------------------------- tiling


def test_tile_origins_follow_the_official_splitter():
    assert tile_starts(300, 512, 448) == [0]
    assert tile_starts(600, 512, 448) == [0, 88]
    assert tile_starts(1000, 512, 448) == [0, 448, 488]
    assert tile_starts(512, 256, 224) == [0, 224, 256]


@pytest.mark.slow
def test_tiles_are_sampled_apart_and_averaged(official):
    """LR 40x36 with 32/28 tiles: origins (0, 8) x (0, 4). The top-left corner is covered by
    the first tile only, which takes the image's first noise draw."""
    m = _method(official, chop_size=32, chop_stride=28)
    lr = _lr(1, 40, 36)
    with torch.no_grad():
        out = m.upscale(lr, seeds=[3])
        first = m._sample(lr[:, :, :32, :32], [torch.Generator().manual_seed(3)]) * 0.5 + 0.5
        whole = _method(official).upscale(lr, seeds=[3])
    assert out.shape == (1, 3, 160, 144)
    assert torch.equal(out[..., :32, :16], first[..., :32, :16])
    assert not torch.equal(out, whole)  # tiling changes the result, as in the official code


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_follows_the_official_scheme(official, dtype):
    m = SinSR({"arch": "tiny", "weights_dir": str(official), "pad_multiple": 8})
    m.load(CPU, dtype)
    unet = m.net.unet
    assert unet.input_blocks[1][0].in_layers[2].weight.dtype == dtype  # torso conv
    assert unet.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # GroupNorm
    assert unet.time_embed[0].weight.dtype == torch.float32
    assert unet.out[2].weight.dtype == torch.float32
    assert m.net.vq.decoder.conv_out.weight.dtype == dtype
    with torch.no_grad():
        low = m.upscale(_lr(), seeds=[1])
        ref = _method(official).upscale(_lr(), seeds=[1])
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().mean() < 0.05


def test_math_and_sdpa_autoencoder_attention_agree(official):
    with torch.no_grad():
        a = _method(official, vq_attention="math").upscale(_lr(), seeds=[2])
        b = _method(official).upscale(_lr(), seeds=[2])
    assert (a - b).abs().max() < 2e-3


# ----------------------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_harness_run_on_the_embedded_set(cache_dir, official, tmp_path, cli):
    out = tmp_path / "run"
    rc = cli("run", "--methods", "sinsr", "--out", out, "method.arch=tiny",
             f"method.weights_dir={official}", "method.batch_size=3",
             "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert sum(r.startswith("sinsr,embedded,") for r in rows) == 6
    entry = json.loads((out / "manifest.json").read_text())["methods"]["sinsr"]
    assert entry["card"]["stochastic"] and entry["card"]["deviations"]
    folder = entry["sr_cache"]["embedded"]
    pngs = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    assert len(pngs) == 6 and read_rgb(f"{folder}/{pngs[0]}").shape == (512, 512, 3)


def test_the_run_seed_keys_stochastic_methods_only(official, tmp_path):
    from harness.cache import SRCache
    from harness.methods.classical import Bicubic
    from harness.runner import sr_key_inputs

    ds = ImageDataset("set", [Sample("a", _folder(tmp_path, n=1)[0])], 4)
    keys = {}
    for method in (SinSR({"arch": "tiny"}), Bicubic({})):
        for seed in (0, 1):
            inputs = sr_key_inputs(method, "w", CPU, torch.float32, seed, ds)
            keys[method.card.name, seed] = SRCache(tmp_path, method.card.name, inputs).key
    assert keys["sinsr", 0] != keys["sinsr", 1]
    assert keys["bicubic", 0] == keys["bicubic", 1]


def test_missing_weights_fail_before_any_work(tmp_path, cli, capsys):
    rc = cli("run", "--methods", "sinsr", "--out", tmp_path / "o",
             f"method.weights_dir={tmp_path}")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "SinSR_v1.pth" in err and "autoencoder_vq_f4.pth" in err
    assert "harness weights fetch sinsr" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_profile_random_init_counts_the_tiny_network(tmp_path, cli):
    out = tmp_path / "prof"
    rc = cli("profile", "--methods", "sinsr", "--random-init", "--lr-size", "16", "--out", out,
             "method.arch=tiny", "method.pad_multiple=8", "profile.runs=1",
             "profile.warmup=0")  # fmt: skip
    assert rc == 0
    row = json.loads((out / "efficiency.json").read_text())["rows"][0]
    net = SinSRNet(SwinUNetConfig.tiny(), VQConfig.tiny())
    assert row["params"] == _count(net)
    assert row["params_components"]["unet"] == _count(net.unet)
    assert row["macs_fvcore"] > 0


def test_weights_manifest_and_fetch(tmp_path, cli, capsys, official, monkeypatch, serve_folder):
    from harness.weights import load_manifest, path_of

    entries = [e for e in load_manifest().values() if "sinsr" in e.used_by]
    assert sorted(e.name for e in entries) == ["SinSR_v1.pth", "autoencoder_vq_f4.pth"]
    assert {e.url.rsplit("/", 2)[-2] for e in entries} == {"v1.0", "v2.0"}  # release tags

    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    with serve_folder(official) as mirror:
        assert cli("weights", "fetch", "sinsr", "--mirror", mirror) == 0
    for e in entries:
        assert path_of(e).read_bytes() == (official / e.name).read_bytes()
    capsys.readouterr()
    assert cli("weights", "check", "sinsr") == 0
    assert "restricted loader" in capsys.readouterr().out
