"""harness leaderboard: the site from real runs (in headless Chromium), validation of bundles.

Inputs are real: the session's bicubic + Lanczos embedded run, and `harness eval` on its cached
bicubic outputs under the method name `<script>alert(1)</script>`. Rejected bundles are copies of
the real run with one thing changed, as a careless or dishonest submitter would change it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

XSS = "<script>alert(1)</script>"


# ----------------------------------------------------------------------------- fixtures


def _eval_outputs(run: Path, cache_dir: Path, method: str, name: str, out: Path) -> Path:
    """`harness eval` of ``method``'s cached outputs in ``run`` under the method name ``name``."""
    from harness.cli import main

    manifest = json.loads((run / "manifest.json").read_text())
    sr = manifest["methods"][method]["sr_cache"]["embedded"]
    data = cache_dir / "datasets" / "embedded-v1"
    argv = ["eval", "--sr", sr, "--hr", str(data / "HR"), "--lr", str(data / "LR"),
            "--name", name, "--out", str(out), "dataset_name=embedded"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def xss_eval(classic_run, cache_dir, tmp_path_factory) -> Path:
    return _eval_outputs(classic_run, cache_dir, "bicubic", XSS,
                         tmp_path_factory.mktemp("xss") / "eval")  # fmt: skip


@pytest.fixture(scope="module")
def lb_config(classic_run, tmp_path_factory) -> Path:
    """A leaderboard config whose protocol is pinned from the default run by the CLI itself."""
    from harness.cli import main

    path = tmp_path_factory.mktemp("lbcfg") / "leaderboard.yaml"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["leaderboard", "protocol", str(classic_run)]) == 0
    head = {
        "schema": "harness.leaderboard-config/1",
        "title": "Embedded x4",
        "version": "2025.1",
        "datasets": ["embedded"],
        "metrics": ["ssim", "psnr"],
        "rank_by": "ssim",
    }
    path.write_text(yaml.safe_dump(head, sort_keys=False) + buf.getvalue())
    return path


