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


def test_slow_warmup_calls_stay_out_of_the_timed_runs(monkeypatch):
    """Warm-up calls made slow on purpose (5 s each on a fake clock, as a first call that
    compiles or fills caches would be): no timed run and no run count sees them."""
    from harness.profiler import timing

    clock, calls = [0.0], []

    def fn():
        calls.append(1)
        clock[0] += 5.0 if len(calls) <= 3 else 0.01

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    fixed = measure(fn, torch.device("cpu"), runs=5, warmup=3)
    assert fixed.runs == pytest.approx([0.01] * 5) and fixed.median == pytest.approx(0.01)
    calls.clear()
    auto = measure(fn, torch.device("cpu"), warmup=3, max_time=0.5)  # count from the 1st run
    assert len(auto.runs) == timing.run_count(0.01, 3, 0.5, timing.MAX_RUNS) == 50
    assert max(auto.runs) == pytest.approx(0.01)


def test_quantiles_and_iqr():
    t = Timing([4.0, 1.0, 3.0, 2.0, 5.0], 0, "x", 0, "x", 0)
    assert t.median == 3.0
    assert t.quantile(0.25) == 2.0 and t.quantile(0.75) == 4.0 and t.iqr == 2.0
    assert t.quantile(0.1) == pytest.approx(1.4)


