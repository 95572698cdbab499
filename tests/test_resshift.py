"""ResShift (v1/v2 15 steps, v3 4 steps): the schedules, the chain against its formulas, the
official checkpoint layouts, per-image noise, the release option, precision, weights, and the
runner. The networks and their padding/tiling are SinSR's (tested in test_sinsr.py); pixel
equality with the official sampler is ``tools/equivalence_resshift.py``'s job."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.methods.resshift import ResShift, ResShiftNet, ResShiftSchedule, ResShiftV3
from harness.methods.resshift.checkpoint import save_official
from harness.methods.sinsr import SwinUNetConfig, VQConfig
from harness.methods.sinsr.arch import exponential_sqrt_etas
from harness.methods.sinsr.checkpoint import random_weights

CPU = torch.device("cpu")


def test_schedules_are_the_official_ones():
    """v1/v2: 15 steps from sqrt(eta) 0.02; v3: 4 steps from 0.1. ResShift's current code
    dropped the sqrt(0.001) cap that SinSR's copy keeps: it changes v3's start only."""
    conf = ResShiftSchedule.conference().sqrt_etas()
    journal = ResShiftSchedule.journal().sqrt_etas()
    assert len(conf) == 15 and conf[0] == pytest.approx(0.02) and conf[-1] == pytest.approx(0.99)
    assert len(journal) == 4 and journal[0] == pytest.approx(0.1)
    assert journal[-1] == pytest.approx(0.99)
    assert exponential_sqrt_etas(4, 0.2, 0.99, 2.0, 0.3)[0] == pytest.approx(0.001**0.5)  # SinSR
    assert conf == exponential_sqrt_etas(15, 0.04, 0.99, 2.0, 0.3)  # the cap changes nothing
    # the exponent follows a power 0.3 of the step index
    k = (0.99 / 0.02) ** (1 / 14)
    assert conf[7] == pytest.approx(0.02 * k ** ((7 / 14) ** 0.3 * 14))
    t = ResShiftSchedule.journal().tables()
    assert float(t["coef1"][0]) == 0 and float(t["coef2"][0]) == 1  # the last step returns x0
    assert float(t["noise_std"][1]) == pytest.approx(
        (4 * journal[0] ** 2 / journal[1] ** 2 * (journal[1] ** 2 - journal[0] ** 2)) ** 0.5
    )


@pytest.fixture(scope="module")
def tiny_weights():
    return random_weights(SwinUNetConfig.tiny(), VQConfig.tiny(), seed=5)


@pytest.fixture(scope="module")
def official(tmp_path_factory, tiny_weights):
    """Tiny files of all three releases (DDP / compile prefixes) and autoencoder_vq_f4.pth."""
    folder = tmp_path_factory.mktemp("resshift_weights")
    for release in ("v1", "v2", "v3"):
        save_official(folder, release, *tiny_weights)
    return folder


def _method(folder, cls=ResShift, **cfg):
    m = cls({"arch": "tiny", "weights_dir": str(folder), "pad_multiple": 8, **cfg})
    m.load(CPU, torch.float32)
    return m


def _lr(n=1, h=24, w=20, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _reference(m, lr, noise, sqrt_etas):
    """The chain restated from the paper's formulas in float64 constants, from module parts."""
    x = (lr - 0.5) / 0.5
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (-w) % m.pad, 0, (-h) % m.pad), mode="reflect")
    net = m.net
    z = net.vq.quant_conv(net.vq.encoder(F.interpolate(xp, scale_factor=4, mode="bicubic")))
    etas = [s**2 for s in sqrt_etas]
    steps = len(etas)
    z = z + 2.0 * sqrt_etas[-1] * noise[:, 0]
    for j, t in enumerate(reversed(range(steps))):
        x0 = net.unet(z / (4 * etas[t] + 1) ** 0.5, torch.tensor([t]), xp)
        prev = etas[t - 1] if t else 0.0
        z = prev / etas[t] * z + (etas[t] - prev) / etas[t] * x0
        if t:
            z = z + (4 * prev / etas[t] * (etas[t] - prev)) ** 0.5 * noise[:, j + 1]
    y = net.vq.decode(z)
    return y[..., : 4 * h, : 4 * w].clamp(-1, 1) * 0.5 + 0.5


