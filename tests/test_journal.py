"""The journal (ARCHITECTURE.md "Run directory"): a rerun scores only images whose row is absent,
whose SR key changed, or which lack a requested metric; ``set_scores.json`` is reused on resume.

The metric stage runs against a counting stand-in for the metric suite (real PNGs, a real
``RunStore``), so each test sees exactly which images and sets were scored again.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.evaluate import Item
from harness.imageio import read_rgb, to_tensor, write_png
from harness.metrics import Score
from harness.runner import Group, _score_groups
from harness.store import Row, RunStore

IMAGES = ("a", "b", "c")


class CountingSuite:
    """Per-image metrics give the SR mean (distinct per image); ``fid`` is a set metric."""

    device = torch.device("cpu")
    runs_networks = False

    def __init__(self, names):
        self.specs = [SimpleNamespace(name=n, per="set" if n == "fid" else "image") for n in names]
        self.scored: list[float] = []  # the SR means of the images scored
        self.set_calls = 0

    @property
    def names(self):
        return [s.name for s in self.specs]

    @property
    def image_names(self):
        return [s.name for s in self.specs if s.per == "image"]

    def score(self, sr, hr):
        out = []
        for x in sr.tensor():
            self.scored.append(float(x.mean()))
            out.append(Score({n: float(x.mean()) for n in self.image_names}, {}))
        return out

    def score_sets(self, sr_dir, hr_dir):
        self.set_calls += 1
        return Score({"fid": 12.5 + self.set_calls}, {})


@pytest.fixture
def images(tmp_path):
    """SR and HR PNGs of three images with different means: name -> SR mean."""
    means = {}
    for i, n in enumerate(IMAGES):
        sr = np.full((8, 8, 3), 40 * (i + 1), np.uint8)
        write_png(tmp_path / "sr" / f"{n}.png", sr)
        write_png(tmp_path / "hr" / f"{n}.png", sr)
        means[n] = float(to_tensor(sr)[0].mean())  # as the suite computes it
    return means


def _group(tmp_path, key, metrics):
    items = [Item(n, tmp_path / "sr" / f"{n}.png", tmp_path / "hr" / f"{n}.png") for n in IMAGES]
    return Group("m", "d", items, key, metrics, tmp_path / "sr", tmp_path / "hr")


def _score(tmp_path, suite, key, force=False):
    store = RunStore(tmp_path / "run")  # a new store object: as a rerun opens it
    store.path.mkdir(exist_ok=True)
    return _score_groups(store, suite, [_group(tmp_path, key, suite.names)], force, 1, 1)


def _journal(tmp_path, rows):
    (tmp_path / "run").mkdir(exist_ok=True)
    RunStore(tmp_path / "run").append(rows)


def test_only_images_lacking_a_requested_metric_are_scored_again(tmp_path, images):
    """Mutation caught: the 'lacks a requested metric' test dropped (c keeps no SSIM)."""
    _journal(tmp_path, [
        Row("m", "d", "a", "K", {"psnr": 1.0, "ssim": 2.0}),
        Row("m", "d", "b", "K", {"psnr": 3.0, "ssim": 4.0}),
        Row("m", "d", "c", "K", {"psnr": 5.0}),
    ])  # fmt: skip
    suite = CountingSuite(["psnr", "ssim"])
    rows, _ = _score(tmp_path, suite, "K")
    assert suite.scored == [images["c"]]  # c only, once
    assert [r.values for r in rows] == [
        {"psnr": 1.0, "ssim": 2.0},
        {"psnr": 3.0, "ssim": 4.0},
        {"psnr": images["c"], "ssim": images["c"]},
    ]
    suite = CountingSuite(["psnr"])  # a subset of what is journaled: nothing to score
    _score(tmp_path, suite, "K")
    assert suite.scored == []


def test_a_changed_sr_key_rescores_every_image(tmp_path, images):
    """Mutation caught: rows reused whatever their ``sr_key``."""
    _journal(tmp_path, [Row("m", "d", n, "OLD", {"psnr": 9.0}) for n in IMAGES])
    suite = CountingSuite(["psnr"])
    rows, _ = _score(tmp_path, suite, "NEW")
    assert sorted(suite.scored) == sorted(images.values())
    assert [r.sr_key for r in rows] == ["NEW"] * 3
    assert [r.values["psnr"] for r in rows] == [images[n] for n in IMAGES]
    suite = CountingSuite(["psnr"])
    _score(tmp_path, suite, "NEW")  # journaled under the new key now
    assert suite.scored == []


def test_force_rescores_everything(tmp_path, images):
    """Mutation caught: ``--force`` keeping the journal."""
    _journal(tmp_path, [Row("m", "d", n, "K", {"psnr": 9.0}) for n in IMAGES])
    suite = CountingSuite(["psnr"])
    _score(tmp_path, suite, "K", force=True)
    assert len(suite.scored) == 3


def test_set_scores_are_reused_on_resume(tmp_path, images):
    """FID is computed once per (method, dataset, SR key): a rerun reads ``set_scores.json``;
    a new SR key or ``--force`` computes it again. Mutation caught: set_scores.json not read."""
    suite = CountingSuite(["psnr", "fid"])
    _, sets = _score(tmp_path, suite, "K")
    assert suite.set_calls == 1 and sets[("m", "d")].values == {"fid": 13.5}
    saved = json.loads((tmp_path / "run" / "set_scores.json").read_text())
    assert saved == {"m|d|K": {"values": {"fid": 13.5}, "missing": {}}}

    suite = CountingSuite(["psnr", "fid"])
    _, sets = _score(tmp_path, suite, "K")
    assert suite.set_calls == 0 and sets[("m", "d")].values == {"fid": 13.5}
    assert suite.scored == []  # and the per-image rows came from the journal

    suite = CountingSuite(["psnr", "fid"])
    _score(tmp_path, suite, "K2")
    assert suite.set_calls == 1
    suite = CountingSuite(["psnr", "fid"])
    _score(tmp_path, suite, "K", force=True)
    assert suite.set_calls == 1


def test_a_changed_lr_image_rescores_in_the_same_run_directory(cache_dir, tmp_path, cli, capsys):
    """End to end: one LR byte changed, the same command into the same directory: that
    dataset's SR images are computed again and its rows rescored, the table shows the new value.
    Mutation caught: journal rows reused whatever their ``sr_key``."""
    rng = np.random.default_rng(31)
    root = tmp_path / "photos"
    for n in ("a", "b"):
        write_png(root / "LR" / f"{n}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        write_png(root / "HR" / f"{n}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    out = tmp_path / "run"
    argv = ("run", "--methods", "bicubic", "--datasets", root, "--out", out, "--metrics", "psnr")
    assert cli(*argv, "profile.enabled=false") == 0
    before = (out / "per_image.csv").read_text().splitlines()
    lr = read_rgb(root / "LR" / "b.png")
    lr[0, 0, 0] ^= 0x40
    write_png(root / "LR" / "b.png", lr)
    capsys.readouterr()
    assert cli(*argv, "profile.enabled=false") == 0
    after = (out / "per_image.csv").read_text().splitlines()
    assert after[:2] == before[:2] and after[2] != before[2]  # header, a unchanged; b rescored
    assert "already scored" not in capsys.readouterr().err
    assert len((out / "rows.jsonl").read_text().splitlines()) == 4
