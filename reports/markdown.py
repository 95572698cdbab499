"""Markdown tables from a run's ``summary.json`` (reads the store only).

One table per dataset: a row per method, a column per metric with an arrow for the better
direction (↑ higher is better, ↓ lower), the best value of each column in bold. A mean that could
not be computed shows as ``n/a`` with a numbered footnote giving the reason.
"""

from __future__ import annotations

from typing import Any


def _best(values: list[float | None], lower_better: bool, decimals: int) -> float | None:
    """The best value as printed: ties at the printed precision are all bold."""
    good = [round(v, decimals) for v in values if v is not None]
    if len(good) < 2:
        return None  # nothing to compare against: no bold
    return min(good) if lower_better else max(good)


def render(summary: dict[str, Any]) -> str:
    specs = summary["metrics"]
    datasets: list[str] = []
    for r in summary["results"]:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    notes: list[str] = []
    parts: list[str] = []
    for ds in datasets:
        results = [r for r in summary["results"] if r["dataset"] == ds]
        n = results[0]["n_images"]
        head = ["Method"] + [
            f"{s['name'].upper()} {'↓' if s['lower_better'] else '↑'}" for s in specs
        ]
        lines = [
            f"### {ds} ({n} images)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(specs)) + "|",
        ]
        best = {
            s["name"]: _best(
                [r["metrics"][s["name"]]["mean"] for r in results], s["lower_better"], s["decimals"]
            )
            for s in specs
        }
        for r in results:
            cells = [r["method"]]
            for s in specs:
                m = r["metrics"][s["name"]]
                if m["mean"] is None:
                    notes.append(f"{r['method']} on {ds}, {s['name']}: {m['reason']}")
                    cells.append(f"n/a[{len(notes)}]")
                    continue
                text = f"{m['mean']:.{s['decimals']}f}"
                is_best = round(m["mean"], s["decimals"]) == best[s["name"]]
                cells.append(f"**{text}**" if is_best else text)
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) + "\n"
    if notes:
        text += "\n" + "\n".join(f"[{i}] {note}" for i, note in enumerate(notes, 1)) + "\n"
    return text
