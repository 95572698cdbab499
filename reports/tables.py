"""The tables as data: one long pandas frame of (dataset, method, metric) cells, ranked, with
confidence intervals and paired tests; and the merged efficiency rows.

Ranking follows the papers: per metric column, the best printed value in bold, the second
underlined (only with 3 or more methods: with two, "second" is just "last"). Values are compared
as printed (rounded to the metric's decimals), so ties at the printed precision share a mark;
ranks are competition ranks (1, 1, 3): a tie for best leaves no second. A column is ranked only
when at least two methods have a mean and every run behind it shares one protocol
(``drift.py``). Marks and statistics are computed here; renderers only format them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.reports import drift, stats
from harness.reports.load import RunData
from harness.store import GROUPS, card_group

# columns of the long frame (report.csv), in order
COLUMNS = [
    "dataset", "method", "run", "label", "group", "metric", "lower_better", "decimals", "per", "n",
    "missing", "mean", "std", "ci_low", "ci_high", "ci_method", "ranked", "rank", "mark",
    "vs_best", "vs_best_mean_diff", "vs_best_p", "vs_best_significant", "lead_significant",
    "test", "reason", "cause", "drift",
]  # fmt: skip


def _card(run: RunData, method: str) -> dict:
    """The method card ``run``'s manifest records for ``method`` ({} when none)."""
    return ((run.manifest or {}).get("methods", {}).get(method) or {}).get("card") or {}


def group_of(run: RunData, method: str) -> str:
    """The table group of ``method`` in ``run`` (store.GROUPS, or '' when its card states none)."""
    return card_group(_card(run, method))


def _group_rank(group: str) -> int:
    return GROUPS.index(group) if group in GROUPS else len(GROUPS)


@dataclass
class Options:
    seed: int = 0  # bootstrap seed
    alpha: float = stats.ALPHA
    allow_drift: bool = False
    display_names: bool = False  # row labels: the cards' display names instead of method ids


@dataclass
class DatasetTable:
    """One dataset's table: ``cells`` holds one row per (label, metric) with COLUMNS."""

    dataset: str
    n_images: list[int]
    metrics: list[dict]  # the metric specs, in column order
    labels: list[str]  # row labels, in row order
    cells: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # column notes (drift, set-level metrics)
    groups: list[str] = field(default_factory=list)  # each row's group (GROUPS or ''), by row

    @property
    def grouped(self) -> bool:
        """Whether the rows fall into more than one group (renderers then show the groups)."""
        return len(set(self.groups)) > 1


@dataclass
class Report:
    tables: list[DatasetTable]
    efficiency: pd.DataFrame | None  # efficiency.csv rows of every run + run, label
    runs: list[RunData]

    @property
    def results(self) -> pd.DataFrame:
        """Every cell of every table: the content of report.csv."""
        frames = [t.cells for t in self.tables]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _datasets(runs: list[RunData]) -> list[str]:
    out: list[str] = []
    for run in runs:
        for r in (run.summary or {}).get("results", []):
            if r["dataset"] not in out:
                out.append(r["dataset"])
    return out


def _labels(pairs: list[tuple[RunData, str]], display: bool = False) -> list[str]:
    """Method names (``display``: the cards' display names, as papers print them, where the
    manifest records one), with the run's name where a name appears in several runs."""
    names = [_display_name(run, m) if display else m for run, m in pairs]
    return [n if names.count(n) == 1 else f"{n} ({run.name})" for (run, _), n in zip(pairs, names)]


def _display_name(run: RunData, method: str) -> str:
    return _card(run, method).get("display_name") or method


def _metric_specs(runs: list[RunData], dataset: str) -> list[dict]:
    specs: dict[str, dict] = {}
    for run in runs:
        if run.results(dataset):
            for s in run.specs():
                specs.setdefault(s["name"], s)
    return list(specs.values())


def _check_mean(run: RunData, method: str, dataset: str, metric: str, mean: float, x) -> None:
    """summary.json's mean must be the mean of per_image.csv's values: the files belong together."""
    if len(x) and not math.isclose(float(np.mean(x)), mean, rel_tol=1e-9, abs_tol=1e-9):
        raise HarnessError(
            f"{run.path}: summary.json and per_image.csv disagree on the mean of {metric} for "
            f"{method} on {dataset} ({mean!r} vs {float(np.mean(x))!r})"
        )


