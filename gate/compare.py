"""Compare a run with a gate baseline: one :class:`Check` per gated value, and a readable diff.

Rules (the baseline's tolerances, see ``baseline.py``):

* protocol: a metric's pyiqa id, options, implementation, direction or granularity changed, or a
  dataset's manifest hash changed -> fail (the numbers would mean something else). Another
  pyiqa or harness version is reported, not failed: the values themselves are gated.
* quality: a mean worse than the baseline by more than the metric's absolute tolerance -> fail;
  better by more -> ``improved`` (passes; refresh the baseline with ``--update``). A value that
  became missing, or a method, dataset or metric absent from the run -> fail.
* efficiency: parameters and MACs (fvcore, and with attention) must be equal; so must the LR
  size they were measured at.
* latency: median latency more than ``latency_relative`` slower -> fail, but only when the
  device name and dtype match the baseline's; otherwise ``skipped``, saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.gate.baseline import EXACT_FIELDS, SETTING_FIELDS
from harness.gate.runview import RunView

OK, FAIL, IMPROVED, SKIPPED, NOTE = "ok", "FAIL", "improved", "skipped", "note"


@dataclass(frozen=True)
class Check:
    """One gated value: ``status`` is ok, FAIL, improved, skipped or note."""

    section: str  # protocol | quality | efficiency | latency
    subject: str
    status: str
    baseline: str
    current: str
    detail: str = ""


def compare(baseline: dict[str, Any], run: RunView) -> list[Check]:
    return [
        *_protocol(baseline, run),
        *_quality(baseline, run),
        *_efficiency(baseline, run),
    ]


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


# ----------------------------------------------------------------------------- protocol


def _protocol(baseline: dict[str, Any], run: RunView) -> list[Check]:
    out: list[Check] = []
    src = baseline.get("source", {})
    now_pyiqa = (run.summary or {}).get("pyiqa_version")
    if run.summary is not None and src.get("pyiqa_version") != now_pyiqa:
        out.append(
            Check(
                "protocol",
                "pyiqa version",
                NOTE,
                str(src.get("pyiqa_version")),
                str(now_pyiqa),
                "values are still gated",
            )
        )
    now_harness = (run.manifest or {}).get("harness_version")
    if src.get("harness_version") not in (None, now_harness):
        out.append(
            Check(
                "protocol",
                "harness version",
                NOTE,
                str(src.get("harness_version")),
                str(now_harness),
                "values are still gated",
            )
        )
    specs = {s["name"]: s for s in (run.summary or {}).get("metrics", [])}
    for name, want in baseline["metrics"].items():
        have = specs.get(name)
        if have is None:
            continue  # reported once per (method, dataset) under quality
        diff = [k for k, v in want.items() if have.get(k) != v]
        if diff:
            changes = "; ".join(f"{k} {want[k]!r} -> {have.get(k)!r}" for k in diff)
            out.append(
                Check("protocol", f"metric {name}", FAIL, "", "", f"settings changed: {changes}")
            )
    now = run.dataset_hashes()
    for ds, want_hash in baseline["datasets"].items():
        have_hash = now.get(ds)
        if want_hash is None or ds not in now:
            continue  # the baseline records none, or the pair is reported missing under quality
        if have_hash is None:
            out.append(
                Check(
                    "protocol",
                    f"dataset {ds}",
                    SKIPPED,
                    want_hash[:12],
                    "n/a",
                    "the run records no dataset manifest hash",
                )
            )
            continue
        if want_hash != have_hash:
            out.append(
                Check(
                    "protocol",
                    f"dataset {ds}",
                    FAIL,
                    want_hash[:12],
                    have_hash[:12],
                    "dataset manifest hash changed: other images were scored",
                )
            )
    return out


# ----------------------------------------------------------------------------- quality


def _quality(baseline: dict[str, Any], run: RunView) -> list[Check]:
    out: list[Check] = []
    tol = baseline["tolerances"].get("metrics", {})
    results = {(r["method"], r["dataset"]): r for r in (run.summary or {}).get("results", [])}
    if baseline["quality"] and run.summary is None:
        return [
            Check(
                "quality",
                "summary.json",
                FAIL,
                "",
                "absent",
                "the baseline gates metric values; the run has none",
            )
        ]
    for method, cells in baseline["quality"].items():
        for dataset, values in cells.items():
            r = results.get((method, dataset))
            if r is None:
                out.append(
                    Check(
                        "quality",
                        f"{method} / {dataset}",
                        FAIL,
                        "present",
                        "absent",
                        "method/dataset pair missing from the run",
                    )
                )
                continue
            for metric, want in values.items():
                lower = bool(baseline["metrics"][metric].get("lower_better"))
                subject = f"{method} / {dataset} / {metric} {'↓' if lower else '↑'}"
                stats = r["metrics"].get(metric)
                if stats is None:
                    out.append(
                        Check(
                            "quality", subject, FAIL, _num(want), "absent", "metric not in the run"
                        )
                    )
                    continue
                have = stats.get("mean")
                t = float(tol.get(metric, 0.0))
                out.append(_quality_check(subject, want, have, stats.get("reason"), lower, t))
    return out


def _quality_check(
    subject: str, want: float | None, have: float | None, reason: str | None, lower: bool, t: float
) -> Check:
    if want is None and have is None:
        return Check("quality", subject, OK, "n/a", "n/a", "missing in both")
    if want is None:
        return Check("quality", subject, NOTE, "n/a", _num(have), "now available (not gated)")
    if have is None or not math.isfinite(have):
        return Check("quality", subject, FAIL, _num(want), "n/a", f"value missing: {reason}")
    delta = have - want
    worse = delta if lower else -delta  # > 0: worse than the baseline
    detail = f"Δ {delta:+.6g} (tolerance {t:g})"
    slack = 1e-12 * max(1.0, abs(want))  # float noise in the tolerance arithmetic itself
    if worse > t + slack:
        return Check("quality", subject, FAIL, _num(want), _num(have), detail)
    if -worse > t + slack:
        return Check("quality", subject, IMPROVED, _num(want), _num(have), detail)
    return Check("quality", subject, OK, _num(want), _num(have), detail)


# ----------------------------------------------------------------------------- efficiency


def _efficiency(baseline: dict[str, Any], run: RunView) -> list[Check]:
    out: list[Check] = []
    if not baseline["efficiency"]:
        return out
    rows = {r["method"]: r for r in run.efficiency_rows()}
    if run.efficiency is None:
        return [
            Check(
                "efficiency",
                "efficiency.json",
                FAIL,
                "",
                "absent",
                "the baseline gates parameters/MACs; run with profile.enabled=true",
            )
        ]
    lat_tol = baseline["tolerances"].get("latency_relative")
    for method, want in baseline["efficiency"].items():
        have = rows.get(method)
        if have is None:
            out.append(
                Check(
                    "efficiency",
                    method,
                    FAIL,
                    "present",
                    "absent",
                    "method missing from efficiency.json",
                )
            )
            continue
        for key in (*SETTING_FIELDS, *EXACT_FIELDS):
            a, b = want.get(key), have.get(key)
            if a == b:
                out.append(Check("efficiency", f"{method} / {key}", OK, _int(a), _int(b)))
                continue
            detail = "must be equal"
            if key in SETTING_FIELDS:
                detail = "measured at another setting: MACs are not comparable"
            elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
                detail = f"must be equal (Δ {b - a:+,} = {(b - a) / a:+.3%})"
            out.append(Check("efficiency", f"{method} / {key}", FAIL, _int(a), _int(b), detail))
        out.append(_latency(method, want, have, lat_tol))
    return out


def _latency(method: str, want: dict, have: dict, tol: float | None) -> Check:
    subject = f"{method} / latency_median_s"
    a, b = want.get("latency_median_s"), have.get("latency_median_s")
    base_env = f"{want.get('device')}/{want.get('dtype')}"
    run_env = f"{have.get('device')}/{have.get('dtype')}"
    if tol is None:
        return Check("latency", subject, SKIPPED, _sec(a), _sec(b), "not gated by this baseline")
    if base_env != run_env:
        return Check(
            "latency",
            subject,
            SKIPPED,
            _sec(a),
            _sec(b),
            f"baseline measured on {base_env}, run on {run_env}: not comparable",
        )
    if a is None or b is None or not a:
        return Check("latency", subject, SKIPPED, _sec(a), _sec(b), "no latency to compare")
    rel = b / a - 1.0
    detail = f"{rel:+.1%} (tolerance {tol:.0%})"
    if rel > tol:
        return Check("latency", subject, FAIL, _sec(a), _sec(b), detail)
    if rel < -tol:
        return Check("latency", subject, IMPROVED, _sec(a), _sec(b), detail)
    return Check("latency", subject, OK, _sec(a), _sec(b), detail)


# ----------------------------------------------------------------------------- rendering


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def _int(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _sec(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g} s"


def verdict(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (FAIL, IMPROVED, OK, SKIPPED, NOTE)}
    parts = [f"{n} {'failed' if s == FAIL else s}" for s, n in counts.items() if n]
    return f"{'FAIL' if failed(checks) else 'PASS'}: {', '.join(parts) or 'nothing gated'}"


def render_text(checks: list[Check], header: str) -> str:
    """Aligned plain-text table, grouped by section, then the verdict line."""
    lines = [header]
    for section in ("protocol", "quality", "efficiency", "latency"):
        mine = [c for c in checks if c.section == section]
        if not mine:
            continue
        lines.append(f"\n{section}:")
        w_subj = max(len(c.subject) for c in mine)
        w_base = max(len(c.baseline) for c in mine)
        w_cur = max(len(c.current) for c in mine)
        for c in mine:
            arrow = "->" if c.baseline or c.current else "  "
            row = (
                f"  {c.status:8s} {c.subject:{w_subj}s}  {c.baseline:>{w_base}s} {arrow} "
                f"{c.current:<{w_cur}s}  {c.detail}"
            )
            lines.append(row.rstrip())
    if any(c.status == IMPROVED for c in checks):
        lines.append("\nimproved values pass; refresh the baseline with: harness gate --update")
    lines.append("\n" + verdict(checks))
    return "\n".join(lines) + "\n"


def render_markdown(checks: list[Check], header: str) -> str:
    """The same diff as a Markdown table (e.g. for a CI job summary); ok rows are folded."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"### Performance gate: {verdict(checks)}", "", esc(header), ""]
    shown = [c for c in checks if c.status != OK]
    if shown:
        lines += [
            "| status | section | what | baseline | run | detail |",
            "|---|---|---|---:|---:|---|",
        ]
        for c in shown:
            cells = (c.status, c.section, c.subject, c.baseline, c.current, c.detail)
            lines.append("| " + " | ".join(esc(x) for x in cells) + " |")
    n_ok = sum(c.status == OK for c in checks)
    lines += ["", f"{n_ok} values within tolerance."]
    return "\n".join(lines) + "\n"