@pytest.mark.parametrize("cls,steps", [(ResShift, 15), (ResShiftV3, 4)])
def test_the_chain_matches_the_formulas(official, cls, steps):
    m = _method(official, cls)
    assert m.net.schedule.steps == steps == m.card.steps
    lr = _lr(h=20, w=28)
    with torch.no_grad():
        out = m.upscale(lr, seeds=[7])
        g = torch.Generator().manual_seed(7)
        noise = torch.randn(1, steps, 3, 24, 32, generator=g)  # padded to multiples of 8
        expected = _reference(m, lr, noise, m.net.schedule.sqrt_etas())
    assert out.shape == (1, 3, 80, 112)
    assert (out - expected).abs().max() < 1e-4


def test_releases_pick_their_files_and_schedules(official, tiny_weights):
    v1, v2, v3 = (
        _method(official), _method(official, release="v2"), _method(official, ResShiftV3)
    )  # fmt: skip
    assert [m.unet_file for m in (v1, v2, v3)] == [
        "resshift_realsrx4_s15_v1.pth", "resshift_realsrx4_s15_v2.pth",
        "resshift_realsrx4_s4_v3.pth",
    ]  # fmt: skip
    for m in (v1, v3):  # the DDP and DDP + compile prefixes are both removed
        for k, v in m.net.unet.state_dict().items():
            assert torch.equal(v, tiny_weights[0][k]), k
    sig = [m.output_signature(CPU, torch.float32)["release"] for m in (v1, v2, v3)]
    assert sig == ["v1", "v2", "v3"]  # part of the SR cache key


def test_a_release_of_the_other_model_is_refused_naming_it():
    with pytest.raises(HarnessError, match=r"release: 'v3' .* v1, v2 .*--methods resshift_v3"):
        ResShift({"release": "v3"}).check_config()
    with pytest.raises(HarnessError, match=r"release: 'v1' .* v3 .*--methods resshift\)"):
        ResShiftV3({"release": "v1"}).check_config()


def test_state_dict_container_and_wrong_layouts(tmp_path, tiny_weights, official):
    unet_sd, vq_sd = tiny_weights
    save_official(tmp_path / "c", "v1", unet_sd, vq_sd, prefix="_orig_mod.module.", container=True)
    lr = _lr()
    with torch.no_grad():
        assert torch.equal(
            _method(tmp_path / "c").upscale(lr, seeds=[1]), _method(official).upscale(lr, seeds=[1])
        )
    extra = dict(unet_sd, **{"feature_extractor.0.weight": torch.zeros(1)})
    save_official(tmp_path / "x", "v3", extra, vq_sd)
    with pytest.raises(HarnessError, match=r"resshift_v3: .*Swin-UNet .*1 unexpected"):
        _method(tmp_path / "x", ResShiftV3)


def test_hostile_pickles_never_run(tmp_path, tiny_weights, pickle_payload):
    trace = tmp_path / "PWNED"
    save_official(tmp_path, "v3", *tiny_weights)
    with open(tmp_path / "resshift_realsrx4_s4_v3.pth", "wb") as f:
        pickle.dump({"module.out.2.weight": pickle_payload(trace)}, f)
    with pytest.raises(HarnessError, match="resshift_realsrx4_s4_v3.pth"):
        _method(tmp_path, ResShiftV3)
    assert not trace.exists()


def test_missing_weights_name_the_files_and_the_fetch_command(tmp_path):
    for cls, cfg, file, fetch in (
        (ResShift, {}, "resshift_realsrx4_s15_v1.pth", "resshift"),
        (ResShift, {"release": "v2"}, "resshift_realsrx4_s15_v2.pth", "resshift-v2"),
        (ResShiftV3, {}, "resshift_realsrx4_s4_v3.pth", "resshift_v3"),
    ):
        with pytest.raises(HarnessError) as e:
            cls({"arch": "tiny", "weights_dir": str(tmp_path), **cfg}).weights_digest()
        msg = str(e.value)
        assert file in msg and "autoencoder_vq_f4.pth" in msg and len(msg.splitlines()) == 1
        assert f"harness weights fetch {fetch}`" in msg


