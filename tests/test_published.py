"""Reproduced vs published (``reports/published.py``): the data file, when a mean is compared
with a paper's printed number and when it is not (subset, protocol, missing), the ✓ of a
reproduction to the last printed digit, and the report files. The real case: OSEDiff's own
DRealSR outputs in ../shared reproduce its published PSNR and SSIM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.imageio import write_png
from harness.reports import markdown, published
from harness.reports.load import load_runs
from harness.reports.tables import build


def test_the_data_file_names_real_methods_datasets_and_the_harness_protocol():
    """Every entry names a registered method and a named dataset, and every protocol is what
    the harness computes by default: a change to a metric's options fails here first."""
    from harness.config import group_options
    from harness.methods import METHODS
    from harness.metrics import METRICS

    data = published.load()
    names = {published.dataset_key(n) for n in group_options("dataset")}
    for entry in data["values"]:
        assert entry["method"] in METHODS, entry["method"]
        assert published.dataset_key(entry["dataset"]) in names, entry["dataset"]
    for metric, want in data["protocol"].items():
        spec = METRICS.get(metric)
        assert spec.pyiqa_id == want["pyiqa_id"], metric
        assert {k: str(v) for k, v in spec.options.items()} == {
            k: str(v) for k, v in want["options"].items()
        }, metric


def test_values_must_be_quoted_as_printed(tmp_path):
    text = published.DATA.read_text().replace('psnr: "27.92"', "psnr: 27.90", 1)
    path = tmp_path / "published.yaml"
    path.write_text(text)
    with pytest.raises(
        HarnessError, match=r"published.yaml: osediff on drealsr: psnr must be quoted"
    ):
        published.load(path)


def _set(root, n, seed=0):
    """n 16x16 HR images and a noisy SR copy of each: (sr_dir, hr_dir)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        hr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        noise = rng.integers(-12, 13, hr.shape)
        write_png(root / "HR" / f"{i:03d}.png", hr)
        write_png(root / "sr" / f"{i:03d}.png", np.clip(hr + noise, 0, 255).astype(np.uint8))
    return root / "sr", root / "HR"


def _eval(cli, root, n, out, *extra):
    sr, hr = _set(root, n)
    assert cli("eval", "--sr", f"osediff={sr}", "--hr", hr, "--out", out, *extra) == 0
    return load_runs([out])


def _data(psnr: str, ssim: str) -> dict:
    data = published.load()
    data["values"] = [{"method": "osediff", "dataset": "drealsr", "source": "osediff",
                       "psnr": psnr, "ssim": ssim}]  # fmt: skip
    return data


def test_a_full_set_is_compared_and_a_reproduction_to_the_digit_is_ticked(tmp_path, cli):
    runs = _eval(cli, tmp_path / "DRealSR", 93, tmp_path / "o")
    report = build(runs)
    assert report.tables[0].dataset == "DRealSR"  # named after the folder, matched anyway
    mean = float(report.tables[0].cells.query("metric == 'psnr'")["mean"].iloc[0])
    printed = f"{mean:.2f}"
    off = f"{float(printed) + 0.01:.2f}"
    frame = published.compare(report, _data(printed, "0.5000"))
    psnr = frame.set_index("metric").loc["psnr"]
    assert psnr["compared"] and bool(psnr["matches"])
    assert psnr["delta"] == pytest.approx(mean - float(printed))
    frame = published.compare(report, _data(off, "0.5000"))
    psnr = frame.set_index("metric").loc["psnr"]
    assert psnr["compared"] and not bool(psnr["matches"])
    assert psnr["delta"] == pytest.approx(mean - float(off))
    text = markdown.published_section(frame)
    assert f"| osediff | PSNR | {mean:.3f} | {off} [a] |" in text
    assert "✓" not in text.split("\n- ")[0].split("| PSNR |")[1].split("\n")[0]


def test_a_subset_or_another_protocol_is_listed_but_not_compared(tmp_path, cli):
    runs = _eval(cli, tmp_path / "DRealSR", 5, tmp_path / "o")
    frame = published.compare(build(runs))
    assert set(frame["metric"]) == {"psnr", "ssim"}  # only what the run computed
    assert not frame["compared"].any()
    assert (frame["reason"] == "5 images; the paper's set has 93").all()

    out = tmp_path / "p"
    _eval(cli, tmp_path / "full" / "DRealSR", 93, out)
    summary = json.loads((out / "summary.json").read_text())
    for spec in summary["metrics"]:
        if spec["name"] == "ssim":
            spec["options"]["color_space"] = "yiq"  # pyiqa's default, not the papers'
    (out / "summary.json").write_text(json.dumps(summary))
    frame = published.compare(build(load_runs([out]))).set_index("metric")
    assert frame.loc["psnr", "compared"] and not frame.loc["ssim", "compared"]
    assert frame.loc["ssim", "reason"] == "option color_space is 'yiq', the paper used 'ycbcr'"


def test_report_files_and_the_option_to_leave_it_out(tmp_path, cli, capsys):
    out = tmp_path / "o"
    _eval(cli, tmp_path / "DRealSR", 93, out)
    capsys.readouterr()
    assert cli("report", out) == 0
    assert "### DRealSR: reproduced vs published" in (out / "report.md").read_text()
    rows = pd.read_csv(out / "report_published.csv")
    assert list(rows.columns) == published.COLUMNS and len(rows) == 2
    (out / "report_published.csv").unlink()
    assert cli("report", out, "--no-published") == 0
    assert "reproduced vs published" not in (out / "report.md").read_text()
    assert not (out / "report_published.csv").exists()


@pytest.mark.shared
def test_osediff_outputs_reproduce_its_published_drealsr_row(drealsr, tmp_path, cli):
    """OSEDiff's released DRealSR outputs, scored by `harness eval`: PSNR and SSIM round to
    the paper's 27.92 and 0.7835."""
    out = tmp_path / "o"
    argv = ("eval", "--sr", f"osediff={drealsr / 'osediff'}", "--hr", drealsr / "HR",
            "--lr", drealsr / "LR", "--out", out)  # fmt: skip
    assert cli(*argv) == 0
    rows = pd.read_csv(out / "report_published.csv").set_index("metric")
    assert rows.loc["psnr", "published"] == 27.92 and rows.loc["ssim", "published"] == 0.7835
    assert rows["compared"].all() and rows["matches"].all()