def _cells(
    runs: list[RunData], dataset: str, specs: list[dict], opts: Options
) -> tuple[list[str], list[str], pd.DataFrame, list[int], dict[int, pd.Series]]:
    """The cells without ranks; per-image values (by image name) by cell index. Rows are in
    the runs' order, grouped as the papers group them (stable within a group)."""
    pairs = [(run, r["method"]) for run in runs for r in run.results(dataset)]
    pairs.sort(key=lambda pair: _group_rank(group_of(*pair)))
    labels = _labels(pairs, opts.display_names)
    records = []
    sizes = []
    values: dict[int, pd.Series] = {}
    groups = [group_of(run, method) for run, method in pairs]
    for (run, method), label, group in zip(pairs, labels, groups):
        result = next(r for r in run.results(dataset) if r["method"] == method)
        sizes.append(int(result["n_images"]))
        for spec in specs:
            name = spec["name"]
            entry = result["metrics"].get(name)
            rec = {
                "dataset": dataset, "method": method, "run": str(run.path), "label": label,
                "group": group, "metric": name, "lower_better": bool(spec["lower_better"]),
                "decimals": int(spec.get("decimals", 4)), "per": spec.get("per", "image"),
                "n": 0, "missing": result["n_images"], "mean": np.nan, "std": np.nan,
                "ci_low": np.nan, "ci_high": np.nan, "ci_method": "", "reason": "", "cause": "",
            }  # fmt: skip
            if entry is None:
                rec["reason"] = rec["cause"] = f"not computed in {run.path}"
            elif entry.get("mean") is None:
                rec |= {"n": entry.get("n", 0), "missing": entry.get("missing", 0)}
                rec["reason"] = entry.get("reason") or "not computed"
                # one footnote per cause (a missing weight file), not per cell
                rec["cause"] = entry.get("cause") or rec["reason"]
            else:
                rec |= {"n": entry["n"], "missing": entry["missing"], "mean": entry["mean"]}
                rec["std"] = np.nan if entry.get("std") is None else entry["std"]
                if rec["per"] == "set":
                    rec["ci_method"] = "none: set-level metric (no per-image values)"
                else:
                    v = run.values(method, dataset, name)
                    if v is not None and not v.isna().any():
                        _check_mean(run, method, dataset, name, entry["mean"], v.to_numpy())
                        values[len(records)] = v
                        seed = stats.stream_seed(opts.seed, dataset, method, name)
                        ci = stats.bootstrap_ci(v.to_numpy(), seed)
                        if ci is not None:
                            rec["ci_low"], rec["ci_high"] = ci
                            rec["ci_method"] = stats.CI_METHOD + f", seed {opts.seed}"
                        else:
                            rec["ci_method"] = "none: fewer than 2 images"
                    else:
                        rec["ci_method"] = "none: per_image.csv lacks these values"
            records.append(rec)
    return labels, groups, pd.DataFrame.from_records(records), sizes, values


def _rank_column(
    col: pd.DataFrame, values: dict[int, pd.Series], lower_better: bool, decimals: int,
    opts: Options,
) -> None:  # fmt: skip
    """Marks, ranks and paired tests for one metric column (edits ``col`` in place)."""
    has = col["mean"].notna()
    if has.sum() < 2:
        return
    shown = col.loc[has, "mean"].round(decimals)
    key = shown if lower_better else -shown
    rank = key.apply(lambda k: 1 + int((key < k).sum()))
    col.loc[has, "ranked"] = True
    col.loc[has, "rank"] = rank
    col.loc[rank.index[rank == 1], "mark"] = "best"
    if has.sum() >= 3:
        col.loc[rank.index[rank == 2], "mark"] = "second"
    # the paired tests, against the best unrounded mean
    means = col.loc[has, "mean"]
    top = means.idxmin() if lower_better else means.idxmax()
    best_values = values.get(top)
    if best_values is None:
        return  # set-level metric, or no per-image values: no test
    significant = []
    for i in means.index:
        if i == top:
            continue
        other = values.get(i)
        if other is None:
            significant.append(False)  # cannot pair: no lead can be shown
            continue
        common = best_values.index.intersection(other.index)
        sig, p = stats.lead_is_significant(
            best_values[common].to_numpy(), other[common].to_numpy(), lower_better, opts.alpha
        )
        diff = float(np.mean(best_values[common].to_numpy() - other[common].to_numpy()))
        col.loc[i, ["vs_best", "vs_best_p", "vs_best_mean_diff", "vs_best_significant"]] = [
            col.at[top, "label"], p, diff, sig,
        ]  # fmt: skip
        col.loc[i, "test"] = stats.TEST_NAME
        significant.append(sig)
    tied = int((rank == 1).sum()) > 1
    # a tie at the printed precision claims no lead: nothing to test
    col.loc[top, "lead_significant"] = None if tied else all(significant)


