"""AdcSR training, tiny recipe on the CPU: both stages learn, resume is exact, the result runs."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from harness.config import compose_train
from harness.errors import HarnessError
from harness.methods.adcsr.train import Trainer, train

_kit_spec = importlib.util.spec_from_file_location(
    "adcsrkit", Path(__file__).with_name("adcsrkit.py")
)
adcsrkit = importlib.util.module_from_spec(_kit_spec)
_kit_spec.loader.exec_module(adcsrkit)

pytestmark = pytest.mark.slow


def _cfg(out, *overrides):
    return compose_train("adcsr_tiny", [f"out={out}", *overrides])


def _falls(rows, key):
    vals = [r[key] for r in rows]
    assert all(torch.isfinite(torch.tensor(v)) for v in vals), vals
    return sum(vals[:2]) / 2 > sum(vals[-2:]) / 2


@pytest.fixture(scope="module")
def stage1(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    result = train(_cfg(out, "steps=8", "checkpoint_every=4", "data.fixed_batch=true"))
    return out, result


def test_stage1_losses_are_finite_and_fall_on_a_fixed_batch(stage1):
    out, result = stage1
    assert len(result["rows"]) == 8 and result["skipped"] == 0
    assert _falls(result["rows"], "l1")
    assert "loss_d" in result["rows"][-1]  # the patch GAN joined at disc_start
    assert (out / "half_decoder.safetensors").is_file() and (out / "latest.txt").is_file()
    logged = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 9))


def _distill(stage1, out, *extra):
    half = stage1[0] / "half_decoder.safetensors"
    return train(_cfg(out, "stage=distill", f"distill.half_decoder={half}",
                      "data.fixed_batch=true", *extra))  # fmt: skip


def test_stage2_losses_are_finite_and_fall_on_a_fixed_batch(stage1, tmp_path):
    result = _distill(stage1, tmp_path, "steps=8", "checkpoint_every=8")
    assert result["skipped"] == 0
    assert _falls(result["rows"], "l1")
    assert all(torch.isfinite(torch.tensor(r["loss_d"])) for r in result["rows"])


def test_resume_gives_bit_identical_next_steps(stage1, tmp_path):
    straight = _distill(stage1, tmp_path / "a", "steps=4", "checkpoint_every=2",
                        "data.fixed_batch=false")  # fmt: skip
    _distill(stage1, tmp_path / "b", "steps=2", "checkpoint_every=2", "data.fixed_batch=false")
    resumed = _distill(stage1, tmp_path / "b", "steps=4", "checkpoint_every=2",
                       "data.fixed_batch=false")  # fmt: skip
    assert [r["step"] for r in resumed["rows"]] == [3, 4]
    for a, b in zip(straight["rows"][2:], resumed["rows"]):
        for key in ("l1", "adv", "loss_g", "loss_d"):
            assert a[key] == b[key], key  # exact, not approximate


def test_trained_weights_run_through_harness_run(stage1, cache_dir, tmp_path, cli):
    """The cached SR images are the trained network's forward on the embedded LR images.
    Mutation caught: the adapter not loading ``method.weights``."""
    from harness.checkpoints import load_tensors
    from harness.methods.adcsr import AdcSRConfig, AdcSRNet

    result = _distill(stage1, tmp_path / "t", "steps=1")
    out = tmp_path / "run"
    rc = cli("run", "--methods", "adcsr", "--out", out, "method.arch=tiny",
             f"method.weights={result['weights']}", "profile.enabled=false")  # fmt: skip
    assert rc == 0
    assert len((out / "per_image.csv").read_text().splitlines()) == 7
    net = AdcSRNet(AdcSRConfig.tiny())
    net.load_state_dict(load_tensors(result["weights"]))
    lr_dir = cache_dir / "datasets" / "embedded-v1" / "LR"
    assert adcsrkit.check_cached_sr(out, "embedded", lr_dir, net) == 6


def test_non_finite_loss_skips_the_step(tmp_path):
    tr = Trainer(_cfg(tmp_path), tmp_path)
    layer = torch.nn.Linear(2, 1)
    tr.modules = {"m": layer}
    tr.optims = {"g": torch.optim.Adam(layer.parameters(), lr=0.1)}
    tr.scaler("g")
    before = layer.weight.detach().clone()
    assert not tr.apply("g", layer(torch.ones(1, 2)).sum() * float("nan"))
    assert tr.skipped == 1 and torch.equal(layer.weight, before)
    assert tr.apply("g", layer(torch.ones(1, 2)).sum())
    assert not torch.equal(layer.weight, before)


def test_recipe_errors(tmp_path):
    with pytest.raises(HarnessError, match="unknown recipe 'nope'"):
        compose_train("nope", [])
    with pytest.raises(HarnessError, match="set distill.half_decoder"):
        compose_train("adcsr_tiny", ["stage=distill"])
    with pytest.raises(HarnessError, match="set data.hr_dir"):
        compose_train("adcsr_paper", [])


def test_data_parallel_under_torchrun_matches_one_process(stage1, tmp_path):
    """Two gloo ranks with one image each see the same first step as one process with two:
    same data slots, gradients averaged. (Later steps differ in the last digits: Adam's first
    update is nearly sign(grad), so float-order noise in tiny gradients is amplified.)"""
    import os
    import subprocess
    import sys

    half = stage1[0] / "half_decoder.safetensors"
    args = ["-m", "harness", "train", "adcsr", "stage=distill", f"distill.half_decoder={half}",
            "steps=2", "checkpoint_every=2", "data.batch_size=1"]  # fmt: skip
    env = os.environ | {"HARNESS_NO_PROGRESS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run(run + args + [f"out={tmp_path / 'ddp'}"], check=True, env=env,
                   capture_output=True, timeout=600)  # fmt: skip
    single = _distill(stage1, tmp_path / "one", "steps=2", "data.batch_size=2",
                      "data.fixed_batch=false")  # fmt: skip
    ddp = [json.loads(x) for x in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp] == [1, 2]  # rank 0 alone writes the log
    for key in ("l1", "adv", "loss_g", "loss_d"):
        assert ddp[0][key] == pytest.approx(single["rows"][0][key], rel=1e-5), key
    assert (tmp_path / "ddp" / "adcsr.safetensors").is_file()
    assert (tmp_path / "ddp" / "ckpt-0000002.pt").is_file()
