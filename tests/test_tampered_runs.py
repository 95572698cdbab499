"""Result files that were edited, cut short or built to hurt: `harness report`, `harness gate`
and `harness leaderboard` read them without trusting them.

Run directories are copies of the session's real bicubic + Lanczos embedded run with one thing
changed, as a careless or dishonest user would change it. Every bad input must give one line
naming the file and what is wrong, exit 2, no traceback, before any output is written.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def run_copy(classic_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(classic_run, out)
    for name in ("report.md", "report.csv", "report_efficiency.csv"):
        (out / name).unlink(missing_ok=True)  # so a report that writes anything is seen
    return out


@pytest.fixture
def baseline(classic_run, tmp_path, cli, capsys) -> Path:
    path = tmp_path / "baseline.json"
    assert cli("gate", "--update", "--baseline", path, classic_run) == 0
    capsys.readouterr()
    return path


def _json_edit(name: str, change):
    def edit(run: Path) -> None:
        data = json.loads((run / name).read_text())
        change(data)
        (run / name).write_text(json.dumps(data, indent=2))

    return edit


def _text(name: str, content: str):
    return lambda run: (run / name).write_text(content)


def _sub(name: str, pattern: str, repl: str):
    def edit(run: Path) -> None:
        p = run / name
        p.write_text(re.sub(pattern, repl, p.read_text(), count=1))

    return edit


def _cell(value: str):
    """per_image.csv: the first metric cell of the first row becomes ``value``."""

    def edit(run: Path) -> None:
        p = run / "per_image.csv"
        lines = p.read_text().splitlines()
        cells = lines[1].split(",")
        cells[3] = value
        lines[1] = ",".join(cells)
        p.write_text("\n".join(lines) + "\n")

    return edit


def _drop_last_column(run: Path) -> None:
    p = run / "per_image.csv"
    p.write_text("".join(",".join(x.split(",")[:-1]) + "\n" for x in p.read_text().splitlines()))


def _psnr(s: dict) -> dict:
    return s["results"][0]["metrics"]["psnr"]


def _one_error_line(capsys) -> str:
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("harness: error: ") and len(lines[0]) < 400
    return lines[0]


DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000


# ----------------------------------------------------------------------------- 1. the gate


@pytest.mark.parametrize("mean", [1e308, 99.0], ids=["1e308", "plausible"])
def test_gate_refuses_a_mean_that_per_image_csv_does_not_back(
    run_copy, baseline, tmp_path, cli, capsys, mean
):
    """A tampered summary.json mean passed the gate (as an improvement): it is recomputed from
    per_image.csv and refused, naming the files, method, dataset and metric."""
    _json_edit("summary.json", lambda s: _psnr(s).update(mean=mean))(run_copy)
    assert cli("gate", "--baseline", baseline, run_copy) == 2
    line = _one_error_line(capsys)
    assert "summary.json and per_image.csv disagree on the mean of psnr" in line
    assert "for bicubic on embedded" in line and repr(mean) in line
    assert cli("gate", "--update", "--baseline", tmp_path / "new.json", run_copy) == 2
    _one_error_line(capsys)
    assert not (tmp_path / "new.json").exists()


def test_gate_accepts_an_untouched_run(classic_run, baseline, cli, capsys):
    """The check recomputes what the store wrote: a real run agrees with itself."""
    assert cli("gate", "--baseline", baseline, classic_run) == 0
    assert "PASS" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 2. tampered runs

# (edit of the run directory, the file the error names, a fragment of the error)
TAMPERED = {
    "huge-int": (
        _sub("summary.json", r'"n_images": 6', f'"n_images": {HUGE}'),
        "summary.json",
        "an integer of 5000 digits",
    ),
    "mean-overflows": (
        _sub("summary.json", r'"mean": [0-9.e-]+', '"mean": 1e999'),
        "summary.json",
        "overflows a float",
    ),  # fmt: skip
    "mean-nan": (
        _sub("summary.json", r'"std": [0-9.e-]+', '"std": NaN'),
        "summary.json",
        "NaN is not a number JSON allows",
    ),  # fmt: skip
    "mean-string": (
        _json_edit("summary.json", lambda s: _psnr(s).update(mean="29.2")),
        "summary.json",
        "results[0].metrics.psnr.mean: expected a finite number",
    ),
    "results-object": (
        _json_edit("summary.json", lambda s: s.update(results={"a": 1})),
        "summary.json",
        "results: expected a list, found an object",
    ),
    "stats-list": (
        _json_edit("summary.json", lambda s: s["results"][0].update(metrics=[1, 2])),
        "summary.json",
        "results[0].metrics: expected an object",
    ),
    "summary-deep": (_text("summary.json", DEEP), "summary.json", "nested too deeply"),
    "manifest-deep": (
        _text("manifest.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
        "manifest.json",
        "nested too deeply",
    ),
    "summary-list": (
        _text("summary.json", "[]"),
        "summary.json",
        "expected a JSON object, found a list",
    ),  # fmt: skip
    "manifest-list": (
        _text("manifest.json", "[1]"),
        "manifest.json",
        "expected a JSON object, found a list",
    ),  # fmt: skip
    "manifest-datasets-list": (
        _json_edit("manifest.json", lambda m: m.update(datasets=[1])),
        "manifest.json",
        "datasets: expected an object",
    ),
    "per-image-empty": (_text("per_image.csv", ""), "per_image.csv", "empty"),
    "per-image-nan": (_cell("nan"), "per_image.csv", "'nan' is not a finite number"),
    "per-image-inf": (_cell("inf"), "per_image.csv", "'inf' is not a finite number"),
    "per-image-huge": (_cell("1e200"), "per_image.csv", "'1e200' is not a finite number"),
    "per-image-missing-column": (_drop_last_column, "per_image.csv", "no column for metric ssim"),
    "efficiency-latency-string": (
        _json_edit("efficiency.json", lambda e: e["rows"][0].update(latency_median_s="fast")),
        "efficiency.json",
        "rows[0].latency_median_s: expected a finite number",
    ),
    "efficiency-rows-object": (
        _json_edit("efficiency.json", lambda e: e.update(rows={"x": 1})),
        "efficiency.json",
        "rows: expected a list",
    ),
}


@pytest.mark.parametrize(("edit", "name", "fragment"), TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_run_is_one_line_in_report_and_gate(
    run_copy, baseline, tmp_path, cli, capsys, edit, name, fragment
):
    edit(run_copy)
    out = tmp_path / "report"
    assert cli("report", run_copy, "--out", out) == 2
    line = _one_error_line(capsys)
    assert name in line and fragment in line
    assert not out.exists() and not list(run_copy.glob("report*"))
    assert cli("gate", "--baseline", baseline, run_copy) == 2
    assert _one_error_line(capsys) == line
    new = tmp_path / "new-baseline.json"
    assert cli("gate", "--update", "--baseline", new, run_copy) == 2
    assert _one_error_line(capsys) == line
    assert not new.exists()


def test_efficiency_csv_non_finite_in_report(run_copy, tmp_path, cli, capsys):
    p = run_copy / "efficiency.csv"
    p.write_text(re.sub(r"\nbicubic,([^,]*),[^,]*,", r"\nbicubic,\1,inf,", p.read_text(), count=1))
    assert cli("report", run_copy, "--out", tmp_path / "o") == 2
    line = _one_error_line(capsys)
    assert "efficiency.csv: line 2, lr_size: 'inf' is not a finite number" in line
    assert not (tmp_path / "o").exists()


def _base_edit(change):
    def edit(p: Path) -> None:
        data = json.loads(p.read_text())
        change(data)
        p.write_text(json.dumps(data, indent=2))

    return edit


BAD_BASELINES = {
    "deep": (lambda p: p.write_text(DEEP), "nested too deeply"),
    "quality-cell-list": (
        _base_edit(lambda b: b["quality"]["bicubic"].update(embedded=[1])),
        "quality.bicubic.embedded must be a JSON object",
    ),
    "metric-spec-string": (
        _base_edit(lambda b: b["metrics"].update(psnr="x")),
        "metrics.psnr must be a JSON object",
    ),
    "latency-string": (
        _base_edit(lambda b: b["efficiency"]["bicubic"].update(latency_median_s="x")),
        "efficiency.bicubic.latency_median_s must be a number >= 0 or null",
    ),
    "dataset-hash-int": (
        _base_edit(lambda b: b["datasets"].update(embedded=5)),
        "datasets.embedded must be a manifest hash",
    ),
    "source-list": (_base_edit(lambda b: b.update(source=[1])), "'source' must be a JSON object"),
    "huge-int": (
        lambda p: p.write_text(re.sub(r'"lr_size": \d+', f'"lr_size": {HUGE}', p.read_text())),
        "an integer of 5000 digits",
    ),
}


@pytest.mark.parametrize(("edit", "fragment"), BAD_BASELINES.values(), ids=BAD_BASELINES.keys())
def test_tampered_baseline_is_one_line(classic_run, baseline, cli, capsys, edit, fragment):
    edit(baseline)
    assert cli("gate", "--baseline", baseline, classic_run) == 2
    line = _one_error_line(capsys)
    assert str(baseline) in line and fragment in line
    assert "gate:" not in capsys.readouterr().out  # nothing printed before the error


# ----------------------------------------------------------------------------- 3. partial runs


def test_report_without_summary_says_what_is_missing(run_copy, tmp_path, cli, capsys):
    """The quality tables were dropped silently (exit 0) when summary.json was missing."""
    (run_copy / "summary.json").unlink()
    out = tmp_path / "o"
    assert cli("report", run_copy, "--out", out) == 2
    line = _one_error_line(capsys)
    assert f"{run_copy}: no summary.json, so no quality tables" in line
    assert "--allow-partial" in line
    assert not out.exists()


def test_report_allow_partial_prints_what_was_left_out(run_copy, tmp_path, capsys):
    from harness.reports import Request, make_report

    (run_copy / "summary.json").unlink()
    req = Request([run_copy], out=tmp_path / "o", formats=("md", "csv"), allow_partial=True)
    text, _ = make_report(req)
    assert req.left_out == [
        f"{run_copy}: the quality tables (no summary.json: the run has not finished or the "
        "file was removed)"
    ]
    assert "### Left out (--allow-partial)" in text and req.left_out[0] in text
    assert f"left out: {req.left_out[0]}" in capsys.readouterr().err
    assert "Efficiency" in text  # the rest is reported


def test_report_allow_partial_on_the_command_line(run_copy, tmp_path, cli, capsys):
    (run_copy / "summary.json").unlink()
    out = tmp_path / "o"
    assert cli("report", run_copy, "--out", out, "--allow-partial", "--format", "md") == 0
    assert "### Left out (--allow-partial)" in (out / "report.md").read_text()
    assert "left out:" in capsys.readouterr().err


def test_profile_folder_needs_no_summary(run_copy, tmp_path):
    """A `harness profile` folder holds efficiency files alone: not a partial run."""
    from harness.reports import Request, make_report

    prof = tmp_path / "prof"
    prof.mkdir()
    for name in ("efficiency.csv", "efficiency.json"):
        shutil.copy(run_copy / name, prof / name)
    req = Request([prof], formats=("md",))
    text, _ = make_report(req)
    assert req.left_out == [] and "Efficiency" in text


# ----------------------------------------------------------------------------- 4. leaderboard


@pytest.fixture(scope="module")
def other_dataset(classic_run, cache_dir, tmp_path_factory) -> Path:
    """`harness eval` of the run's bicubic outputs recorded as a dataset named `other`: a
    sound bundle that belongs on another leaderboard."""
    from harness.cli import main

    manifest = json.loads((classic_run / "manifest.json").read_text())
    sr = manifest["methods"]["bicubic"]["sr_cache"]["embedded"]
    data = cache_dir / "datasets" / "embedded-v1"
    out = tmp_path_factory.mktemp("other") / "other-eval"
    argv = ["eval", "--sr", sr, "--hr", str(data / "HR"), "--lr", str(data / "LR"),
            "--name", "bicubic", "--out", str(out), "dataset_name=other"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_build_leaves_out_a_run_on_another_dataset(
    classic_run, other_dataset, tmp_path, cli, capsys
):
    """One entry on another dataset rejected the whole build: it is left out with its reason
    (log, leaderboard.json, the page) and the rest is built."""
    cfg = tmp_path / "lb.yaml"
    cfg.write_text("datasets: [embedded]\n")
    site = tmp_path / "site"
    capsys.readouterr()
    assert cli("leaderboard", "build", "--config", cfg, "--out", site, classic_run,
               other_dataset) == 0  # fmt: skip
    cap = capsys.readouterr()
    reason = "summary.json: no results on this leaderboard's datasets (embedded); found other"
    assert f"left out: {other_dataset}: {reason}" in cap.err
    assert "1 left out" in cap.out
    data = json.loads((site / "leaderboard.json").read_text())
    assert data["left_out"] == [{"source": "other-eval", "reason": reason}]
    assert [e["method"] for e in data["tables"][0]["entries"]] == ["lanczos", "bicubic"]
    html = (site / "index.html").read_text()
    assert "Left out" in html and "no results on this leaderboard&#39;s datasets" in html
    assert str(other_dataset.parent) not in html  # names only: no local folders published


def test_build_with_no_usable_entry_is_an_error(other_dataset, tmp_path, cli, capsys):
    cfg = tmp_path / "lb.yaml"
    cfg.write_text("datasets: [embedded]\n")
    capsys.readouterr()
    assert cli("leaderboard", "build", "--config", cfg, "--out", tmp_path / "s",
               other_dataset) == 2  # fmt: skip
    line = _one_error_line(capsys)
    assert "no usable entries (left out: " in line and "found other" in line
    assert not (tmp_path / "s").exists()


def test_build_still_fails_on_a_tampered_bundle(classic_run, run_copy, tmp_path, cli, capsys):
    """Only a sound bundle for another board is left out; a tampered one fails the build."""
    _json_edit("summary.json", lambda s: _psnr(s).update(mean=99.0))(run_copy)
    capsys.readouterr()
    assert cli("leaderboard", "build", "--out", tmp_path / "s", classic_run, run_copy) == 2
    assert "differs from per_image.csv" in _one_error_line(capsys)
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- 5. bundles


def _bundle_zip(run: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for p in sorted(run.iterdir()):
            if p.is_file() and p.name not in replace:
                zf.write(p, p.name)
        for name, data in replace.items():
            zf.writestr(name, data)
    return dest


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Bytes decompressed from zip members during the test (a bound on the work done)."""
    count = [0]
    real = zipfile.ZipExtFile.read

    def read(self, n=-1):
        data = real(self, n)
        count[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return count


BOMBS = {
    # 2 MiB of newlines deflate to ~4 KB; 64 MiB (67 KB zipped) took 114 s and 5.7 GB before
    "newlines": ("per_image.csv", b"\n" * (2 << 20), "per_image.csv: more than 250000 lines"),
    "long-line": (
        "per_image.csv",
        b"method,dataset,image,psnr,ssim\n" + b"a" * (2 << 20),
        "per_image.csv: a line longer than 65536 bytes",
    ),
    "ratio": (
        "manifest.json",
        b" " * (8 << 20) + b"{}",
        "manifest.json: expands more than 100 times",
    ),
}


@pytest.mark.parametrize(("member", "data", "reason"), BOMBS.values(), ids=BOMBS.keys())
def test_bundle_bomb_is_rejected_after_a_bounded_read(
    classic_run, tmp_path, cli, capsys, bytes_read, member, data, reason
):
    bundle = _bundle_zip(classic_run, tmp_path / "bomb.zip", {member: data})
    assert bundle.stat().st_size < 100_000
    bytes_read[0] = 0
    assert cli("leaderboard", "validate", bundle) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"rejected: {bundle}: ")
    assert reason in err
    # every limit is checked while reading: at most ~1 MiB of the member is ever inflated
    assert bytes_read[0] < (1 << 20) + 256 * 1024 + sum(
        p.stat().st_size for p in classic_run.iterdir()
    )