def test_noise_is_one_generator_per_image_and_one_draw_per_step(official):
    m = _method(official, ResShiftV3)
    seen = []
    draw = m._noise
    m._noise = lambda shape, gens: seen.append(draw(shape, gens)) or seen[-1]
    with torch.no_grad():
        m.upscale(_lr(3), seeds=[4, 5, 4])
    (noise,) = seen
    assert noise.shape == (3, 4, 3, 24, 24)  # 24x20 padded to 8
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    g = torch.Generator().manual_seed(5)
    assert torch.equal(noise[1:2], torch.randn(1, 4, 3, 24, 24, generator=g))


def test_reduced_precision_is_autocast_over_the_chain(official):
    """dtype=bf16: the official scheme is autocast over the whole chain, weights kept in fp32
    (not SinSR's half torso): the UNet's and the autoencoder's convolutions run in bf16. How
    far that moves the output is not asserted: random weights amplify any rounding over the
    chain (see the card)."""
    m = ResShiftV3({"arch": "tiny", "weights_dir": str(official), "pad_multiple": 8})
    m.load(CPU, torch.bfloat16)
    assert m.net.unet.out[2].weight.dtype == torch.float32 and m.amp == torch.bfloat16
    seen = []
    hook = lambda mod, args, out: seen.append((mod.weight.dtype, out.dtype))  # noqa: E731
    for conv in (m.net.unet.out[2], m.net.vq.decoder.conv_out):
        conv.register_forward_hook(hook)
    with torch.no_grad():
        out = m.upscale(_lr(1, 16, 16), seeds=[3])
    assert seen and all(w == torch.float32 and o == torch.bfloat16 for w, o in seen)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.slow
def test_harness_run_on_the_embedded_set(cache_dir, official, tmp_path, cli):
    out = tmp_path / "run"
    rc = cli("run", "--methods", "resshift_v3", "--out", out, "method.arch=tiny",
             f"method.weights_dir={official}", "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert sum(r.startswith("resshift_v3,embedded,") for r in rows) == 6
    entry = json.loads((out / "manifest.json").read_text())["methods"]["resshift_v3"]
    assert entry["card"]["stochastic"] and entry["card"]["steps"] == 4


@pytest.mark.slow
def test_macs_count_every_step(official):
    """fvcore over the chain: the 15-step model costs 11 UNet passes more than the 4-step one,
    and nothing else differs (same autoencoder work)."""
    from harness.profiler.count import fvcore_macs

    lr = _lr(1, 16, 16)
    macs = {}
    for cls in (ResShift, ResShiftV3):
        m = _method(official, cls)
        macs[cls.card.name] = fvcore_macs(m.net, m.network_inputs(lr))[0]
    unet_in = torch.zeros(1, 3, 16, 16), torch.tensor([0]), torch.zeros(1, 3, 16, 16)
    unet = fvcore_macs(m.net.unet, unet_in)[0]
    assert macs["resshift"] - macs["resshift_v3"] == 11 * unet


def test_weights_manifest_and_fetch(tmp_path, cli, capsys, official, monkeypatch, serve_folder):
    from harness.weights import load_manifest, path_of

    entries = load_manifest()
    names = {u: sorted(e.name for e in entries.values() if u in e.used_by)
             for u in ("resshift", "resshift-v2", "resshift_v3")}  # fmt: skip
    assert names == {
        "resshift": ["autoencoder_vq_f4.pth", "resshift_realsrx4_s15_v1.pth"],
        "resshift-v2": ["autoencoder_vq_f4.pth", "resshift_realsrx4_s15_v2.pth"],
        "resshift_v3": ["autoencoder_vq_f4.pth", "resshift_realsrx4_s4_v3.pth"],
    }
    for e in entries.values():
        if e.id.startswith("resshift"):
            assert e.url.startswith("https://github.com/zsyOAOA/ResShift/releases/download/v2.0/")

    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    with serve_folder(official) as mirror:
        assert cli("weights", "fetch", "resshift_v3", "--mirror", mirror) == 0
    for e in entries.values():
        if "resshift_v3" in e.used_by:
            assert path_of(e).read_bytes() == (official / e.name).read_bytes()
    capsys.readouterr()
    assert cli("weights", "check", "resshift_v3") == 0
    assert "restricted loader" in capsys.readouterr().out
    with torch.no_grad():  # the fetched files are what the adapter loads by default
        m = ResShiftV3({"arch": "tiny", "pad_multiple": 8,
                        "weights_dir": str(tmp_path / "w" / "resshift")})  # fmt: skip
        m.load(CPU, torch.float32)
        assert isinstance(m.net, ResShiftNet)
