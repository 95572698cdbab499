"""Validating a submitted bundle: schema, internal consistency, then the leaderboard's protocol.

Checks, in order; the first failure rejects the bundle with a one-line reason:

1. sizes of every text field (names <= 128 characters, any other string <= 4000), no control
   characters in names;
2. schemas: ``harness.manifest/1``, ``harness.summary/1``, ``harness.efficiency/1``, with the
   types of every field the leaderboard reads (a mean is a finite number or null);
3. provenance inside the bundle: the config hash recomputed from ``config.yaml`` equals the one in
   ``manifest.json`` and ``summary.json``; each dataset manifest hash recomputed from its file
   list; pyiqa version in the summary equals the manifest's; ``per_image.csv`` has exactly the
   images of the dataset manifest, every cell a finite number or empty, and its means equal the
   summary's; well-formed weights hashes;
4. the protocol (``config.Protocol``): harness and pyiqa versions, metric settings, dataset
   manifest hashes, method weights digests, metrics autocast; and results on at least one of
   the leaderboard's datasets. A failure here raises :class:`NotForThisBoard`: the bundle is
   sound but made for another board, and ``build`` leaves it out instead of failing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from harness.hashing import config_hash, sha256_json
from harness.leaderboard.bundle import Bundle, Rejected, walk
from harness.leaderboard.config import METRIC_PROTOCOL_KEYS, Protocol
from harness.runfiles import mean_std


class NotForThisBoard(Rejected):
    """A bundle that is valid in itself but does not fit the leaderboard (its protocol or
    datasets): ``build`` leaves it out, naming the reason; a malformed bundle fails the build."""


MAX_NAME = 128
MAX_TEXT = 4000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^[0-9a-f+]{0,1000}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Submission:
    """A bundle that passed: its parsed documents."""

    bundle: Bundle
    manifest: dict[str, Any]
    summary: dict[str, Any]
    config: dict[str, Any]
    efficiency: dict[str, Any] | None
    per_image: list[list[str]]
    notes: list[str] = field(default_factory=list)

    @property
    def metric_specs(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.summary["metrics"]}

    def dataset_hash(self, dataset: str) -> str | None:
        return ((self.manifest.get("datasets") or {}).get(dataset) or {}).get("manifest_hash")

    def efficiency_row(self, method: str) -> dict[str, Any] | None:
        for row in (self.efficiency or {}).get("rows", []):
            if row.get("method") == method:
                return row
        return None


def validate(
    bundle: Bundle, protocol: Protocol, datasets: tuple[str, ...] | None = None
) -> Submission:
    """Check ``bundle`` (see the module docstring); ``datasets``: the leaderboard's, of which
    the bundle must have results on at least one."""
    docs = {name: _parse(bundle, name) for name in bundle.files}
    for name in ("manifest.json", "summary.json", "config.yaml", "efficiency.json"):
        if name in docs:
            _check_sizes(docs[name], name)
    for i, row in enumerate(docs["per_image.csv"], 1):
        for cell in row:
            if len(cell) > MAX_TEXT:
                raise Rejected(
                    f"per_image.csv: line {i}: a field of {len(cell)} characters (limit {MAX_TEXT})"
                )
    manifest, summary, config = docs["manifest.json"], docs["summary.json"], docs["config.yaml"]
    efficiency = docs.get("efficiency.json")
    _schema_manifest(manifest)
    _schema_summary(summary)
    if not isinstance(config, dict):
        raise Rejected("config.yaml: expected a mapping of options")
    if efficiency is not None:
        _schema_efficiency(efficiency)
    sub = Submission(bundle, manifest, summary, config, efficiency, docs["per_image.csv"])
    _consistency(sub)
    try:
        _protocol(sub, protocol)
    except NotForThisBoard:
        raise
    except Rejected as e:  # the bundle is sound: it was made under another protocol
        raise NotForThisBoard(str(e)) from None
    if datasets is not None and not {r["dataset"] for r in summary["results"]} & set(datasets):
        found = sorted({r["dataset"] for r in summary["results"]})
        raise NotForThisBoard(
            f"summary.json: no results on this leaderboard's datasets "
            f"({', '.join(datasets)}); found {', '.join(found) or 'none'}"
        )
    if bundle.ignored:
        sub.notes.append(
            f"ignored (never read): {', '.join(bundle.ignored[:10])}"
            + (" ..." if len(bundle.ignored) > 10 else "")
        )
    return sub


def _parse(bundle: Bundle, name: str) -> Any:
    kind = name.rsplit(".", 1)[-1]
    if kind == "json":
        return bundle.json(name)
    if kind == "yaml":
        return bundle.yaml(name)
    if kind == "csv":
        return bundle.csv(name)
    return None  # report.md: carried, never parsed


# ----------------------------------------------------------------------------- 1. sizes


_NAME_FIELDS = re.compile(
    r"^(results\[\d+\]\.(method|dataset)|methods\[\d+\]|datasets\[\d+\]|metrics\[\d+\]\.name"
    r"|rows\[\d+\]\.method|methods\.[^.]+ <key>|datasets\.[^.]+ <key>)$"
)


def _short(where: str) -> str:
    return where if len(where) <= 100 else where[:97] + "..."


def _check_sizes(doc: Any, name: str) -> None:
    for where, v in walk(doc):
        if isinstance(v, str):
            limit = MAX_NAME if _NAME_FIELDS.match(where) else MAX_TEXT
            if len(v) > limit:
                raise Rejected(f"{name}: {_short(where)}: {len(v)} characters (limit {limit})")
            if limit == MAX_NAME and _CONTROL.search(v):
                raise Rejected(f"{name}: {_short(where)}: control characters in a name")


# ----------------------------------------------------------------------------- 2. schemas


def _need(doc: dict, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise Rejected(f"{where}: '{key}' missing")
    v = doc[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise Rejected(f"{where}.{key}: expected {_tname(types)}, got {v!r}")
    if not isinstance(v, types):
        shown = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
        raise Rejected(f"{where}.{key}: expected {_tname(types)}, got {shown[:60]}")
    return v


def _tname(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "an object",
        list: "a list",
        bool: "true/false",
        type(None): "null",
    }
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _number(v: Any, where: str, nullable: bool = True) -> float | None:
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Rejected(
            f"{where}: expected a finite number{' or null' if nullable else ''}, "
            f"got {str(v)[:40]!r}"
        )
    return float(v)


def _schema_manifest(m: Any) -> None:
    w = "manifest.json"
    if not isinstance(m, dict):
        raise Rejected(f"{w}: expected a JSON object")
    if m.get("schema") != "harness.manifest/1":
        raise Rejected(f"{w}: schema {m.get('schema')!r}, expected 'harness.manifest/1'")
    _need(m, "harness_version", str, w)
    if _need(m, "command", str, w) not in ("run", "eval"):
        raise Rejected(f"{w}.command: {m['command']!r}; a leaderboard takes run or eval results")
    if not _HEX64.match(_need(m, "config_hash", str, w)):
        raise Rejected(f"{w}.config_hash: not a sha256 hex digest")
    if m.get("finished") is None:
        raise Rejected(f"{w}.finished: null, the run did not finish")
    env = _need(m, "environment", dict, w)
    pk = _need(env, "packages", dict, f"{w}.environment")
    _need(pk, "pyiqa", str, f"{w}.environment.packages")
    for ds, entry in (_need(m, "datasets", dict, w) if "datasets" in m else {}).items():
        wd = f"{w}.datasets.{ds}"
        if not isinstance(entry, dict):
            raise Rejected(f"{wd}: expected an object")
        if not _HEX64.match(_need(entry, "manifest_hash", str, wd)):
            raise Rejected(f"{wd}.manifest_hash: not a sha256 hex digest")
        _need(entry, "n_images", int, wd)
        _need(entry, "scale", (int, type(None)), wd)
        for i, f in enumerate(_need(entry, "files", list, wd)):
            wf = f"{wd}.files[{i}]"
            if not isinstance(f, dict):
                raise Rejected(f"{wf}: expected an object")
            _need(f, "name", str, wf)
            for key in ("lr_sha256", "hr_sha256"):
                v = _need(f, key, (str, type(None)), wf)
                if v is not None and not _HEX64.match(v):
                    raise Rejected(f"{wf}.{key}: not a sha256 hex digest")
    for name, entry in (_need(m, "methods", dict, w) if "methods" in m else {}).items():
        wm = f"{w}.methods.{name}"
        if not isinstance(entry, dict):
            raise Rejected(f"{wm}: expected an object")
        if "weights_digest" not in entry and "sr_key" in entry:  # harness eval: outputs only
            if not _HEX64.match(_need(entry, "sr_key", str, wm)):
                raise Rejected(f"{wm}.sr_key: not a sha256 hex digest")
            continue
        if not _DIGEST.match(_need(entry, "weights_digest", str, wm)):
            raise Rejected(f"{wm}.weights_digest: not a weights digest (hex and '+')")
        card = _need(entry, "card", dict, wm)
        for i, wf in enumerate(card.get("weights") or []):
            sha = wf.get("sha256") if isinstance(wf, dict) else "?"
            if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
                raise Rejected(f"{wm}.card.weights[{i}].sha256: not a sha256 hex digest")


def _schema_summary(s: Any) -> None:
    w = "summary.json"
    if not isinstance(s, dict):
        raise Rejected(f"{w}: expected a JSON object")
    if s.get("schema") != "harness.summary/1":
        raise Rejected(f"{w}: schema {s.get('schema')!r}, expected 'harness.summary/1'")
    _need(s, "config_hash", str, w)
    _need(s, "pyiqa_version", str, w)
    names: list[str] = []
    for i, spec in enumerate(_need(s, "metrics", list, w)):
        ws = f"{w}.metrics[{i}]"
        if not isinstance(spec, dict):
            raise Rejected(f"{ws}: expected an object")
        names.append(_need(spec, "name", str, ws))
        _need(spec, "pyiqa_id", str, ws)
        _need(spec, "options", dict, ws)
        _need(spec, "lower_better", bool, ws)
        _need(spec, "decimals", int, ws)
        if spec.get("per", "image") not in ("image", "set"):
            raise Rejected(f"{ws}.per: {spec.get('per')!r}, expected image or set")
    if len(set(names)) != len(names):
        raise Rejected(f"{w}.metrics: a metric is listed twice")
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(_need(s, "results", list, w)):
        wr = f"{w}.results[{i}]"
        if not isinstance(r, dict):
            raise Rejected(f"{wr}: expected an object")
        key = (_need(r, "method", str, wr), _need(r, "dataset", str, wr))
        if key in seen:
            raise Rejected(f"{wr}: {key[0]} on {key[1]} appears twice")
        seen.add(key)
        if _need(r, "n_images", int, wr) < 0:
            raise Rejected(f"{wr}.n_images: negative")
        stats = _need(r, "metrics", dict, wr)
        if set(stats) != set(names):
            raise Rejected(f"{wr}.metrics: names {sorted(stats)} differ from metrics {names}")
        for m, st in stats.items():
            wm = f"{wr}.metrics.{m}"
            if not isinstance(st, dict):
                raise Rejected(f"{wm}: expected an object")
            _number(st.get("mean"), f"{wm}.mean")
            _number(st.get("std"), f"{wm}.std")
            if st.get("mean") is None and not isinstance(st.get("reason"), str):
                raise Rejected(f"{wm}: a missing mean needs its reason")
            _need(st, "missing", int, wm)


def _schema_efficiency(e: Any) -> None:
    w = "efficiency.json"
    if not isinstance(e, dict):
        raise Rejected(f"{w}: expected a JSON object")
    if e.get("schema") != "harness.efficiency/1":
        raise Rejected(f"{w}: schema {e.get('schema')!r}, expected 'harness.efficiency/1'")
    for i, row in enumerate(_need(e, "rows", list, w)):
        wr = f"{w}.rows[{i}]"
        if not isinstance(row, dict):
            raise Rejected(f"{wr}: expected an object")
        _need(row, "method", str, wr)
        for key in ("params", "macs_fvcore", "macs_fvcore_plus_attention", "peak_memory_bytes"):
            v = row.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise Rejected(
                    f"{wr}.{key}: expected a non-negative integer or null, got {str(v)[:40]!r}"
                )
        lat = _number(row.get("latency_median_s"), f"{wr}.latency_median_s")
        if lat is not None and lat < 0:
            raise Rejected(f"{wr}.latency_median_s: negative")
        for key in ("device", "dtype"):
            _need(row, key, (str, type(None)), wr)


# ----------------------------------------------------------------------------- 3. consistency


def _consistency(sub: Submission) -> None:
    m, s, cfg = sub.manifest, sub.summary, sub.config
    recomputed = config_hash(cfg)
    if recomputed != m["config_hash"]:
        raise Rejected(
            f"config.yaml: its hash {recomputed[:12]}... differs from manifest.json's "
            f"config_hash {m['config_hash'][:12]}..."
        )
    if s["config_hash"] != m["config_hash"]:
        raise Rejected("summary.json: config_hash differs from manifest.json's")
    if s["pyiqa_version"] != m["environment"]["packages"]["pyiqa"]:
        raise Rejected(
            f"summary.json: pyiqa_version {s['pyiqa_version']!r} differs from the "
            f"installed {m['environment']['packages']['pyiqa']!r} in manifest.json"
        )
    names = [spec["name"] for spec in s["metrics"]]
    if cfg.get("metrics") != names:
        raise Rejected(
            f"summary.json: metrics {names} differ from config.yaml's {cfg.get('metrics')}"
        )
    if m["command"] == "run":
        for key in ("methods", "datasets"):
            if cfg.get(key) != s.get(key):
                raise Rejected(
                    f"summary.json: {key} {s.get(key)} differ from config.yaml's {cfg.get(key)}"
                )
    datasets = m.get("datasets") or {}
    for ds, entry in datasets.items():
        want = sha256_json({"scale": entry["scale"], "files": entry["files"]})
        if want != entry["manifest_hash"]:
            raise Rejected(
                f"manifest.json: dataset {ds}: manifest_hash does not match its file "
                f"list (recomputed {want[:12]}...)"
            )
        if entry["n_images"] != len(entry["files"]):
            raise Rejected(
                f"manifest.json: dataset {ds}: n_images {entry['n_images']} but "
                f"{len(entry['files'])} files"
            )
    _per_image(sub, datasets)


def _per_image(sub: Submission, datasets: dict[str, Any]) -> None:
    s = sub.summary
    image_metrics = [x["name"] for x in s["metrics"] if x.get("per", "image") == "image"]
    rows = sub.per_image
    want_header = ["method", "dataset", "image", *image_metrics]
    if not rows or rows[0] != want_header:
        got = rows[0] if rows else "nothing"
        raise Rejected(f"per_image.csv: header {str(got)[:120]} (expected {want_header})")
    values: dict[tuple[str, str], dict[str, list[float | None]]] = {}
    images: dict[tuple[str, str], list[str]] = {}
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(want_header):
            raise Rejected(
                f"per_image.csv: line {line}: {len(row)} fields, expected {len(want_header)}"
            )
        key = (row[0], row[1])
        images.setdefault(key, []).append(row[2])
        cell = values.setdefault(key, {n: [] for n in image_metrics})
        for name, text in zip(image_metrics, row[3:]):
            cell[name].append(_cell(text, line, name))
    for r in s["results"]:
        key = (r["method"], r["dataset"])
        got = images.get(key, [])
        if len(got) != r["n_images"]:
            raise Rejected(
                f"per_image.csv: {len(got)} rows for {key[0]} on {key[1]}, "
                f"summary.json says {r['n_images']} images"
            )
        if len(set(got)) != len(got):
            raise Rejected(f"per_image.csv: an image repeats for {key[0]} on {key[1]}")
        ds = datasets.get(r["dataset"])
        if ds is not None:
            names = [f["name"] for f in ds["files"]]
            if got != names:
                raise Rejected(
                    f"per_image.csv: images of {key[0]} on {key[1]} differ from "
                    f"the dataset manifest in manifest.json"
                )
        for name in image_metrics:
            _mean_matches(r, name, values.get(key, {}).get(name, []))
    extra = set(images) - {(r["method"], r["dataset"]) for r in s["results"]}
    if extra:
        method, dataset = sorted(extra)[0]
        raise Rejected(f"per_image.csv: rows for {method} on {dataset}, absent from summary.json")


def _cell(text: str, line: int, name: str) -> float | None:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise Rejected(
            f"per_image.csv: line {line}, {name}: {text[:40]!r} is not a number"
        ) from None
    if not math.isfinite(v):
        raise Rejected(f"per_image.csv: line {line}, {name}: {text!r} is not a finite number")
    return v


def _mean_matches(result: dict, name: str, vals: list[float | None]) -> None:
    st = result["metrics"][name]
    where = f"summary.json: {result['method']} on {result['dataset']}, {name}"
    if st["mean"] is None:
        if vals and all(v is not None for v in vals):
            raise Rejected(f"{where}: mean is null but every image has a value")
        return
    if any(v is None for v in vals) or not vals:
        raise Rejected(f"{where}: a mean over images with missing values")
    mean, _ = mean_std(vals)  # type: ignore[arg-type]
    if abs(mean - st["mean"]) > 1e-9 * max(1.0, abs(mean)):
        raise Rejected(f"{where}: mean {st['mean']!r} differs from per_image.csv's {mean!r}")


# ----------------------------------------------------------------------------- 4. protocol


def _protocol(sub: Submission, p: Protocol) -> None:
    m, s = sub.manifest, sub.summary
    if p.harness_versions and m["harness_version"] not in p.harness_versions:
        raise Rejected(
            f"manifest.json: harness_version {m['harness_version']!r} is not accepted "
            f"({', '.join(p.harness_versions)})"
        )
    if p.pyiqa_version is not None and s["pyiqa_version"] != p.pyiqa_version:
        raise Rejected(
            f"summary.json: pyiqa_version {s['pyiqa_version']!r}, the leaderboard "
            f"requires {p.pyiqa_version!r}"
        )
    if p.metrics_autocast is not None and bool(s.get("metrics_autocast")) != p.metrics_autocast:
        raise Rejected(
            f"summary.json: metrics_autocast {s.get('metrics_autocast')!r}, the "
            f"leaderboard requires {p.metrics_autocast!r}"
        )
    for name, spec in sub.metric_specs.items():
        want = (p.metrics or {}).get(name)
        if p.metrics is not None and want is None:
            raise Rejected(
                f"summary.json: metric {name} is not part of this leaderboard's protocol"
            )
        for key in METRIC_PROTOCOL_KEYS:
            if want is not None and key in want and _norm(spec.get(key)) != _norm(want[key]):
                raise Rejected(
                    f"summary.json: metric {name}: {key} {spec.get(key)!r}, the "
                    f"leaderboard requires {want[key]!r}"
                )
    for ds in dict.fromkeys(r["dataset"] for r in s["results"]):
        want_hash = (p.datasets or {}).get(ds)
        if want_hash is None:
            continue
        have = sub.dataset_hash(ds)
        if have is None:
            raise Rejected(
                f"manifest.json: no dataset manifest hash for {ds} (eval: pass --lr "
                f"so the dataset is identified)"
            )
        if have != want_hash:
            raise Rejected(
                f"manifest.json: dataset {ds} manifest_hash {have[:12]}... is not the "
                f"leaderboard's {want_hash[:12]}... (other images)"
            )
    for method, digest in (p.weights or {}).items():
        entry = (m.get("methods") or {}).get(method)
        if entry is not None and "weights_digest" not in entry:
            raise Rejected(
                f"manifest.json: {method} comes from harness eval (outputs only, no weights "
                f"digest), but the leaderboard pins its weights"
            )
        if entry is not None and entry["weights_digest"] != digest:
            raise Rejected(
                f"manifest.json: {method} weights_digest {entry['weights_digest'][:40]!r}"
                f" is not the leaderboard's {digest[:40]!r}"
            )


def _norm(v: Any) -> Any:
    """Lists and tuples compare equal (YAML/JSON round trips)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def protocol_block(subs: list[Submission]) -> dict[str, Any]:
    """The ``protocol:`` section of a leaderboard config that accepts exactly these runs'
    settings (``harness leaderboard protocol``); conflicting settings are refused."""
    out: dict[str, Any] = {
        "harness_versions": [],
        "pyiqa_version": None,
        "metrics_autocast": None,
        "metrics": {},
        "datasets": {},
        "weights": {},
    }
    for sub in subs:
        src = sub.bundle.source
        v = sub.manifest["harness_version"]
        if v not in out["harness_versions"]:
            out["harness_versions"].append(v)
        for key, value in (
            ("pyiqa_version", sub.summary["pyiqa_version"]),
            ("metrics_autocast", bool(sub.summary.get("metrics_autocast"))),
        ):
            if out[key] is not None and out[key] != value:
                raise Rejected(f"{src}: {key} {value!r} differs from another run's {out[key]!r}")
            out[key] = value
        for name, spec in sub.metric_specs.items():
            mine = {k: spec.get(k) for k in METRIC_PROTOCOL_KEYS}
            if out["metrics"].setdefault(name, mine) != mine:
                raise Rejected(f"{src}: metric {name} settings differ from another run's")
        for ds in dict.fromkeys(r["dataset"] for r in sub.summary["results"]):
            h = sub.dataset_hash(ds)
            if h is not None and out["datasets"].setdefault(ds, h) != h:
                raise Rejected(f"{src}: dataset {ds} manifest hash differs from another run's")
        for method, entry in (sub.manifest.get("methods") or {}).items():
            d = entry.get("weights_digest")  # None for harness eval entries
            if d and out["weights"].setdefault(method, d) != d:
                raise Rejected(f"{src}: {method} weights digest differs from another run's")
    return out
