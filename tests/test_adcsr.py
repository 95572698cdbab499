"""AdcSR: exact size, compression as slicing, official checkpoint layout, independent forward."""

import importlib.util
import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.methods.adcsr import AdcSR, AdcSRConfig, AdcSRNet
from harness.methods.adcsr.convert import compress_unet

_kit_spec = importlib.util.spec_from_file_location(
    "adcsrkit", Path(__file__).with_name("adcsrkit.py")
)
adcsrkit = importlib.util.module_from_spec(_kit_spec)
_kit_spec.loader.exec_module(adcsrkit)

GROUPS = (32, 24, 16, 12, 8, 6, 4, 2, 1)
TINY_TEACHER = adcsrkit.TINY_TEACHER
LATENT = AdcSRConfig.tiny().latent_channels  # 24


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.slow  # builds the 456M-parameter network (1.8 GB)
def test_full_size_parameter_counts():
    net = AdcSRNet(AdcSRConfig.paper())
    assert _count(net) == 456_073_683
    assert _count(net.unet) + _count(net.mid) == 446_321_744  # trained in stage 2
    assert _count(net.decoder) == 9_751_939  # frozen stage-1 decoder tail


@pytest.fixture(scope="module")
def teacher():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**TINY_TEACHER).state_dict()


def _official_surgery(teacher):
    """The released model's construction, restated on tensors: drop time/text parts, stack conv_in
    four times, repeat conv_out to 4/3 of the latent width, then keep the first 75% of every
    channel dimension."""
    out = {}
    for k, v in teacher.items():
        if k.startswith("time_embedding") or "time_emb_proj" in k or ".attn2." in k:
            continue
        if "transformer_blocks" in k and ".norm2." in k:
            continue
        if k == "conv_in.weight":
            v = v.repeat(1, 4, 1, 1)
        if k.startswith("conv_out."):
            pre = LATENT * 4 // 3  # 32 -> 24 after pruning, as 342 -> 256 in the paper
            v = v.repeat(pre // 4 + 1, *[1] * (v.ndim - 1))[:pre]
        if v.ndim >= 2:
            v = v[: int(v.shape[0] * 0.75), : int(v.shape[1] * 0.75)]
        else:
            v = v[: int(v.shape[0] * 0.75)]
        out[k] = v.clone()
    return out


def test_compression_is_exactly_the_slice_of_the_teacher(teacher):
    student = compress_unet(teacher, 0.75, latent_channels=LATENT)
    expected = _official_surgery(teacher)
    assert student.keys() == expected.keys()
    for k in student:
        assert torch.equal(student[k], expected[k]), k
    w = teacher["down_blocks.1.resnets.0.conv1.weight"]  # (64, 32, 3, 3)
    assert torch.equal(student["down_blocks.1.resnets.0.conv1.weight"], w[:48, :24])
    ci = teacher["conv_in.weight"]  # (32, 4, 3, 3) -> (24, 12): three stacked copies
    assert torch.equal(student["conv_in.weight"], torch.cat([ci[:24]] * 3, dim=1))
    # it loads strictly into the student architecture
    AdcSRNet(AdcSRConfig.tiny()).unet.load_state_dict(student, strict=True)


# ----------------------------------------------------------------------------- official files

_BODY = adcsrkit.BODY


class _TrainerState:  # stands in for the Lightning objects pickled in halfDecoder.ckpt
    def __init__(self):
        self.lr = 1e-4


def _fabricate_official(tmp_path, teacher):
    """Write net_params_200.pkl and halfDecoder.ckpt in the released formats, random weights."""
    g = torch.Generator().manual_seed(1)
    unet = _official_surgery(teacher)
    ref = AdcSRNet(AdcSRConfig.tiny())
    mid = {}
    for k, v in ref.mid.state_dict().items():  # official names have no `.attn.` level
        mid[k.replace(".attn.", ".")] = torch.randn(v.shape, generator=g) * 0.2
    net = {}
    for k, v in unet.items():
        net[f"module.body.1.{k}"] = v
        top, _, rest = k.partition(".")
        name = top if top in ("conv_norm_out", "conv_out") else ".".join(k.split(".")[:2])
        if name in _BODY:
            tail = rest if top in ("conv_norm_out", "conv_out") else k.split(".", 2)[2]
            net[f"module.body.1.body.{_BODY.index(name)}.{tail}"] = v  # the same tensor object
    for k, v in mid.items():
        net[f"module.body.2.{k}"] = v
    decoder = {f"decoder.{k}": torch.randn(v.shape, generator=g) * 0.2
               for k, v in ref.decoder.state_dict().items()}  # fmt: skip
    decoder["decoder.conv_in.weight"] = torch.randn(LATENT, 4, 3, 3, generator=g)
    decoder["encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    torch.save(net, tmp_path / "net_params_200.pkl")
    ckpt = {"state_dict": decoder, "epoch": 7, "hyper_parameters": _TrainerState()}
    torch.save(ckpt, tmp_path / "halfDecoder.ckpt")
    return unet, mid, decoder


def _gn(x, w, b, eps):
    return F.group_norm(x, next(g for g in GROUPS if x.shape[1] % g == 0), w, b, eps)


class _Reference:
    """A functional forward over the official key layout, written apart from harness code."""

    def __init__(self, unet, mid, decoder, heads):
        self.w = {**{f"u.{k}": v for k, v in unet.items()}, **{f"m.{k}": v for k, v in mid.items()},
                  **{f"d.{k.removeprefix('decoder.')}": v for k, v in decoder.items()}}  # fmt: skip
        self.heads = heads

    def has(self, p):
        return f"{p}.weight" in self.w

    def conv(self, x, p, stride=1):
        wt = self.w[f"{p}.weight"]
        return F.conv2d(x, wt, self.w[f"{p}.bias"], stride, wt.shape[-1] // 2)

    def upsample(self, x, p):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), p)

    def lin(self, x, p):
        return F.linear(x, self.w[f"{p}.weight"], self.w.get(f"{p}.bias"))

    def norm(self, x, p, eps):
        return _gn(x, self.w[f"{p}.weight"], self.w[f"{p}.bias"], eps)

    def resnet(self, x, p, eps):
        h = self.conv(F.silu(self.norm(x, f"{p}.norm1", eps)), f"{p}.conv1")
        h = self.conv(F.silu(self.norm(h, f"{p}.norm2", eps)), f"{p}.conv2")
        return h + (self.conv(x, f"{p}.conv_shortcut") if self.has(f"{p}.conv_shortcut") else x)

    def attend(self, t, p, heads):
        b, n, c = t.shape
        q, k, v = (self.lin(t, f"{p}.{n_}").view(b, n, heads, -1).transpose(1, 2)
                   for n_ in ("to_q", "to_k", "to_v"))  # fmt: skip
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.lin((a @ v).transpose(1, 2).reshape(b, n, c), f"{p}.to_out.0")

    def transformer(self, x, p, heads):
        b, c, h, w = x.shape
        t = self.norm(x, f"{p}.norm", 1e-6).permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.lin(t, f"{p}.proj_in")
        blk = f"{p}.transformer_blocks.0"
        ln = lambda z, n: F.layer_norm(z, (c,), self.w[f"{n}.weight"], self.w[f"{n}.bias"])  # noqa: E731
        t = t + self.attend(ln(t, f"{blk}.norm1"), f"{blk}.attn1", heads)
        a, gate = self.lin(ln(t, f"{blk}.norm3"), f"{blk}.ff.net.0.proj").chunk(2, dim=-1)
        t = t + self.lin(a * F.gelu(gate), f"{blk}.ff.net.2")
        t = self.lin(t, f"{p}.proj_out")
        return x + t.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def __call__(self, x):
        x = self.conv(F.pixel_unshuffle(x, 2), "u.conv_in")
        skip = [x]
        for i in range(4):
            for j in range(2):
                x = self.resnet(x, f"u.down_blocks.{i}.resnets.{j}", 1e-5)
                if self.has(f"u.down_blocks.{i}.attentions.{j}.norm"):
                    x = self.transformer(x, f"u.down_blocks.{i}.attentions.{j}", self.heads[i])
                skip.append(x)
            if self.has(f"u.down_blocks.{i}.downsamplers.0.conv"):
                x = self.conv(x, f"u.down_blocks.{i}.downsamplers.0.conv", stride=2)
                skip.append(x)
        x = self.resnet(x, "u.mid_block.resnets.0", 1e-5)
        x = self.transformer(x, "u.mid_block.attentions.0", self.heads[-1])
        x = self.resnet(x, "u.mid_block.resnets.1", 1e-5)
        for i in range(4):
            for j in range(3):
                x = self.resnet(torch.cat([x, skip.pop()], 1), f"u.up_blocks.{i}.resnets.{j}", 1e-5)
                if self.has(f"u.up_blocks.{i}.attentions.{j}.norm"):
                    x = self.transformer(x, f"u.up_blocks.{i}.attentions.{j}", self.heads[3 - i])
            if self.has(f"u.up_blocks.{i}.upsamplers.0.conv"):
                x = self.upsample(x, f"u.up_blocks.{i}.upsamplers.0.conv")
        x = self.conv(F.silu(self.norm(x, "u.conv_norm_out", 1e-5)), "u.conv_out")
        # decoder mid block: resnet, single-head attention with residual, resnet
        x = self.resnet(x, "m.resnets.0", 1e-6)
        b, c, h, w = x.shape
        t = self.norm(x, "m.attentions.0.group_norm", 1e-6).view(b, c, h * w).transpose(1, 2)
        x = x + self.attend(t, "m.attentions.0", 1).transpose(1, 2).reshape(b, c, h, w)
        x = self.resnet(x, "m.resnets.1", 1e-6)
        for i in range(4):
            for j in range(3):
                x = self.resnet(x, f"d.up_blocks.{i}.resnets.{j}", 1e-6)
            if self.has(f"d.up_blocks.{i}.upsamplers.0.conv"):
                x = self.upsample(x, f"d.up_blocks.{i}.upsamplers.0.conv")
        return self.conv(F.silu(self.norm(x, "d.conv_norm_out", 1e-6)), "d.conv_out")


@pytest.fixture(scope="module")
def official(tmp_path_factory, teacher):
    folder = tmp_path_factory.mktemp("adcsr_weights")
    unet, mid, decoder = _fabricate_official(folder, teacher)
    return folder, _Reference(unet, mid, decoder, AdcSRConfig.tiny().heads)


def _method(folder, **cfg):
    m = AdcSR({"arch": "tiny", "weights_dir": str(folder), **cfg})
    m.load(torch.device("cpu"), torch.float32)
    return m


def test_half_decoder_needs_the_restricted_loader(official):
    folder, _ = official
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "halfDecoder.ckpt", weights_only=True)


