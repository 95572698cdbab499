"""Reproduced against published: each table's means next to the papers' printed numbers.

The numbers come from ``published.yaml`` (beside this module): per method and dataset, the
values as printed in the source, which is named on every row. A published value is compared
only when the cell behind it measured the same thing:

* the same method name and dataset name (:func:`dataset_key`), and the dataset has the
  published size (93 DRealSR pairs, 100 RealSR, 3000 DIV2K-Val): a subset is not the paper's
  number. The set is recognised by name and size, not by file hashes: copies of the same test
  set differ in their PNG bytes (re-encoded), so a hash would refuse the right images;
* the metric computed under the papers' protocol (``protocol`` in the file: pyiqa id and every
  option, read from the run's ``summary.json``);
* a mean exists (a metric reported missing stays missing, with its reason).

Metrics the runs did not compute are left out; a row that fails a check is listed with the
reason instead of a difference. ``delta`` is
ours minus published; ``matches`` says whether our mean, rounded to the printed number of
decimals, equals the printed value -- "reproduces the paper to the last printed digit".
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.errors import HarnessError
from harness.reports.tables import Report

DATA = Path(__file__).with_name("published.yaml")
COLUMNS = [
    "dataset", "label", "method", "metric", "ours", "published", "decimals", "delta",
    "matches", "compared", "reason", "source",
]  # fmt: skip


def load(path: Path = DATA) -> dict[str, Any]:
    """The published numbers, checked: every value a printed decimal string, every source and
    dataset declared, every metric with a protocol."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise HarnessError(f"{path}: cannot read the published numbers ({e})") from e
    for key in ("sources", "datasets", "protocol", "values"):
        if key not in data:
            raise HarnessError(f"{path}: no '{key}' section")
    for entry in data["values"]:
        where = f"{path}: {entry.get('method')} on {entry.get('dataset')}"
        if entry.get("source") not in data["sources"]:
            raise HarnessError(f"{where}: source '{entry.get('source')}' is not in sources")
        if entry.get("dataset") not in data["datasets"]:
            raise HarnessError(f"{where}: dataset is not in datasets")
        for metric, value in _values(entry).items():
            if metric not in data["protocol"]:
                raise HarnessError(f"{where}: no protocol for {metric}")
            if not isinstance(value, str):
                raise HarnessError(f"{where}: {metric} must be quoted as printed, got {value!r}")
            try:
                Decimal(value)
            except ArithmeticError as e:
                raise HarnessError(f"{where}: {metric} '{value}' is not a number") from e
    return data


def notes(data: dict[str, Any] | None = None) -> dict[str, str]:
    """Per metric, the protocol's note (what may differ from the paper's run), if any."""
    data = load() if data is None else data
    return {m: p["note"] for m, p in data["protocol"].items() if p.get("note")}


def _values(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("method", "dataset", "source")}


def dataset_key(name: str) -> str:
    """A dataset name as matched: case and punctuation ignored, so that ``harness eval`` on
    ``DRealSR/HR`` (named after the folder) meets the named set ``drealsr``, and ``DIV2K-Val``
    meets ``div2k_val``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _printed_decimals(value: str) -> int:
    exponent = Decimal(value).as_tuple().exponent
    return max(0, -int(exponent))


def _protocol_problem(report: Report, run_path: str, metric: str, want: dict) -> str:
    run = next(r for r in report.runs if str(r.path) == run_path)
    spec = run.spec(metric) or {}
    if spec.get("pyiqa_id") != want["pyiqa_id"]:
        return f"computed as pyiqa '{spec.get('pyiqa_id')}', the paper used '{want['pyiqa_id']}'"
    options = dict(spec.get("options") or {})
    for key, value in (want.get("options") or {}).items():
        if str(options.get(key)) != str(value):
            return f"option {key} is {options.get(key)!r}, the paper used {value!r}"
    extra = sorted(set(options) - set(want.get("options") or {}))
    if extra:
        return f"option {extra[0]}={options[extra[0]]!r} is not the paper's protocol"
    return ""


def compare(report: Report, data: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per (table row, metric) with a published value; COLUMNS."""
    data = load() if data is None else data
    rows = []
    for table in report.tables:
        key = dataset_key(table.dataset)
        published = [e for e in data["values"] if dataset_key(e["dataset"]) == key]
        if not published:
            continue
        size = data["datasets"][published[0]["dataset"]]["images"]
        for label, n in zip(table.labels, table.n_images):
            cells = table.cells[table.cells["label"] == label]
            method = cells["method"].iloc[0]
            for entry in (e for e in published if e["method"] == method):
                for metric, value in _values(entry).items():
                    d = _printed_decimals(value)
                    row = {
                        "dataset": table.dataset, "label": label, "method": method,
                        "metric": metric, "ours": float("nan"), "published": float(value),
                        "decimals": d, "delta": float("nan"), "matches": None,
                        "compared": False, "reason": "",
                        "source": data["sources"][entry["source"]],
                    }  # fmt: skip
                    cell = cells[cells["metric"] == metric]
                    if cell.empty:
                        continue  # not asked for in these runs: nothing to say
                    if n != size:
                        row["reason"] = f"{n} images; the paper's set has {size}"
                    elif pd.isna(cell["mean"].iloc[0]):
                        row["reason"] = f"missing: {cell['reason'].iloc[0]}"
                    else:
                        why = _protocol_problem(
                            report, cell["run"].iloc[0], metric, data["protocol"][metric]
                        )
                        ours = float(cell["mean"].iloc[0])
                        row["ours"] = ours
                        if why:
                            row["reason"] = why
                        else:
                            row["compared"] = True
                            row["delta"] = ours - float(value)
                            # the exact binary value, rounded as printf rounds it
                            shown = Decimal(ours).quantize(Decimal(1).scaleb(-d))
                            row["matches"] = shown == Decimal(value)
                    rows.append(row)
    return pd.DataFrame.from_records(rows, columns=COLUMNS)
