"""FeMaSR (methods/femasr): sizes and key layout, the network against the official one's golden
outputs, padding, the codebook lookup, checkpoint loading (missing, extra and misshapen keys,
hostile pickles), the official whole/tile rule, the weights manifest and fetch, and a CLI run.
Pixel equality with the official script is ``tools/equivalence_femasr.py``."""

from __future__ import annotations

import logging

import pytest
import torch

from harness.checkpoints import save_checkpoint
from harness.errors import HarnessError
from harness.methods.femasr import FeMaSR, FeMaSRConfig, FeMaSRNet
from harness.methods.femasr.arch import Quantizer, mirror_pad16, random_state_dict
from harness.methods.realesrgan.adapter import run_tiled

CPU = torch.device("cpu")
TINY = FeMaSRConfig.tiny()


def test_size_and_official_key_layout():
    net = FeMaSRNet()
    assert sum(p.numel() for p in net.parameters()) == 34_059_971
    keys = set(net.state_dict())
    assert len(keys) == 473
    for key in ("multiscale_encoder.in_conv.weight", "multiscale_encoder.blocks.0.0.weight",
                "multiscale_encoder.blocks.0.1.conv.0.norm.weight",
                "multiscale_encoder.blocks.0.2.conv.5.bias",
                "multiscale_encoder.blocks.1.swin_blks.3.residual_group.blocks.5.attn_mask",
                "multiscale_encoder.blocks.1.swin_blks.0.conv.weight",
                "multiscale_encoder.blocks.3.1.weight", "decoder_group.2.block.3.conv.3.norm.bias",
                "quantize_group.0.embedding.weight", "before_quant_group.0.weight",
                "after_quant_group.0.conv.weight", "out_conv.bias"):  # fmt: skip
        assert key in keys, key
    assert net.multiscale_encoder.in_conv.kernel_size == (4, 4)
    assert net.quantize_group[0].embedding.weight.shape == (1024, 512)


def test_network_matches_the_official_golden_outputs(official_golden):
    """tests/data/femasr_official.json: the official ``FeMaSRNet.test()`` on seeded paper-size
    weights and two small inputs (tools/equivalence_femasr.py --write-golden)."""
    net = FeMaSRNet().eval()
    net.load_state_dict(random_state_dict(FeMaSRConfig.paper(), seed=0))
    official_golden(
        "femasr_official.json",
        lambda x: net(mirror_pad16(x))[..., : 4 * x.shape[2], : 4 * x.shape[3]],
    )


def test_padding_is_mirror_to_the_next_multiple_of_16_above():
    x = torch.rand(1, 3, 32, 21)
    p = mirror_pad16(x)
    assert p.shape == (1, 3, 48, 32)
    assert torch.equal(p[..., 32:, :21], x.flip(2)[..., :16, :])
    assert torch.equal(p[..., :, 21:], p[..., :, :21].flip(3)[..., :11])


def test_quantizer_picks_the_nearest_code():
    torch.manual_seed(0)
    q = Quantizer(12, 5)
    z = torch.randn(2, 5, 3, 4)
    out = q(z)
    book = q.embedding.weight
    for b in range(2):
        for i in range(3):
            for j in range(4):
                nearest = ((book - z[b, :, i, j]) ** 2).sum(1).argmin()
                assert torch.allclose(out[b, :, i, j], book[nearest], atol=1e-6)


def _release(folder, seed=0, cfg=TINY, **extra):
    sd = random_state_dict(cfg, seed) | extra
    save_checkpoint({"params": sd}, folder / "FeMaSR_SRX4_model_g.pth")
    return sd


def _method(folder, **cfg):
    return FeMaSR({"arch": "tiny", "weights_dir": str(folder)} | cfg)