def _png(path: Path, colour=(200, 30, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)


@pytest.fixture(scope="module")
def run_with_figure(classic_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fig") / "run"
    shutil.copytree(classic_run, out)
    _png(out / "report" / "figures" / "psnr_vs_latency.png")
    return out


@pytest.fixture(scope="module")
def site(run_with_figure, xss_eval, lb_config, tmp_path_factory) -> Path:
    from harness.cli import main

    out = tmp_path_factory.mktemp("site") / "site"
    argv = [
        "leaderboard",
        "build",
        "--config",
        str(lb_config),
        "--out",
        str(out),
        str(run_with_figure),
        str(xss_eval),
    ]
    assert main(argv) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


# ----------------------------------------------------------------------------- the site


def test_eval_with_lr_records_the_named_datasets_hash(classic_run, xss_eval):
    """`eval --lr` identifies the dataset exactly as `run` does, so both rank in one table."""
    a = json.loads((classic_run / "manifest.json").read_text())["datasets"]["embedded"]
    b = json.loads((xss_eval / "manifest.json").read_text())["datasets"]["embedded"]
    assert a["manifest_hash"] == b["manifest_hash"] and a["files"] == b["files"]


def test_site_data_ranks_and_stamps_the_protocol(site, lb_config, classic_run):
    data = json.loads((site / "leaderboard.json").read_text())
    assert data["schema"] == "harness.leaderboard/1" and data["version"] == "2025.1"
    assert [t["dataset"] for t in data["tables"]] == ["embedded"]
    table = data["tables"][0]
    assert [m["name"] for m in table["metrics"]] == ["ssim", "psnr"]
    entries = table["entries"]
    summary = json.loads((classic_run / "summary.json").read_text())
    ssim = {r["method"]: r["metrics"]["ssim"]["mean"] for r in summary["results"]}
    # ranked by SSIM, higher first; the eval of bicubic's outputs ties with bicubic
    assert [e["method"] for e in entries][0] == "lanczos"
    assert [e["rank"] for e in entries] == [1, 2, 2]
    assert {e["method"] for e in entries[1:3]} == {"bicubic", XSS}
    assert entries[0]["values"]["ssim"] == ssim["lanczos"]
    lanczos = entries[0]
    assert lanczos["efficiency"]["params"] == 0 and lanczos["efficiency"]["latency_median_s"] > 0
    assert next(e for e in entries if e["method"] == XSS)["efficiency"]["params"] is None
    # the table group from each method card; an eval's methods have no card
    assert {e["method"]: e["group"] for e in entries} == {
        "lanczos": "Classical", "bicubic": "Classical", XSS: ""}  # fmt: skip
    protocol = data["protocol"]
    assert protocol["pinned"] is True
    assert protocol["metrics"]["ssim"]["options"] == {
        "test_y_channel": True,
        "color_space": "ycbcr",
    }
    html = (site / "index.html").read_text()
    manifest = json.loads((classic_run / "manifest.json").read_text())
    for stamp in (
        manifest["datasets"]["embedded"]["manifest_hash"],
        "0.1.16",
        "2025.1",
        manifest["harness_version"],
        "test_y_channel",
    ):
        assert stamp in html


def test_site_links_resolve_and_figures_are_copied(site, run_with_figure):
    html = (site / "index.html").read_text()
    hrefs = set(re.findall(r'(?:href|src)="([^"]+)"', html)) - {"data:,"}
    assert hrefs, "no links"
    for href in hrefs:
        assert not href.startswith(("http:", "https:", "//")), f"external resource {href}"
        if href.startswith("#"):
            assert f'id="{href[1:]}"' in html, f"broken anchor {href}"
        else:
            assert (site / href).is_file(), f"broken link {href}"
    figs = [h for h in hrefs if h.endswith(".png")]
    assert len(figs) == 1 and "figures" in figs[0]
    src = run_with_figure / "report" / "figures" / "psnr_vs_latency.png"
    assert (site / figs[0]).read_bytes() == src.read_bytes()
    for name in ("manifest.json", "config.yaml"):
        assert any(h.endswith(name) for h in hrefs)


def test_submitted_strings_are_escaped_in_the_html(site):
    html = (site / "index.html").read_text()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # the page's own sort.js


def test_rebuild_replaces_a_leaderboard_but_not_other_folders(
    site, run_with_figure, tmp_path, cli, capsys
):
    out = tmp_path / "other"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    assert cli("leaderboard", "build", "--out", out, run_with_figure) == 2
    assert "not a leaderboard" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep"
    copy = _copy(site, tmp_path / "site")
    assert cli("leaderboard", "build", "--out", copy, run_with_figure) == 0
    assert len(json.loads((copy / "leaderboard.json").read_text())["runs"]) == 1


def test_ties_share_a_rank_and_the_next_rank_skips(
    run_with_figure, xss_eval, lb_config, classic_run, cache_dir, tmp_path, cli
):
    """Competition ranking: two ties give 1, 1, 3, 3 (an eval of Lanczos' outputs ties with
    Lanczos, the XSS-named eval of bicubic's with bicubic)."""
    copy = _eval_outputs(classic_run, cache_dir, "lanczos", "lanczos-copy", tmp_path / "copy")
    out = tmp_path / "site"
    assert cli("leaderboard", "build", "--config", lb_config, "--out", out, run_with_figure,
               xss_eval, copy) == 0  # fmt: skip
    [table] = json.loads((out / "leaderboard.json").read_text())["tables"]
    ranks = {e["method"]: e["rank"] for e in table["entries"]}
    assert ranks == {"lanczos": 1, "lanczos-copy": 1, "bicubic": 3, XSS: 3}


def test_build_refuses_to_rank_different_metric_settings(classic_run, tmp_path, cli, capsys):
    other = _copy(classic_run, tmp_path / "other")
    _edit_json(
        other / "summary.json", lambda s: s["metrics"][1]["options"].update(color_space="yiq")
    )
    assert cli("leaderboard", "build", "--out", tmp_path / "s", classic_run, other) == 2
    err = capsys.readouterr().err
    assert "metric ssim computed with other options" in err and "never ranked together" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rank_bye: psnr\n", "unknown key 'rank_bye' (did you mean rank_by?)"),
        ("metrics: [psnr]\nrank_by: ssim\n", "rank_by 'ssim' is not one of metrics"),
        ("efficiency: [flops]\n", "efficiency column 'flops'"),
        ("protocol: {datasets: {embedded: abc}}\n", "protocol.datasets.embedded: expected 64"),
        ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_config_is_validated(classic_run, tmp_path, cli, capsys, text, message):
    cfg = tmp_path / "leaderboard.yaml"
    cfg.write_text(text)
    assert cli("leaderboard", "build", "--config", cfg, "--out", tmp_path / "s", classic_run) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- in a browser


def _chrome(tmp_path: Path):
    """Headless Debian Chromium through chromedriver; skipped where absent unless CI requires
    it (HARNESS_REQUIRE_BROWSER=1, set by .ci/run)."""
    required = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        binary = None
    if not (binary and driver):
        if required:
            pytest.fail("chromium, chromedriver or selenium missing (HARNESS_REQUIRE_BROWSER=1)")
        pytest.skip("needs chromium, chromium-driver (apt) and selenium (dev extras)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(driver))


@pytest.fixture
def served(site, serve_folder):
    """The site over HTTP on loopback, as a static host would serve it."""
    with serve_folder(site) as url:
        yield url


def _column(driver, key: str) -> list[float | None]:
    table = driver.find_element("css selector", "table.sortable[data-dataset='embedded']")
    heads = [th.get_attribute("data-key") for th in table.find_elements("css selector", "th")]
    col = heads.index(key)
    out = []
    for row in table.find_elements("css selector", "tbody tr"):
        raw = row.find_elements("css selector", "td")[col].get_attribute("data-value")
        out.append(float(raw) if raw else None)
    return out


def _ordered(values: list[float | None], descending: bool) -> bool:
    present = [v for v in values if v is not None]
    missing_last = all(v is None for v in values[len(present) :])
    return missing_last and present == sorted(present, reverse=descending)


def test_page_in_headless_chromium(served, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException

    driver = _chrome(tmp_path)
    try:
        driver.get(f"{served}/index.html")
        # loads without console errors (CSP violations, 404s and script errors are SEVERE)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        # the hostile method name is text in a cell, and no alert opened
        names = [c.text for c in driver.find_elements("css selector", "td.method")]
        assert XSS in names
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        assert len(driver.find_elements("css selector", "script")) == 1
        # a column sorts on click: latency (lower first, the eval's n/a last), then reversed
        button = "table[data-dataset='embedded'] th[data-key='{}'] button"
        driver.find_element("css selector", button.format("latency_median_s")).click()
        first = _column(driver, "latency_median_s")
        assert _ordered(first, descending=False) and first[-1] is None
        driver.find_element("css selector", button.format("latency_median_s")).click()
        second = _column(driver, "latency_median_s")
        known = [v for v in first if v is not None]
        assert _ordered(second, descending=True) and second[: len(known)] == known[::-1]
        th = driver.find_element(
            "css selector", "table[data-dataset='embedded'] th[data-key='latency_median_s']"
        )
        assert th.get_attribute("aria-sort") == "descending"
        driver.find_element("css selector", button.format("psnr")).click()
        assert _ordered(_column(driver, "psnr"), descending=True)  # higher is better: first
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        shot = tmp_path / "leaderboard.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    artifacts = os.environ.get("HARNESS_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "leaderboard.png")


# ----------------------------------------------------------------------------- validation


def _validate(cli, capsys, bundle, config=None) -> tuple[int, str]:
    argv = ["leaderboard", "validate", bundle] + (["--config", config] if config else [])
    code = cli(*argv)
    cap = capsys.readouterr()
    return code, (cap.err if code else cap.out).strip()


def _zip(src: Path, dest: Path, top: str = "run/", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, top + p.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return dest


def test_valid_bundles_are_accepted(classic_run, xss_eval, lb_config, tmp_path, cli, capsys):
    for bundle in (classic_run, xss_eval, _zip(classic_run, tmp_path / "b.zip")):
        code, out = _validate(cli, capsys, bundle, lb_config)
        assert code == 0 and out.startswith("accepted:"), out


def _tampered(classic_run, tmp_path, edit) -> Path:
    bundle = _copy(classic_run, tmp_path / "bundle")
    edit(bundle)
    return bundle


def _ssim_option(b):
    _edit_json(b / "summary.json", lambda s: s["metrics"][1]["options"].update(color_space="yiq"))


def _other_images(b):
    """A consistent bundle over another image set: file hash and manifest hash both changed."""
    from harness.hashing import sha256_json

    def change(m):
        ds = m["datasets"]["embedded"]
        ds["files"][0]["hr_sha256"] = "1" * 64
        ds["manifest_hash"] = sha256_json({"scale": ds["scale"], "files": ds["files"]})

    _edit_json(b / "manifest.json", change)


def _hash_field(b):
    _edit_json(
        b / "manifest.json", lambda m: m["datasets"]["embedded"].update(manifest_hash="2" * 64)
    )


def _csv_cell(b):
    p = b / "per_image.csv"
    lines = p.read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = cells[3] + "x"
    lines[2] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")


def _summary_string(b):
    _edit_json(b / "summary.json", lambda s: s["results"][0]["metrics"]["psnr"].update(mean="29.2"))


def _summary_nan(b):
    p = b / "summary.json"
    p.write_text(re.sub(r'"std": [0-9.e-]+', '"std": NaN', p.read_text(), count=1))


def _summary_mean(b):
    _edit_json(
        b / "summary.json",
        lambda s: s["results"][0]["metrics"]["psnr"].update(
            mean=s["results"][0]["metrics"]["psnr"]["mean"] + 0.01
        ),
    )


def _long_name(b):
    _edit_json(b / "summary.json", lambda s: s["results"][0].update(method="m" * 5000))


def _long_reason(b):
    _edit_json(
        b / "summary.json",
        lambda s: s["results"][0]["metrics"]["psnr"].update(reason="r" * 100_000),
    )


def _big_config(b):
    p = b / "config.yaml"
    p.write_text(p.read_text() + "#" + "x" * 300_000 + "\n")


def _config_seed(b):
    p = b / "config.yaml"
    p.write_text(p.read_text().replace("seed: 0", "seed: 1"))


def _harness_version(b):
    _edit_json(b / "manifest.json", lambda m: m.update(harness_version="0.0.9"))


def _pyiqa_both(b):
    _edit_json(b / "summary.json", lambda s: s.update(pyiqa_version="0.1.10"))
    _edit_json(b / "manifest.json", lambda m: m["environment"]["packages"].update(pyiqa="0.1.10"))


def _pyiqa_summary(b):
    _edit_json(b / "summary.json", lambda s: s.update(pyiqa_version="0.1.10"))


def _duplicate_key(b):
    p = b / "summary.json"
    p.write_text(
        p.read_text().replace(
            '"schema": "harness.summary/1",', '"schema": "harness.summary/1", "schema": "x",', 1
        )
    )


def _fake_png(b):
    (b / "figures").mkdir()
    (b / "figures" / "plot.png").write_text("<svg onload=alert(1)></svg>")


def _symlink(b):
    (b / "figures").mkdir()
    (b / "figures" / "plot.png").symlink_to("/etc/passwd")


def _missing_file(b):
    (b / "per_image.csv").unlink()


def _dropped_row(b):
    p = b / "per_image.csv"
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")


def _yaml_object(b):
    p = b / "config.yaml"
    p.write_text(
        p.read_text().replace("seed: 0", "seed: !!python/object/apply:os.system [touch X]")
    )


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            _ssim_option,
            "summary.json: metric ssim: options {'test_y_channel': True, "
            "'color_space': 'yiq'}, the leaderboard requires",
        ),
        (_other_images, "is not the leaderboard's"),
        (
            _hash_field,
            "manifest.json: dataset embedded: manifest_hash does not match its file list",
        ),
        (_csv_cell, "per_image.csv: line 3, psnr: '26.34443473815918x' is not a number"),
        (_summary_string, "summary.json.results[0].metrics.psnr.mean: expected a finite number"),
        (_summary_nan, "summary.json: invalid JSON (NaN is not a JSON number)"),
        (_summary_mean, "differs from per_image.csv's"),
        (_long_name, "summary.json: results[0].method: 5000 characters (limit 128)"),
        (
            _long_reason,
            "summary.json: results[0].metrics.psnr.reason: 100000 characters (limit 4000)",
        ),
        (_big_config, "config.yaml: 300"),
        (_config_seed, "config.yaml: its hash"),
        (_harness_version, "harness_version '0.0.9' is not accepted"),
        (_pyiqa_both, "pyiqa_version '0.1.10', the leaderboard requires '0.1.16'"),
        (_pyiqa_summary, "differs from the installed '0.1.16' in manifest.json"),
        (_duplicate_key, "duplicate key 'schema'"),
        (_fake_png, "figures/plot.png: not a PNG file"),
        (_symlink, "figures/plot.png: symbolic link"),
        (_missing_file, "per_image.csv: missing"),
        (_dropped_row, "per_image.csv: 5 rows for lanczos on embedded, summary.json says 6"),
        (_yaml_object, "config.yaml: invalid YAML (could not determine a constructor"),
    ],
    ids=lambda x: getattr(x, "__name__", "")[1:] if callable(x) else "",
)
def test_tampered_bundle_is_rejected_with_one_line(
    classic_run, lb_config, tmp_path, cli, capsys, edit, reason
):
    bundle = _tampered(classic_run, tmp_path, edit)
    code, err = _validate(cli, capsys, bundle, lb_config)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"rejected: {bundle}: ")
    assert reason in err
    assert len(err) < 400


