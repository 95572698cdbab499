"""End-to-end CLI behaviour: the default run, listing, and one-line errors on bad input."""

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from harness.imageio import write_png


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_default_methods_include_a_learned_baseline():
    from harness.config import compose_run

    assert list(compose_run([]).methods) == ["bicubic", "lanczos", "realesrgan"]


def test_default_run_prints_table_and_writes_store(cache_dir, tmp_path, cli, capsys):
    # the default run without its learned method (a slow test runs all of it: test_realesrgan)
    out = tmp_path / "run"
    assert cli("run", "--methods", "bicubic,lanczos", "--out", out) == 0
    text = re.sub(r" +", " ", capsys.readouterr().out)  # Markdown column padding
    assert "| Method | PSNR ↑ | SSIM ↑ |" in text
    assert "| bicubic |" in text and "| lanczos |" in text
    for name in ("config.yaml", "manifest.json", "per_image.csv", "summary.json", "report.md"):
        assert (out / name).is_file(), name
    rows = _rows(out / "per_image.csv")
    assert list(rows[0]) == ["method", "dataset", "image", "psnr", "ssim"]
    assert len(rows) == 12 and {r["method"] for r in rows} == {"bicubic", "lanczos"}
    assert all(15 < float(r["psnr"]) < 60 and 0 < float(r["ssim"]) <= 1 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "harness.summary/1"
    bic = next(r for r in summary["results"] if r["method"] == "bicubic")
    mean = np.mean([float(r["psnr"]) for r in rows if r["method"] == "bicubic"])
    assert bic["metrics"]["psnr"]["mean"] == pytest.approx(mean, abs=1e-9)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("torch", "pyiqa", "diffusers"):
        assert key in manifest["environment"]["packages"]
    assert manifest["finished"] and manifest["seed"] == 0
    assert manifest["datasets"]["embedded"]["manifest_hash"]
    assert "embedded" in manifest["methods"]["bicubic"]["sr_cache"]


def test_rerun_reuses_cache_and_force_recomputes(cache_dir, tmp_path, cli, capsys):
    out = tmp_path / "run"
    quick = "profile.enabled=false"  # efficiency has its own tests
    assert cli("run", "--methods", "bicubic", "--out", out, quick) == 0
    capsys.readouterr()
    assert cli("run", "--methods", "bicubic", "--out", out, quick) == 0
    err = capsys.readouterr().err
    assert "6 SR images reused from cache, 0 to compute" in err
    assert "6 images already scored" in err
    first = (out / "per_image.csv").read_text()
    assert cli("run", "--methods", "bicubic", "--out", out, "--force", quick) == 0
    assert "0 SR images reused from cache, 6 to compute" in capsys.readouterr().err
    assert (out / "per_image.csv").read_text() == first


def test_list_commands(cli, capsys):
    assert cli("list", "methods") == 0
    assert "bicubic" in capsys.readouterr().out
    assert cli("list", "datasets") == 0
    text = capsys.readouterr().out
    assert all(
        n in text
        for n in (
            "embedded",
            "drealsr",
            "realsr",
            "div2k_val",
            "realset65",
            "realset80",
            "realsrset",
        )
    )
    assert cli("list", "metrics") == 0
    assert "ssim" in capsys.readouterr().out


def _unwrapped(text: str) -> str:
    return " ".join(text.split())


def test_list_methods_shows_deviations_in_aligned_columns(cli, capsys):
    """Mutations caught: deviations not listed; a fixed-width name column that a long name
    pushes out of line; a dataset description cut at the first comment line."""
    from harness.methods import METHODS

    assert cli("list", "methods") == 0
    text = capsys.readouterr().out
    for d in METHODS.get("adcsr").card.deviations:
        assert _unwrapped(d) in _unwrapped(text)
    lines = text.splitlines()
    col = lines[0].index("METHOD")
    assert all(line[col - 2 : col] == "  " for line in lines)
    starts = {line.index(":") - len(METHODS.get(line.split()[0]).card.display_name)
              for line in lines[1:] if line and not line.startswith(" ")}  # fmt: skip
    assert starts == {col}
    assert cli("list", "datasets") == 0
    text = capsys.readouterr().out
    assert "(datasets/embedded.py). Made offline, identical everywhere." in _unwrapped(text)
    assert cli("list", "metrics") == 0
    lines = capsys.readouterr().out.splitlines()
    col = lines[0].index("TYPE")
    assert {line[col : col + 2] for line in lines[1:] if not line.startswith(" ")} == {"FR", "NR"}


def test_top_level_help_is_for_users(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "super-resolution" in text and "harness run --datasets PATH" in text
    assert "argparse" not in text and "Hydra" not in text


def test_eval_failing_after_validation_leaves_nothing(pairs, cli, capsys):
    """A PNG whose header is fine but whose data is cut passes the header checks and fails
    while scoring: the run directory it created is removed (mutation caught: no discard)."""
    data = (pairs / "sr" / "a.png").read_bytes()
    (pairs / "sr" / "a.png").write_bytes(data[: len(data) // 2])
    assert _eval(cli, pairs) == 2
    assert "a.png: cannot decode image" in _error_line(capsys)
    assert not (pairs / "out").exists()


def test_run_help_explains_overrides(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "Hydra overrides" in text and "method.KEY=VALUE" in text


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--methods", "nope"], "unknown method 'nope'"),
        (["run", "--datasets", "nope"], "unknown dataset 'nope'"),
        (["run", "--metrics", "nope"], "unknown metric 'nope'"),
        (["run", "not_an_override"], "overrides look like key=value"),
        (["run", "seed=[unclosed"], "override seed=[unclosed:"),
        (["run", "--dtype", "fp16", "--device", "cpu", "dtype=fp8"], "dtype='fp8' (--dtype)"),
    ],
)
def test_bad_names_give_one_line_errors(cache_dir, tmp_path, cli, capsys, args, message):
    assert cli(*args, "--out", tmp_path / "o") == 2
    line = _error_line(capsys)
    assert line.startswith("harness: error:") and message in line
    assert not (tmp_path / "o" / "per_image.csv").exists()


def test_named_dataset_absent_says_where_to_get_it(tmp_path, cli, capsys):
    assert (
        cli("run", "--datasets", "drealsr", "--out", tmp_path / "o", f"data_root={tmp_path}") == 2
    )
    line = _error_line(capsys)
    assert "DRealSR/LR not found" in line and "huggingface.co/Guaishou74851/AdcSR" in line


@pytest.fixture
def pairs(tmp_path):
    """A small valid SR/HR/LR folder triple to break in different ways."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        hr = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        write_png(tmp_path / "hr" / f"{name}.png", hr)
        write_png(tmp_path / "sr" / f"{name}.png", hr // 2)
        write_png(tmp_path / "lr" / f"{name}.png", hr[::4, ::4])
    return tmp_path


def _eval(cli, p, *extra):
    return cli("eval", "--sr", p / "sr", "--hr", p / "hr", "--out", p / "out", *extra)


def test_eval_valid_folders(pairs, cli, capsys):
    assert _eval(cli, pairs, "--lr", pairs / "lr") == 0
    rows = _rows(pairs / "out" / "per_image.csv")
    assert [r["image"] for r in rows] == ["a", "b"] and rows[0]["method"] == "sr"


def test_eval_missing_folder(pairs, cli, capsys):
    assert cli("eval", "--sr", pairs / "nope", "--hr", pairs / "hr", "--out", pairs / "o") == 2
    assert "nope: folder not found" in _error_line(capsys)


def test_eval_empty_folder(pairs, cli, capsys):
    (pairs / "empty").mkdir()
    assert cli("eval", "--sr", pairs / "empty", "--hr", pairs / "hr", "--out", pairs / "o") == 2
    assert "empty: no images" in _error_line(capsys)


def test_eval_unmatched_names(pairs, cli, capsys):
    (pairs / "sr" / "b.png").rename(pairs / "sr" / "c.png")
    assert _eval(cli, pairs) == 2
    assert "c.png: no file named c.* in" in _error_line(capsys)
    assert not (pairs / "out" / "per_image.csv").exists()


def test_eval_size_mismatch(pairs, cli, capsys):
    write_png(pairs / "sr" / "b.png", np.zeros((32, 24, 3), np.uint8))
    assert _eval(cli, pairs) == 2
    assert "b.png: size 24x32 differs from HR" in _error_line(capsys)
    assert not (pairs / "out").exists()  # no config.yaml or manifest.json either


def test_eval_corrupt_png(pairs, cli, capsys):
    (pairs / "sr" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert _eval(cli, pairs) == 2
    assert "a.png: not a readable image" in _error_line(capsys)
    assert not (pairs / "out").exists()  # nothing left behind


def test_eval_converts_gray_rgba_and_16bit(pairs, cli, capsys):
    hr = np.asarray(Image.open(pairs / "hr" / "a.png"))
    Image.fromarray(hr[:, :, 0]).save(pairs / "sr" / "a.png")  # grayscale
    rgba = np.concatenate([hr, np.full(hr.shape[:2] + (1,), 9, np.uint8)], 2)
    Image.fromarray(rgba, mode="RGBA").save(pairs / "hr" / "a.png")
    Image.fromarray(hr[:, :, 1].astype(np.uint16) * 257).save(pairs / "sr" / "b.png")
    assert _eval(cli, pairs) == 0
    rows = _rows(pairs / "out" / "per_image.csv")
    assert all(r["psnr"] and r["ssim"] for r in rows)


def _paired_dataset(tmp_path, lr_size=(32, 32), hr_size=(128, 128)):
    rng = np.random.default_rng(1)
    write_png(tmp_path / "d" / "LR" / "x.png", rng.integers(0, 256, lr_size + (3,), np.uint8))
    write_png(tmp_path / "d" / "HR" / "x.png", rng.integers(0, 256, hr_size + (3,), np.uint8))
    return tmp_path / "d"


def test_run_on_folder_with_wrong_scale(tmp_path, cli, capsys):
    root = _paired_dataset(tmp_path, hr_size=(120, 128))
    assert cli("run", "--datasets", "drealsr", "--out", tmp_path / "o", f"dataset.root={root}") == 2
    assert "x.png: size 128x120 is not 4x the LR x.png (32x32)" in _error_line(capsys)


def test_run_on_custom_folder_via_override(cache_dir, tmp_path, cli, capsys):
    root = _paired_dataset(tmp_path)
    assert (
        cli(
            "run",
            "--datasets",
            "drealsr",
            "--methods",
            "bicubic",
            "--out",
            tmp_path / "o",
            f"dataset.root={root}",
        )
        == 0
    )
    assert len(_rows(tmp_path / "o" / "per_image.csv")) == 1


def test_out_dir_of_another_config_is_refused(cache_dir, tmp_path, cli, capsys):
    out = tmp_path / "o"
    assert cli("run", "--methods", "bicubic", "--out", out, "profile.enabled=false") == 0
    capsys.readouterr()
    assert cli("run", "--methods", "lanczos", "--out", out, "profile.enabled=false") == 2
    assert "holds a run of another config" in _error_line(capsys)


def test_lr_only_dataset_scores_no_reference_metrics_only(cache_dir, tmp_path, cli, capsys):
    rng = np.random.default_rng(2)
    for name in ("p", "q"):
        write_png(tmp_path / "real" / f"{name}.png", rng.integers(0, 256, (24, 20, 3), np.uint8))
    out = tmp_path / "o"
    assert cli("run", "--methods", "bicubic", "--datasets", "realset65", "--out", out,
               f"dataset.root={tmp_path / 'real'}", "profile.enabled=false") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "no HR images: skipping full-reference psnr, ssim" in err
    rows = _rows(out / "per_image.csv")
    assert [r["image"] for r in rows] == ["p", "q"] and rows[0]["psnr"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert "needs HR" in summary["results"][0]["metrics"]["psnr"]["reason"]


def test_report_reprints_a_finished_run(cache_dir, tmp_path, cli, capsys):
    out = tmp_path / "r"
    assert cli("run", "--methods", "bicubic", "--out", out, "profile.runs=1") == 0
    first = capsys.readouterr().out
    assert cli("report", out) == 0
    assert capsys.readouterr().out == first
    (tmp_path / "half").mkdir()
    assert cli("report", tmp_path / "half") == 2
    assert "no summary.json" in capsys.readouterr().err
