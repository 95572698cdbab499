"""The SR cache key (ARCHITECTURE.md "SR cache key", harness/cache.py): every input it names
forces recomputation when it changes; what it does not name is reused; a damaged cached image is
named in the error and `--force` writes it again.

One tiny dataset (two 8x8 LR images) and bicubic; each case is one more in-process run against
the same SR cache, compared with a first run of the unchanged configuration.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.imageio import read_rgb, write_png
from harness.methods.base import SRMethod
from harness.methods.classical import Bicubic


def _pairs(root, seed):
    rng = np.random.default_rng(seed)
    for n in ("a", "b"):
        write_png(root / "LR" / f"{n}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        write_png(root / "HR" / f"{n}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return root


def _run(cli, capsys, data, out, *extra) -> tuple[int, int]:
    """One run; returns (SR images reused, SR images computed) from its log."""
    capsys.readouterr()
    argv = ("run", "--methods", "bicubic", "--datasets", data, "--out", out)
    assert cli(*argv, "profile.enabled=false", *extra) == 0
    err = capsys.readouterr().err
    found = re.findall(r"bicubic on \w+: (\d+) SR images reused from cache, (\d+) to compute", err)
    assert len(found) == 1, err
    return int(found[0][0]), int(found[0][1])


def _sr_folder(out):
    manifest = json.loads((out / "manifest.json").read_text())
    [folder] = manifest["methods"]["bicubic"]["sr_cache"].values()
    return folder


@pytest.fixture(scope="module")
def base(cache_dir, tmp_path_factory):
    """A dataset of its own content (so its own cache folders), computed once: (root, run dir)."""
    from harness.cli import main

    tmp = tmp_path_factory.mktemp("cache-key")
    root, out = _pairs(tmp / "ck", seed=1414), tmp / "base"
    assert main(["run", "--methods", "bicubic", "--datasets", str(root), "--out", str(out),
                 "profile.enabled=false"]) == 0  # fmt: skip
    return root, out


@pytest.fixture
def data(base, tmp_path):
    """A copy of the base dataset (same names and bytes: the same key), free to change."""
    root = tmp_path / "ck"
    shutil.copytree(base[0], root)
    return root


def test_the_unchanged_config_reuses(data, tmp_path, cli, capsys):
    assert _run(cli, capsys, data, tmp_path / "again") == (2, 0)


def _neural_signature(monkeypatch):
    monkeypatch.setattr(Bicubic, "output_signature", SRMethod.output_signature)


def _stochastic(monkeypatch):
    """Bicubic declared stochastic (the key reads ``card.stochastic``), taking seeds it ignores."""
    monkeypatch.setattr(Bicubic, "card", dataclasses.replace(Bicubic.card, stochastic=True))
    plain = Bicubic.upscale
    monkeypatch.setattr(Bicubic, "upscale", lambda self, lr, seeds=None: plain(self, lr))


def _touch_one_lr_byte(root):
    lr = read_rgb(root / "LR" / "b.png")
    lr[3, 5, 1] ^= 1  # one 8-bit value of one LR image
    write_png(root / "LR" / "b.png", lr)


def _touch_one_hr_byte(root):
    hr = read_rgb(root / "HR" / "a.png")
    hr[0, 0, 0] ^= 1
    write_png(root / "HR" / "a.png", hr)


# (what changes, how: extra CLI arguments and/or a change made before the run)
IN_KEY = {
    "method config": (["method.bicubic.batch_size=2"], None),
    "weights digest": ([], lambda mp, root: mp.setattr(Bicubic, "weights_digest", lambda s: "f0")),
    "adapter version": ([], lambda mp, root: mp.setattr(Bicubic, "version", "2")),
    "dtype (neural signature)": (["--dtype", "fp16"], lambda mp, root: _neural_signature(mp)),
    "seed (stochastic method)": (["seed=3"], lambda mp, root: _stochastic(mp)),
    "one byte of one LR image": ([], lambda mp, root: _touch_one_lr_byte(root)),
    "one byte of one HR image (dataset manifest)": ([], lambda mp, root: _touch_one_hr_byte(root)),
}

NOT_IN_KEY = {
    "metric list": ["--metrics", "psnr"],
    "metric batch size": ["metric_batch_size=2"],
    "seed (deterministic method)": ["seed=5"],
    "dtype (Pillow baseline: empty signature)": ["--dtype", "fp16"],
    "profiler settings": ["profile.runs=2"],
    "strict": ["--strict"],
}


@pytest.mark.parametrize("case", list(IN_KEY))
def test_a_change_of_a_key_input_recomputes(case, base, data, tmp_path, cli, capsys, monkeypatch):
    """Mutations caught (each by its case): the config, weights digest, adapter version, output
    signature, seed or dataset manifest hash left out of ``sr_key_inputs``."""
    extra, change = IN_KEY[case]
    if change:
        change(monkeypatch, data)
    assert _run(cli, capsys, data, tmp_path / "changed", *extra) == (0, 2)
    assert _sr_folder(tmp_path / "changed") != _sr_folder(base[1])


@pytest.mark.parametrize("case", list(NOT_IN_KEY))
def test_a_change_outside_the_key_reuses(case, base, tmp_path, cli, capsys):
    """Mutation caught: the whole run config (or the dtype for Pillow baselines) in the key."""
    assert _run(cli, capsys, base[0], tmp_path / "other", *NOT_IN_KEY[case]) == (2, 0)
    assert _sr_folder(tmp_path / "other") == _sr_folder(base[1])


def test_key_json_records_the_inputs(base):
    """key.json in the cache folder holds exactly what is hashed (for humans)."""
    from harness.hashing import sha256_json

    folder = _sr_folder(base[1])
    inputs = json.loads((Path(folder) / "key.json").read_text())
    assert set(inputs) == {
        "method", "adapter_version", "config", "weights", "signature", "seed", "dataset"
    }  # fmt: skip
    assert inputs["seed"] is None and inputs["signature"] == {}  # deterministic Pillow method
    assert sha256_json(inputs)[:16] == Path(folder).name


def test_a_corrupt_cached_image_is_named_and_force_restores_it(cache_dir, tmp_path, cli, capsys):
    """A truncated cached PNG: a one-line error naming it; ``--force`` writes it again.
    Mutation caught: ``--force`` reusing cached files."""
    data = _pairs(tmp_path / "damaged", seed=2718)  # own cache folder: the damage stays here
    assert _run(cli, capsys, data, tmp_path / "first") == (0, 2)
    cached = Path(_sr_folder(tmp_path / "first")) / "a.png"
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 2])  # truncated, as by a full disk
    capsys.readouterr()
    argv = ("run", "--methods", "bicubic", "--datasets", data, "profile.enabled=false")
    assert cli(*argv, "--out", tmp_path / "bad") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(cached) in err[-1] and "Traceback" not in "\n".join(err)
    assert _run(cli, capsys, data, tmp_path / "forced", "--force") == (0, 2)
    assert cached.read_bytes() == good
    first = (tmp_path / "first" / "per_image.csv").read_text()
    assert (tmp_path / "forced" / "per_image.csv").read_text() == first
