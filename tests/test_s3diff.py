"""S3Diff: modulated LoRA math, official block/target rules, official files, determinism, tiling."""

import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.methods.s3diff import S3Diff, S3DiffConfig, S3DiffNet
from harness.methods.s3diff.adapter import DEFAULT_SEED, preprocess
from harness.methods.s3diff.arch import NEG_PROMPT, POS_PROMPT, ModulatedLoRA, Modulation
from harness.methods.s3diff.convert import prompt_ids, write_official
from harness.methods.s3diff.tiling import Tiling, latent_tiles, tiled_latent, tiled_vae

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Tiny random weights in the official layouts: (sd-turbo folder, s3diff folder)."""
    return write_official(tmp_path_factory.mktemp("s3diff_weights"), S3DiffConfig.tiny(), seed=0)


def _method(official, **cfg):
    sd, s3 = official
    m = S3Diff({"arch": "tiny", "weights_dir": str(s3), "sd_turbo_dir": str(sd), **cfg})
    m.load(CPU, torch.float32)
    return m


@pytest.fixture(scope="module")
def method(official):
    return _method(official)


# ----------------------------------------------------------------------------- LoRA and rules


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_lora_layer_is_base_plus_modulated_low_rank(kind):
    torch.manual_seed(0)
    base = nn.Conv2d(6, 5, 3, 2, 1) if kind == "conv" else nn.Linear(6, 5)
    mod = Modulation(rank=3)
    layer = ModulatedLoRA(base, 3, "default", block=1, modulation=mod)
    for p in layer.parameters():
        nn.init.normal_(p)
    mod.embeds = torch.randn(2, 4, 9)  # two images, four blocks
    x = torch.randn(2, 6, 8, 8) if kind == "conv" else torch.randn(2, 7, 6)
    a, b = layer.lora_A["default"], layer.lora_B["default"]
    h = a(x)
    out = []
    for n in range(2):  # each image with its own mixing matrix of block 1
        m = mod.embeds[n, 1].reshape(3, 3)
        hn = h[n].permute(1, 2, 0) @ m if kind == "conv" else h[n] @ m
        out.append(b(hn.permute(2, 0, 1) if kind == "conv" else hn))
    expected = base(x) + torch.stack(out) * (8 / 3)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_lora_targets_and_blocks_follow_the_official_rules():
    net = S3DiffNet(S3DiffConfig.tiny())
    from diffusers import AutoencoderKL, UNet2DConditionModel

    plain_unet = UNet2DConditionModel(**S3DiffConfig.tiny().unet)
    suffixes = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut",
                "conv_out", "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj")  # fmt: skip
    want = [n for n, m in plain_unet.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
            and any(n == s or n.endswith("." + s) for s in suffixes)]  # fmt: skip
    assert net.unet_lora == want
    assert "down_blocks.0.downsamplers.0.conv" in want and "up_blocks.1.upsamplers.0.conv" in want
    assert "conv_in" not in want and not any(n.startswith("time_embedding") for n in want)
    for name in want:
        block = net.unet.get_submodule(name).block
        head = name.split(".")
        if head[0] == "down_blocks":
            assert block == int(head[1]), name
        elif head[0] == "up_blocks":
            assert block == 5 + int(head[1]), name
        else:
            assert block == {"mid_block": 4}.get(head[0], 9), name
    plain_vae = AutoencoderKL(**S3DiffConfig.tiny().vae)
    vae_want = [
        n
        for n, m in plain_vae.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        and n.startswith("encoder.")
        and n != "encoder.conv_norm_out"
    ]  # every encoder conv/linear is a target
    assert net.vae_lora == vae_want
    for name in vae_want:
        block = net.vae.get_submodule(name).block
        part = name.split(".")[1]
        expected = {"down_blocks": int(name.split(".")[2]) if part == "down_blocks" else 0,
                    "mid_block": 4}.get(part, 5)  # fmt: skip
        assert block == expected, name


def test_degradation_embedding_order_and_fusion():
    torch.manual_seed(1)
    net = S3DiffNet(S3DiffConfig.tiny())
    scores = torch.tensor([[0.2, 0.7], [0.9, 0.1]])
    net.modulate(scores)
    w = net.W
    p0, p1 = scores[:, :1] * w * 2 * math.pi, scores[:, 1:] * w * 2 * math.pi
    f = torch.cat([torch.sin(p0), torch.cos(p0), torch.sin(p1), torch.cos(p1)], 1)
    de = net.unet_de_mlp(f)  # (2, 256)
    blocks = net.unet_block_mlp(net.unet_block_embeddings.weight)  # (10, 64)
    for n in range(2):
        for b in (0, 4, 9):
            expected = net.unet_fuse_mlp(torch.cat([de[n], blocks[b]]))
            assert torch.allclose(net.unet_mod.embeds[n, b], expected, atol=1e-6)
    assert net.unet_mod.matrix(3).shape == (2, 4, 4) and net.vae_mod.embeds.shape == (2, 6, 16)


def test_preprocess_is_bilinear_x4_clamped_and_reflect_padded_to_64():
    lr = torch.rand(1, 3, 24, 37)
    up, x = preprocess(lr)
    assert torch.equal(up, F.interpolate(lr, size=(96, 148), mode="bilinear", align_corners=False))
    assert x.shape == (1, 3, 128, 192)
    core = (up * 2 - 1).clamp(-1, 1)
    assert torch.equal(x[..., :96, :148], core)
    assert torch.equal(x[..., :96, 148 + 5], core[..., 148 - 2 - 5])  # reflect, edge excluded
    assert torch.equal(x[..., 96 + 3, :148], core[..., 96 - 2 - 3, :])


# ----------------------------------------------------------------------------- official files


def test_official_files_load_strictly_and_give_4x(method, official):
    lr = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(2))
    out = method.upscale(lr, seeds=[0])
    assert out.shape == (1, 3, 96, 160)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, torch.round(out * 255) / 255)  # 8-bit values
    assert out.std() > 0.01  # not a constant image
    # the retrained conv_in of s3diff.pkl replaces SD-Turbo's own
    pkl = torch.load(official[1] / "s3diff.pkl", weights_only=True)
    assert torch.equal(method.net.unet.conv_in.weight, pkl["state_dict_unet"]["conv_in.weight"])


@pytest.mark.slow
def test_same_bytes_twice_and_the_seed_matters(method, official):
    assert S3Diff.card.stochastic  # the runner passes per-image seeds
    lr = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(3))
    a = method.upscale(lr, seeds=[5])
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(a, method.upscale(lr, seeds=[5]))
    assert torch.equal(a, method.upscale_seeded(lr, [5]))  # the runner's call
    assert not torch.equal(a, method.upscale(lr, seeds=[6]))  # posterior sample
    assert torch.equal(method.upscale(lr), method.upscale(lr, seeds=[DEFAULT_SEED]))
    mean = _method(official, latent="mean")
    assert torch.equal(mean.upscale(lr, seeds=[5]), mean.upscale(lr, seeds=[6]))
    with pytest.raises(ValueError, match="2 seeds for 1"):
        method.upscale(lr, seeds=[1, 2])


def test_posterior_noise_is_per_image_and_standard_normal():
    x = torch.zeros(3, 3, 64, 128)
    noise = S3Diff.posterior_noise(x, [7, 8, 7])
    assert noise.shape == (3, 4, 8, 16) and noise.dtype == torch.float32
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    alone = S3Diff.posterior_noise(x[:1], [8])  # the same whatever the batch
    assert torch.equal(noise[1:2], alone)
    # the official sample's draw: torch.randn of the latent shape from a generator in that state
    assert torch.equal(alone, torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(8)))


def test_posterior_sample_is_the_official_draw(method):
    """With the same generator state, ``encode(x, noise)`` is what the official
    ``vae.encode(x).latent_dist.sample()`` returns (diffusers' posterior, scaled)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    net = method.net
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9)) * 2 - 1
    with torch.no_grad():
        net.modulate(torch.tensor([[0.3, 0.6]]))
        ours = net.encode(x, S3Diff.posterior_noise(x, [11]))
        moments = net.vae.quant_conv(net.vae.encoder(x))
        posterior = DiagonalGaussianDistribution(moments)
        official = posterior.sample(generator=torch.Generator().manual_seed(11)) * 0.18215
        assert torch.allclose(ours, official, atol=1e-6)
        assert (ours - posterior.mean * 0.18215).abs().max() > 0.01  # the noise plays a part