def test_wrong_dataset_hash_rejected_in_a_zip_too(classic_run, lb_config, tmp_path, cli, capsys):
    bundle = _tampered(classic_run, tmp_path, _other_images)
    code, err = _validate(cli, capsys, _zip(bundle, tmp_path / "b.zip"), lb_config)
    assert code == 1 and "is not the leaderboard's" in err


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.json", "path leaves the bundle"),
        ("/etc/evil.json", "path leaves the bundle"),
        ("run/figures/..\\..\\evil.png", "path leaves the bundle"),
        ("C:/evil.json", "path leaves the bundle"),
        ("run/\x1b]0;owned\x07.json", "path leaves the bundle or is malformed"),
    ],
)
def test_zip_slip_is_rejected(classic_run, tmp_path, cli, capsys, name, reason):
    bundle = _zip(classic_run, tmp_path / "b.zip", extra={name: b"{}"})
    code, err = _validate(cli, capsys, bundle)
    assert code == 1 and reason in err
    assert not (tmp_path.parent / "evil.json").exists()


def test_zip_entry_larger_than_its_limit(classic_run, tmp_path, cli, capsys):
    # compresses to a few kB; the declared size is what is refused, before reading
    bundle = _zip(
        classic_run,
        tmp_path / "b.zip",
        top="",
        extra={"figures/bomb.png": b"\x89PNG\r\n\x1a\n" + bytes(9 << 20)},
    )
    assert bundle.stat().st_size < 200_000
    code, err = _validate(cli, capsys, bundle)
    assert code == 1 and "figures/bomb.png: 9437192 bytes (limit 8388608 per figure)" in err


