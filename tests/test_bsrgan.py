"""BSRGAN (methods/bsrgan): the release's key layout, the official forward restated from those
names, loading paths (release file, a Real-ESRGAN-layout file, hostile pickles), the weights
manifest and fetch, and a run through the CLI. Pixel equality with the official script itself is
``tools/equivalence_bsrgan.py`` (needs the official checkout)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoints import save_checkpoint
from harness.errors import HarnessError
from harness.methods.bsrgan import BSRGAN
from harness.methods.bsrgan.convert import is_official_layout, to_harness, to_official
from harness.methods.realesrgan.arch import RRDBConfig, RRDBNet

CPU = torch.device("cpu")
TINY = RRDBConfig.tiny()


def _release_sd(seed=0):
    torch.manual_seed(seed)
    return to_official(RRDBNet(TINY).state_dict())


def _official_forward(sd, x, blocks):
    """BSRGAN's ``RRDBNet.forward`` (models/network_rrdbnet.py), restated on the release's own
    key names: independent of the harness network and of the renaming."""

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    fea = conv("conv_first", x)
    trunk = fea
    for i in range(blocks):
        block_in = trunk
        for r in (1, 2, 3):
            feats = [trunk]
            for k in range(1, 5):
                feats.append(lrelu(conv(f"RRDB_trunk.{i}.RDB{r}.conv{k}", torch.cat(feats, 1))))
            trunk = conv(f"RRDB_trunk.{i}.RDB{r}.conv5", torch.cat(feats, 1)) * 0.2 + trunk
        trunk = trunk * 0.2 + block_in
    fea = fea + conv("trunk_conv", trunk)
    for name in ("upconv1", "upconv2"):
        fea = lrelu(conv(name, F.interpolate(fea, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("HRconv", fea)))


def _method(folder, **cfg):
    return BSRGAN({"arch": "tiny", "weights_dir": str(folder)} | cfg)


def test_release_layout_names():
    sd = _release_sd()
    assert is_official_layout(sd)
    names = set(sd)
    for key in ("conv_first.weight", "RRDB_trunk.1.RDB3.conv5.bias", "trunk_conv.weight",
                "upconv1.weight", "upconv2.bias", "HRconv.weight", "conv_last.bias"):  # fmt: skip
        assert key in names
    assert not any(k.startswith(("body.", "conv_body", "conv_up", "conv_hr")) for k in names)
    back = to_harness(sd)
    assert not is_official_layout(back)
    assert set(back) == set(RRDBNet(TINY).state_dict())


def test_loaded_release_file_equals_the_official_forward(tmp_path):
    sd = _release_sd(1)
    save_checkpoint(sd, tmp_path / "BSRGAN.pth")
    m = _method(tmp_path, weights=str(tmp_path / "BSRGAN.pth"))
    m.load(CPU, torch.float32)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = m.net(x)
        theirs = _official_forward(sd, x, TINY.blocks)
        assert ours.shape == (1, 3, 48, 40)
        assert (ours - theirs).abs().max() < 1e-5
        y = m.upscale(x)  # clamped, rounded to 8 bits as tensor2uint does
    assert torch.equal(y, torch.round(theirs.clamp(0, 1) * 255) / 255)


def test_a_realesrgan_layout_file_loads_the_same_network(tmp_path):
    sd = _release_sd(2)
    save_checkpoint(sd, tmp_path / "release.pth")
    save_checkpoint({"params_ema": to_harness(sd)}, tmp_path / "finetune.pth")
    nets = []
    for name in ("release.pth", "finetune.pth"):
        m = _method(tmp_path, weights=str(tmp_path / name))
        m.load(CPU, torch.float32)
        nets.append(m.net.state_dict())
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])


def test_missing_and_wrong_weights_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match=r"BSRGAN\.pth .*harness weights fetch bsrgan"):
        _method(tmp_path / "empty").weights_digest()
    with pytest.raises(HarnessError, match="not official or an existing file"):
        _method(tmp_path, weights="nowhere.pth").weights_digest()
    full = to_official(RRDBNet(RRDBConfig(blocks=1)).state_dict())
    save_checkpoint(full, tmp_path / "other.pth")
    m = _method(tmp_path, weights=str(tmp_path / "other.pth"))
    with pytest.raises(HarnessError, match="bsrgan: weights do not fit the 'tiny'"):
        m.load(CPU, torch.float32)


def test_hostile_checkpoint_is_inert(tmp_path, pickle_payload):
    trace = tmp_path / "pwned"
    torch.save({"conv_first.weight": pickle_payload(trace)}, tmp_path / "BSRGAN.pth")
    m = _method(tmp_path)
    with pytest.raises(HarnessError):
        m.load(CPU, torch.float32)
    assert not trace.exists()


def test_manifest_fetch_and_check(tmp_path, cli, capsys, monkeypatch, serve_folder):
    from harness.weights import load_manifest, path_of

    entry = load_manifest()["bsrgan"]
    assert entry.used_by == ("bsrgan",) and entry.name == "BSRGAN.pth"
    assert entry.url == "https://github.com/cszn/KAIR/releases/download/v1.0/BSRGAN.pth"
    release = tmp_path / "release"
    release.mkdir()
    save_checkpoint(_release_sd(3), release / "BSRGAN.pth")
    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    with serve_folder(release) as mirror:
        assert cli("weights", "fetch", "bsrgan", "--mirror", mirror) == 0
    assert path_of(entry).read_bytes() == (release / "BSRGAN.pth").read_bytes()
    capsys.readouterr()
    assert cli("weights", "check", "bsrgan") == 0
    assert "restricted loader" in capsys.readouterr().out
    m = _method(tmp_path / "w" / "bsrgan")  # the fetched file is what the adapter loads
    m.load(CPU, torch.float32)
    assert torch.equal(m.net.conv_body.weight, _release_sd(3)["trunk_conv.weight"])


def test_harness_run_on_the_embedded_set(cache_dir, tmp_path, cli):
    folder = tmp_path / "w"
    folder.mkdir()
    save_checkpoint(_release_sd(4), folder / "BSRGAN.pth")
    out = tmp_path / "run"
    rc = cli("run", "--methods", "bsrgan", "--out", out, "method.arch=tiny",
             f"method.weights_dir={folder}", "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert sum(r.startswith("bsrgan,embedded,") for r in rows) == 6
    card = json.loads((out / "manifest.json").read_text())["methods"]["bsrgan"]["card"]
    assert card["display_name"] == "BSRGAN" and not card["stochastic"]
