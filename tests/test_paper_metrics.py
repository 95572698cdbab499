"""Every paper metric built through pyiqa's real loading path from fabricated weight files.

The weights are random (see harness/weights/fabricate.py), so only properties that hold for any
weights are checked: identity gives 0 for LPIPS/DISTS, noise increases them, values are finite,
bad or missing files are reported as documented.
"""

import csv
import re

import numpy as np
import pytest
import torch
from skimage import data

from harness.errors import HarnessError
from harness.imageio import to_tensor, write_png
from harness.metrics import MetricSuite

pytestmark = pytest.mark.slow

NR = ["niqe", "musiq", "clipiqa"]


def _img(noise: float, seed: int = 0, size: int = 256) -> torch.Tensor:
    hr = data.astronaut()[:size, 128 : 128 + size]
    rng = np.random.default_rng(seed)
    return to_tensor(np.clip(hr + rng.normal(0, noise, hr.shape), 0, 255).astype(np.uint8))


def test_full_reference_metrics_are_zero_on_identity_and_grow_with_noise(fabricated_weights):
    suite = MetricSuite(["lpips", "dists"])
    assert suite.unavailable == {}
    clean = _img(0)
    scores = [suite.score(_img(n), clean)[0].values for n in (0, 5, 25)]
    for name in ("lpips", "dists"):
        same, small, large = (s[name] for s in scores)
        assert abs(same) < 1e-6, name
        assert 0 < small < large, name


def test_no_reference_metrics_are_finite(fabricated_weights):
    suite = MetricSuite(NR)
    assert suite.unavailable == {}
    [score] = suite.score(_img(5), None)
    for name in NR:
        assert np.isfinite(score.values[name]), name


def test_maniqa_builds_from_the_hf_cache_layout(fabricated_weights):
    suite = MetricSuite(["maniqa-pipal"])
    assert suite.unavailable == {}
    [score] = suite.score(_img(5, size=224), None)
    assert np.isfinite(score.values["maniqa-pipal"])


def test_fid_between_folders(fabricated_weights, tmp_path):
    for i in range(4):
        write_png(tmp_path / "a" / f"{i}.png", (_img(0, size=128 + 32 * i)[0] * 255).byte()
                  .permute(1, 2, 0).numpy())  # fmt: skip
        write_png(tmp_path / "b" / f"{i}.png", (_img(40, i, 128 + 32 * i)[0] * 255).byte()
                  .permute(1, 2, 0).numpy())  # fmt: skip
    suite = MetricSuite(["fid"])
    same = suite.score_sets(tmp_path / "a", tmp_path / "a").values["fid"]
    diff = suite.score_sets(tmp_path / "a", tmp_path / "b").values["fid"]
    assert abs(same) < 1e-3 and diff > same


def test_wrong_hash_is_refused_with_a_clear_reason(fabricated_weights, tmp_path, monkeypatch):
    import shutil

    from harness.weights import load_manifest, path_of

    entry = load_manifest()["pyiqa-niqe"]
    src = path_of(entry)
    torch_home = tmp_path / "torch"
    shutil.copytree(src.parents[2], torch_home)  # the whole torch hub, then corrupt one file
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    bad = path_of(entry)
    bad.write_bytes(bad.read_bytes() + b"tampered")
    suite = MetricSuite(["niqe"])
    assert "differs from the manifest" in suite.unavailable["niqe"]
    assert "harness weights fetch niqe --force" in suite.unavailable["niqe"]
    with pytest.raises(HarnessError, match="--strict"):
        MetricSuite(["niqe"], strict=True)


def test_missing_file_is_a_documented_missing_entry(cache_dir, tmp_path, monkeypatch, cli, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    out = tmp_path / "run"
    assert cli("run", "--methods", "bicubic", "--metrics", "psnr,lpips", "--out", out,
               "profile.enabled=false") == 0  # fmt: skip
    text = capsys.readouterr().out
    assert re.search(r"^\| bicubic +\| ", text, re.M) and "n/a[1]" in text
    assert "missing alexnet-owt-7be5be79.pth" in text and "harness weights fetch lpips" in text
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["lpips"] == "" and r["psnr"] for r in rows)  # missing, never 0
    assert cli("run", "--methods", "bicubic", "--metrics", "psnr,lpips", "--out",
               tmp_path / "strict", "--strict") == 2  # fmt: skip