def test_official_files_load_and_match_independent_forward(official):
    folder, ref = official
    m = _method(folder, color_match=False, quantize="round")
    lr = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = (ref(lr * 2 - 1) / 2 + 0.5).clamp(0, 1)
        out = m.upscale(lr)
    assert out.shape == (2, 3, 128, 192)
    assert (out - expected).abs().max() < 1e-4
    assert (folder / "net_params_200.pkl").stat().st_size > 0
    assert list(folder.glob("adcsr-harness-*.safetensors"))  # converted once, cached
    again = _method(folder, color_match=False, quantize="round")
    with torch.no_grad():
        assert torch.equal(again.upscale(lr), out)


def test_color_matching_and_truncation_follow_official_test_script(official):
    folder, ref = official
    lr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    x = lr * 2 - 1
    with torch.no_grad():
        y = ref(x)
    y = (y - y.mean((2, 3), keepdim=True)) / y.std((2, 3), keepdim=True)
    y = y * x.std((2, 3), keepdim=True) + x.mean((2, 3), keepdim=True)
    expected = torch.floor((y / 2 + 0.5).clamp(0, 1) * 255)
    with torch.no_grad():
        out = _method(folder).upscale(lr) * 255
    assert (out - expected).abs().max() <= 1.0 + 1e-4  # 1 level where a value sits on a boundary
    assert (out - expected).abs().gt(1e-3).float().mean() < 0.01


