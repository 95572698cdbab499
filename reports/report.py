"""``harness report``: read result directories, check their protocols, write the tables in the
requested formats and the figures, and return the Markdown text.

Files written (into ``out``; by default the one directory given):

- ``report.md``: the tables, their notes and the embedded figures;
- ``report.tex``: booktabs tables (``--ci`` adds the intervals);
- ``report.csv``: every cell of every table, one row per (dataset, method, metric), with its
  confidence interval and its paired test against the best (``tables.COLUMNS``);
- ``report_efficiency.csv``: the efficiency rows of every directory, with ``run`` and ``label``;
- ``report_published.csv``: each mean next to the papers' printed number, where one exists
  (``published.py``; also a section of ``report.md``);
- ``figures/``: ``pareto-latency-<dataset>``, ``pareto-macs-<dataset>``, ``dist-<dataset>``,
  ``compare-<dataset>-<image>`` as PNG and PDF, and ``compare-*.json`` (crop boxes, sources).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.imageio import write_text
from harness.progress import log
from harness.reports import latex, markdown, published
from harness.reports.load import load_runs
from harness.reports.tables import Options, Report, build

FORMATS = ("md", "tex", "csv")
FIGURES = ("pareto", "dist", "compare")


@dataclass
class Request:
    """What to make. ``crop`` is (x, y, size) in HR pixels; ``images`` names images to compare
    (default: the ``n_compare`` where the methods disagree most)."""

    paths: list[str | Path]
    out: str | Path | None = None
    formats: tuple[str, ...] = ("md",)
    ci: bool = False
    allow_drift: bool = False
    figures: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    n_compare: int = 2
    crop: tuple[int, int, int] | None = None
    seed: int = 0
    alpha: float = 0.05
    published: bool = True  # compare with the papers' printed numbers where they exist
    display_names: bool = False  # row labels: "Real-ESRGAN" (the card) instead of "realesrgan"
    # a run directory without summary.json: report its efficiency alone instead of refusing
    allow_partial: bool = False
    written: list[Path] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # with allow_partial: what and why


def _validate(req: Request) -> None:
    bad = [f for f in req.formats if f not in FORMATS]
    if bad or not req.formats:
        raise HarnessError(f"--format: '{','.join(bad)}' is not among {', '.join(FORMATS)}")
    bad = [f for f in req.figures if f not in FIGURES]
    if bad:
        raise HarnessError(f"--figures: '{','.join(bad)}' is not among {', '.join(FIGURES)}, all")
    if not 0 < req.alpha < 1:
        raise HarnessError(f"--alpha {req.alpha}: must be between 0 and 1")
    if req.n_compare < 1:
        raise HarnessError(f"--n-compare {req.n_compare}: must be at least 1")
    if req.out is None and len(req.paths) > 1:
        raise HarnessError("--out DIR is needed to merge several directories")


def _check_images(req: Request, report: Report) -> None:
    if not req.images:
        return
    if "compare" not in req.figures:
        raise HarnessError("--images: only used by --figures compare")
    known = {
        str(i) for run in report.runs if run.per_image is not None for i in run.per_image["image"]
    }
    for name in req.images:
        if name not in known:
            raise HarnessError(f"--images: no image '{name}' in the given directories")


def _figures(req: Request, report: Report) -> list[tuple[object, str, str, dict | None]]:
    """Every figure drawn in memory first: (figure, file stem, caption, comparison record)."""
    from harness.reports import compare, figures

    made: list[tuple[object, str, str, dict | None]] = []
    for table in report.tables:
        ds = figures.safe_name(table.dataset)
        if "pareto" in req.figures:
            for cost in ("latency", "macs"):
                fig, why = figures.quality_vs_cost(report, table, cost)
                if fig is None:
                    log(f"figure pareto-{cost}-{ds} skipped: {why}")
                    continue
                caption = f"{table.dataset}: quality vs {cost}"
                made.append((fig, f"pareto-{cost}-{ds}", caption, None))
        if "dist" in req.figures:
            fig, why = figures.distributions(report.runs, table, req.seed)
            if fig is None:
                log(f"figure dist-{ds} skipped: {why}")
            else:
                made.append((fig, f"dist-{ds}", f"{table.dataset}: per-image values", None))
        if "compare" in req.figures:
            names = [i for i in req.images if i in _images_of(report, table)]
            if not req.images:
                names = compare.choose_images(report.runs, table, req.n_compare)
            for image in names:
                fig, _, record = compare.comparison(report.runs, table, image, req.crop)
                stem = f"compare-{ds}-{figures.safe_name(image)}"
                caption = f"{table.dataset}/{image}: LR (nearest), methods, HR"
                made.append((fig, stem, caption, record))
                for note in record["notes"]:
                    log(f"{stem}: {note}")
    return made


def _write_figures(req: Request, made, out: Path) -> list[tuple[str, str]]:
    if not made:
        return []  # no figures: spare the import of matplotlib (~1 s)
    from harness.reports import compare, figures

    embedded = []
    for fig, stem, caption, record in made:
        paths = figures.save(fig, out / "figures" / stem)
        req.written += paths
        embedded.append((caption, paths[0].relative_to(out).as_posix()))
        if record is not None:
            compare.write_record(record, out / "figures" / f"{stem}.json")
            req.written.append(out / "figures" / f"{stem}.json")
    return embedded


def _images_of(report: Report, table) -> set[str]:
    return {
        str(i)
        for run in report.runs
        if run.per_image is not None
        for i in run.per_image.loc[run.per_image["dataset"] == table.dataset, "image"]
    }


def make_report(req: Request) -> tuple[str, Path]:
    """Check everything, then write the files; returns (Markdown text, output folder)."""
    _validate(req)
    runs = load_runs(req.paths, req.allow_partial, req.left_out)
    for line in req.left_out:
        log(f"left out: {line}")
    out = Path(req.out) if req.out is not None else runs[0].path
    opts = Options(seed=req.seed, alpha=req.alpha, allow_drift=req.allow_drift,
                   display_names=req.display_names)  # fmt: skip
    report = build(runs, opts)
    _check_images(req, report)
    made = _figures(req, report) if req.figures else []  # errors before any file is written
    figs = _write_figures(req, made, out)
    pub, notes = None, None
    if req.published:
        data = published.load()
        pub, notes = published.compare(report, data), published.notes(data)
    text = markdown.render(report, ci=req.ci, alpha=req.alpha, figures=figs, published=pub,
                           protocol_notes=notes)  # fmt: skip
    if req.left_out:  # a partial report says so in the file itself
        text += "\n### Left out (--allow-partial)\n\n" + "".join(f"- {x}\n" for x in req.left_out)
    if "md" in req.formats:
        write_text(out / "report.md", text)
        req.written.append(out / "report.md")
    if "tex" in req.formats:
        sources = ", ".join(str(r.path) for r in runs)
        write_text(out / "report.tex", latex.render(report, req.ci, req.alpha, sources))
        req.written.append(out / "report.tex")
    if "csv" in req.formats:
        write_text(out / "report.csv", report.results.to_csv(index=False))
        req.written.append(out / "report.csv")
        if report.efficiency is not None:
            write_text(out / "report_efficiency.csv", report.efficiency.to_csv(index=False))
            req.written.append(out / "report_efficiency.csv")
        if pub is not None and len(pub):
            write_text(out / "report_published.csv", pub.to_csv(index=False))
            req.written.append(out / "report_published.csv")
    return text, out
