"""Markdown: the tables of a :class:`~harness.reports.tables.Report`, through pandas.

One table per dataset: a row per method, a column per metric with an arrow for the better
direction (↑ higher is better, ↓ lower); the best value in bold, the second underlined
(``<u>``), † after a best whose lead is not significant. A mean that could not be computed
shows as ``n/a`` with a numbered footnote giving the reason (cells with the same cause, e.g.
one missing weight file, share one footnote); a cell computed under another
protocol (``--allow-drift``) carries a footnote naming the difference. Figures are embedded
below the tables.
"""

from __future__ import annotations

import pandas as pd

from harness.reports import format as fmt
from harness.reports.tables import DatasetTable, Report


def _cell(c: pd.Series, notes: fmt.Footnotes, ci: bool) -> str:
    if pd.isna(c["mean"]):
        return f"n/a[{notes.ref(c.cause)}]"
    text = fmt.number(c["mean"], c["decimals"])
    if c["mark"] == "best":
        text = f"**{text}**"
    elif c["mark"] == "second":
        text = f"<u>{text}</u>"
    if fmt.flag(c["lead_significant"]) is False:
        text += "†"
    if ci and fmt.has_ci(c):
        d = c["decimals"]
        text += f" [{fmt.number(c['ci_low'], d)}, {fmt.number(c['ci_high'], d)}]"
    if c["drift"]:
        text += f"[{notes.ref(f'{c.label} on {c.dataset}, {c.metric}: {c.drift}')}]"
    return text


def _to_markdown(frame: pd.DataFrame) -> str:
    lead = 2 if frame.columns[0] == "Type" else 1  # text columns, then numbers
    align = ("left",) * lead + ("right",) * (frame.shape[1] - lead)
    return frame.to_markdown(index=False, colalign=align, disable_numparse=True)


def table_frame(table: DatasetTable, notes: fmt.Footnotes, ci: bool) -> pd.DataFrame:
    """The display frame: Method, then one column per metric headed by name and arrow."""
    cells = table.cells.assign(text=table.cells.apply(_cell, axis=1, notes=notes, ci=ci))
    wide = cells.pivot(index="label", columns="metric", values="text")
    wide = wide.loc[table.labels, [s["name"] for s in table.metrics]]
    wide.columns = [
        f"{s['name'].upper()} {'↓' if s['lower_better'] else '↑'}" for s in table.metrics
    ]
    frame = wide.rename_axis("Method").reset_index()
    if table.grouped:  # the group named on its first row, as a paper's table reads
        firsts = [
            g if i == 0 or g != table.groups[i - 1] else "" for i, g in enumerate(table.groups)
        ]
        frame.insert(0, "Type", firsts)
    return frame


def render(
    report: Report, ci: bool = False, alpha: float = 0.05, figures: list[tuple[str, str]] = (),
    published: pd.DataFrame | None = None, protocol_notes: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """The whole Markdown document; ``figures`` are (caption, relative path of a PNG);
    ``published`` the rows of ``published.compare`` (see :func:`published_section`)."""
    notes = fmt.Footnotes()
    parts: list[str] = []
    for table in report.tables:
        lines = [f"### {fmt.dataset_title(table)}", "", _to_markdown(table_frame(table, notes, ci))]
        below = [fmt.legend(table, alpha, ci)]
        below += [f"† {line}" for line in fmt.not_significant(table)] + table.notes
        below = [b for b in below if b]
        if below:
            lines += [""] + [f"- {b}" for b in below]
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) + "\n" if parts else ""
    if notes.texts:
        text += "\n" + "\n".join(f"[{i}] {n}" for i, n in enumerate(notes.texts, 1)) + "\n"
    if published is not None and len(published):
        text += "\n" + published_section(published, protocol_notes)
    if report.efficiency is not None:
        frame, title, eff_notes = fmt.efficiency_frame(report.efficiency)
        text += ("\n" if text else "") + f"### {title}\n\n{_to_markdown(frame)}\n\n"
        text += "\n".join(f"- {n}" for n in eff_notes) + "\n"
    if figures:
        text += "\n### Figures\n\n" + "\n\n".join(f"![{c}]({p})\n\n*{c}*" for c, p in figures)
        text += "\n"
    return text


def _letter(i: int) -> str:
    # sources are lettered, apart from the tables' numbered footnotes
    return "abcdefghijklmnopqrstuvwxyz"[i] if i < 26 else f"s{i + 1}"


def published_section(frame: pd.DataFrame, protocol_notes: dict[str, str] | None = None) -> str:
    """Reproduced vs published (``published.compare``'s frame): one table per dataset with
    Method, Metric, Ours, Published, Δ and a ✓ where ours rounds to the printed value; rows
    not compared say why; sources as lettered notes; ``protocol_notes`` per metric shown."""
    if frame.empty:
        return ""
    protocol_notes = protocol_notes or {}
    sources = list(dict.fromkeys(frame["source"]))
    parts = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        lines = []
        for r in rows.itertuples():
            d = int(r.decimals)
            ours = "n/a" if pd.isna(r.ours) else f"{r.ours:.{d + 1}f}"
            if r.compared:
                delta = f"{r.delta:+.{d + 1}f}" + (" ✓" if r.matches else "")
            else:
                delta = f"not compared: {r.reason}"
            ref = _letter(sources.index(r.source))
            lines.append(
                f"| {r.label} | {r.metric.upper()} | {ours} | {r.published:.{d}f} [{ref}] "
                f"| {delta} |"
            )
        parts.append(
            f"### {dataset}: reproduced vs published\n\n"
            "| Method | Metric | Ours | Published | Ours − published |\n"
            "|:--|:--|--:|--:|:--|\n" + "\n".join(lines)
        )
    notes = "\n".join(f"[{_letter(i)}] {s}" for i, s in enumerate(sources))
    legend = [
        "✓: ours, rounded to the printed decimals, equals the published value. Ours is shown "
        "with one more decimal than the paper printed."
    ]
    legend += [f"{m.upper()}: {protocol_notes[m]}" for m in dict.fromkeys(frame["metric"])
               if m in protocol_notes]  # fmt: skip
    return "\n\n".join(parts) + "\n\n" + "\n".join(f"- {x}" for x in legend) + "\n\n" + notes + "\n"
