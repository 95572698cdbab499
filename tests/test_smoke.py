"""One fast pass through each module that the full tests exercise only under the ``slow``
marker, so that the quick subset (``pytest -m "not slow"``) touches every module."""

import os
import runpy
import sys

import numpy as np
import pytest
import torch


def test_training_one_step_of_each_stage(cache_dir, tmp_path):
    """methods/adcsr/train.py and datasets/training.py (tests/test_adcsr_train.py: slow)."""
    from harness.config import compose_train
    from harness.methods.adcsr.train import train

    ov = ["steps=1", "checkpoint_every=1", "data.batch_size=1"]
    first = train(compose_train("adcsr_tiny", [f"out={tmp_path / 's1'}", *ov]))
    assert len(first["rows"]) == 1 and first["skipped"] == 0
    half = tmp_path / "s1" / "half_decoder.safetensors"
    assert half.is_file()
    second = train(compose_train("adcsr_tiny", [f"out={tmp_path / 's2'}", "stage=distill",
                                                f"distill.half_decoder={half}", *ov]))  # fmt: skip
    assert (
        np.isfinite(second["rows"][0]["l1"]) and (tmp_path / "s2" / "adcsr.safetensors").is_file()
    )


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
