"""harness gate: regressions fail (exit 1), the baseline itself passes, latency only compares
like with like. Runs are real (the session's bicubic + Lanczos embedded run; the committed
baseline against the full default run, slow); regressions are made by editing a copy of its files,
as a broken commit would change them."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from harness.gate import baseline as bl

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "baselines" / "gate-default-run.json"
ADCSR_TINY = ROOT / "benchmarks" / "baselines" / "gate-adcsr-tiny.json"


@pytest.fixture
def run_copy(classic_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(classic_run, out)
    return out


@pytest.fixture
def baseline(run_copy, tmp_path, cli, capsys) -> Path:
    path = tmp_path / "baseline.json"
    assert cli("gate", "--update", "--baseline", path, run_copy) == 0
    capsys.readouterr()
    return path


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _result(summary: dict, method: str) -> dict:
    return next(r for r in summary["results"] if r["method"] == method)


def _rescore(run: Path, method: str, metric: str, change, reason: str | None = None) -> None:
    """Change the per-image values of ``method``'s ``metric`` as a broken commit would (None:
    missing, with ``reason``), and summary.json with them: the gate refuses a summary.json
    that per_image.csv does not back."""
    path = run / "per_image.csv"
    rows = list(csv.reader(path.open(newline="")))
    col = rows[0].index(metric)
    for i, r in enumerate(x for x in rows[1:] if x[0] == method):
        v = change(i, float(r[col]))
        r[col] = "" if v is None else repr(float(v))
    path.write_text("".join(",".join(r) + "\n" for r in rows))
    vals = [None if r[col] == "" else float(r[col]) for r in rows[1:] if r[0] == method]
    good = [v for v in vals if v is not None]
    mean = math.fsum(good) / len(good)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in good) / len(good))
    cell = {"n": len(good), "missing": len(vals) - len(good), "mean": mean, "std": std}
    if len(good) < len(vals):
        cell |= {"mean": None, "std": None, "reason": reason, "cause": reason}
    _edit(run / "summary.json", lambda s: _result(s, method)["metrics"][metric].update(cell))


@pytest.mark.slow
def test_committed_baseline_passes_on_the_default_run(default_run, cli, capsys):
    assert cli("gate", "--baseline", COMMITTED, default_run) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out
    # the committed baseline gates real values: every metric of every method, params exactly
    assert out.count("ok       ") >= 4 + 2
    assert "not gated by this baseline" in out  # shared CPU runners: latency is not a gate


def test_baseline_itself_passes(run_copy, baseline, cli, capsys):
    assert cli("gate", "--baseline", baseline, run_copy) == 0
    assert capsys.readouterr().out.rstrip().endswith("ok")


def test_quality_regression_fails_and_names_the_value(run_copy, baseline, cli, capsys):
    # lanczos SSIM drops by 1e-4: invisible in most tables, twice the default tolerance
    _rescore(run_copy, "lanczos", "ssim", lambda i, v: v - 1e-4)
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.lstrip().startswith("FAIL"))
    assert "lanczos / embedded / ssim" in line and "Δ -0.0001" in line
    assert out.rstrip().splitlines()[-1].startswith("FAIL: 1 failed")


def test_change_within_tolerance_passes_and_improvement_is_reported(
    run_copy, baseline, cli, capsys
):
    _rescore(run_copy, "bicubic", "psnr", lambda i, v: v - 0.004)  # tolerance 0.005
    _rescore(run_copy, "lanczos", "psnr", lambda i, v: v + 0.5)
    assert cli("gate", "--baseline", baseline, run_copy) == 0
    out = capsys.readouterr().out
    assert "improved lanczos / embedded / psnr" in out and "--update" in out


def test_lower_is_better_direction(run_copy, tmp_path, cli, capsys):
    """For a lower-is-better metric a rise is the regression (LPIPS, NIQE, FID...)."""
    _edit(
        run_copy / "summary.json",
        lambda s: [m.update(lower_better=True) for m in s["metrics"] if m["name"] == "psnr"],
    )
    path = tmp_path / "b.json"
    assert cli("gate", "--update", "--baseline", path, run_copy) == 0
    _rescore(run_copy, "bicubic", "psnr", lambda i, v: 99.0)
    capsys.readouterr()
    assert cli("gate", "--baseline", path, run_copy) == 1
    assert "FAIL     bicubic / embedded / psnr ↓" in capsys.readouterr().out


def test_missing_value_fails_with_its_reason(run_copy, baseline, cli, capsys):
    reason = "1 of 6 images missing: weights absent"
    _rescore(run_copy, "bicubic", "psnr", lambda i, v: None if i == 0 else v, reason)
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    assert "value missing: 1 of 6 images missing" in capsys.readouterr().out


def test_method_absent_from_run_fails(run_copy, baseline, cli, capsys):
    _edit(
        run_copy / "summary.json",
        lambda s: s.update(results=[r for r in s["results"] if r["method"] != "lanczos"]),
    )
    path = run_copy / "per_image.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(x for x in lines if not x.startswith("lanczos,")))
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    assert "lanczos / embedded" in capsys.readouterr().out


def test_metric_settings_change_fails(run_copy, baseline, cli, capsys):
    _edit(run_copy / "summary.json", lambda s: s["metrics"][1]["options"].update(color_space="yiq"))
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    out = capsys.readouterr().out
    assert "metric ssim" in out and "'yiq'" in out


def test_dataset_hash_change_fails(run_copy, baseline, cli, capsys):
    _edit(
        run_copy / "manifest.json",
        lambda m: m["datasets"]["embedded"].update(manifest_hash="0" * 64),
    )
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    assert "dataset manifest hash changed" in capsys.readouterr().out


def _with_macs(run_dir: Path, macs: int) -> None:
    def change(e):
        for row in e["rows"]:
            row.update(params=1_752_339, macs_fvcore=macs, macs_fvcore_plus_attention=macs + 10)

    _edit(run_dir / "efficiency.json", change)


def test_macs_change_fails(run_copy, tmp_path, cli, capsys):
    _with_macs(run_copy, 84_269_184)
    path = tmp_path / "b.json"
    assert cli("gate", "--update", "--baseline", path, run_copy) == 0
    capsys.readouterr()
    assert cli("gate", "--baseline", path, run_copy) == 0
    _with_macs(run_copy, 84_269_185)  # one multiply-add more
    assert cli("gate", "--baseline", path, run_copy) == 1
    out = capsys.readouterr().out
    assert "FAIL     bicubic / macs_fvcore " in out and "+1 = " in out


def test_params_change_fails(run_copy, baseline, cli, capsys):
    _edit(run_copy / "efficiency.json", lambda e: e["rows"][0].update(params=1))
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    assert "FAIL     bicubic / params" in capsys.readouterr().out


def test_latency_same_device_is_gated(run_copy, baseline, cli, capsys):
    _edit(
        run_copy / "efficiency.json",
        lambda e: e["rows"][0].update(latency_median_s=e["rows"][0]["latency_median_s"] * 1.5),
    )
    assert cli("gate", "--baseline", baseline, run_copy) == 1
    assert "FAIL     bicubic / latency_median_s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change",
    [{"device": "NVIDIA H100 80GB HBM3"}, {"dtype": "float16"}],
    ids=["other-device", "other-dtype"],
)
def test_latency_across_devices_is_skipped_and_said(run_copy, baseline, cli, capsys, change):
    def slow_elsewhere(e):
        for row in e["rows"]:
            row.update(change, latency_median_s=row["latency_median_s"] * 10)

    _edit(run_copy / "efficiency.json", slow_elsewhere)
    n_methods = len(json.loads((run_copy / "efficiency.json").read_text())["rows"])
    assert cli("gate", "--baseline", baseline, run_copy) == 0
    out = capsys.readouterr().out
    skipped = [x for x in out.splitlines() if "latency_median_s" in x]
    assert len(skipped) == n_methods and all(x.lstrip().startswith("skipped") for x in skipped)
    assert "not comparable" in skipped[0] and next(iter(change.values())) in skipped[0]


def test_update_keeps_tolerances_and_flags_set_them(run_copy, baseline, cli, capsys):
    assert (
        cli(
            "gate",
            "--update",
            "--baseline",
            baseline,
            "--tolerance",
            "psnr=0.02",
            "--latency-tolerance",
            "none",
            run_copy,
        )
        == 0
    )
    data = bl.read(baseline)
    assert data["tolerances"]["metrics"]["psnr"] == 0.02
    assert data["tolerances"]["latency_relative"] is None
    assert cli("gate", "--update", "--baseline", baseline, run_copy) == 0
    data = bl.read(baseline)
    assert data["tolerances"]["metrics"] == {"psnr": 0.02, "ssim": 5e-05}
    assert data["tolerances"]["latency_relative"] is None
    assert data["schema"] == "harness.gate-baseline/1"


def test_markdown_diff(run_copy, baseline, tmp_path, cli, capsys):
    _edit(run_copy / "efficiency.json", lambda e: e["rows"][1].update(params=7))
    md = tmp_path / "gate.md"
    assert cli("gate", "--baseline", baseline, run_copy, "--markdown", md) == 1
    text = md.read_text()
    assert text.startswith("### Performance gate: FAIL")
    assert "| FAIL | efficiency | lanczos / params | 0 | 7 | must be equal |" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "harness.gate-baseline/0"}', "expected 'harness.gate-baseline/1'"),
        ("{not json", "not a valid baseline JSON"),
        (None, "baseline not found"),
    ],
)
def test_bad_baseline_is_a_one_line_error(run_copy, tmp_path, cli, capsys, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    assert cli("gate", "--baseline", path, run_copy) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unfinished_run_is_refused(run_copy, baseline, cli, capsys):
    _edit(run_copy / "manifest.json", lambda m: m.update(finished=None))
    assert cli("gate", "--baseline", baseline, run_copy) == 2
    assert "has not finished" in capsys.readouterr().err


@pytest.mark.slow
def test_committed_adcsr_tiny_baseline_gates_params_and_macs(cache_dir, tmp_path, cli, capsys):
    """The CI job's second gate: AdcSR's tiny architecture, random weights, MACs exact."""
    out = tmp_path / "prof"
    assert (
        cli(
            "profile",
            "--methods",
            "adcsr",
            "--random-init",
            "--lr-size",
            16,
            "--runs",
            1,
            "--warmup",
            0,
            "--out",
            out,
            "method.arch=tiny",
        )
        == 0
    )
    capsys.readouterr()
    assert cli("gate", "--baseline", ADCSR_TINY, out) == 0
    assert "ok       adcsr / macs_fvcore " in capsys.readouterr().out


def test_run_dir_defaults_to_the_baselines_own_run(
    run_copy, baseline, tmp_path, cli, capsys, monkeypatch
):
    """`harness gate` alone checks runs/<config hash> (where `harness run` writes by default)."""
    chash = bl.read(baseline)["source"]["config_hash"]
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run_copy, tmp_path / "runs" / chash[:12])
    assert cli("gate", "--baseline", baseline) == 0
    assert f"runs/{chash[:12]} against" in capsys.readouterr().out
