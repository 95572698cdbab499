"""Figures from the tables: quality vs cost with the Pareto front, and per-image distributions.

Drawn with matplotlib's object API (``Figure``, the Agg canvas; no pyplot, no display) and
saved as PNG and PDF by :func:`save`. Every function returns the ``Figure`` (or None with the
reason when there is nothing to draw) so tests can read the plotted data back.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.imageio import write_bytes
from harness.reports.load import RunData
from harness.reports.tables import DatasetTable, Report, efficiency_for

COST = {  # cost -> (efficiency.csv column, axis label, factor to the axis unit)
    "latency": ("latency_median_s", "latency, median (s; bars p10-p90)", 1.0),
    "macs": ("macs_fvcore", "MACs, fvcore (G)", 1e-9),
}


def safe_name(text: str) -> str:
    """A file-name fragment from a dataset, image or metric name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def save(fig: Figure, stem: Path) -> list[Path]:
    """``stem``.png (150 dpi) and ``stem``.pdf, each written atomically; no timestamps in the
    PDF, so the same data gives the same file."""
    out = []
    for ext, kw in (("png", {"dpi": 150}), ("pdf", {"metadata": {"CreationDate": None}})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, bbox_inches="tight", **kw)
        path = stem.with_suffix(f".{ext}")
        write_bytes(path, buf.getvalue())
        out.append(path)
    return out


def pareto_front(x: np.ndarray, y: np.ndarray, lower_better: bool) -> list[int]:
    """Indices of the points no other point beats on both cost (``x``, lower is better) and
    quality (``y``), sorted by cost. Equal points are all kept."""
    q = -np.asarray(y, float) if lower_better else np.asarray(y, float)
    x = np.asarray(x, float)
    front = []
    for i in range(len(x)):
        dominated = any(
            x[j] <= x[i] and q[j] >= q[i] and (x[j] < x[i] or q[j] > q[i]) for j in range(len(x))
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (x[i], -q[i]))


def _ranked_metrics(table: DatasetTable) -> list[dict]:
    """Metrics with a mean for 1+ methods and no protocol difference (those are not ranked)."""
    out = []
    for s in table.metrics:
        col = table.cells[table.cells["metric"] == s["name"]]
        if col["mean"].notna().any() and not col["drift"].astype(bool).any():
            out.append(s)
    return out


def quality_vs_cost(report: Report, table: DatasetTable, cost: str) -> tuple[Figure | None, str]:
    """One panel per metric: each method's mean (bars: 95% CI) against its cost, log scale,
    the Pareto front as a step line. (None, why) when no method has that cost."""
    column, xlabel, factor = COST[cost]
    eff = efficiency_for(report, table)
    xs = eff.set_index("label")[column] * factor
    have = xs.dropna()
    have = have[have > 0]
    if have.empty:
        return None, f"no method of {table.dataset} has {column} (efficiency.csv)"
    metrics = _ranked_metrics(table)
    if not metrics:
        return None, f"no metric of {table.dataset} has a mean to plot"
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    left_out = sorted(set(table.labels) - set(have.index))
    for ax, spec in zip(axes, metrics):
        col = table.cells[table.cells["metric"] == spec["name"]].set_index("label")
        pts = col.loc[[lab for lab in have.index if not math.isnan(col.at[lab, "mean"])]]
        x = have[pts.index].to_numpy()
        y = pts["mean"].to_numpy()
        yerr = np.vstack([y - pts["ci_low"].to_numpy(), pts["ci_high"].to_numpy() - y])
        xerr = None
        if cost == "latency":
            e = eff.set_index("label").loc[pts.index]
            xerr = np.vstack([x - e["latency_p10_s"].to_numpy(), e["latency_p90_s"].to_numpy() - x])
        front = pareto_front(x, y, bool(spec["lower_better"]))
        if len(front) > 1:
            ax.step(x[front], y[front], where="post", color="tab:red", lw=1.2, zorder=1,
                    label="Pareto front")  # fmt: skip
        for i, lab in enumerate(pts.index):
            on = i in front
            ax.errorbar(
                x[i], y[i], yerr=np.nan_to_num(yerr[:, i : i + 1]),
                xerr=None if xerr is None else np.nan_to_num(xerr[:, i : i + 1]),
                fmt="o", ms=6, capsize=2, zorder=2, color="tab:red" if on else "tab:blue",
                mfc="tab:red" if on else "white",
            )  # fmt: skip
            # neighbours in cost alternate above and below their point, so labels do not collide
            above = int(np.argsort(np.argsort(x))[i]) % 2 == 0
            ax.annotate(lab, (x[i], y[i]), xytext=(5, 5 if above else -11),
                        textcoords="offset points", fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        arrow = "↓" if spec["lower_better"] else "↑"
        ax.set_ylabel(f"{spec['name'].upper()} {arrow} (mean, bars 95% CI)")
        ax.grid(alpha=0.3, which="both")
        if len(front) > 1:
            ax.legend(fontsize=8, loc="best")
    title = f"{table.dataset}: quality vs {cost} (filled: Pareto front)"
    if left_out:
        title += f"\nnot plotted (no {column}): {', '.join(left_out)}"
    fig.suptitle(title, fontsize=10)
    return fig, ""


def distributions(runs: list[RunData], table: DatasetTable, seed: int) -> tuple[Figure | None, str]:
    """One panel per per-image metric: a box per method (quartiles, whiskers 1.5 IQR), every
    image as a dot (horizontal jitter, seeded), the mean as a diamond."""
    by_path = {str(r.path): r for r in runs}
    metrics = [s for s in table.metrics if s.get("per", "image") != "set"]
    panels = []
    for spec in metrics:
        series = {}
        for _, row in labels_for(table).iterrows():
            v = by_path[row["run"]].values(row["method"], table.dataset, spec["name"])
            if v is not None and v.notna().any():
                series[row["label"]] = v.dropna().to_numpy()
        if series:
            panels.append((spec, series))
    if not panels:
        return None, f"no per-image values on {table.dataset}"
    rng = np.random.default_rng(seed)
    width = max(3.0, 0.9 * len(table.labels) + 1.2)
    fig = Figure(figsize=(width * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (spec, series) in zip(axes, panels):
        labels = list(series)
        data = [series[lab] for lab in labels]
        ax.boxplot(data, tick_labels=labels, showfliers=False, widths=0.55,
                   medianprops={"color": "tab:orange"})  # fmt: skip
        for i, v in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(v)), v, s=8, alpha=0.55,
                       color="tab:blue", lw=0, zorder=3)  # fmt: skip
            ax.scatter([i], [np.mean(v)], marker="D", s=28, color="black", zorder=4)
        arrow = "↓" if spec["lower_better"] else "↑"
        ax.set_title(f"{spec['name'].upper()} {arrow}", fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    sizes = sorted({len(v) for _, s in panels for v in s.values()})
    fig.suptitle(
        f"{table.dataset}: per-image values ({'/'.join(map(str, sizes))} images; box: quartiles, "
        "whiskers 1.5 IQR, dots: images, diamond: mean)",
        fontsize=9,
    )
    return fig, ""


def labels_for(table: DatasetTable) -> pd.DataFrame:
    """(label, run, method) of each row of a table, in row order."""
    first = table.cells.drop_duplicates("label").set_index("label")
    return first.loc[table.labels, ["run", "method"]].reset_index()
