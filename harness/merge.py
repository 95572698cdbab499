"""``harness merge RUN_DIR... --out DIR``: the finished parts of one run as one run directory.

The parts are run directories written by the jobs of a fan-out (``harness run --launcher``, or
``harness run`` with ``part.*`` / ``shards`` keys by hand). Everything is checked before anything
is written; the first inconsistency is a one-line error naming the directory and the difference:

* every part is a finished ``harness run`` directory (manifest, config, summary, journal);
* their configs are equal except where a job differs by construction (``part``, ``stage`` and
  the keys left out of the config hash: ``out``, ``force``, ``cache_dir``, ``metric_workers``);
* the protocol is equal: harness and package versions, pyiqa version, metric specs (options,
  weight files' sha256), autocast, unavailable metrics;
* each dataset has one manifest hash and each method one card, adapter version, weights digest
  and SR cache key per dataset in every part that has them;
* together the parts hold every (method, dataset, image) of the run exactly once (no image
  missing, none in two parts), each with its journal row under the recorded SR cache key.

The merged directory is the run done in one process: ``config.yaml`` with ``shards: 1`` and no
part (so its config hash is the one-process run's), ``rows.jsonl``, ``per_image.csv`` and
``summary.json`` rebuilt from the parts' rows in the run's order, ``manifest.json`` (the first
part's environment; ``merged_from`` lists every part with its config hash, part and
environment) and the efficiency rows (one per method, from the first part that profiled it;
``efficiency.json`` names the source of each). Set-level metrics (FID) carry over from parts
that held whole datasets; from shards they are missing with the reason, and
``harness run --stage score --out MERGED`` computes them on the whole SR folder.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.hashing import CONFIG_HASH_EXCLUDES, CONFIG_HASH_NEUTRAL, config_hash
from harness.imageio import write_text
from harness.progress import log
from harness.store import Key, Row, RunStore, check_out, summarise

# Keys in which the jobs of one run differ by construction.
PART_KEYS = ("part", "stage")


@dataclass
class _Part:
    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    summary: dict[str, Any]
    keys: list[Key]  # the (method, dataset, image) rows of its per_image.csv
    rows: dict[Key, Row]  # its journal


def _load(path: Path) -> _Part:
    import yaml

    store = RunStore(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: not a folder")
    manifest = store.read_manifest()
    if manifest is None:
        raise HarnessError(f"{path}: no manifest.json (not a run directory)")
    if manifest.get("command") != "run":
        raise HarnessError(f"{path}: a '{manifest.get('command')}' directory; merge takes runs")
    if not manifest.get("finished"):
        raise HarnessError(
            f"{path}: the run has not finished (manifest.json 'finished' is null); rerun its job"
        )
    summary = store.read_summary()
    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise HarnessError(f"{path / 'config.yaml'}: unreadable ({e})") from None
    try:
        with open(path / "per_image.csv", encoding="utf-8", newline="") as f:
            keys = [(r["method"], r["dataset"], r["image"]) for r in csv.DictReader(f)]
    except (OSError, KeyError) as e:
        raise HarnessError(f"{path / 'per_image.csv'}: unreadable ({e})") from None
    return _Part(path, config, manifest, summary, keys, store.read_journal())


def _common(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in CONFIG_HASH_EXCLUDES + PART_KEYS}


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The dotted path of the first difference between two JSON-like values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{where}{k}"
            inner = _first_difference(a[k], b[k], f"{where}{k}.")
            if inner is not None:
                return inner
        return None
    return None if a == b else (where.rstrip(".") or "value")


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(what: str, first: _Part, other: _Part, a: Any, b: Any) -> None:
    where = _first_difference(a, b)
    if where is not None:
        va, vb = _pick(a, where), _pick(b, where)
        raise HarnessError(
            f"{other.path}: {what} differs from {first.path}'s at {where} "
            f"({_show(vb)} != {_show(va)})"
        )


def _pick(value: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(value, dict) or k not in value:
            return "<absent>"
        value = value[k]
    return value


def _protocol(part: _Part) -> dict[str, Any]:
    s, m = part.summary, part.manifest
    return {
        "harness_version": m.get("harness_version"),
        "packages": (m.get("environment") or {}).get("packages"),
        "pyiqa_version": s.get("pyiqa_version"),
        "metrics": s.get("metrics"),
        "metrics_autocast": s.get("metrics_autocast"),
        "unavailable_metrics": s.get("unavailable_metrics"),
    }


def _method_identity(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("card", "adapter_version", "weights_digest")}


def check(parts: Sequence[_Part]) -> dict[str, Any]:
    """Every check of the module docstring; returns the merged config (whole run)."""
    first = parts[0]
    common = _common(first.config)
    for p in parts[1:]:
        _same("config", first, p, common, _common(p.config))
        _same("protocol", first, p, _protocol(first), _protocol(p))
    datasets: dict[str, tuple[_Part, dict[str, Any]]] = {}
    methods: dict[str, tuple[_Part, dict[str, Any]]] = {}
    for p in parts:
        for name, entry in p.manifest.get("datasets", {}).items():
            seen = datasets.setdefault(name, (p, entry))
            ha, hb = seen[1].get("manifest_hash"), entry.get("manifest_hash")
            if ha != hb:
                raise HarnessError(
                    f"{p.path}: dataset {name} has manifest hash {str(hb)[:12]}, "
                    f"{seen[0].path} has {str(ha)[:12]} (different files)"
                )
        for name, entry in p.manifest.get("methods", {}).items():
            seen = methods.setdefault(name, (p, entry))
            _same(f"method {name}", seen[0], p, _method_identity(seen[1]), _method_identity(entry))
            for ds, key in entry.get("sr_keys", {}).items():
                other = seen[1].get("sr_keys", {}).get(ds)
                if other is not None and other != key:
                    raise HarnessError(
                        f"{p.path}: {name} on {ds} has SR cache key {key[:12]}, {seen[0].path} "
                        f"has {other[:12]} (other outputs: device, dtype or settings differ)"
                    )
            seen[1].setdefault("sr_keys", {}).update(entry.get("sr_keys", {}))
    _check_coverage(parts, common, datasets, methods)
    merged = dict(first.config)
    merged |= {k: v for k, v in CONFIG_HASH_NEUTRAL.items()}
    merged["stage"] = "all"
    return merged


def _check_coverage(parts, common, datasets, methods) -> None:
    owner: dict[Key, Path] = {}
    for p in parts:
        for key in p.keys:
            if key in owner:
                raise HarnessError(
                    f"{p.path}: image {key[2]} of {key[0]} on {key[1]} is also in {owner[key]} "
                    "(duplicated: merge each shard once)"
                )
            owner[key] = p.path
            row = p.rows.get(key)
            if row is None:
                raise HarnessError(f"{p.path}: rows.jsonl lacks {'/'.join(key)} of per_image.csv")
            expected = methods.get(key[0], (None, {}))[1].get("sr_keys", {}).get(key[1])
            if row.sr_key != expected:
                raise HarnessError(
                    f"{p.path}: the row of {'/'.join(key)} was scored from another SR output "
                    f"(key {row.sr_key[:12]} != {str(expected)[:12]})"
                )
    for d in common["datasets"]:
        if d not in datasets:
            raise HarnessError(
                f"merge: no run holds dataset {d} (of {', '.join(common['datasets'])})"
            )
    for m in common["methods"]:
        for d in common["datasets"]:
            names = [f["name"] for f in datasets[d][1]["files"]]
            missing = [n for n in names if (m, d, n) not in owner]
            if missing:
                raise HarnessError(
                    f"merge: {len(missing)} of {len(names)} images of {m} on {d} are in no run "
                    f"(e.g. {missing[0]}): a shard or job is missing"
                )
    wanted = {
        (m, d, f["name"])
        for m in common["methods"]
        for d in common["datasets"]
        for f in datasets[d][1]["files"]
    }
    extra = sorted(set(owner) - wanted)
    if extra:
        raise HarnessError(f"{owner[extra[0]]}: holds {'/'.join(extra[0])}, not part of the run")


def merge(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Check the parts, then write the merged run directory ``out``; returns it."""
    out = Path(out)
    dirs = [Path(p) for p in paths]
    if not dirs:
        raise HarnessError("merge: give the run directories to merge")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise HarnessError("merge: a run directory is given twice")
    if out.resolve() in {d.resolve() for d in dirs}:
        raise HarnessError(f"--out {out}: is one of the runs to merge; choose another folder")
    check_out(out)  # before the parts are read: a file, a user's folder, nowhere to write
    parts = [_load(d) for d in dirs]
    config = check(parts)
    _write(parts, config, out)
    return out


