"""Build the static leaderboard site from validated submissions.

Layout of ``--out``::

    index.html          one sortable table per dataset, the protocol stamped at the top
    leaderboard.json    the same content as data (``"schema": "harness.leaderboard/1"``)
    static/             sort.js and style.css (no CDN: the site works offline)
    runs/<id>/          each entry's manifest.json, config.yaml, summary.json, per_image.csv,
                        efficiency.json (when present) and figures/*.png, copied as submitted

The page is rendered by Jinja2 with autoescaping on, so every submitted string (method names,
reasons, options) is text, never markup; the page's Content-Security-Policy only allows its own
script and style files as a second line of defence. The folder is written under a temporary
name and renamed into place; an existing ``--out`` is replaced only if it is a leaderboard.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from harness import __version__
from harness.errors import HarnessError
from harness.leaderboard.config import METRIC_PROTOCOL_KEYS, LeaderboardConfig
from harness.leaderboard.validate import Submission
from harness.store import card_group

SITE_SCHEMA = "harness.leaderboard/1"
COPIED = (
    "manifest.json",
    "config.yaml",
    "summary.json",
    "per_image.csv",
    "efficiency.json",
    "efficiency.csv",
    "report.md",
)
# efficiency column -> (header, divisor, decimals)
_EFF = {
    "params": ("Params (M)", 1e6, 2),
    "macs_fvcore": ("MACs (G)", 1e9, 1),
    "macs_fvcore_plus_attention": ("MACs+attn (G)", 1e9, 1),
    "latency_median_s": ("Latency (s)", 1.0, 4),
    "peak_memory_bytes": ("Peak mem (MB)", float(1 << 20), 0),
}


@dataclass
class Run:
    """One submission on the site: its id (folder under runs/) and what it links to."""

    id: str
    sub: Submission
    figures: list[str]  # paths under the site root


def build(
    subs: list[Submission],
    config: LeaderboardConfig,
    out: str | Path,
    left_out: list[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Write the site to ``out``; returns the ``leaderboard.json`` content. ``left_out``:
    (input, reason) of the bundles not on the board, listed on the page by their file names."""
    if not subs:
        raise HarnessError("harness leaderboard build: no run directories given")
    out = Path(out)
    _check_out(out)
    runs = _runs(subs)
    data = _model(runs, config)
    # the name only: a submitter's local folders are not published
    data["left_out"] = [{"source": Path(p).name, "reason": why} for p, why in left_out]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(tmp, runs, data)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return data