@pytest.mark.slow
def test_batch_matches_single_images(method):
    lrs = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(4))
    batch = method.upscale(lrs, seeds=[7, 8])
    for i, s in enumerate((7, 8)):
        single = method.upscale(lrs[i : i + 1], seeds=[s])
        assert (batch[i] - single[0]).abs().max() <= 1 / 255 + 1e-6


def test_text_encoder_file_in_the_official_layout(method, official):
    """SD-Turbo's text_encoder/model.safetensors holds transformers 4 keys (``text_model.``):
    written so, and read to the same prompt embeddings as transformers' own loader gives."""
    from safetensors import safe_open
    from transformers import CLIPTextModel

    sd, _ = official
    with safe_open(str(sd / "text_encoder" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("text_model.") for k in keys)
    reference = CLIPTextModel.from_pretrained(str(sd / "text_encoder")).eval()
    pos, neg = prompt_ids(sd / "tokenizer", (POS_PROMPT, NEG_PROMPT))
    with torch.no_grad():
        assert torch.allclose(method.net.pos_embeds, reference(pos)[0], atol=1e-5)
        assert torch.allclose(method.net.neg_embeds, reference(neg)[0], atol=1e-5)


def _repickle(src, dst, change):
    pkl = torch.load(src, weights_only=True)
    change(pkl)
    torch.save(pkl, dst)


def test_wrong_key_layout_is_refused(official, tmp_path):
    sd, s3 = official
    (tmp_path / "de_net.pth").write_bytes((s3 / "de_net.pth").read_bytes())

    def extra(pkl):
        pkl["state_dict_unet"]["mid_block.extra.lora_A.default.weight"] = torch.zeros(1)

    _repickle(s3 / "s3diff.pkl", tmp_path / "s3diff.pkl", extra)
    with pytest.raises(HarnessError, match="do not fit.*mid_block.extra"):
        _method((sd, tmp_path))

    def missing(pkl):
        del pkl["state_dict_vae"]["encoder.conv_in.lora_B.vae_skip.weight"]

    _repickle(s3 / "s3diff.pkl", tmp_path / "s3diff.pkl", missing)
    with pytest.raises(HarnessError, match="encoder.conv_in.lora_B"):
        _method((sd, tmp_path))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['S3DIFF_PWNED']}",))