@pytest.mark.parametrize(
    "size", [(127, 93), (130, 130), pytest.param((512, 384), marks=pytest.mark.slow)]
)
def test_any_input_size_gives_4x(official, size):
    folder, _ = official
    lr = torch.rand(1, 3, size[1], size[0])
    with torch.no_grad():
        out = _method(folder).upscale(lr)
    assert out.shape == (1, 3, size[1] * 4, size[0] * 4)
    assert torch.isfinite(out).all()


def test_forward_is_reentrant():
    net = AdcSRNet(AdcSRConfig.tiny()).eval()
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 16)
    with torch.no_grad():
        ya, yb = net(a), net(b)
        both = [net(a), net(b)]
    assert torch.equal(both[0], ya) and torch.equal(both[1], yb)


def test_missing_weights_name_the_file(tmp_path):
    m = AdcSR({"arch": "tiny", "weights_dir": str(tmp_path)})
    with pytest.raises(HarnessError, match="net_params_200.pkl not found .*harness weights fetch"):
        m.weights_digest()


def test_wrong_key_layout_is_refused(tmp_path, official):
    folder, _ = official
    net = torch.load(folder / "net_params_200.pkl", weights_only=True)
    net["module.body.3.extra"] = torch.zeros(1)
    (tmp_path / "halfDecoder.ckpt").write_bytes((folder / "halfDecoder.ckpt").read_bytes())
    torch.save(net, tmp_path / "net_params_200.pkl")
    with pytest.raises(HarnessError, match="unexpected key module.body.3.extra"):
        _method(tmp_path)


