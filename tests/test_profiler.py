"""The efficiency profiler: exact counts, counter conventions, timing bookkeeping, errors."""

import csv
import json
import re

import pytest
import torch

from harness.methods.adcsr import AdcSRConfig, AdcSRNet
from harness.profiler.count import count_params, flopcounter_macs, fvcore_macs
from harness.profiler.timing import Timing, measure


def test_params_are_deduplicated_by_identity():
    block = torch.nn.Linear(10, 10)
    aliased = torch.nn.Sequential(block, block)  # the same tensors registered twice
    assert count_params(aliased) == 110
    model = torch.nn.Module()
    model.a, model.b = block, torch.nn.Sequential(block)
    assert count_params(model) == 110


def test_attention_is_counted_apart_from_fvcore():
    class Attn(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.rand(2, 3, 16, 8)  # B=2, H=3, L=16, d=8
    total, attention = fvcore_macs(Attn(), (q,))
    assert total == 0  # fvcore itself skips attention
    assert attention == 2 * 3 * 16 * 16 * (8 + 8)
    assert flopcounter_macs(Attn(), (q,)) == attention


def test_measure_excludes_warmup_and_counts_runs():
    calls = []
    t = measure(lambda: calls.append(1), torch.device("cpu"), runs=5, warmup=3)
    assert len(calls) == 8 and len(t.runs) == 5 and t.warmup == 3
    assert t.timer == "perf_counter" and t.memory_kind == "cpu_peak_rss"
    assert t.peak_memory_bytes >= t.baseline_memory_bytes > 0


def test_quantiles_and_iqr():
    t = Timing([4.0, 1.0, 3.0, 2.0, 5.0], 0, "x", 0, "x", 0)
    assert t.median == 3.0
    assert t.quantile(0.25) == 2.0 and t.quantile(0.75) == 4.0 and t.iqr == 2.0
    assert t.quantile(0.1) == pytest.approx(1.4)


def test_profile_cli_writes_efficiency_table(tmp_path, cli, capsys):
    out = tmp_path / "p"
    rc = cli("profile", "--methods", "bicubic,adcsr", "--random-init", "--lr-size", "32",
             "--runs", "2", "--warmup", "1", "--reference", "adcsr", "--out", out,
             "method.arch=tiny")  # fmt: skip
    assert rc == 0
    text = re.sub(r" +", " ", capsys.readouterr().out)  # Markdown column padding
    assert "| Method | Steps | Params (M) | MACs fvcore (G)" in text
    with open(out / "efficiency.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    tiny = AdcSRNet(AdcSRConfig.tiny())
    assert int(rows["adcsr"]["params"]) == count_params(tiny)
    assert rows["adcsr"]["params_components"].startswith("unet=")
    assert float(rows["adcsr"]["latency_median_s_ratio"]) == 1.0
    assert rows["bicubic"]["macs_fvcore"] == "" and "no neural network" in rows["bicubic"]["notes"]
    plus = int(rows["adcsr"]["macs_fvcore_plus_attention"])
    assert int(rows["adcsr"]["macs_fvcore"]) < plus
    assert abs(plus - int(rows["adcsr"]["macs_flopcounter"])) / plus < 0.05
    env = json.loads((out / "efficiency.json").read_text())["environment"]
    for key in ("device", "torch", "dtype", "tf32_matmul", "cudnn_benchmark", "attention_backends"):
        assert key in env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--methods", "bicubic", "--lr-size", "0"], "LR size 0x0 is not positive"),
        (["--methods", "bicubic", "--reference", "lanczos"], "'lanczos' is not among --methods"),
    ],
)
def test_profile_errors(tmp_path, cli, capsys, args, message):
    assert cli("profile", *args, "--out", tmp_path / "p") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("harness: error:") and message in err


def test_run_includes_efficiency(cache_dir, tmp_path, cli, capsys):
    out = tmp_path / "r"
    assert cli("run", "--methods", "bicubic", "--out", out, "profile.runs=2") == 0
    assert "### Efficiency" in capsys.readouterr().out
    assert (out / "efficiency.csv").is_file() and "### Efficiency" in (
        out / "report.md"
    ).read_text()


@pytest.mark.slow
def test_full_size_counts_match_the_papers():
    """AdcSR 456,073,683 params / 496.4 G fvcore MACs at 128->512; SD2.1-base UNet 865,910,724
    params / 339.5 G fvcore MACs at a 64x64 latent (FACTS.md sections 3-4)."""
    from harness.methods.osediff.arch import sd21_unet

    net = AdcSRNet(AdcSRConfig.paper()).eval()
    assert count_params(net) == 456_073_683
    total, attention = fvcore_macs(net, (torch.rand(1, 3, 128, 128) * 2 - 1,))
    assert total == pytest.approx(496.43e9, rel=1e-3)
    assert total + attention == pytest.approx(549.5e9, rel=5e-3)
    del net

    unet = sd21_unet().eval()
    assert count_params(unet) == 865_910_724

    class Call(torch.nn.Module):  # fvcore traces a single-input forward
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, z):
            return self.unet(z, 999, torch.zeros(1, 77, 1024)).sample

    total, _ = fvcore_macs(Call(unet), (torch.rand(1, 4, 64, 64),))
    assert total == pytest.approx(339.5e9, rel=1e-3)


def test_ptflops_counts_a_network_with_two_inputs():
    from harness.profiler.count import fvcore_macs, ptflops_macs

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(2, 4, 1)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    inputs = (torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8))
    total, _ = fvcore_macs(Two(), inputs)
    assert total == 8 * 8 * 4 * (3 + 2)
    assert ptflops_macs(Two(), inputs) >= total  # ptflops also counts biases and the add