def _write(parts: Sequence[_Part], config: dict[str, Any], out: Path) -> None:
    from omegaconf import OmegaConf

    config["out"] = str(out)
    chash = config_hash(config)
    first = parts[0]
    datasets = {}
    for d in config["datasets"]:
        entries = [p.manifest["datasets"][d] for p in parts if d in p.manifest["datasets"]]
        entry = next((e for e in entries if e.get("lr_dir")), entries[0])  # not an empty shard
        entry = {k: v for k, v in entry.items() if k != "shard"}
        datasets[d] = entry | {"n_images": len(entry["files"])}
    methods: dict[str, Any] = {}
    for p in parts:
        for name, entry in p.manifest.get("methods", {}).items():
            target = methods.setdefault(
                name, _method_identity(entry) | {"sr_cache": {}, "sr_keys": {}}
            )
            for key in ("sr_cache", "sr_keys"):
                for ds, v in entry.get(key, {}).items():
                    target[key].setdefault(ds, v)
    by_key = {k: p.rows[k] for p in parts for k in p.keys}
    # the runner's order: datasets x methods x images
    order = [(m, d, f["name"]) for d in config["datasets"] for m in config["methods"]
             for f in datasets[d]["files"]]  # fmt: skip
    rows = [by_key[k] for k in order]
    specs = first.summary["metrics"]
    names = [s["name"] for s in specs if s.get("per", "image") != "set"]
    has_hr = {d: all(f.get("hr_sha256") for f in e["files"]) for d, e in datasets.items()}
    applicable = {
        d: [s["name"] for s in specs if has_hr[d] or s.get("reference") == "NR"] for d in datasets
    }
    sets = _set_scores(parts, specs)
    groups = [
        (m, d, len(datasets[d]["files"])) for d in config["datasets"] for m in config["methods"]
    ]
    summary = {
        "schema": "harness.summary/1",
        "config_hash": chash,
        "metrics": specs,
        "pyiqa_version": first.summary.get("pyiqa_version"),
        "unavailable_metrics": first.summary.get("unavailable_metrics", {}),
        "metrics_autocast": first.summary.get("metrics_autocast"),
        "results": summarise(rows, groups, specs, applicable, sets),
        "command": "run",
        "methods": list(config["methods"]),
        "datasets": list(config["datasets"]),
    }
    manifest = {
        "command": "run",
        "config_hash": chash,
        "seed": first.manifest.get("seed"),
        "dtype": first.manifest.get("dtype"),
        "started": min(str(p.manifest.get("started")) for p in parts),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": first.manifest.get("environment"),
        "datasets": datasets,
        "methods": methods,
        "sr_finished": max(
            (str(t) for p in parts if (t := p.manifest.get("sr_finished"))), default=None
        ),  # fmt: skip
        "merged_from": [
            {
                "run": str(p.path.resolve()),
                "config_hash": p.manifest.get("config_hash"),
                "part": p.config.get("part"),
                "shards": p.config.get("shards", 1),
                "images": len(p.keys),
                "finished": p.manifest.get("finished"),
                "environment": p.manifest.get("environment"),
            }
            for p in parts
        ],
    }
    store = RunStore(out)
    store.claim(OmegaConf.to_yaml(OmegaConf.create(config)), chash)
    store.reset_journal()
    store.append(rows)
    saved = {
        f"{m}|{d}|{methods[m]['sr_keys'][d]}": {"values": v, "missing": w}
        for (m, d), (v, w) in sets.items()
        if v and all(x is not None for x in v.values())
    }
    if saved:
        store.write_set_scores(saved)
    _efficiency(store, parts, config)
    store.write_per_image(rows, names)
    store.write_summary(summary)
    store.write_manifest(manifest)
    log(f"merged {len(parts)} runs ({len(rows)} rows) into {out}")


