"""Markdown tables from a run's ``summary.json`` (reads the store only).

One table per dataset: a row per method, a column per metric with an arrow for the better
direction (↑ higher is better, ↓ lower), the best value of each column in bold. A mean that could
not be computed shows as ``n/a`` with a numbered footnote giving the reason; cells with the same
cause (one missing weight file, across methods and datasets) share one footnote.
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
    notes: dict[str, int] = {}  # cause -> footnote number
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
                    cause = m.get("cause") or m["reason"]
                    number = notes.setdefault(cause, len(notes) + 1)
                    cells.append(f"n/a[{number}]")
                    continue
                text = f"{m['mean']:.{s['decimals']}f}"
                is_best = round(m["mean"], s["decimals"]) == best[s["name"]]
                cells.append(f"**{text}**" if is_best else text)
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) + "\n"
    if notes:
        text += "\n" + "\n".join(f"[{i}] {note}" for note, i in notes.items()) + "\n"
    return text


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e9:.1f}"


def render_efficiency(eff: dict[str, Any]) -> str:
    """The efficiency table: one row per method, ratios against the reference method."""
    rows = eff["rows"]
    env = eff["environment"]
    ref = rows[0].get("reference") if rows else None
    dev = env["device"]
    lines = [
        f"### Efficiency ({dev.get('name', dev['type'])}, {env['dtype']}, "
        f"LR {rows[0]['lr_size']}x{rows[0]['lr_size']})"
        if rows
        else "### Efficiency",
        "",
        f"| Method | Steps | Params (M) | MACs fvcore (G) | MACs +attention (G) | "
        f"Latency median (s) [p10-p90] | Runs | Memory added (MB) | Peak memory (MB) | "
        f"Latency vs {ref} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    unreliable = False
    for r in rows:
        ratio = r.get("latency_median_s_ratio")
        added = r.get("added_memory_bytes")
        flag = " †" if r.get("latency_unreliable") else ""
        unreliable = unreliable or bool(flag)
        lines.append(
            f"| {r['method']} | {r['steps'] or '-'} | {r['params'] / 1e6:.2f} | "
            f"{_g(r['macs_fvcore'])} | {_g(r['macs_fvcore_plus_attention'])} | "
            f"{r['latency_median_s']:.4f} [{r['latency_p10_s']:.4f}-{r['latency_p90_s']:.4f}]"
            f"{flag} | {r.get('latency_runs', '')} | "
            f"{'n/a' if added is None else f'{added / 2**20:.0f}'} | "
            f"{r['peak_memory_bytes'] / 2**20:.0f} ({r['memory_kind']}) | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} |"
        )
    notes = [
        "MACs: one multiply-add = 1. fvcore (the papers' convention) skips attention; "
        "'+attention' adds the Q.K^T and A.V matmuls of every attention call.",
        "Memory added: what the method adds to the process (its load, plus the peak of the "
        "timed runs above the memory in use before them). Peak memory: the absolute peak "
        "during the timed runs (whole process on a CPU), which depends on what ran before.",
    ]
    if unreliable:
        spread = max(r.get("latency_spread") or 0 for r in rows)
        notes.append(
            "† latency unreliable: the runs' IQR/median is above profile.unreliable_spread "
            f"(largest here {spread:.2f}); a busy machine? Rerun with a larger --max-time or "
            "--runs."
        )
    for r in rows:
        if r.get("macs_fvcore") and r.get("macs_ptflops") is not None:
            d = (r["macs_ptflops"] - r["macs_fvcore"]) / r["macs_fvcore"] * 100
            notes.append(
                f"{r['method']}: ptflops ({r['ptflops_backend']} backend) "
                f"{_g(r['macs_ptflops'])} G ({d:+.2f}% vs fvcore); torch FlopCounter "
                f"(math attention) {_g(r['macs_flopcounter'])} G."
            )
        if r.get("notes"):
            notes.append(f"{r['method']}: {r['notes']}.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
