from harness.reports import Request, make_report
from harness.store import Row, RunStore, summarise

SPECS = [
    {"name": "psnr", "lower_better": False, "decimals": 2, "reference": "FR"},
    {"name": "lpips", "lower_better": True, "decimals": 4, "reference": "FR"},
]


def _row(method, image, psnr, lpips, why=None):
    missing = {"lpips": why} if lpips is None else {}
    return Row(method, "ds", image, "k", {"psnr": psnr, "lpips": lpips}, missing)


def test_torn_journal_line_is_ignored_and_isolated(tmp_path):
    store = RunStore(tmp_path)
    store.append([_row("m", "a", 1.0, 0.1)])
    with open(store.journal, "a") as f:
        f.write('{"method": "m", "dataset": "ds", "ima')  # killed mid-write
    assert list(store.read_journal()) == [("m", "ds", "a")]
    store.append([_row("m", "b", 2.0, 0.2)])
    assert sorted(k[2] for k in store.read_journal()) == ["a", "b"]


def test_partial_metric_gives_no_mean_but_a_reason():
    rows = [_row("m", "a", 20.0, 0.3), _row("m", "b", 22.0, None, "lpips failed: boom")]
    [res] = summarise(rows, [("m", "ds", 2)], SPECS, {"ds": ["psnr", "lpips"]})
    assert res["metrics"]["psnr"]["mean"] == 21.0 and res["metrics"]["psnr"]["missing"] == 0
    lp = res["metrics"]["lpips"]
    assert lp["mean"] is None and lp["n"] == 1 and lp["missing"] == 1
    assert lp["reason"] == "1 of 2 images missing: lpips failed: boom"


def test_fr_metric_on_dataset_without_hr_is_marked_not_applicable():
    rows = [Row("m", "ds", "a", "k", {}, {})]
    [res] = summarise(rows, [("m", "ds", 1)], SPECS, {"ds": []})
    assert res["metrics"]["psnr"]["mean"] is None
    assert "needs HR" in res["metrics"]["psnr"]["reason"]


def _md_row(text: str, label: str) -> str:
    """A Markdown table row with the column padding removed."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == label:
            return "| " + " | ".join(cells) + " |"
    raise AssertionError(label)


def test_report_arrows_bold_best_and_footnotes(tmp_path):
    rows = [
        _row("a", "x", 20.0, 0.30),
        _row("b", "x", 25.0, 0.20),
        _row("c", "x", 22.0, None, "no weights"),
    ]
    store = RunStore(tmp_path)
    store.write_per_image(rows, ["psnr", "lpips"])
    specs = [s | {"per": "image", "options": {}, "pyiqa_id": s["name"]} for s in SPECS]
    results = summarise(rows, [(m, "ds", 1) for m in "abc"], specs, {"ds": ["psnr", "lpips"]})
    store.write_summary({"metrics": specs, "pyiqa_version": "0.1.16", "results": results})
    text, _ = make_report(Request([tmp_path]))
    assert _md_row(text, "Method") == "| Method | PSNR ↑ | LPIPS ↓ |"
    # one image per method cannot show a significant lead: the best values carry †
    assert _md_row(text, "b") == "| b | **25.00**† | **0.2000**† |"
    assert _md_row(text, "a") == "| a | 20.00 | 0.3000 |"
    assert _md_row(text, "c") == "| c | <u>22.00</u> | n/a[1] |"
    assert "[1] no weights" in text


def test_one_footnote_per_cause_not_per_cell(tmp_path):
    """suite=paper with a missing weight file: every method x dataset cell of that metric points
    at one footnote (mutation caught: numbering a note per cell)."""
    why = "missing LPIPS_v0.1_alex-df73285e.pth; get it with `harness weights fetch lpips`"
    rows = []
    for ds in ("d1", "d2"):
        for m in ("a", "b"):
            rows.append(Row(m, ds, "x", "k", {"psnr": 20.0, "lpips": None}, {"lpips": why}))
    rows.append(Row("c", "d1", "x", "k", {"psnr": 20.0, "lpips": None}, {"lpips": "boom"}))
    rows.append(Row("c", "d1", "y", "k", {"psnr": 20.0, "lpips": 0.1}, {}))
    groups = [("a", "d1", 1), ("b", "d1", 1), ("c", "d1", 2), ("a", "d2", 1), ("b", "d2", 1)]
    applicable = {"d1": ["psnr", "lpips"], "d2": ["psnr", "lpips"]}
    store = RunStore(tmp_path)
    store.write_per_image(rows, ["psnr", "lpips"])
    specs = [s | {"per": "image", "options": {}, "pyiqa_id": s["name"]} for s in SPECS]
    results = summarise(rows, groups, specs, applicable)
    store.write_summary({"metrics": specs, "pyiqa_version": "0.1.16", "results": results})
    text, _ = make_report(Request([tmp_path]))
    assert text.count("n/a[1]") == 4 and text.count("n/a[2]") == 1
    notes = [line for line in text.splitlines() if line.startswith("[")]
    assert notes == [f"[1] {why}", "[2] 1 of 2 images: boom"]