def test_hostile_pickle_is_refused_without_running(official, tmp_path, monkeypatch):
    sd, s3 = official
    flag = tmp_path / "pwned"
    monkeypatch.setenv("S3DIFF_PWNED", str(flag))
    (tmp_path / "de_net.pth").write_bytes((s3 / "de_net.pth").read_bytes())
    with open(tmp_path / "s3diff.pkl", "wb") as f:
        pickle.dump({"rank_unet": 4, "payload": _Payload()}, f)
    with pytest.raises(HarnessError):
        _method((sd, tmp_path))
    assert not flag.exists()
    torch.save({"state": _Payload()}, tmp_path / "de_net.pth")  # zip format too
    (tmp_path / "s3diff.pkl").write_bytes((s3 / "s3diff.pkl").read_bytes())
    with pytest.raises(HarnessError):
        _method((sd, tmp_path))
    assert not flag.exists()


def test_missing_weights_name_the_files_and_the_fetch_command(tmp_path):
    m = S3Diff({"arch": "tiny", "weights_dir": str(tmp_path), "sd_turbo_dir": str(tmp_path)})
    with pytest.raises(HarnessError) as e:
        m.weights_digest()
    msg = str(e.value)
    for name in ("s3diff.pkl", "de_net.pth", "unet/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/vocab.json",
                 "harness weights fetch s3diff"):  # fmt: skip
        assert name in msg


def test_missing_weights_fail_fast_through_cli(tmp_path, cli, capsys):
    rc = cli("run", "--methods", "s3diff", "--out", tmp_path / "o",
             f"method.weights_dir={tmp_path}", f"method.sd_turbo_dir={tmp_path}")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "s3diff.pkl" in err and "harness weights fetch s3diff" in err
    assert not (tmp_path / "o").exists()


def test_bad_options_are_one_line_errors(official):
    for bad in ({"color_fix": "bogus"}, {"latent": "mode"}, {"latent_tiled_size": 0}):
        with pytest.raises(HarnessError, match="method\\."):
            _method(official, **bad)
    with pytest.raises(HarnessError, match="at least 9 px"):
        S3Diff({}).check_input_size(8, 100)


# ----------------------------------------------------------------------------- tiling


