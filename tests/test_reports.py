"""harness report: merged tables, ranking marks, statistics, the protocol-drift guard, formats."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

_KIT = Path(__file__).with_name("reportkit.py")
_spec = importlib.util.spec_from_file_location("reportkit", _KIT)
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

from harness.reports import Request, make_report  # noqa: E402
from harness.reports import stats as st  # noqa: E402
from harness.reports.latex import escape  # noqa: E402


def _cells(md: str, label: str) -> list[str]:
    """The cells of a Markdown table row (whitespace of the padding removed)."""
    for line in md.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts and parts[0] == label:
            return parts[1:]
    raise AssertionError(f"no row {label!r} in\n{md}")


def _tex_cells(tex: str, label: str) -> list[str]:
    for line in tex.splitlines():
        if line.startswith(f"{label} &"):
            return [c.strip() for c in line.rstrip("\\ ").split("&")][1:]
    raise AssertionError(f"no row {label!r} in\n{tex}")


def _constant(v: float, n: int = 8) -> list[float]:
    return [v] * n


# ------------------------------------------------------------------ ranking marks


@pytest.fixture
def four(tmp_path):
    """Four methods; PSNR (higher better) and LPIPS (lower better) rank them differently.
    Differences are the same on every image: every lead is significant."""
    n = 12
    base = np.linspace(0, 1, n)
    vals = {
        "a": {"psnr": 20 + base, "ssim": 0.5 + base / 10, "lpips": 0.40 + base / 100},
        "b": {"psnr": 25 + base, "ssim": 0.7 + base / 10, "lpips": 0.10 + base / 100},
        "c": {"psnr": 22 + base, "ssim": 0.6 + base / 10, "lpips": 0.20 + base / 100},
        "d": {"psnr": 21 + base, "ssim": 0.8 + base / 10, "lpips": 0.30 + base / 100},
    }
    return kit.make_run(tmp_path / "r", vals, [kit.PSNR, kit.SSIM, kit.LPIPS])


def test_bold_and_underline_land_on_the_right_cells_both_directions(four, tmp_path):
    text, _ = make_report(Request([four], formats=("md", "tex", "csv")))
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert header == ["Method", "PSNR ↑", "SSIM ↑", "LPIPS ↓"]
    # PSNR: b best, c second; SSIM: d best, b second; LPIPS (lower): b best, c second
    assert _cells(text, "b") == ["**25.50**", "<u>0.7500</u>", "**0.1050**"]
    assert _cells(text, "c") == ["<u>22.50</u>", "0.6500", "<u>0.2050</u>"]
    assert _cells(text, "d") == ["21.50", "**0.8500**", "0.3050"]
    assert _cells(text, "a") == ["20.50", "0.5500", "0.4050"]
    tex = (four / "report.tex").read_text()
    assert r"PSNR$\uparrow$ & SSIM$\uparrow$ & LPIPS$\downarrow$ \\" in tex
    assert _tex_cells(tex, "b") == [r"\textbf{25.50}", r"\underline{0.7500}", r"\textbf{0.1050}"]
    assert _tex_cells(tex, "c") == [r"\underline{22.50}", "0.6500", r"\underline{0.2050}"]
    assert _tex_cells(tex, "d") == ["21.50", r"\textbf{0.8500}", "0.3050"]
    rows = kit.csv_rows(four / "report.csv")
    marks = {(r["method"], r["metric"]): r["mark"] for r in rows}
    assert marks[("b", "lpips")] == "best" and marks[("a", "lpips")] == ""


def test_ties_at_printed_precision_share_bold_and_leave_no_second(tmp_path):
    vals = {
        "a": {"psnr": _constant(25.001)},
        "b": {"psnr": _constant(24.999)},
        "c": {"psnr": _constant(24.0)},
    }
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR])
    text, _ = make_report(Request([run]))
    assert _cells(text, "a") == ["**25.00**"] and _cells(text, "b") == ["**25.00**"]
    assert _cells(text, "c") == ["24.00"]  # competition rank 3: not "second"
    assert "†" not in text  # a tie claims no lead


def test_two_methods_give_no_underline(tmp_path):
    vals = {"a": {"psnr": _constant(25.0)}, "b": {"psnr": _constant(24.0)}}
    text, _ = make_report(Request([kit.make_run(tmp_path / "r", vals, [kit.PSNR])]))
    assert _cells(text, "b") == ["24.00"]


def test_rows_are_grouped_as_the_papers_group_them(tmp_path):
    """Classical, GAN-based, multi-step diffusion, one-step diffusion, then methods whose card
    states no family; the given order within a group; shown in every format."""
    cards = {
        "onestep": {"family": "diffusion", "steps": 1},
        "gan1": {"family": "gan"},
        "multistep": {"family": "diffusion", "steps": 15},
        "mine": {},
        "bicubic": {"family": "classical"},
        "gan2": {"family": "gan"},
    }
    vals = {m: {"psnr": _constant(20.0 + i)} for i, m in enumerate(cards)}
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR], cards=cards)
    text, _ = make_report(Request([run], formats=("md", "tex", "csv")))
    order = ["bicubic", "gan1", "gan2", "multistep", "onestep", "mine"]
    rows = kit.csv_rows(run / "report.csv")
    assert [r["method"] for r in rows] == order
    groups = ["Classical", "GAN-based", "GAN-based", "Diffusion, multi-step",
              "Diffusion, one-step", ""]  # fmt: skip
    assert [r["group"] for r in rows] == groups
    table = [ln for ln in text.splitlines() if ln.startswith("| ")][1:]
    assert [[c.strip() for c in ln.split("|")[1:3]] for ln in table] == [
        ["Classical", "bicubic"], ["GAN-based", "gan1"], ["", "gan2"],
        ["Diffusion, multi-step", "multistep"], ["Diffusion, one-step", "onestep"], ["", "mine"],
    ]  # fmt: skip
    tex = (run / "report.tex").read_text()
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")].split("\n")
    assert [ln.split(" &")[0] for ln in body if ln] == [
        "\\midrule", "bicubic", "\\midrule", "gan1", "gan2", "\\midrule", "multistep",
        "\\midrule", "onestep", "\\midrule", "mine",
    ]  # fmt: skip
    assert "Rows by type: Classical; GAN-based; Diffusion, multi-step; Diffusion, one-step." in tex


def test_display_names_label_the_rows(tmp_path, cli, capsys):
    cards = {"realesrgan": {"family": "gan", "display_name": "Real-ESRGAN"}, "mine": {}}
    vals = {m: {"psnr": _constant(20.0 + i)} for i, m in enumerate(cards)}
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR], cards=cards)
    assert cli("report", run, "--display-names", "--format", "md,csv") == 0
    text = capsys.readouterr().out
    assert "| Real-ESRGAN |" in re.sub(r" +", " ", text) and "| realesrgan |" not in text
    rows = kit.csv_rows(run / "report.csv")
    assert [(r["method"], r["label"]) for r in rows] == [("realesrgan", "Real-ESRGAN"),
                                                          ("mine", "mine")]  # fmt: skip
    assert cli("report", run, "--format", "md") == 0  # the default: method ids
    assert "| realesrgan |" in re.sub(r" +", " ", capsys.readouterr().out)


def test_one_group_adds_no_type_column(four):
    text, _ = make_report(Request([four], formats=("md", "tex")))  # no cards: no groups
    assert "Type" not in text and "Rows by type" not in (four / "report.tex").read_text()


# ------------------------------------------------------------------ statistics


def test_noise_only_difference_claims_no_significant_lead(tmp_path):
    rng = np.random.default_rng(7)
    base = rng.normal(27, 3, 40)  # per-image difficulty, shared by both methods
    vals = {
        "a": {"psnr": base + rng.normal(0, 0.3, 40)},
        "b": {"psnr": base + rng.normal(0, 0.3, 40)},
    }
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR])
    text, _ = make_report(Request([run], formats=("md", "csv")))
    best = max("ab", key=lambda m: np.mean(vals[m]["psnr"]))
    other = "b" if best == "a" else "a"
    assert _cells(text, best)[0].endswith("**†")
    assert f"PSNR: {best} is not significantly better than {other}" in text
    rows = {r["method"]: r for r in kit.csv_rows(run / "report.csv")}
    assert rows[best]["lead_significant"] == "False"
    assert float(rows[other]["vs_best_p"]) >= 0.05


def test_a_real_lead_is_significant(tmp_path):
    rng = np.random.default_rng(7)
    base = rng.normal(27, 3, 40)
    vals = {
        "a": {"psnr": base + 0.4 + rng.normal(0, 0.3, 40)},
        "b": {"psnr": base + rng.normal(0, 0.3, 40)},
    }
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR])
    text, _ = make_report(Request([run], formats=("md", "csv")))
    assert re.fullmatch(r"\*\*\d+\.\d\d\*\*", _cells(text, "a")[0])  # bold, no †
    assert "†" not in text
    rows = {r["method"]: r for r in kit.csv_rows(run / "report.csv")}
    assert rows["a"]["lead_significant"] == "True" and float(rows["b"]["vs_best_p"]) < 1e-4


@pytest.mark.parametrize("case", ["ties", "zeros", "both", "plain", "n14_ties"])
def test_paired_test_p_equals_scipy_wilcoxon(case):
    """The vectorised permutation test for ties or zeros in <= 13 differences gives scipy's
    own p exactly (mutation caught: ranks taken over signed differences; zeros ranked)."""
    import warnings

    from scipy import stats

    rng = np.random.default_rng(3)
    n = 14 if case == "n14_ties" else 9
    a = np.round(rng.normal(size=n), 1 if case != "plain" else 6)
    b = np.round(rng.normal(size=n), 1 if case != "plain" else 6)
    if case in ("zeros", "both"):
        b[:2] = a[:2]
    if case in ("ties", "both", "n14_ties"):
        b[3] = a[3] - (a[4] - b[4])  # the same |difference| twice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(stats.wilcoxon(a - b, alternative="two-sided").pvalue)
    assert st.paired_test(a, b) == expected


def test_noise_only_false_lead_rate_is_at_most_alpha():
    """Over many noise-only pairs the test claims a lead in about alpha of them, not more."""
    rng = np.random.default_rng(0)
    claims = 0
    for _ in range(400):
        base = rng.normal(27, 3, 30)
        a, b = base + rng.normal(0, 0.3, 30), base + rng.normal(0, 0.3, 30)
        best, other = (a, b) if a.mean() > b.mean() else (b, a)
        claims += st.lead_is_significant(best, other, lower_better=False)[0]
    assert claims / 400 <= 0.075


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(0.7, 0.1, 50)
    lo, hi = st.bootstrap_ci(x, seed=3)
    assert (lo, hi) == st.bootstrap_ci(x, seed=3)
    assert lo < x.mean() < hi and hi - lo < 0.1
    assert st.bootstrap_ci(x[:1], seed=3) is None
    assert st.bootstrap_ci(np.full(5, 2.0), seed=3) == (2.0, 2.0)


def test_ci_always_in_csv_optional_in_tex_and_none_for_set_metrics(tmp_path):
    rng = np.random.default_rng(2)
    vals = {m: {"psnr": rng.normal(27 + i, 2, 10)} for i, m in enumerate("ab")}
    fids = {"a": {"fid": 30.0}, "b": {"fid": 20.0}}
    run = kit.make_run(tmp_path / "r", vals, [kit.PSNR, kit.FID], set_values=fids)
    make_report(Request([run], formats=("tex", "csv")))
    rows = {(r["method"], r["metric"]): r for r in kit.csv_rows(run / "report.csv")}
    a = rows[("a", "psnr")]
    assert float(a["ci_low"]) < float(a["mean"]) < float(a["ci_high"])
    assert "BCa" in a["ci_method"] and "seed 0" in a["ci_method"]
    assert rows[("a", "fid")]["ci_low"] == "" and "set-level" in rows[("a", "fid")]["ci_method"]
    assert rows[("b", "fid")]["mark"] == "best" and rows[("b", "fid")]["lead_significant"] == ""
    tex = (run / "report.tex").read_text()
    assert r"\scriptsize" not in tex and "FID is computed on the whole set" in tex
    make_report(Request([run], formats=("tex",), ci=True))
    assert r"\scriptsize[" in (run / "report.tex").read_text()


# ------------------------------------------------------------------ merging and drift


def _two_runs(tmp_path, ssim_b=None, version_b="0.1.16", files_b=None):
    rng = np.random.default_rng(3)
    a = kit.make_run(
        tmp_path / "a", {"bicubic": {"psnr": rng.normal(27, 2, 6), "ssim": rng.random(6)}},
        [kit.PSNR, kit.SSIM],
    )  # fmt: skip
    b = kit.make_run(
        tmp_path / "b", {"osediff": {"psnr": rng.normal(28, 2, 6), "ssim": rng.random(6)}},
        [kit.PSNR, ssim_b or kit.SSIM], pyiqa_version=version_b, files=files_b,
    )  # fmt: skip
    return a, b


def test_two_runs_merge_into_one_table(tmp_path, cli, capsys):
    a, b = _two_runs(tmp_path)
    assert cli("report", a, b, "--out", tmp_path / "o") == 0
    out = capsys.readouterr().out
    assert "### ds (6 images)" in out and out.count("### ds") == 1
    assert _cells(out, "bicubic") and _cells(out, "osediff")
    for name in ("report.md", "report.tex", "report.csv"):
        assert (tmp_path / "o" / name).stat().st_size > 0


def test_same_method_in_two_runs_is_labelled_by_run(tmp_path):
    rng = np.random.default_rng(4)
    a = kit.make_run(tmp_path / "a", {"bicubic": {"psnr": rng.normal(27, 2, 6)}}, [kit.PSNR])
    b = kit.make_run(tmp_path / "b", {"bicubic": {"psnr": rng.normal(27, 2, 6)}}, [kit.PSNR])
    text, _ = make_report(Request([a, b], out=tmp_path / "o"))
    assert _cells(text, "bicubic (a)") and _cells(text, "bicubic (b)")


def test_different_ssim_settings_are_refused_naming_the_option(tmp_path, cli, capsys):
    yiq = kit.spec("ssim", options={"test_y_channel": True, "color_space": "yiq"})
    a, b = _two_runs(tmp_path, ssim_b=yiq)
    assert cli("report", a, b, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "ssim option color_space: 'ycbcr' vs 'yiq'" in err[0]
    assert not (tmp_path / "o").exists()  # nothing written


def test_allow_drift_shows_them_unranked_and_marked(tmp_path):
    yiq = kit.spec("ssim", options={"test_y_channel": True, "color_space": "yiq"})
    a, b = _two_runs(tmp_path, ssim_b=yiq)
    text, _ = make_report(Request([a, b], out=tmp_path / "o", allow_drift=True))
    ssim_a, ssim_b = _cells(text, "bicubic")[1], _cells(text, "osediff")[1]
    assert "**" not in ssim_a + ssim_b  # SSIM not ranked
    assert re.fullmatch(r"0\.\d{4}\[\d+\]", ssim_b) and re.fullmatch(r"0\.\d{4}", ssim_a)
    note = ssim_b.split("[")[1].rstrip("]")
    assert f"[{note}] osediff on ds, ssim: differs from" in text and "'yiq'" in text
    assert "SSIM: not ranked" in text
    assert "**" in "".join(_cells(text, "bicubic")[:1] + _cells(text, "osediff")[:1])  # PSNR is


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version_b": "0.1.10"}, "pyiqa version: '0.1.16' vs '0.1.10'"),
        (
            {"files_b": [{"name": f"img{i:03d}", "lr_sha256": f"lr-img{i:03d}",
                          "hr_sha256": "other" if i == 2 else f"hr-img{i:03d}"} for i in range(6)]},
            "HR files differ (1 of 6, e.g. img002)",
        ),
    ],
)  # fmt: skip
def test_other_drift_is_named(tmp_path, kwargs, message):
    from harness.errors import HarnessError

    a, b = _two_runs(tmp_path, **kwargs)
    with pytest.raises(HarnessError, match=re.escape(message)):
        make_report(Request([a, b], out=tmp_path / "o"))


def test_eval_without_lr_matches_a_run_with_lr(tmp_path):
    """An eval without --lr records no LR hashes: same HR files, no drift."""
    files = [{"name": f"img{i:03d}", "lr_sha256": None, "hr_sha256": f"hr-img{i:03d}"}
             for i in range(6)]  # fmt: skip
    a, b = _two_runs(tmp_path, files_b=files)
    text, _ = make_report(Request([a, b], out=tmp_path / "o"))
    assert "not ranked" not in text


def test_summary_and_per_image_must_agree(tmp_path):
    from harness.errors import HarnessError

    run = kit.make_run(tmp_path / "r", {"a": {"psnr": [20.0, 22.0]}}, [kit.PSNR])
    csv = (run / "per_image.csv").read_text().replace("22.0", "23.0")
    (run / "per_image.csv").write_text(csv)
    with pytest.raises(HarnessError, match="disagree on the mean of psnr"):
        make_report(Request([run]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "docx"], "--format: 'docx'"),
        (["--figures", "pie"], "--figures: 'pie'"),
        (["--crop", "1,2"], "--crop 1,2: expected X,Y,SIZE"),
        (["--images", "x"], "--images: only used by --figures compare"),
    ],
)
def test_report_option_errors(tmp_path, cli, capsys, extra, message):
    run = kit.make_run(tmp_path / "r", {"a": {"psnr": [20.0, 22.0]}}, [kit.PSNR])
    assert cli("report", run, *extra) == 2
    assert message in capsys.readouterr().err


def test_several_dirs_need_out(tmp_path, cli, capsys):
    a, b = _two_runs(tmp_path)
    assert cli("report", a, b) == 2
    assert "--out DIR is needed" in capsys.readouterr().err


# ------------------------------------------------------------------ LaTeX


def _check_tex_structure(tex: str) -> None:
    body = re.sub(r"\\[{}%&$#_]", "", tex)  # escaped characters are not structure
    body = "\n".join(line.split("%")[0] for line in body.splitlines())  # comments
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unclosed {"
    assert body.count("$") % 2 == 0, "unbalanced math"
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+\*?)\}", body):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not match"
    assert not stack, f"unclosed {stack}"
    outside = re.sub(r"\\begin\{tabular\}.*?\\end\{tabular\}", "", body, flags=re.S)
    assert "&" not in outside, "an unescaped & outside a tabular"
    for tab in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, re.S):
        cols, inner = len(tab[0]), tab[1]
        assert "\\toprule" in inner and "\\midrule" in inner and "\\bottomrule" in inner
        for row in inner.split("\\\\")[:-1]:
            row = re.sub(r"\\(top|mid|bottom)rule", "", row)
            assert row.count("&") == cols - 1, row


@pytest.fixture
def awkward(tmp_path):
    """Names with LaTeX specials, a missing value and a non-significant best."""
    rng = np.random.default_rng(5)
    base = rng.normal(27, 2, 8)
    vals = {
        "my_net&co": {"psnr": base + rng.normal(0, 0.2, 8), "lpips": rng.random(8)},
        "50%_model": {"psnr": base + rng.normal(0, 0.2, 8), "lpips": rng.random(8)},
        "x#1": {"psnr": base - 1, "lpips": [None] * 8},
    }
    run = kit.make_run(
        tmp_path / "r", vals, [kit.PSNR, kit.LPIPS], dataset="Real_SR",
        efficiency=[kit.eff_row("my_net&co", 0.5, 3e9), kit.eff_row("x#1", 0.1)],
    )  # fmt: skip
    make_report(Request([run], formats=("tex",), ci=True))
    return run / "report.tex"


def test_latex_structure_is_balanced(awkward):
    tex = awkward.read_text()
    _check_tex_structure(tex)
    assert escape("my_net&co") in tex and "50\\%\\_model" in tex
    assert _tex_cells(tex, "x\\#1")[1] == "n/a$^{1}$"
    assert "$^{1}$ weights missing" in tex  # one footnote per cause
    assert "Real\\_SR" in tex


def test_latex_structure_check_catches_breakage(awkward):
    tex = awkward.read_text()
    for broken in (tex.replace(r"\bottomrule", "", 1), tex.replace(r"\textbf{", r"\textbf", 1),
                   tex.replace(r"\&", "&", 1), tex.replace("\\&co &", "&co &", 1),
                   tex.replace(r"\end{tabular}", "", 1)):  # fmt: skip
        with pytest.raises(AssertionError):
            _check_tex_structure(broken)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles_with_pdflatex(awkward, tmp_path):
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"\\input{{{awkward.as_posix()}}}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# ------------------------------------------------------------------ eval with several folders


def test_eval_scores_several_named_folders(tmp_path, cli, capsys):
    lr, hr, srs, _ = kit.make_images(tmp_path, ["p", "q", "r"], ["m1", "m2"])
    out = tmp_path / "out"
    args = ["eval", "--sr", f"m1={srs['m1']}", "--sr", f"m2={srs['m2']}", "--hr", hr]
    assert cli(*args, "--lr", lr, "--out", out) == 0
    text = capsys.readouterr().out
    assert _cells(text, "m1") and _cells(text, "m2")
    rows = kit.csv_rows(out / "per_image.csv")
    assert [(r["method"], r["image"]) for r in rows] == [
        ("m1", "p"), ("m1", "q"), ("m1", "r"), ("m2", "p"), ("m2", "q"), ("m2", "r"),
    ]  # fmt: skip
    manifest = kit.load_json(out / "manifest.json")
    [ds] = manifest["datasets"]
    assert ds == tmp_path.name  # the parent of HR/
    assert manifest["methods"]["m2"]["sr_dir"][ds] == str(srs["m2"].resolve())
    entry = manifest["datasets"][ds]
    assert entry["scale"] == 4 and entry["lr_dir"] == str(lr.resolve())
    assert [f["name"] for f in entry["files"]] == ["p", "q", "r"] and entry["files"][0]["lr_sha256"]


@pytest.mark.parametrize(
    ("srs", "message"),
    [
        (["a=X", "a=Y"], "method 'a' is given twice"),
        (["X", "Y"], "several folders need names"),
        (["a=X", "Y"], "name every folder"),
        (["a b=X"], "method names use letters"),
    ],
)
def test_eval_sr_option_errors(tmp_path, cli, capsys, srs, message):
    args = [a for s in srs for a in ("--sr", s.replace("X", "x").replace("Y", "y"))]
    assert cli("eval", *args, "--hr", tmp_path, "--out", tmp_path / "o") == 2
    assert message in capsys.readouterr().err