def test_pickles_in_a_bundle_are_never_loaded(classic_run, tmp_path, cli, capsys):
    target = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (target,))

    bundle = _copy(classic_run, tmp_path / "bundle")
    (bundle / "weights.pkl").write_bytes(pickle.dumps(Evil()))
    (bundle / "figures").mkdir()
    (bundle / "figures" / "x.pt").write_bytes(pickle.dumps(Evil()))
    code, out = _validate(cli, capsys, bundle)
    assert code == 0 and "ignored (never read)" in out and "weights.pkl" in out
    code, _ = _validate(cli, capsys, _zip(bundle, tmp_path / "b.zip"))
    assert code == 0
    assert cli("leaderboard", "build", "--out", tmp_path / "site", bundle) == 0
    assert not target.exists()
    assert not list((tmp_path / "site").rglob("*.pkl")) and not list(
        (tmp_path / "site").rglob("*.pt")
    )


def test_pinned_weights_digest(classic_run, tmp_path, cli, capsys):
    cfg = tmp_path / "lb.yaml"
    cfg.write_text("protocol:\n  weights: {bicubic: 'ab12'}\n")
    code, err = _validate(cli, capsys, classic_run, cfg)
    assert code == 1 and "bicubic weights_digest '' is not the leaderboard's 'ab12'" in err