def test_latent_tiles_cover_every_position_and_blend_to_identity():
    for h, w, tile, overlap in ((100, 100, 96, 32), (36, 260, 36, 32), (130, 97, 96, 32)):
        seen = torch.zeros(h, w, dtype=torch.bool)
        for y, x in latent_tiles(h, w, tile, overlap):
            assert 0 <= y <= h - tile and 0 <= x <= w - tile
            seen[y : y + tile, x : x + tile] = True
        assert seen.all()
    z = torch.randn(2, 4, 100, 120)
    out = tiled_latent(lambda t: t * 2, z, Tiling())  # weights normalise: a linear map survives
    assert torch.allclose(out, z * 2, atol=1e-5)
    narrow = torch.randn(1, 4, 30, 400)  # tile 30 <= overlap 32: the official loop never ends
    assert torch.allclose(tiled_latent(lambda t: t, narrow, Tiling()), narrow, atol=1e-5)


@pytest.mark.slow
def test_tiled_vae_with_one_tile_equals_the_whole_image():
    torch.manual_seed(0)
    net = S3DiffNet(S3DiffConfig.tiny())
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        net.modulate(torch.rand(1, 2))
        whole = net.vae.encoder(x)
        tiled = tiled_vae(net.vae.encoder, x, tile=128, pad=32, is_decoder=False)  # one tile
        z = torch.randn(1, 4, 8, 12)
        dec = tiled_vae(net.vae.decoder, z, tile=64, pad=11, is_decoder=True)
        assert torch.allclose(tiled, whole, atol=1e-4)
        assert torch.allclose(dec, net.vae.decoder(z), atol=1e-4)
        # several tiles: close to the whole image, but the pooled GroupNorm statistics differ
        many = tiled_vae(net.vae.encoder, x, tile=16, pad=8, is_decoder=False)
        assert many.shape == whole.shape and not torch.allclose(many, whole, atol=1e-4)


# ----------------------------------------------------------------------------- the harness


@pytest.mark.slow
def test_harness_run_on_a_folder(official, cache_dir, tmp_path, cli):
    import numpy as np

    from harness.imageio import write_png

    sd, s3 = official
    rng = np.random.default_rng(0)
    data = tmp_path / "pairs"
    for n in ("a", "b"):  # small images: the run's code path, not the network's cost
        write_png(data / "LR" / f"{n}.png", rng.integers(0, 256, (24, 20, 3), np.uint8))
        write_png(data / "HR" / f"{n}.png", rng.integers(0, 256, (96, 80, 3), np.uint8))
    out = tmp_path / "run"
    rc = cli("run", "--methods", "s3diff", "--datasets", data, "--out", out, "--metrics", "psnr",
             "method.arch=tiny", f"method.weights_dir={s3}", f"method.sd_turbo_dir={sd}",
             "profile.enabled=false")  # fmt: skip
    assert rc == 0
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith("s3diff,pairs,")
    manifest = (out / "manifest.json").read_text()
    assert "S3Diff" in manifest and "deviations" in manifest


@pytest.mark.slow
def test_profile_random_init(tmp_path, cli):
    import csv

    out = tmp_path / "p"
    rc = cli("profile", "--methods", "s3diff", "--random-init", "--lr-size", "16", "--runs", "1",
             "--warmup", "0", "--out", out, "method.arch=tiny")  # fmt: skip
    assert rc == 0
    with open(out / "efficiency.csv") as f:
        row = next(csv.DictReader(f))
    net = S3DiffNet(S3DiffConfig.tiny())
    assert int(row["params"]) == sum(p.numel() for p in net.parameters())
    assert (
        row["params_components"].startswith("de_net=")
        and "text_encoder=" in row["params_components"]
    )
    assert float(row["macs_fvcore"]) > 0


def test_weights_manifest_entries_and_hub_layout(tmp_path, monkeypatch):
    from harness.weights.manager import install, location_dir, status
    from harness.weights.manifest import load_manifest

    entries = [e for e in load_manifest().values() if "s3diff" in e.used_by]
    names = {e.name for e in entries}
    assert names >= {"s3diff.pkl", "de_net.pth", "unet/diffusion_pytorch_model.safetensors",
                     "tokenizer/merges.txt"}  # fmt: skip
    lfs = [e for e in entries if e.name.endswith((".safetensors", ".pkl"))]
    assert all(e.sha256 and len(e.sha256) == 64 for e in lfs)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    vocab = next(e for e in entries if e.name == "tokenizer/vocab.json")
    src = tmp_path / "vocab.json"
    src.write_text("{}")
    dest = install(src, vocab)
    assert dest == location_dir(vocab) / "tokenizer" / "vocab.json"
    ref = tmp_path / "hf" / "hub" / "models--stabilityai--sd-turbo" / "refs" / "main"
    assert ref.read_text() == dest.parents[1].name  # the snapshot, not the tokenizer folder
    assert status(vocab).state == "unverified"
