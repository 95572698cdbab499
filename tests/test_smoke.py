"""One fast pass through each module that the full tests exercise only under the ``slow``
marker, so that the quick subset (``pytest -m "not slow"``) touches every module."""

import os
import runpy
import sys

import numpy as np
import pytest
import torch


def test_training_parts_lora_starts_as_identity_and_discriminator_scores_patches():
    """methods/adcsr/train.py (both training stages end to end: tests/test_adcsr_train.py,
    slow)."""
    from harness.methods.adcsr.train import LoRA, PatchDiscriminator, add_lora

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    x = torch.rand(2, 4, 8, 8)
    wrapped = LoRA(conv, rank=2)
    assert torch.equal(wrapped(x), conv(x))  # zero-initialised up-projection
    torch.nn.init.normal_(wrapped.up.weight)
    assert not torch.allclose(wrapped(x), conv(x))
    block = torch.nn.Module()
    block.to_q, block.other = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    assert add_lora(block, 2) == 1 and isinstance(block.to_q, LoRA)
    d = PatchDiscriminator(width=8, layers=2)
    assert d(torch.rand(1, 3, 64, 64)).shape == (1, 1, 14, 14)


def test_training_batches_are_a_function_of_seed_and_step(cache_dir):
    from harness.datasets.embedded import materialise
    from harness.datasets.training import TrainPairs

    hr = materialise(cache_dir / "datasets") / "HR"
    a = TrainPairs(hr, crop=32, batch_size=2, seed=3)
    b = TrainPairs(hr, crop=32, batch_size=2, seed=3)
    (lr_a, hr_a), (lr_b, hr_b) = a.batch(5), b.batch(5)
    assert torch.equal(hr_a, hr_b) and hr_a.shape == (2, 3, 32, 32)
    assert (lr_a is None and lr_b is None) or torch.equal(lr_a, lr_b)
    assert not torch.equal(a.batch(6)[1], hr_a)


def test_a_fabricated_metric_weight_is_verified_and_used(tmp_path, monkeypatch):
    """harness/weights/fabricate.py (tests/test_paper_metrics.py fabricates all: slow)."""
    from harness.metrics import MetricSuite
    from harness.weights import load_manifest, status
    from harness.weights.fabricate import fabricate

    manifest = tmp_path / "fabricated.json"
    [entry] = fabricate(["pyiqa-niqe"], manifest)
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    assert status(load_manifest()["pyiqa-niqe"]).state == "ok"
    suite = MetricSuite(["niqe"])
    assert suite.unavailable == {}
    img = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(suite.score(img, None)[0].values["niqe"])
    os.unlink(tmp_path / "fabricated.json")


def test_sd_vae_has_the_published_size():
    """methods/osediff/arch.py (the full UNet is counted in a slow test)."""
    from harness.methods.osediff.arch import sd_vae

    vae = sd_vae()
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863


def test_python_dash_m_harness(monkeypatch, capsys):
    """harness/__main__.py."""
    monkeypatch.setattr(sys, "argv", ["harness", "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("harness", run_name="__main__")
    assert e.value.code == 0 and "super-resolution" in capsys.readouterr().out