def _set_scores(parts: Sequence[_Part], specs: list[dict[str, Any]]) -> dict:
    """Set-level values per (method, dataset) from the parts' summaries (missing with their
    reason where a part held a shard only)."""
    set_names = [s["name"] for s in specs if s.get("per") == "set"]
    out: dict[tuple[str, str], tuple[dict, dict]] = {}
    if not set_names:
        return out
    for p in parts:
        for r in p.summary.get("results", []):
            values, missing = out.setdefault((r["method"], r["dataset"]), ({}, {}))
            for n in set_names:
                stats = r["metrics"].get(n, {})
                if stats.get("mean") is not None and values.get(n) is None:
                    values[n] = stats["mean"]
                    missing.pop(n, None)
                elif values.get(n) is None:
                    values[n] = None
                    missing.setdefault(n, stats.get("reason") or "not computed")
    return out


def _efficiency(store: RunStore, parts: Sequence[_Part], config: dict[str, Any]) -> None:
    """One efficiency row per method, from the first part that measured it."""
    from harness.profiler import add_ratios

    rows, sources, env = [], {}, None
    for m in config["methods"]:
        for p in parts:
            data = RunStore(p.path).read_efficiency()
            row = next((r for r in (data or {}).get("rows", []) if r["method"] == m), None)
            if row is not None:
                rows.append(dict(row))
                sources[m] = str(p.path.resolve())
                env = env or data.get("environment")
                break
    if not rows:
        return
    if len({str(r.get("device")) for r in rows}) > 1:
        log("warning: the efficiency rows were measured on different devices; ratios compare them")
    reference = (config.get("profile") or {}).get("reference")
    if reference is None or any(r["method"] == reference for r in rows):
        add_ratios(rows, reference)
    store.write_efficiency(rows, env or {})
    path = store.path / "efficiency.json"  # and where each row was measured
    data = json.loads(path.read_text(encoding="utf-8")) | {"merged_from": sources}
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