def _table(runs: list[RunData], dataset: str, opts: Options) -> DatasetTable:
    specs = _metric_specs(runs, dataset)
    labels, groups, cells, sizes, values = _cells(runs, dataset, specs, opts)
    for c, default in (("ranked", False), ("rank", np.nan), ("mark", ""), ("vs_best", ""),
                       ("vs_best_mean_diff", np.nan), ("vs_best_p", np.nan),
                       ("vs_best_significant", None), ("lead_significant", None), ("test", ""),
                       ("drift", "")):  # fmt: skip
        cells[c] = default
    cells = cells.astype({"ranked": object, "vs_best_significant": object,
                          "lead_significant": object})  # fmt: skip
    notes = []
    for spec in specs:
        name = spec["name"]
        diffs = drift.differences(runs, dataset, name)
        in_col = cells["metric"] == name
        if diffs:
            if not opts.allow_drift:
                raise HarnessError(
                    f"{diffs[0].message()}; numbers under different protocols are not ranked "
                    f"in one table (--allow-drift shows them side by side, unranked)"
                )
            for d in diffs:
                rows = in_col & (cells["run"] == str(d.other.path))
                cells.loc[rows, "drift"] = cells.loc[rows, "drift"].map(
                    lambda t, d=d: (
                        f"{t}; {d.what}" if t else f"differs from {d.reference.path}: {d.what}"
                    )
                )
            notes.append(f"{name.upper()}: not ranked, the runs' protocols differ (marked cells)")
            continue
        col = cells.loc[in_col].copy()
        _rank_column(col, values, bool(spec["lower_better"]), int(spec.get("decimals", 4)), opts)
        cells.loc[in_col] = col
        if spec.get("per") == "set":
            notes.append(
                f"{name.upper()} is computed on the whole set: no per-image values, "
                "so no confidence interval and no paired test"
            )
    cells = cells[COLUMNS]
    groups = [
        cells.loc[cells["label"] == lab, "group"].iloc[0] if len(specs) else "" for lab in labels
    ]
    return DatasetTable(dataset, sizes, specs, labels, cells, notes, groups)


def _efficiency(runs: list[RunData], display: bool = False) -> pd.DataFrame | None:
    frames = []
    for run in runs:
        if run.efficiency is not None and len(run.efficiency):
            frames.append(run.efficiency.assign(run=str(run.path), run_name=run.name))
    if not frames:
        return None
    eff = pd.concat(frames, ignore_index=True)
    pairs = [(next(r for r in runs if str(r.path) == p), m) for p, m in zip(eff.run, eff.method)]
    eff["label"] = _labels(pairs, display)
    return eff


def build(runs: list[RunData], opts: Options | None = None) -> Report:
    """Every dataset's table (drift checked first, one-line error) and the efficiency rows."""
    opts = opts or Options()
    tables = [_table(runs, ds, opts) for ds in _datasets(runs)]
    return Report(tables, _efficiency(runs, opts.display_names), runs)


def efficiency_for(report: Report, table: DatasetTable) -> pd.DataFrame:
    """Each row of ``table`` joined to its efficiency row: the same run's, else the only row
    of that method in any of the runs (a ``harness profile`` directory given beside an eval)."""
    eff = report.efficiency
    out = []
    for label in table.labels:
        first = table.cells[table.cells["label"] == label].iloc[0]
        row = None
        if eff is not None:
            same = eff[(eff["run"] == first["run"]) & (eff["method"] == first["method"])]
            anywhere = eff[eff["method"] == first["method"]]
            row = same.iloc[0] if len(same) else (anywhere.iloc[0] if len(anywhere) == 1 else None)
        out.append(
            {
                "label": label,
                "latency_median_s": np.nan if row is None else row.get("latency_median_s"),
                "latency_p10_s": np.nan if row is None else row.get("latency_p10_s"),
                "latency_p90_s": np.nan if row is None else row.get("latency_p90_s"),
                "macs_fvcore": np.nan if row is None else row.get("macs_fvcore"),
                "device": "" if row is None else row.get("device", ""),
                "notes": "no efficiency row" if row is None else row.get("notes", ""),
            }
        )
    return pd.DataFrame.from_records(out)
