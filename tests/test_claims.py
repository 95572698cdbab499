"""Documented claims without a test of their own: HARNESS_WEIGHTS deriving the library folders
(in a fresh process), `weights import` of a folder with nothing to import, the manifest's fields
and hashes, the `+dirty` commit marker, per_image.csv order over several datasets, NaN values
reported as missing."""

import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness.imageio import write_png


def _pairs(root, seed, names=("b", "a")):
    rng = np.random.default_rng(seed)
    for n in names:
        write_png(root / "LR" / f"{n}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        write_png(root / "HR" / f"{n}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return root


# ----------------------------------------------------------------------------- weights folders

_PROBE = """
import json, os, sys
from harness.cli import main
main(["list", "metrics"])
import huggingface_hub.constants as hf, torch.hub
print(json.dumps({"torch_hub": torch.hub.get_dir(), "hf_cache": hf.HF_HUB_CACHE,
                  "offline": hf.HF_HUB_OFFLINE, "hf_offline_env": os.environ["HF_HUB_OFFLINE"]}))
"""


def _probe(*envs):
    """One fresh interpreter per environment, run side by side; their answers in order."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TORCH_HOME", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE",
                          "XDG_CACHE_HOME")}  # fmt: skip
    pipe = subprocess.PIPE
    procs = [subprocess.Popen([sys.executable, "-c", _PROBE], env=clean | env, text=True,
                              stdout=pipe, stderr=pipe) for env in envs]  # fmt: skip
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        answers.append(json.loads(out.strip().splitlines()[-1]))
    return answers


def test_harness_weights_sets_the_library_folders_in_a_fresh_process(tmp_path):
    """Without conftest's settings: HARNESS_WEIGHTS alone puts torch hub and the Hugging Face
    cache inside it, offline, as the libraries see them after the CLI started; an explicit
    TORCH_HOME wins. Mutations caught: configure_environment not called by main (or after
    huggingface_hub is imported); TORCH_HOME overwritten; HF_HUB_OFFLINE not set."""
    root, mine = tmp_path / "w", tmp_path / "mine"
    got, explicit = _probe(
        {"HARNESS_WEIGHTS": str(root)}, {"HARNESS_WEIGHTS": str(root), "TORCH_HOME": str(mine)}
    )
    assert got["torch_hub"] == str(root / "torch" / "hub")
    assert got["hf_cache"] == str(root / "huggingface" / "hub")
    assert got["offline"] is True and got["hf_offline_env"] == "1"
    assert explicit["torch_hub"] == str(mine / "hub")


def test_weights_import_of_a_folder_with_nothing_to_import_fails(tmp_path, cli, capsys):
    """Mutation caught: the import reporting success (exit 0) when it copied nothing."""
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "unrelated.txt").write_text("x")
    assert cli("weights", "import", tmp_path / "downloads", "lpips") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "downloads: none of the 2 weight files is in this folder" in err[0]
    assert cli("weights", "import", tmp_path / "absent") == 2
    assert "absent: folder not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- run directory


@pytest.fixture(scope="module")
def two_sets(cache_dir, tmp_path_factory):
    """lanczos, bicubic over two folders given as zeta,alpha (images b, a in each)."""
    from harness.cli import main

    tmp = tmp_path_factory.mktemp("claims")
    zeta, alpha = _pairs(tmp / "zeta", 1), _pairs(tmp / "alpha", 2)
    out = tmp / "run"
    assert main(["run", "--methods", "lanczos,bicubic", "--datasets", f"{zeta},{alpha}",
                 "--out", str(out), "profile.enabled=false"]) == 0  # fmt: skip
    return out, {"zeta": zeta, "alpha": alpha}


def test_per_image_order_is_datasets_then_methods_then_images(two_sets):
    """Datasets and methods in the order requested, images sorted by name (ARCHITECTURE.md).
    Mutation caught: rows in journal (scoring) order, not the groups' order."""
    out, _ = two_sets
    with open(out / "per_image.csv") as f:
        rows = [(r["dataset"], r["method"], r["image"]) for r in csv.DictReader(f)]
    assert rows == [(d, m, i) for d in ("zeta", "alpha") for m in ("lanczos", "bicubic")
                    for i in ("a", "b")]  # fmt: skip


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_fields_and_file_hashes(two_sets):
    """Every field ARCHITECTURE.md lists, with per-file sha256 of LR and HR as on disk.
    Mutations caught: a file's LR hash taken from HR; the adapter version or weights digest
    missing from a method entry; the commit without its dirty marker."""
    from harness.envinfo import git_commit
    from harness.methods.classical import Bicubic

    out, roots = two_sets
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema"] == "harness.manifest/1" and m["command"] == "run"
    for key in ("harness_version", "config_hash", "seed", "dtype", "started", "finished"):
        assert m[key] is not None, key
    env = m["environment"]
    assert set(env) >= {"python", "platform", "packages", "git_commit", "device"}
    assert set(env["packages"]) >= {"torch", "torchvision", "pyiqa", "diffusers", "numpy",
                                    "pillow", "scipy", "scikit-image", "hydra-core"}  # fmt: skip
    assert set(env["device"]) >= {"type", "name", "torch_threads"}  # + cuda on a GPU
    assert env["git_commit"] == git_commit()
    for name, root in roots.items():
        d = m["datasets"][name]
        assert (d["n_images"], d["scale"], d["conversions"]) == (2, 4, {})
        assert d["lr_dir"] == str((root / "LR").resolve())
        assert d["hr_dir"] == str((root / "HR").resolve())
        assert d["files"] == [
            {"name": n, "lr_sha256": _sha(root / "LR" / f"{n}.png"),
             "hr_sha256": _sha(root / "HR" / f"{n}.png")} for n in ("a", "b")
        ]  # fmt: skip
    b = m["methods"]["bicubic"]
    assert b["adapter_version"] == Bicubic.version and b["weights_digest"] == ""
    assert b["card"]["name"] == "bicubic" and set(b["sr_cache"]) == {"zeta", "alpha"}


def test_git_commit_marks_uncommitted_changes(tmp_path, monkeypatch):
    """'+dirty' exactly when the source tree has uncommitted changes. Mutation caught: the
    status check dropped."""
    import harness.envinfo as envinfo

    repo = tmp_path / "src"
    (repo / "harness").mkdir(parents=True)
    source = repo / "harness" / "envinfo.py"
    source.write_text("# a copy\n")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                               "user.email=t@t", *args], check=True, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    head = git("rev-parse", "HEAD")
    monkeypatch.setattr(envinfo, "__file__", str(source))
    assert envinfo.git_commit() == head
    source.write_text("# changed\n")
    assert envinfo.git_commit() == head + "+dirty"


