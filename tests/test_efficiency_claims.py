"""Efficiency rows hold what ARCHITECTURE.md "Efficiency files" says: each value recomputed here
from its definition (counts from the network, statistics from the timed runs, ratios from the
reference row), and the ptflops cross-check within a stated distance of fvcore."""

import csv
import json
import statistics

import pytest
import torch

from harness.methods.adcsr import AdcSRConfig, AdcSRNet
from harness.profiler.count import count_params, fvcore_macs

# ptflops (pytorch backend) counts module calls: it adds bias and activation elements that
# fvcore leaves out and misses functional calls (attention, normalisations). On the tiny AdcSR
# that nets out within 1% of fvcore; a FLOP-vs-MAC slip or a wrong input is far outside.
PTFLOPS_VS_FVCORE = 0.01

# one `harness profile` of the tiny AdcSR with all three counters: ~40 s of CPU time
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    from harness.cli import main

    out = tmp_path_factory.mktemp("eff") / "p"
    assert main(["profile", "--methods", "lanczos,adcsr", "--random-init", "--lr-size", "16",
                 "--runs", "4", "--warmup", "1", "--reference", "lanczos", "--out", str(out),
                 "method.arch=tiny"]) == 0  # fmt: skip
    rows = {r["method"]: r for r in json.loads((out / "efficiency.json").read_text())["rows"]}
    with open(out / "efficiency.csv") as f:
        flat = {r["method"]: r for r in csv.DictReader(f)}
    return rows, flat


def test_counts_are_those_of_the_network(profiled):
    """Mutations caught: attention left out of the sum; ptflops' count doubled (FLOPs for
    MACs)."""
    rows, flat = profiled
    a = rows["adcsr"]
    net = AdcSRNet(AdcSRConfig.tiny()).eval()
    fv, attention = fvcore_macs(net, (torch.rand(1, 3, 16, 16),))
    assert (a["lr_size"], a["sr_size"], a["weights"]) == (16, 64, "random")
    assert a["params"] == count_params(net)
    assert (a["macs_fvcore"], a["macs_attention"]) == (fv, attention) and attention > 0
    assert a["macs_fvcore_plus_attention"] == fv + attention
    assert abs(a["macs_flopcounter"] - (fv + attention)) / (fv + attention) < 0.05  # ~3% here
    assert abs(a["macs_ptflops"] - fv) / fv < PTFLOPS_VS_FVCORE
    assert a["ptflops_backend"] == "pytorch"
    for key in ("params", "macs_fvcore", "macs_attention", "macs_ptflops"):
        assert int(flat["adcsr"][key]) == a[key], key
    assert rows["lanczos"]["macs_fvcore"] is None and flat["lanczos"]["macs_fvcore"] == ""


def test_latency_statistics_come_from_the_timed_runs(profiled):
    """Mutations caught: p10/p90 swapped; spread not IQR / median."""
    rows, _ = profiled
    for r in rows.values():
        runs = sorted(r["latency_runs_s"])
        assert r["latency_runs"] == len(runs) == 4 and r["warmup_runs"] == 1
        assert r["latency_median_s"] == pytest.approx(statistics.median(runs))
        assert runs[0] <= r["latency_p10_s"] <= r["latency_median_s"] <= r["latency_p90_s"]
        assert r["latency_p90_s"] <= runs[-1]
        q = statistics.quantiles(runs, n=4, method="inclusive")
        assert r["latency_iqr_s"] == pytest.approx(q[2] - q[0])
        assert r["latency_spread"] == pytest.approx(r["latency_iqr_s"] / r["latency_median_s"])
        assert r["latency_unreliable"] == (r["latency_spread"] > 0.2)
        assert r["timer"] == "perf_counter" and r["memory_kind"] == "cpu_peak_rss"
        assert r["peak_memory_bytes"] >= r["baseline_memory_bytes"] > 0


def test_ratios_are_against_the_reference_row(profiled):
    """Mutation caught: ratios inverted (reference / method)."""
    rows, _ = profiled
    ref, a = rows["lanczos"], rows["adcsr"]
    assert a["reference"] == ref["reference"] == "lanczos"
    assert ref["latency_median_s_ratio"] == 1.0
    want = a["latency_median_s"] / ref["latency_median_s"]
    assert a["latency_median_s_ratio"] == pytest.approx(want)
    assert a["params_ratio"] is None and a["macs_fvcore_ratio"] is None  # lanczos has no net