EXAMPLE = Path(__file__).resolve().parents[1] / "leaderboard" / "example.yaml"


def test_bundle_without_the_leaderboards_datasets_is_rejected(classic_run, cli, capsys):
    code, err = _validate(cli, capsys, classic_run, EXAMPLE)
    assert code == 1 and "no results on this leaderboard's datasets (drealsr)" in err


@pytest.mark.slow
def test_example_config_accepts_osediffs_published_drealsr_outputs(
    drealsr, cache_dir, tmp_path, cli, capsys
):
    """The example leaderboard pins DRealSR's manifest hash: `harness eval --lr` on the 93 real
    pairs must reproduce it, and the entry ranks with OSEDiff's published 27.92 / 0.7835."""
    out = tmp_path / "osediff"
    assert (
        cli(
            "eval",
            "--sr",
            drealsr / "osediff",
            "--hr",
            drealsr / "HR",
            "--lr",
            drealsr / "LR",
            "--metrics",
            "psnr,ssim",
            "--out",
            out,
        )
        == 0
    )
    capsys.readouterr()
    code, text = _validate(cli, capsys, out, EXAMPLE)
    assert code == 0, text
    assert cli("leaderboard", "build", "--config", EXAMPLE, "--out", tmp_path / "site", out) == 0
    entry = json.loads((tmp_path / "site" / "leaderboard.json").read_text())["tables"][0]
    (e,) = entry["entries"]
    assert (round(e["values"]["psnr"], 2), round(e["values"]["ssim"], 4)) == (27.92, 0.7835)