@pytest.mark.parametrize("name", ["nan", "true", "null", "inf"])
def test_a_folder_named_like_a_yaml_scalar_is_a_dataset(tmp_path, cli, capsys, name):
    """--datasets PATH whose folder is called nan/true/null/inf: a dataset of that name (it
    was parsed as a float/bool: a traceback for nan). Mutation caught: names unquoted in the
    datasets override."""
    root = _pairs(tmp_path / name, 3)
    assert cli("run", "--methods", "bicubic", "--datasets", root, "--dry-run") == 0
    printed = capsys.readouterr().out
    assert f"datasets:\n- {name}\n" in printed or f"datasets:\n- '{name}'\n" in printed


# ----------------------------------------------------------------------------- missing values


def test_nan_metric_values_are_reported_missing(cache_dir, tmp_path, cli, monkeypatch):
    """A metric returning NaN for one image: an empty cell, a reason, no mean, `n/a` in the
    report; never a number. Mutation caught: the NaN check in MetricSuite.score dropped."""
    import harness.metrics.suite as suite

    build = suite._build

    def nan_for_one(spec, device):
        scorer = build(spec, device)
        if spec.name != "psnr":
            return scorer

        def score(sr, hr):
            from harness.metrics.images import ImageBatch

            v = scorer(sr, hr).clone()
            if ImageBatch.of(sr).tensor().mean() > 0.5:  # image "hi" only
                v[:] = float("nan")
            return v

        return score

    monkeypatch.setattr(suite, "_build", nan_for_one)
    root = tmp_path / "photos"
    write_png(root / "LR" / "hi.png", np.full((8, 8, 3), 200, np.uint8))
    write_png(root / "LR" / "lo.png", np.full((8, 8, 3), 50, np.uint8))
    for n, v in (("hi", 190), ("lo", 60)):
        write_png(root / "HR" / f"{n}.png", np.full((32, 32, 3), v, np.uint8))
    out = tmp_path / "run"
    assert cli("run", "--methods", "bicubic", "--datasets", root, "--out", out,
               "profile.enabled=false", "metric_workers=1") == 0  # fmt: skip
    with open(out / "per_image.csv") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert rows["hi"]["psnr"] == "" and float(rows["lo"]["psnr"]) > 0
    assert rows["hi"]["ssim"] != ""  # the other metric keeps its value
    journal = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    hi = next(r for r in journal if r["image"] == "hi")
    assert hi["values"]["psnr"] is None and hi["missing"]["psnr"] == "psnr returned NaN"
    [result] = json.loads((out / "summary.json").read_text())["results"]
    psnr = result["metrics"]["psnr"]
    assert psnr["mean"] is None and psnr["missing"] == 1 and "NaN" in psnr["reason"]
    assert "n/a" in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- FID end to end


@pytest.mark.slow  # ~1.4 GB of fabricated metric weights
def test_fid_through_harness_run_end_to_end(fabricated_weights, cache_dir, tmp_path, cli, capsys):
    """FID is a set metric: `harness run --metrics psnr,fid` scores it once per (method,
    dataset) on the cached SR folder against the HR folder, writes it to summary.json (not
    per_image.csv), equals a direct MetricSuite.score_sets on the same folders, and a rerun
    reuses it from set_scores.json."""
    from harness.metrics import MetricSuite

    out = tmp_path / "run"
    argv = ("run", "--methods", "bicubic", "--metrics", "psnr,fid", "--out", out,
            "profile.enabled=false")  # fmt: skip
    assert cli(*argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    [row] = [r for r in summary["results"] if r["method"] == "bicubic"]
    fid = row["metrics"]["fid"]["mean"]
    assert np.isfinite(fid) and fid > 0
    with open(out / "per_image.csv") as f:
        header = next(csv.reader(f))
    assert "fid" not in header and "psnr" in header
    [(key, saved)] = json.loads((out / "set_scores.json").read_text()).items()
    assert key.startswith("bicubic|embedded|") and saved["values"]["fid"] == fid
    methods = json.loads((out / "manifest.json").read_text())["methods"]
    sr_dir = methods["bicubic"]["sr_cache"]["embedded"]
    direct = MetricSuite(["fid"]).score_sets(sr_dir, cache_dir / "datasets/embedded-v1/HR")
    assert fid == direct.values["fid"]
    capsys.readouterr()
    assert cli(*argv) == 0
    assert "fid reused from set_scores.json" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["results"] == summary["results"]
