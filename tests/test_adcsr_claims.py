"""AdcSR claims beyond shapes: any LR size is the forward of the reflect-padded input, cropped
(README "AdcSR in the harness", the card's first deviation); the official files are converted
once, then read from the safetensors cache."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.methods.adcsr import AdcSR, AdcSRConfig, AdcSRNet

# test_adcsr's fixtures fabricate tiny official files (net_params_200.pkl, halfDecoder.ckpt)
_spec = importlib.util.spec_from_file_location(
    "adcsr_kit", Path(__file__).with_name("test_adcsr.py")
)
_kit = importlib.util.module_from_spec(_spec)
sys.modules["adcsr_kit"] = _kit  # torch.save pickles a class of it
_spec.loader.exec_module(_kit)
teacher, official = _kit.teacher, _kit.official


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny AdcSR with random weights, loaded from a harness checkpoint, and the same net."""
    from safetensors.torch import save_file

    torch.manual_seed(11)
    net = AdcSRNet(AdcSRConfig.tiny()).eval()
    path = tmp_path_factory.mktemp("adcsr-tiny") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    m = AdcSR({"arch": "tiny", "weights": str(path), "color_match": False, "quantize": "round"})
    m.load(torch.device("cpu"), torch.float32)
    return m, net


@pytest.mark.parametrize(("h", "w", "mode"), [(13, 21, "reflect"), (5, 7, "replicate")])
def test_odd_sizes_are_the_padded_forward_cropped(tiny, h, w, mode):
    """Reference: pad the [-1, 1] input on the bottom/right to a multiple of 16 (reflect; edge
    replication where a side is shorter than its padding), run the net, crop to 4h x 4w.
    Mutations caught: zero padding; padding on the top/left; the output resized to 4h x 4w
    instead of cropped."""
    m, net = tiny
    lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    x = lr * 2 - 1
    ph, pw = (-h) % 16, (-w) % 16
    with torch.no_grad():
        expected = net(F.pad(x, (0, pw, 0, ph), mode=mode))[..., : 4 * h, : 4 * w]
        expected = (expected / 2 + 0.5).clamp(0, 1)
        out = m.upscale(lr)
        zero = (net(F.pad(x, (0, pw, 0, ph)))[..., : 4 * h, : 4 * w] / 2 + 0.5).clamp(0, 1)
    assert out.shape == (1, 3, 4 * h, 4 * w)
    assert (out - expected).abs().max() < 1e-5
    assert (zero - expected).abs().max() > 1e-3  # the padding reaches the kept pixels


@pytest.mark.slow  # the fixture builds a diffusers teacher UNet (~25 s on a shared 2-core CPU)
def test_official_files_are_converted_once_across_loads(official, tmp_path, monkeypatch):
    """Two loads of the official files: one conversion, then the cached safetensors (same
    weights). Mutation caught: the cache ignored (converted on every load)."""
    import harness.methods.adcsr.adapter as adapter

    folder, _ = official
    for name in ("net_params_200.pkl", "halfDecoder.ckpt"):
        shutil.copy(folder / name, tmp_path / name)
    calls = []
    convert = adapter.from_official
    monkeypatch.setattr(adapter, "from_official", lambda *a: calls.append(1) or convert(*a))
    nets = []
    for _ in range(2):
        m = AdcSR({"arch": "tiny", "weights_dir": str(tmp_path)})
        m.load(torch.device("cpu"), torch.float32)
        nets.append(m.net.state_dict())
    assert calls == [1]
    assert len(list(tmp_path.glob("adcsr-harness-*.safetensors"))) == 1
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])


def test_two_threads_upscale_the_same_bytes_as_one_after_the_other(tiny):
    """The card's re-entrancy claim through the adapter: two threads upscaling different images
    at the same time give what sequential calls give. Mutation caught: the skip connections in
    a module-global list, as in the official code (threads push into and pop from each other's
    list: wrong pixels, or a size mismatch raised in a thread)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    m, _ = tiny
    gen = torch.Generator().manual_seed(21)
    images = [torch.rand(1, 3, 16, 32, generator=gen), torch.rand(1, 3, 32, 16, generator=gen)]
    with torch.no_grad():
        sequential = [m.upscale(x) for x in images]
    barrier = threading.Barrier(2)

    def call(x):
        barrier.wait()  # start together, so the two forwards overlap
        with torch.no_grad():
            return m.upscale(x)

    with ThreadPoolExecutor(2) as pool:
        for _ in range(4):
            concurrent = list(pool.map(call, images))
            for a, b in zip(concurrent, sequential):
                assert torch.equal(a, b)