def test_loading_needs_every_key_and_ignores_extra_ones(tmp_path, caplog, pickle_payload):
    sd = _release(tmp_path, seed=1, **{"conv_semantic.0.weight": torch.zeros(2, 2, 1, 1)})
    m = _method(tmp_path)
    with caplog.at_level(logging.INFO, logger="harness.methods.femasr.adapter"):
        m.load(CPU, torch.float32)
    assert "1 tensors" in caplog.text
    assert all(torch.equal(m.net.state_dict()[k], sd[k]) for k in m.net.state_dict())
    sd.pop("out_conv.bias")
    save_checkpoint({"params": sd}, tmp_path / "partial.pth")
    with pytest.raises(HarnessError, match="lacks 1 of the network's .* out_conv.bias"):
        _method(tmp_path, weights=str(tmp_path / "partial.pth")).load(CPU, torch.float32)
    with pytest.raises(HarnessError, match="lacks .* 'paper' architecture"):  # a tiny file
        FeMaSR({"weights_dir": str(tmp_path)}).load(CPU, torch.float32)
    sd["out_conv.bias"] = torch.zeros(4)
    save_checkpoint({"params": sd}, tmp_path / "misshapen.pth")
    with pytest.raises(HarnessError, match=r"out_conv.bias has shape \(4,\), the network \(3,\)"):
        _method(tmp_path, weights=str(tmp_path / "misshapen.pth")).load(CPU, torch.float32)
    with pytest.raises(HarnessError, match=r"FeMaSR_SRX4_model_g\.pth .*weights fetch femasr"):
        _method(tmp_path / "empty").weights_digest()
    trace = tmp_path / "pwned"
    torch.save({"params": {"out_conv.bias": pickle_payload(trace)}}, tmp_path / "evil.pth")
    with pytest.raises(HarnessError):
        _method(tmp_path, weights=str(tmp_path / "evil.pth")).load(CPU, torch.float32)
    assert not trace.exists()
    with pytest.raises(HarnessError, match="tile_pad"):
        _method(tmp_path, tile_pad=3).check_config()
    with pytest.raises(HarnessError, match="femasr: LR size 7x30 is below 8 pixels"):
        _method(tmp_path).check_input_size(30, 7)


def test_whole_below_max_size_tiles_from_it(tmp_path):
    _release(tmp_path, seed=2)
    lr = torch.rand(1, 3, 20, 18)
    whole = _method(tmp_path)
    whole.load(CPU, torch.float32)
    tiled = _method(tmp_path, max_size=18, tile=8, tile_pad=7)  # 20 * 18 >= 18^2: tiles
    tiled.load(CPU, torch.float32)
    with torch.no_grad():
        y_whole, y_tiled = whole.upscale(lr), tiled.upscale(lr)
        raw = whole.net(mirror_pad16(lr))[..., :80, :72]
        want = run_tiled(tiled._whole, lr, 8, 7, 4)
    assert torch.equal(y_whole, torch.round(raw.clamp(0, 1) * 255) / 255)
    assert torch.equal(y_tiled, torch.round(want.clamp(0, 1) * 255) / 255)
    assert not torch.equal(y_whole, y_tiled)  # tiles with little context change pixels


def test_manifest_fetch_and_check(tmp_path, cli, capsys, monkeypatch, serve_folder):
    from harness.weights import load_manifest, path_of

    entry = load_manifest()["femasr"]
    assert entry.used_by == ("femasr",)
    assert entry.url.startswith("https://github.com/chaofengc/FeMaSR/releases/download/")
    release = tmp_path / "release"
    release.mkdir()
    sd = _release(release, seed=3)
    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    with serve_folder(release) as mirror:
        assert cli("weights", "fetch", "femasr", "--mirror", mirror) == 0
    assert path_of(entry).read_bytes() == (release / entry.name).read_bytes()
    capsys.readouterr()
    assert cli("weights", "check", "femasr") == 0
    assert "restricted loader" in capsys.readouterr().out
    m = _method(tmp_path / "w" / "femasr")
    m.load(CPU, torch.float32)
    assert torch.equal(m.net.out_conv.weight, sd["out_conv.weight"])


def test_harness_run_on_the_embedded_set(cache_dir, tmp_path, cli):
    _release(tmp_path, seed=4)
    out = tmp_path / "run"
    rc = cli("run", "--methods", "femasr", "--out", out, "method.arch=tiny",
             f"method.weights_dir={tmp_path}", "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert sum(r.startswith("femasr,embedded,") for r in rows) == 6
