"""Text shared by the Markdown and LaTeX renderers: numbers as the papers print them, the
footnotes of a document, the legends under each table and the efficiency table's columns."""

from __future__ import annotations

import math

import pandas as pd

from harness.reports import stats
from harness.reports.tables import DatasetTable


def number(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


def flag(v: object) -> bool | None:
    """A yes/no/unknown cell of the long frame (None and NaN are unknown)."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v)


def has_ci(cell: pd.Series) -> bool:
    return not (math.isnan(cell["ci_low"]) or math.isnan(cell["ci_high"]))


class Footnotes:
    """Numbered notes of one document; the same text keeps its number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def dataset_title(table: DatasetTable) -> str:
    lo, hi = min(table.n_images), max(table.n_images)
    return f"{table.dataset} ({lo} images)" if lo == hi else f"{table.dataset} ({lo}-{hi} images)"


def not_significant(table: DatasetTable) -> list[str]:
    """One line per best value whose lead is not significant, naming the methods it does not
    beat and the p-values."""
    out = []
    cells = table.cells
    for spec in table.metrics:
        col = cells[cells["metric"] == spec["name"]]
        best = col[col["lead_significant"].map(lambda v: flag(v) is False)]
        for _, b in best.iterrows():
            lost = col["vs_best_significant"].map(lambda v: flag(v) is False)
            others = col[(col["vs_best"] == b["label"]) & lost]
            names = ", ".join(
                f"{o['label']} (p = {o['vs_best_p']:.2g})" for _, o in others.iterrows()
            )
            out.append(
                f"{spec['name'].upper()}: {b['label']} is not significantly better than {names}"
            )
    return out


def legend(table: DatasetTable, alpha: float, ci: bool) -> str:
    """What the marks in this table mean (only the marks it uses)."""
    cells = table.cells
    parts = []
    if (cells["mark"] == "best").any():
        parts.append("bold: best (ties at the printed precision share it)")
    if (cells["mark"] == "second").any():
        parts.append("underlined: second")
    if cells["lead_significant"].map(lambda v: flag(v) is False).any():
        parts.append(
            f"†: best, but its lead is not significant ({stats.TEST_NAME}, p ≥ {alpha:g} "
            "against at least one method; every p-value is in report.csv)"
        )
    if ci and cells["ci_method"].str.startswith("BCa").any():
        parts.append(f"[low, high]: 95% confidence interval of the mean ({stats.CI_METHOD})")
    return "; ".join(parts)


# efficiency table: (header, function of a row -> text)
def _g(v: float) -> str:
    return "n/a" if pd.isna(v) else f"{v / 1e9:.1f}"


def _unreliable(r: pd.Series) -> bool:
    v = r.get("latency_unreliable")  # a bool, or its CSV text
    return v is True or (isinstance(v, str) and v.strip().lower() == "true") or v == 1


def _latency(r: pd.Series) -> str:
    if pd.isna(r.get("latency_median_s")):
        return "n/a"
    text = f"{r['latency_median_s']:.4f} [{r['latency_p10_s']:.4f}-{r['latency_p90_s']:.4f}]"
    return text + (" †" if _unreliable(r) else "")


def _fast_latency(r: pd.Series) -> str:
    if pd.isna(r.get("fast_latency_median_s")):
        return "n/a"
    return (f"{r['fast_latency_median_s']:.4f} [{r['fast_latency_p10_s']:.4f}-"
            f"{r['fast_latency_p90_s']:.4f}]")  # fmt: skip


def _added(r: pd.Series) -> str:
    v = r.get("added_memory_bytes")
    return "n/a" if v is None or pd.isna(v) else f"{v / 2**20:.0f}"


def _memory(r: pd.Series) -> str:
    if pd.isna(r.get("peak_memory_bytes")):
        return "n/a"
    return f"{r['peak_memory_bytes'] / 2**20:.0f} ({r.get('memory_kind', '')})"


def _ratio(r: pd.Series) -> str:
    v = r.get("latency_median_s_ratio")
    return "n/a" if pd.isna(v) else f"{v:.2f}x vs {r.get('reference', '')}"


# (full header, compact header for LaTeX or None to leave out, cell text)
EFFICIENCY_COLUMNS = [
    ("Steps", "Steps", lambda r: "-" if pd.isna(r.get("steps")) else f"{int(r['steps'])}"),
    ("Params (M)", "Params (M)",
     lambda r: "n/a" if pd.isna(r.get("params")) else f"{r['params'] / 1e6:.2f}"),
    ("MACs fvcore (G)", "MACs (G)", lambda r: _g(r.get("macs_fvcore"))),
    ("MACs +attention (G)", "MACs+attn. (G)", lambda r: _g(r.get("macs_fvcore_plus_attention"))),
    ("Latency median (s) [p10-p90]", None, _latency),
    (None, "Latency (s)",
     lambda r: "n/a" if pd.isna(r.get("latency_median_s")) else f"{r['latency_median_s']:.4f}"),
    ("Runs", None,
     lambda r: "n/a" if pd.isna(r.get("latency_runs")) else f"{int(r['latency_runs'])}"),
    ("Memory added (MB)", "Memory (MB)", _added),
    ("Peak memory (MB)", None, _memory),
    ("Latency ratio (same run)", None, _ratio),
]  # fmt: skip


def efficiency_frame(
    eff: pd.DataFrame, compact: bool = False
) -> tuple[pd.DataFrame, str, list[str]]:
    """(display frame with a Method column, title, notes) for the efficiency table; ``compact``
    (LaTeX) has short headers and leaves out the latency spread, memory kind and ratios."""
    devices = eff[["device", "dtype"]].fillna("").astype(str).drop_duplicates()
    sizes = eff["lr_size"].dropna().unique()
    cols = {"Method": eff["label"]}
    for full, short, fn in EFFICIENCY_COLUMNS:
        head = short if compact else full
        if head:
            cols[head] = eff.apply(fn, axis=1)
    if (
        not compact
        and "fast_latency_median_s" in eff
        and eff["fast_latency_median_s"].notna().any()
    ):
        cols["Fast latency (s)"] = eff.apply(_fast_latency, axis=1)
        cols["Fast speed-up"] = eff["fast_speedup"].map(
            lambda v: "n/a" if pd.isna(v) else f"{v:.2f}x"
        )
        cols["Fast max diff (levels)"] = eff["fast_max_diff_levels"].map(
            lambda v: "n/a" if pd.isna(v) else f"{int(v)}"
        )
    if len(devices) > 1:
        cols["Device"] = eff["device"].astype(str) + ", " + eff["dtype"].astype(str)
    frame = pd.DataFrame(cols)
    where = ", ".join(devices.iloc[0]) if len(devices) == 1 else "several devices"
    size = f", LR {int(sizes[0])}x{int(sizes[0])}" if len(sizes) == 1 else ""
    title = f"Efficiency ({where}{size})"
    notes = [
        "MACs: one multiply-add = 1. fvcore (the papers' convention) skips attention; "
        "'+attention' adds the Q.K^T and A.V matmuls of every attention call.",
        "Memory added: what the method adds to the process (its load, plus the peak of the "
        "timed runs above the memory in use before them)."
        + (
            ""
            if compact
            else " Peak memory: the absolute peak during the timed runs (whole "
            "process on a CPU), which depends on what ran before."
        ),
    ]
    if compact:
        notes.append("Latency: median of the timed runs.")
    for mode in eff.get("fast_mode", pd.Series(dtype=object)).dropna().unique():
        if str(mode):
            notes.append(
                f"Fast columns: not the official configuration ({mode}); max diff: the largest "
                "difference from the official configuration's output, in 8-bit levels."
            )
    flagged = [r for _, r in eff.iterrows() if _unreliable(r)]
    if flagged:
        spread = max(float(r.get("latency_spread") or 0) for r in flagged)
        notes.append(
            "† latency unreliable: the runs' IQR/median is above profile.unreliable_spread "
            f"(largest here {spread:.2f}); a busy machine? Rerun with a larger --max-time or "
            "--runs."
        )
    if len(devices) > 1:
        notes.append(
            "Rows were measured on different devices or precisions: their latency and memory "
            "are not comparable."
        )
    for _, r in eff.iterrows():
        if not pd.isna(r.get("macs_fvcore")) and not pd.isna(r.get("macs_ptflops")):
            d = (r["macs_ptflops"] - r["macs_fvcore"]) / r["macs_fvcore"] * 100
            notes.append(
                f"{r['label']}: ptflops ({r.get('ptflops_backend', '')} backend) "
                f"{_g(r['macs_ptflops'])} G ({d:+.2f}% vs fvcore); torch FlopCounter "
                f"(math attention) {_g(r.get('macs_flopcounter'))} G."
            )
        if isinstance(r.get("notes"), str) and r["notes"]:
            notes.append(f"{r['label']}: {r['notes']}.")
    return frame, title, notes
