"""Report figures: Pareto fronts, distributions, and the visual comparison's pixels."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_KIT = Path(__file__).with_name("reportkit.py")
_spec = importlib.util.spec_from_file_location("reportkit", _KIT)
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

from harness.errors import HarnessError  # noqa: E402
from harness.imageio import read_rgb, write_png  # noqa: E402
from harness.reports import Request, compare, figures, make_report  # noqa: E402
from harness.reports.load import load_runs  # noqa: E402
from harness.reports.tables import build  # noqa: E402


def _written(path: Path) -> None:
    """A PNG that decodes and is not blank; a PDF with a header and some content."""
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    with Image.open(png) as im:
        a = np.asarray(im.convert("L"))
    assert a.shape[0] > 100 and a.shape[1] > 100 and a.std() > 5
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000


def test_pareto_front_both_directions():
    x = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    y = np.array([20.0, 25.0, 24.0, 18.0, 22.0])
    assert figures.pareto_front(x, y, lower_better=False) == [3, 0, 1]
    # lower is better: the cheapest point is also the best
    assert figures.pareto_front(x, y, lower_better=True) == [3]
    assert figures.pareto_front(np.array([1.0, 1.0]), np.array([5.0, 5.0]), False) == [0, 1]


@pytest.fixture
def with_costs(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(27, 2, 10)
    vals = {
        name: {"psnr": base + dp + rng.normal(0, 0.1, 10), "lpips": rng.random(10) * 0.1 + lp}
        for name, dp, lp in (("fast", -2, 0.3), ("slow_good", 0, 0.1), ("slow_bad", -3, 0.4),
                             ("bicubic", -4, 0.5))
    }  # fmt: skip
    eff = [
        kit.eff_row("fast", 0.05, 100e9),
        kit.eff_row("slow_good", 1.0, 2000e9),
        kit.eff_row("slow_bad", 2.0, 3000e9),
        kit.eff_row("bicubic", 0.01),  # no MACs: left out of the MACs plot, named in its title
    ]
    return kit.make_run(tmp_path / "r", vals, [kit.PSNR, kit.LPIPS], efficiency=eff)


def test_quality_vs_cost_draws_the_front(with_costs):
    report = build(load_runs([with_costs]))
    [table] = report.tables
    fig, why = figures.quality_vs_cost(report, table, "macs")
    assert why == ""
    psnr_ax = fig.axes[0]
    [front] = [ln for ln in psnr_ax.lines if ln.get_label() == "Pareto front"]
    assert np.allclose(front.get_xdata(), [100.0, 2000.0])  # fast, slow_good; slow_bad dominated
    assert "not plotted (no macs_fvcore): bicubic" in fig._suptitle.get_text()
    fig, _ = figures.quality_vs_cost(report, table, "latency")
    [front] = [ln for ln in fig.axes[0].lines if ln.get_label() == "Pareto front"]
    assert np.allclose(front.get_xdata(), [0.01, 0.05, 1.0])


def test_distributions_plot_every_image(with_costs):
    report = build(load_runs([with_costs]))
    fig, _ = figures.distributions(report.runs, report.tables[0], seed=0)
    dots = fig.axes[0].collections[0].get_offsets()[:, 1]  # the first method's PSNR dots
    want = kit.csv_rows(with_costs / "per_image.csv")
    assert np.allclose(dots, [float(r["psnr"]) for r in want if r["method"] == "fast"])


def test_report_writes_and_embeds_all_figures(tmp_path):
    names = ["p", "q", "r"]
    lr, hr, srs, files = kit.make_images(tmp_path / "img", names, ["m1", "m2"])
    vals = {"m1": {"psnr": [20.0, 21.0, 22.0]}, "m2": {"psnr": [25.0, 21.5, 22.5]}}
    eff = [kit.eff_row("m1", 0.1, 5e9), kit.eff_row("m2", 0.2, 9e9)]
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR], images=names, files=files,
                       sr_dirs=srs, lr_dir=lr, hr_dir=hr, efficiency=eff)  # fmt: skip
    make_report(Request([run], figures=("pareto", "dist", "compare"), n_compare=1))
    fig_dir = run / "figures"
    # p: the methods disagree most there (20 vs 25)
    stems = ["pareto-latency-ds", "pareto-macs-ds", "dist-ds", "compare-ds-p"]
    assert sorted(p.name for p in fig_dir.iterdir()) == sorted(
        [f"{s}.{e}" for s in stems for e in ("png", "pdf")] + ["compare-ds-p.json"]
    )
    for s in stems:
        _written(fig_dir / s)
    md = (run / "report.md").read_text()
    for s in stems:
        assert f"](figures/{s}.png)" in md


@pytest.fixture
def pictures(tmp_path):
    """Two methods that agree everywhere except one planted square; 64x64 HR, x4."""
    rng = np.random.default_rng(1)
    root = tmp_path / "img"
    hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lr = hr[::4, ::4].copy()
    m1 = hr.copy()
    m2 = hr.copy()
    m2[40:52, 8:20] = 255 - m2[40:52, 8:20]  # they disagree only here
    for folder, a in (("LR", lr), ("HR", hr), ("m1", m1), ("m2", m2)):
        write_png(root / folder / "x.png", a)
    files = [{"name": "x", "lr_sha256": kit.sha256_file(root / "LR" / "x.png"),
              "hr_sha256": kit.sha256_file(root / "HR" / "x.png")}]  # fmt: skip
    vals = {"m1": {"psnr": [30.0]}, "m2": {"psnr": [20.0]}}
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR], images=["x"], files=files,
                       sr_dirs={"m1": root / "m1", "m2": root / "m2"}, lr_dir=root / "LR",
                       hr_dir=root / "HR")  # fmt: skip
    return run, root


def test_comparison_crops_come_from_the_right_pixels(pictures):
    run, root = pictures
    report = build(load_runs([run]))
    fig, panels, record = compare.comparison(report.runs, report.tables[0], "x", crop=(8, 36, 24))
    lr, hr = read_rgb(root / "LR" / "x.png"), read_rgb(root / "HR" / "x.png")
    m2 = read_rgb(root / "m2" / "x.png")
    assert [p.title for p in panels] == ["LR ×4 (nearest)", "m1", "m2", "HR"]
    want = {
        "LR ×4 (nearest)": np.repeat(np.repeat(lr[9:15, 2:8], 4, 0), 4, 1),
        "m1": read_rgb(root / "m1" / "x.png")[36:60, 8:32],
        "m2": m2[36:60, 8:32],
        "HR": hr[36:60, 8:32],
    }
    for ax, p in zip(fig.axes[1:], panels):
        shown = np.asarray(ax.images[0].get_array())  # what the figure draws
        assert np.array_equal(shown, want[p.title]), p.title
        ix, iy, ix1, iy1 = p.inset_box
        assert np.array_equal(p.inset, want[p.title][iy:iy1, ix:ix1])
    for ax, p in zip(fig.axes[1:], panels):
        [ins] = ax.child_axes  # the zoomed inset
        assert np.array_equal(np.asarray(ins.images[0].get_array()), p.inset)
    assert np.array_equal(np.asarray(fig.axes[0].images[0].get_array()), hr)  # overview
    boxes = {p["title"]: p["box"] for p in record["panels"]}
    assert boxes["LR ×4 (nearest)"] == [2, 9, 8, 15] and boxes["HR"] == [8, 36, 32, 60]
    assert record["lr_upscaling"] == "nearest"


def test_automatic_crop_finds_where_methods_disagree(pictures):
    run, _ = pictures
    report = build(load_runs([run]))
    _, panels, record = compare.comparison(report.runs, report.tables[0], "x")
    c = record["crop"]
    assert c["size"] == 32 and c["x"] % 4 == 0 and c["y"] % 4 == 0
    # the planted square (x 8..20, y 40..52) lies inside the crop
    assert c["x"] <= 8 and c["x"] + 32 >= 20 and c["y"] <= 40 and c["y"] + 32 >= 52
    ix, iy, _, _ = panels[0].inset_box
    assert 8 <= c["x"] + ix + 4 <= 20 and 40 <= c["y"] + iy + 4 <= 52  # inset centre in it


def test_comparison_refuses_a_changed_hr_file(pictures):
    run, root = pictures
    write_png(root / "HR" / "x.png", np.zeros((64, 64, 3), np.uint8))
    report = build(load_runs([run]))
    with pytest.raises(HarnessError, match="HR/x.png: changed since"):
        compare.comparison(report.runs, report.tables[0], "x")


def test_choose_images_picks_the_largest_disagreement(tmp_path):
    vals = {"a": {"psnr": [20.0, 30.0, 25.0], "lpips": [0.2, 0.2, 0.2]},
            "b": {"psnr": [20.5, 22.0, 25.0], "lpips": [0.2, 0.5, 0.21]}}  # fmt: skip
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR, kit.LPIPS], images=["u", "v", "w"])
    report = build(load_runs([run]))
    assert compare.choose_images(report.runs, report.tables[0], 2) == ["v", "u"]


def test_real_drealsr_outputs_figures(drealsr, tmp_path, cli, capsys):
    """harness eval on a few real DRealSR pairs (OSEDiff's outputs and a bicubic made here),
    then every figure; the comparison crops equal the real files' pixels."""
    names = sorted(p.stem for p in (drealsr / "HR").glob("*.png"))[:4]
    for folder in ("LR", "HR", "osediff"):
        (tmp_path / folder).mkdir()
        for n in names:
            shutil.copy(drealsr / folder / f"{n}.png", tmp_path / folder / f"{n}.png")
    (tmp_path / "bicubic").mkdir()
    for n in names:
        with Image.open(tmp_path / "LR" / f"{n}.png") as im:
            im.convert("RGB").resize((im.width * 4, im.height * 4), Image.BICUBIC).save(
                tmp_path / "bicubic" / f"{n}.png"
            )
    out = tmp_path / "run"
    assert cli("eval", "--sr", f"osediff={tmp_path / 'osediff'}", "--sr",
               f"bicubic={tmp_path / 'bicubic'}", "--hr", tmp_path / "HR", "--lr",
               tmp_path / "LR", "--out", out) == 0  # fmt: skip
    assert cli("report", out, "--figures", "all", "--images", names[0]) == 0
    capsys.readouterr()
    ds = tmp_path.name
    _written(out / "figures" / f"dist-{ds}")
    _written(out / "figures" / f"compare-{ds}-{names[0]}")
    assert not (out / "figures" / f"pareto-latency-{ds}.png").exists()  # eval: no efficiency
    record = kit.load_json(out / "figures" / f"compare-{ds}-{names[0]}.json")
    for p in record["panels"]:
        x0, y0, x1, y1 = p["box"]
        assert kit.sha256_file(p["source"]) == p["sha256"]
        assert x1 - x0 == y1 - y0 > 0
    report = build(load_runs([out]))
    _, panels, _ = compare.comparison(report.runs, report.tables[0], names[0])
    for p in panels:
        x0, y0, x1, y1 = p.box
        crop = read_rgb(p.source)[y0:y1, x0:x1]
        crop = np.repeat(np.repeat(crop, p.upscale, 0), p.upscale, 1)
        assert np.array_equal(p.array, crop), p.title