def test_harness_checkpoint_runs_through_harness_run(cache_dir, tmp_path, cli):
    """The cached SR images are the checkpoint's network on their LR images (official
    post-processing). Mutation caught: the adapter not loading ``method.weights``."""
    from safetensors.torch import save_file

    from harness.imageio import write_png

    torch.manual_seed(4)
    net = AdcSRNet(AdcSRConfig.tiny())
    sd = net.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "tiny.safetensors"))
    for name in ("a", "b"):  # a small folder dataset keeps this quick (the paper size is slow)
        img = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(ord(name))) * 255
        write_png(tmp_path / "small" / "LR" / f"{name}.png", img.to(torch.uint8).numpy())
        big = torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], scale_factor=4)
        write_png(tmp_path / "small" / "HR" / f"{name}.png",
                  big[0].permute(1, 2, 0).to(torch.uint8).numpy())  # fmt: skip
    out = tmp_path / "run"
    weights = f"method.weights={tmp_path / 'tiny.safetensors'}"
    rc = cli("run", "--methods", "adcsr", "--datasets", tmp_path / "small", "--out", out,
             "method.arch=tiny", weights, "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith("adcsr,small,")
    assert adcsrkit.check_cached_sr(out, "small", tmp_path / "small" / "LR", net) == 2


def test_missing_weights_fail_fast_through_cli(tmp_path, cli, capsys):
    rc = cli("run", "--methods", "adcsr", "--out", tmp_path / "o", f"method.weights_dir={tmp_path}")
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "net_params_200.pkl" in err and "huggingface.co/Guaishou74851/AdcSR" in err
    assert not (tmp_path / "o").exists()  # nothing written before the check