def _check_out(out: Path) -> None:
    if out.is_file() or out.is_symlink():
        raise HarnessError(f"--out {out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "leaderboard.json").is_file():
        raise HarnessError(
            f"--out {out}: a non-empty folder that is not a leaderboard; choose another"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def _runs(subs: list[Submission]) -> list[Run]:
    runs: list[Run] = []
    used: set[str] = set()
    for sub in subs:
        base = f"{sub.manifest['command']}-{sub.manifest['config_hash'][:12]}"
        rid, n = base, 1
        while rid in used:
            n += 1
            rid = f"{base}-{n}"
        used.add(rid)
        figures: list[str] = []
        for path in sorted(sub.bundle.figures):
            stem = "_".join(_slug(p) for p in PurePosixPath(path).with_suffix("").parts)
            name, k = f"runs/{rid}/figures/{stem}.png", 1
            while name in figures:  # two names that slug alike
                k += 1
                name = f"runs/{rid}/figures/{stem}-{k}.png"
            figures.append(name)
        runs.append(Run(rid, sub, figures))
    return runs


# ----------------------------------------------------------------------------- the model


def _model(runs: list[Run], config: LeaderboardConfig) -> dict[str, Any]:
    datasets = list(
        config.datasets
        or dict.fromkeys(r["dataset"] for run in runs for r in run.sub.summary["results"])
    )
    metrics = list(
        config.metrics
        or dict.fromkeys(s["name"] for run in runs for s in run.sub.summary["metrics"])
    )
    rank_by = config.rank_by or metrics[0]
    specs = _agreed_specs(runs, metrics)
    if rank_by not in specs:
        raise HarnessError(f"rank_by '{rank_by}': no run has this metric")
    tables = [t for ds in datasets if (t := _table(ds, runs, metrics, specs, rank_by, config))]
    if not tables:
        raise HarnessError(f"no results on the leaderboard's datasets ({', '.join(datasets)})")
    protocol = {
        "harness_versions": sorted({r.sub.manifest["harness_version"] for r in runs}),
        "pyiqa_versions": sorted({r.sub.summary["pyiqa_version"] for r in runs}),
        "metrics_autocast": sorted({bool(r.sub.summary.get("metrics_autocast")) for r in runs}),
        "metrics": {
            m: {k: specs[m].get(k) for k in METRIC_PROTOCOL_KEYS} for m in metrics if m in specs
        },
        "datasets": {t["dataset"]: t["manifest_hash"] for t in tables},
        "pinned": config.protocol is not None
        and any(x is not None for x in (config.protocol.metrics, config.protocol.datasets)),
    }
    return {
        "schema": SITE_SCHEMA,
        "title": config.title,
        "version": config.version,
        "built_with": __version__,
        "rank_by": rank_by,
        "protocol": protocol,
        "tables": tables,
        "runs": [_run_info(r) for r in runs],
    }


def _agreed_specs(runs: list[Run], metrics: list[str]) -> dict[str, dict[str, Any]]:
    """One spec per metric; entries computed under other settings are never ranked together."""
    specs: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for run in runs:
        for name, spec in run.sub.metric_specs.items():
            if name not in metrics:
                continue
            if name not in specs:
                specs[name], owner[name] = spec, run.sub.bundle.source
                continue
            diff = [k for k in METRIC_PROTOCOL_KEYS if spec.get(k) != specs[name].get(k)]
            if diff:
                raise HarnessError(
                    f"{run.sub.bundle.source}: metric {name} computed with other {diff[0]} "
                    f"({spec.get(diff[0])!r}) than {owner[name]} ({specs[name].get(diff[0])!r}); "
                    "such numbers are never ranked together"
                )
    return specs


def _table(ds, runs, metrics, specs, rank_by, config) -> dict[str, Any] | None:
    entries = []
    hashes: dict[str, str] = {}
    for run in runs:
        for r in run.sub.summary["results"]:
            if r["dataset"] != ds:
                continue
            h = run.sub.dataset_hash(ds)
            if h is not None:
                hashes.setdefault(h, run.sub.bundle.source)
            entries.append(_entry(run, r, metrics, config))
    if not entries:
        return None
    if len(hashes) > 1:
        a, b = list(hashes.items())[:2]
        raise HarnessError(
            f"dataset {ds}: {a[1]} and {b[1]} scored different images "
            f"(manifest hashes {a[0][:12]}..., {b[0][:12]}...)"
        )
    lower = bool(specs[rank_by]["lower_better"])
    scored = [e for e in entries if e["values"].get(rank_by) is not None]
    scored.sort(key=lambda e: e["values"][rank_by], reverse=not lower)
    rank, prev = 0, None
    for i, e in enumerate(scored, 1):
        if e["values"][rank_by] != prev:
            rank, prev = i, e["values"][rank_by]
        e["rank"] = rank
    unranked = [e for e in entries if e["values"].get(rank_by) is None]
    for e in unranked:
        e["rank"] = None
    n_images = {e["n_images"] for e in entries}
    return {
        "dataset": ds,
        "manifest_hash": next(iter(hashes), None),
        "n_images": max(n_images),
        "metrics": [
            {
                "name": m,
                "lower_better": bool(specs[m]["lower_better"]),
                "decimals": int(specs[m].get("decimals", 4)),
            }
            for m in metrics
            if m in specs
        ],
        "efficiency": list(config.efficiency),
        "entries": scored + unranked,
    }


def _entry(run: Run, result: dict, metrics: list[str], config: LeaderboardConfig) -> dict:
    card = ((run.sub.manifest.get("methods") or {}).get(result["method"]) or {}).get("card") or {}
    row = run.sub.efficiency_row(result["method"]) or {}
    values, missing = {}, {}
    for m in metrics:
        st = result["metrics"].get(m)
        if st is None:
            values[m], missing[m] = None, "not in this run"
        else:
            values[m] = st.get("mean")
            if st.get("mean") is None:
                missing[m] = st.get("reason") or "not computed"
    eff = {k: row.get(k) for k in config.efficiency}
    return {
        "rank": None,
        "run": run.id,
        "method": result["method"],
        "display_name": card.get("display_name") or result["method"],
        "group": card_group(card),
        "n_images": result["n_images"],
        "values": values,
        "missing": missing,
        "efficiency": eff,
        "device": row.get("device"),
        "dtype": row.get("dtype"),
        "links": {
            "manifest": f"runs/{run.id}/manifest.json",
            "config": f"runs/{run.id}/config.yaml",
            "summary": f"runs/{run.id}/summary.json",
            "figures": run.figures,
        },
    }


def _run_info(run: Run) -> dict[str, Any]:
    m = run.sub.manifest
    return {
        "id": run.id,
        "command": m["command"],
        "config_hash": m["config_hash"],
        "harness_version": m["harness_version"],
        "git_commit": (m.get("environment") or {}).get("git_commit"),
        "finished": m.get("finished"),
        "files": [f"runs/{run.id}/{n}" for n in COPIED if n in run.sub.bundle.files],
        "figures": run.figures,
    }


# ----------------------------------------------------------------------------- writing


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.leaderboard", "templates"),
        autoescape=True,  # every submitted string is text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["tojson_compact"] = lambda v: json.dumps(v, sort_keys=True)
    env.globals["eff_header"] = lambda k: _EFF[k][0]
    env.globals["eff_value"] = _eff_value
    return env


def _fmt(v: float | None, decimals: int) -> str:
    return "n/a" if v is None else f"{v:.{decimals}f}"


def _eff_value(key: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    _, div, dec = _EFF[key]
    return f"{v / div:,.{dec}f}"


def _write(root: Path, runs: list[Run], data: dict[str, Any]) -> None:
    static = resources.files("harness.leaderboard") / "static"
    (root / "static").mkdir()
    for name in ("sort.js", "style.css"):
        (root / "static" / name).write_bytes((static / name).read_bytes())
    for run in runs:
        folder = root / "runs" / run.id
        (folder / "figures").mkdir(parents=True)
        for name in COPIED:
            if name in run.sub.bundle.files:
                (folder / name).write_bytes(run.sub.bundle.files[name])
        for src, dst in zip(sorted(run.sub.bundle.figures), run.figures):
            (root / dst).write_bytes(run.sub.bundle.figures[src])
    html = _env().get_template("index.html.j2").render(lb=data)
    (root / "index.html").write_text(html, encoding="utf-8")
    (root / "leaderboard.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