def test_profile_cli_writes_efficiency_table(tmp_path, cli, capsys):
    out = tmp_path / "p"
    rc = cli("profile", "--methods", "bicubic,adcsr", "--random-init", "--lr-size", "16",
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
        (["--methods", "bicubic", "--lr-size", "0"], "profile.lr_size=0 (--lr-size): must be >= 1"),
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


class _Clock:
    """A fake perf_counter: each call of the measured function advances it by a set duration,
    so the run count chosen from the time budget is deterministic."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self):
        return self.now

    def call(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


@pytest.fixture
def clock(monkeypatch):
    import harness.profiler.timing as timing

    def make(durations):
        c = _Clock(durations)
        monkeypatch.setattr(timing.time, "perf_counter", c.perf_counter)
        return c

    return make


def test_run_count_is_chosen_from_the_time_budget(clock):
    """Mutation caught: a fixed count (the old default of 10 whatever a call costs)."""
    cold = clock([4.0, 0.125])  # a cold first call does not size the count
    t = measure(cold.call, torch.device("cpu"), runs=None, warmup=1, min_runs=3, max_time=1.25)
    assert len(t.runs) == 10 and cold.calls == 11
    slow = clock([5.0])
    t = measure(slow.call, torch.device("cpu"), runs=None, warmup=1, min_runs=3, max_time=0.1)
    assert len(t.runs) == 3  # at least min_runs, however slow
    none = clock([0.125])
    t = measure(none.call, torch.device("cpu"), runs=None, warmup=0, min_runs=2, max_time=0.625)
    assert len(t.runs) == 5
    fixed = clock([0.01])
    assert len(measure(fixed.call, torch.device("cpu"), runs=4, warmup=0).runs) == 4


def test_measure_reports_progress_per_phase(clock):
    c = clock([0.25])  # exact in binary: 0.75 s of budget is 3 runs
    ticks = []
    measure(c.call, torch.device("cpu"), runs=None, warmup=2, min_runs=1, max_time=0.75,
            on_progress=lambda *a: ticks.append(a))  # fmt: skip
    assert ticks == [("warm-up", 1, 2), ("warm-up", 2, 2), ("timed", 1, 3), ("timed", 2, 3),
                     ("timed", 3, 3)]  # fmt: skip


def _efficiency_text(tmp_path, row) -> str:
    """The report of a profile directory holding ``row`` (through efficiency.csv)."""
    from harness.reports import Request, make_report
    from harness.store import RunStore

    store = RunStore(tmp_path)
    store.write_efficiency([row | {"device": "cpu", "dtype": "fp32"}], {"device": {"type": "cpu"}})
    return make_report(Request([tmp_path]))[0]


def test_unreliable_latency_is_flagged_in_the_table(clock, tmp_path):
    """IQR/median above profile.unreliable_spread marks the latency with a dagger."""
    from harness.methods.classical import Bicubic
    from harness.profiler import profile_method

    class Jittery(Bicubic):
        def upscale(self, lr):
            c.call()
            return super().upscale(lr)

    c = clock([0.01, 0.02, 0.03, 0.04, 0.05])
    row = profile_method(Jittery(), 8, torch.device("cpu"), torch.float32, runs=5, warmup=0,
                         unreliable_spread=0.2)  # fmt: skip
    assert row["latency_spread"] > 0.2 and row["latency_unreliable"] is True
    text = _efficiency_text(tmp_path / "a", row)
    assert "] † |" in text and "† latency unreliable" in text
    c = clock([0.01])
    row = profile_method(Jittery(), 8, torch.device("cpu"), torch.float32, runs=5, warmup=0)
    assert row["latency_unreliable"] is False
    assert "†" not in _efficiency_text(tmp_path / "b", row)
    assert c.calls == 5


def test_added_memory_excludes_what_ran_before(clock):
    """'Memory added' is the method's load plus its runs' peak, not the process RSS: memory
    taken by unrelated work between loading and profiling is not counted (mutation caught:
    reporting the absolute peak, or peak minus the RSS before the runs only)."""
    from harness.methods.classical import Bicubic
    from harness.profiler import load_measured, profile_method

    mib = 2**20

    class Heavy(Bicubic):
        def load(self, device, dtype, random_init=False):
            super().load(device, dtype, random_init)
            self.weights = torch.ones(96 * mib // 4)  # 96 MiB, touched

    m = Heavy()
    load_measured(m, torch.device("cpu"), torch.float32)
    unrelated = torch.ones(192 * mib // 4)  # e.g. metric networks loaded afterwards
    row = profile_method(m, 8, torch.device("cpu"), torch.float32, runs=2, warmup=0)
    assert 90 * mib < row["added_memory_bytes"] < 110 * mib
    assert row["peak_memory_bytes"] > row["added_memory_bytes"] + unrelated.nbytes
    del unrelated


def test_fast_mode_has_columns_of_its_own(tmp_path):
    """`--fast` times AdcSR's fast mode into fast_* columns and measures how far its output
    moves; the official columns and the method's later outputs are the official mode's
    (mutations caught: set_fast not switching anything -- diff 0; not switching back)."""
    from harness.methods.adcsr import AdcSR
    from harness.methods.classical import Bicubic
    from harness.profiler import load_measured, profile_method

    m = AdcSR({"arch": "tiny"})
    load_measured(m, torch.device("cpu"), torch.float32, random_init=True)
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = m.upscale(lr)
    row = profile_method(m, 16, torch.device("cpu"), torch.float32, runs=2, warmup=0,
                         random_init=True, counters=(), fast=True)  # fmt: skip
    with torch.inference_mode():
        assert torch.equal(m.upscale(lr), before)  # back in the official mode
        m.set_fast(True)
        fast = m.upscale(lr)
        m.set_fast(False)
    levels = int(((before * 255).round() - (fast * 255).round()).abs().max())
    assert row["fast_max_diff_levels"] == levels > 0  # bf16 moves some pixel by a level or more
    assert row["fast_latency_runs"] == 2 and row["fast_speedup"] > 0
    assert "bf16" in row["fast_mode"]
    bicubic = profile_method(Bicubic(), 16, torch.device("cpu"), torch.float32, runs=2,
                             warmup=0, counters=(), fast=True)  # fmt: skip
    assert bicubic["fast_latency_median_s"] is None and bicubic["fast_max_diff_levels"] is None
    text = re.sub(r" +", " ", _efficiency_text(tmp_path, row))  # through efficiency.csv
    assert f"| {row['fast_max_diff_levels']} |" in text and "Fast latency (s)" in text
    assert "Fast columns: not the official configuration" in text


def test_fast_flag_sets_the_profile_option(cli, capsys):
    assert cli("profile", "--methods", "adcsr", "--fast", "--dry-run") == 0
    assert "  fast: true" in capsys.readouterr().out
