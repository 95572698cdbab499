"""Real-SwinIR (methods/swinir): the network's parts against brute-force restatements of the
published structure, the official pre-padding and tiling, checkpoint loading (release layout,
wrong sizes, hostile pickles), the weights manifest and fetch, and a CLI run. Pixel equality
with the official script is ``tools/equivalence_swinir.py`` (needs the official checkout)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoints import save_checkpoint
from harness.errors import HarnessError
from harness.methods.common.swin import relative_position_index
from harness.methods.swinir import SwinIR, SwinIRConfig, SwinIRMethod
from harness.methods.swinir.adapter import run_tiles
from harness.methods.swinir.arch import mirror_pad, shift_mask, window_partition

CPU = torch.device("cpu")


def test_sizes_and_official_key_layout():
    m = SwinIR(SwinIRConfig.m())
    assert sum(p.numel() for p in m.parameters()) == 11_715_559  # Real-SwinIR-M
    assert sum(p.numel() for p in SwinIR(SwinIRConfig.l()).parameters()) == 28_013_059
    keys = set(m.state_dict())
    assert len(keys) == 552
    for key in ("conv_first.weight", "patch_embed.norm.weight", "norm.bias",
                "layers.5.residual_group.blocks.5.attn.relative_position_bias_table",
                "layers.0.residual_group.blocks.0.attn.relative_position_index",
                "layers.0.residual_group.blocks.1.attn_mask", "layers.0.conv.weight",
                "conv_after_body.weight", "conv_before_upsample.0.weight", "conv_up2.bias",
                "conv_hr.weight", "conv_last.bias"):  # fmt: skip
        assert key in keys, key
    assert "layers.0.residual_group.blocks.0.attn_mask" not in keys  # unshifted: no mask
    assert "mean" not in keys
    three = set(SwinIR(SwinIRConfig.tiny()).state_dict())  # 3conv: convs at 0, 2, 4
    assert {"conv_after_body.0.weight", "conv_after_body.2.weight", "conv_after_body.4.weight",
            "layers.1.conv.4.bias"} <= three  # fmt: skip


def test_relative_position_index_brute_force():
    w = 4
    idx = relative_position_index(w)
    pos = [(y, x) for y in range(w) for x in range(w)]
    for i, (yi, xi) in enumerate(pos):
        for j, (yj, xj) in enumerate(pos):
            assert idx[i, j] == (yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)


def test_shift_mask_separates_what_the_cyclic_shift_brought_together():
    h, w, win, shift = 8, 12, 4, 2
    mask = shift_mask(h, w, win, shift)

    # region of each pixel before the shift: 3 bands per axis (the last `shift` rows/columns
    # wrap around, the window before them stays, the rest is one region)
    def band(v, n):
        return 0 if v < n - win else (1 if v < n - shift else 2)

    region = torch.tensor([[band(y, h) * 3 + band(x, w) for x in range(w)] for y in range(h)])
    win_regions = window_partition(region[None, :, :, None].float(), win).view(-1, win * win)
    want = torch.where(win_regions[:, :, None] == win_regions[:, None, :], 0.0, -100.0)
    assert torch.equal(mask, want)
    block = SwinIR(SwinIRConfig.tiny()).layers[0].residual_group.blocks[1]
    assert torch.equal(block.attn_mask, shift_mask(16, 16, 4, 2))  # stored = computed at 16


def test_forward_shapes_crop_and_window_padding():
    torch.manual_seed(0)
    net = SwinIR(SwinIRConfig.tiny()).eval()
    with torch.no_grad():
        for h, w in ((16, 16), (10, 7), (20, 13)):
            y = net(torch.rand(1, 3, h, w))
            assert y.shape == (1, 3, 4 * h, 4 * w)
        # a non-multiple of the window is reflect-padded inside, then cropped back
        x = torch.rand(1, 3, 10, 7)
        padded = F.pad(x, (0, 1, 0, 2), "reflect")
        assert torch.allclose(net(x), net(padded)[..., :40, :28], atol=1e-6)


def test_mirror_pad_is_the_official_flip_padding():
    x = torch.arange(2 * 3 * 16 * 13, dtype=torch.float32).view(2, 3, 16, 13)
    p = mirror_pad(x, 8)
    assert p.shape == (2, 3, 24, 16)  # a multiple still gains a whole window
    assert torch.equal(p[..., :16, :13], x)
    for i in range(8):
        assert torch.equal(p[..., 16 + i, :13], x[..., 15 - i, :])
    for j in range(3):
        assert torch.equal(p[..., :, 13 + j], p[..., :, 12 - j])


def test_tiles_average_overlaps_exactly():
    x = torch.rand(1, 3, 40, 24)
    up = torch.nn.Upsample(scale_factor=4, mode="nearest")  # local: tiles change nothing
    assert torch.allclose(run_tiles(up, x, 16, 6, 4), up(x), atol=1e-6)
    calls = []

    def ones(t):
        calls.append(tuple(t.shape[-2:]))
        return torch.ones(t.shape[0], 3, t.shape[2] * 4, t.shape[3] * 4)

    assert torch.equal(run_tiles(ones, x, 16, 6, 4), torch.ones(1, 3, 160, 96))
    # rows 0, 10, 20 and 24 (flush), columns 0 and 8 (flush): 8 windows of 16x16
    assert calls == [(16, 16)] * 8


def _release(folder, cfg=None, seed=0, name="003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"):
    torch.manual_seed(seed)
    sd = SwinIR(cfg or SwinIRConfig.tiny()).state_dict()
    save_checkpoint({"params_ema": sd}, folder / name)
    return sd


def _method(folder, **cfg):
    return SwinIRMethod({"arch": "tiny", "weights_dir": str(folder)} | cfg)


def test_release_file_loads_strictly_and_upscales_as_the_script(tmp_path):
    sd = _release(tmp_path, seed=1)
    m = _method(tmp_path)
    m.load(CPU, torch.float32)
    assert all(torch.equal(m.net.state_dict()[k], v) for k, v in sd.items())
    lr = torch.rand(1, 3, 9, 14)
    with torch.no_grad():
        y = m.upscale(lr)
        raw = m.net(mirror_pad(lr, 4))[..., :36, :56]
    assert y.shape == (1, 3, 36, 56)
    assert torch.equal(y, torch.round(raw.clamp(0, 1) * 255) / 255)


def test_errors_are_one_line_and_early(tmp_path, pickle_payload):
    with pytest.raises(
        HarnessError, match=r"SwinIR-M_x4_GAN\.pth .*harness weights fetch swinir-m"
    ):
        _method(tmp_path / "empty").weights_digest()
    with pytest.raises(HarnessError, match="method.size: 'xl'"):
        _method(tmp_path, size="xl").check_config()
    with pytest.raises(HarnessError, match="multiple of the window"):
        _method(tmp_path, tile=6).check_config()
    with pytest.raises(HarnessError, match="not official or an existing file"):
        _method(tmp_path, weights="nowhere.pth").weights_digest()
    _release(tmp_path)  # a tiny file where the paper-size network is asked for
    with pytest.raises(HarnessError, match="swinir: weights do not fit the 'paper'"):
        SwinIRMethod({"weights_dir": str(tmp_path)}).load(CPU, torch.float32)
    trace = tmp_path / "pwned"
    torch.save({"params_ema": {"conv_first.weight": pickle_payload(trace)}}, tmp_path / "evil.pth")
    with pytest.raises(HarnessError):
        _method(tmp_path, weights=str(tmp_path / "evil.pth")).load(CPU, torch.float32)
    assert not trace.exists()


def test_manifest_fetch_and_check(tmp_path, cli, capsys, monkeypatch, serve_folder):
    from harness.weights import load_manifest, path_of

    entries = load_manifest()
    assert entries["swinir-m"].used_by == ("swinir",)
    assert entries["swinir-l"].used_by == ("swinir-l",)
    base = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
    assert all(entries[i].url == base + entries[i].name for i in ("swinir-m", "swinir-l"))
    release = tmp_path / "release"
    release.mkdir()
    sd = _release(release, seed=3)
    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    with serve_folder(release) as mirror:
        assert cli("weights", "fetch", "swinir", "--mirror", mirror) == 0
    assert path_of(entries["swinir-m"]).is_file() and not path_of(entries["swinir-l"]).exists()
    capsys.readouterr()
    assert cli("weights", "check", "swinir") == 0
    assert "restricted loader" in capsys.readouterr().out
    m = _method(tmp_path / "w" / "swinir")  # the fetched file is what the adapter loads
    m.load(CPU, torch.float32)
    assert torch.equal(m.net.conv_last.weight, sd["conv_last.weight"])


def test_harness_run_on_the_embedded_set(cache_dir, tmp_path, cli):
    _release(tmp_path, seed=4)
    out = tmp_path / "run"
    rc = cli("run", "--methods", "swinir", "--out", out, "method.arch=tiny",
             f"method.weights_dir={tmp_path}", "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert sum(r.startswith("swinir,embedded,") for r in rows) == 6
    card = json.loads((out / "manifest.json").read_text())["methods"]["swinir"]["card"]
    assert card["display_name"] == "SwinIR" and not card["stochastic"]


def test_network_matches_the_official_golden_outputs(official_golden):
    """tests/data/swinir_official_tiny.json: the official network's outputs on seeded weights
    and inputs (tools/equivalence_swinir.py --write-golden), for an input below the training
    size (masks computed) and one at it (stored masks)."""
    from harness.methods.swinir.arch import random_state_dict

    net = SwinIR(SwinIRConfig.tiny()).eval()
    net.load_state_dict(random_state_dict(SwinIRConfig.tiny(), seed=0))
    official_golden("swinir_official_tiny.json", net)
