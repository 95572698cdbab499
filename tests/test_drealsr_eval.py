"""`harness eval` reproduces OSEDiff's published per-image PSNR/SSIM on the real DRealSR pairs."""

import csv
import re

import pytest

LINE = re.compile(r"results_osediff/(\S+)\.png \| PSNR: ([\d.]+); SSIM: ([\d.]+);")


def _published(log_path):
    out = {}
    for line in log_path.read_text().splitlines():
        m = LINE.search(line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out


@pytest.mark.shared
def test_eval_matches_published_log(drealsr, tmp_path, cli):
    out = tmp_path / "ev"
    rc = cli(
        "eval",
        "--sr",
        str(drealsr / "osediff"),
        "--hr",
        str(drealsr / "HR"),
        "--metrics",
        "psnr,ssim",
        "--out",
        str(out),
    )
    assert rc == 0
    published = _published(drealsr / "osediff_metrics.log")
    assert len(published) == 93
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == sorted(published)
    for r in rows:
        psnr, ssim = published[r["image"]]
        assert abs(float(r["psnr"]) - psnr) < 1e-4, r["image"]
        assert abs(float(r["ssim"]) - ssim) < 1e-4, r["image"]
        assert r["method"] == "osediff" and r["dataset"] == "drealsr"
