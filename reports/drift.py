"""The protocol-drift guard: numbers computed under different protocols are never ranked together.

For one dataset, every run that holds it is compared with the first such run (the reference)
on what determines a metric's value:

- the pyiqa version (``summary.json`` ``pyiqa_version``);
- per metric: pyiqa id, every option, direction, per-image/per-set, the weight file ids and the
  sha256 of the files that were loaded (``weights_sha256``), and autocast for no-reference
  metrics (``metrics_autocast``);
- the dataset: image names and HR file hashes, LR hashes where both runs know them, and the scale
  (``manifest.json`` ``datasets.<name>``; an ``eval`` without ``--lr`` has no LR hashes, which
  is no difference: it scored the same HR images).

Not part of the protocol: ``impl`` (an own implementation is held equal to pyiqa by tests),
``decimals``, ``doc``, ``score_range``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.load import RunData

_UNSET = "(unset)"


@dataclass(frozen=True)
class Difference:
    """What differs between the reference run and another run, for one metric of one dataset."""

    reference: RunData
    other: RunData
    dataset: str
    what: str  # e.g. "ssim option color_space: 'ycbcr' vs 'yiq'"

    def message(self) -> str:
        return f"{self.reference.path} and {self.other.path} differ on {self.dataset}: {self.what}"


def _spec_fields(run: RunData, metric: str) -> dict[str, Any]:
    s = run.spec(metric) or {}
    out: dict[str, Any] = {
        f"{metric} pyiqa id": s.get("pyiqa_id"),
        f"{metric} direction": "lower is better" if s.get("lower_better") else "higher is better",
        f"{metric} per": s.get("per", "image"),
        f"{metric} weight ids": tuple(s.get("weights", ())),
    }
    for key, value in (s.get("options") or {}).items():
        out[f"{metric} option {key}"] = value
    for wid, digest in (s.get("weights_sha256") or {}).items():
        out[f"{metric} weights {wid} sha256"] = digest
    if s.get("reference") == "NR":
        out[f"{metric} autocast"] = bool(run.summary.get("metrics_autocast", False))
    return out


def _show(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64:
        return v[:12] + "…"  # a sha256
    return repr(v)


def _field_differences(ref: RunData, other: RunData, metric: str) -> list[str]:
    a = {"pyiqa version": ref.summary.get("pyiqa_version")} | _spec_fields(ref, metric)
    b = {"pyiqa version": other.summary.get("pyiqa_version")} | _spec_fields(other, metric)
    out = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key, _UNSET), b.get(key, _UNSET)
        if va != vb:
            out.append(f"{key}: {_show(va)} vs {_show(vb)}")
    return out


def _dataset_differences(ref: RunData, other: RunData, dataset: str) -> list[str]:
    da, db = ref.dataset_entry(dataset), other.dataset_entry(dataset)
    missing = [r for r, d in ((ref, da), (other, db)) if not d or "files" not in d]
    if missing:
        return [
            f"{r.path} records no dataset manifest (rerun it with this version of harness)"
            for r in missing
        ]
    out = []
    if da.get("scale") is not None and db.get("scale") is not None and da["scale"] != db["scale"]:
        out.append(f"scale x{da['scale']} vs x{db['scale']}")
    fa = {f["name"]: f for f in da["files"]}
    fb = {f["name"]: f for f in db["files"]}
    if set(fa) != set(fb):
        only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
        out.append(
            f"image sets differ ({len(only_a)} only in the first, e.g. "
            f"{only_a[:1] or '-'}; {len(only_b)} only in the second, e.g. {only_b[:1] or '-'})"
        )
        return out
    for kind in ("hr", "lr"):
        key = f"{kind}_sha256"
        changed = [n for n in fa if fa[n].get(key) and fb[n].get(key) and fa[n][key] != fb[n][key]]
        if changed:
            out.append(
                f"{kind.upper()} files differ ({len(changed)} of {len(fa)}, e.g. {changed[0]})"
            )
    return out


def differences(runs: list[RunData], dataset: str, metric: str) -> list[Difference]:
    """Differences of each run holding ``dataset`` and ``metric`` from the first such run."""
    holders = [r for r in runs if r.results(dataset) and r.spec(metric) is not None]
    if len(holders) < 2:
        return []
    ref = holders[0]
    out = []
    for other in holders[1:]:
        for what in _dataset_differences(ref, other, dataset) + _field_differences(
            ref, other, metric
        ):
            out.append(Difference(ref, other, dataset, what))
    return out
