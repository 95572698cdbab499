"""The papers' visual comparison: the same crop of LR, each method's output and HR side by side.

Layout, left to right: the whole HR image with the crop's box; the LR crop upscaled by
**nearest neighbour** (each LR pixel becomes a scale x scale block: the input exactly as the
methods saw it, with no interpolation of our own); each method's crop; the HR crop. Every crop
panel carries a box around a smaller region and an inset that shows it enlarged (nearest).

Where the crop is: given by the user (``x, y, size`` in HR pixels), or where the methods'
outputs disagree most (largest sum of the per-pixel standard deviation across methods over the
window; with one method, its largest absolute error to HR). Positions are multiples of the scale,
so the LR crop covers exactly the same scene. Which images: named by the user, or those where the
methods' per-image scores disagree most (:func:`choose_images`).

LR and HR files are checked against the sha256 in the run's manifest before they are shown.
``comparison`` returns the panels' arrays and boxes with the figure, and a JSON sidecar records
them, so what the figure shows can be traced to source pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.errors import HarnessError
from harness.hashing import sha256_file
from harness.imageio import read_rgb, write_text
from harness.reports.figures import labels_for
from harness.reports.load import RunData
from harness.reports.tables import DatasetTable

_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Panel:
    """One crop panel: ``array`` is what is drawn, taken from ``source`` at ``box`` (x0, y0,
    x1, y1 in the source's pixels) and enlarged ``upscale`` times by nearest neighbour."""

    title: str
    source: str
    box: tuple[int, int, int, int]
    upscale: int
    inset_box: tuple[int, int, int, int]  # in the panel's (HR) pixels
    array: np.ndarray = field(repr=False)
    inset: np.ndarray = field(repr=False)


@dataclass
class Sources:
    """Where one image's files are: LR and HR (None when unknown) and each method's SR."""

    lr: Path | None
    hr: Path | None
    sr: dict[str, Path]  # label -> file
    notes: list[str]


def _find(folder: Path, stem: str) -> Path | None:
    for ext in _EXTS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _checked(run: RunData, dataset: str, image: str, kind: str) -> Path | None:
    """The LR or HR file of ``image`` as recorded by ``run``, verified against its sha256."""
    entry = run.dataset_entry(dataset) or {}
    folder = entry.get(f"{kind}_dir")
    if not folder:
        return None
    path = _find(Path(folder), image)
    if path is None:
        raise HarnessError(f"{folder}: no image named {image} ({kind.upper()} of {run.path})")
    files = entry.get("files", [])
    want = next((f.get(f"{kind}_sha256") for f in files if f["name"] == image), None)
    if want and sha256_file(path) != want:
        raise HarnessError(f"{path}: changed since {run.path} was computed (sha256 differs)")
    return path


def sources(runs: list[RunData], table: DatasetTable, image: str) -> Sources:
    by_path = {str(r.path): r for r in runs}
    holders = [by_path[p] for p in dict.fromkeys(table.cells["run"])]
    lr = hr = None
    for run in holders:
        lr = lr or _checked(run, table.dataset, image, "lr")
        hr = hr or _checked(run, table.dataset, image, "hr")
    notes = []
    if lr is None:
        notes.append("no LR folder recorded (harness eval without --lr): LR panel left out")
    sr = {}
    for _, row in labels_for(table).iterrows():
        folder = by_path[row["run"]].sr_folder(row["method"], table.dataset)
        path = _find(folder, image) if folder and folder.is_dir() else None
        if path is None:
            notes.append(f"{row['label']}: SR image not found ({folder or 'no folder recorded'})")
        else:
            sr[row["label"]] = path
    return Sources(lr, hr, sr, notes)


def choose_images(runs: list[RunData], table: DatasetTable, n: int) -> list[str]:
    """The ``n`` images whose per-image scores differ most across methods: per metric, values
    divided by their standard deviation over all (method, image); per image, the range across
    methods, averaged over metrics. With one method: its ``n`` worst images by the same scaled
    scores (oriented so that higher is better)."""
    by_path = {str(r.path): r for r in runs}
    frames = {}
    for spec in table.metrics:
        if spec.get("per", "image") == "set":
            continue
        cols = {}
        for _, row in labels_for(table).iterrows():
            v = by_path[row["run"]].values(row["method"], table.dataset, spec["name"])
            if v is not None:
                cols[row["label"]] = v
        if not cols:
            continue
        m = np.vstack([s.to_numpy() for s in cols.values()]).T  # images x methods
        sd = np.nanstd(m)
        if not np.isfinite(sd) or sd == 0:
            continue
        sign = -1.0 if spec["lower_better"] else 1.0
        frames[spec["name"]] = (next(iter(cols.values())).index, sign * m / sd)
    if not frames:
        return []
    index = next(iter(frames.values()))[0]
    scores = np.vstack(
        [
            (np.nanmax(z, axis=1) - np.nanmin(z, axis=1)) if z.shape[1] > 1 else -z[:, 0]
            for _, z in frames.values()
        ]
    )
    score = np.nanmean(scores, axis=0)
    order = sorted(range(len(index)), key=lambda i: (-score[i], index[i]))
    return [str(index[i]) for i in order[:n]]


def _gray(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _window_argmax(d: np.ndarray, size: int, step: int) -> tuple[int, int]:
    """(x, y) of the size x size window, at multiples of ``step``, with the largest sum of ``d``."""
    c = np.pad(d.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, d.shape[0] - size + 1, step)
    xs = np.arange(0, d.shape[1] - size + 1, step)
    sums = (
        c[ys[:, None] + size, xs[None, :] + size]
        - c[ys[:, None], xs[None, :] + size]
        - c[ys[:, None] + size, xs[None, :]]
        + c[ys[:, None], xs[None, :]]
    )
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)  # first of equal sums
    return int(xs[ix]), int(ys[iy])


def disagreement(srs: list[np.ndarray], hr: np.ndarray | None) -> np.ndarray:
    """Per-pixel disagreement: std of the methods' luma; with one method, |SR - HR| luma."""
    if len(srs) >= 2:
        return np.std(np.stack([_gray(a) for a in srs]), axis=0)
    if hr is not None and srs:
        return np.abs(_gray(srs[0]) - _gray(hr))
    return np.zeros(srs[0].shape[:2] if srs else hr.shape[:2])


def comparison(
    runs: list[RunData],
    table: DatasetTable,
    image: str,
    crop: tuple[int, int, int] | None = None,
) -> tuple[Figure, list[Panel], dict]:
    """The figure for one image, its panels, and the sidecar record (JSON-ready)."""
    src = sources(runs, table, image)
    if not src.sr:
        raise HarnessError(f"{table.dataset}/{image}: no SR image found ({'; '.join(src.notes)})")
    srs = {lab: read_rgb(p) for lab, p in src.sr.items()}
    hr = read_rgb(src.hr) if src.hr else None
    lr = read_rgb(src.lr) if src.lr else None
    ref = hr if hr is not None else next(iter(srs.values()))
    H, W = ref.shape[:2]
    for lab, a in srs.items():
        if a.shape != ref.shape:
            raise HarnessError(f"{src.sr[lab]}: {a.shape[1]}x{a.shape[0]}, expected {W}x{H}")
    scale = 1
    if lr is not None:
        scale = W // lr.shape[1]
        if lr.shape[1] * scale != W or lr.shape[0] * scale != H:
            raise HarnessError(f"{src.lr}: LR size is not HR size / an integer scale")
    d = disagreement(list(srs.values()), hr)
    if crop is None:
        size = max(8 * scale, (min(H, W) // 4) // scale * scale)
        size = min(size, min(H, W) // scale * scale)
        x, y = _window_argmax(d, size, scale)
    else:
        x, y, size = crop
        if size <= 0 or x < 0 or y < 0 or x + size > W or y + size > H:
            raise HarnessError(f"--crop {x},{y},{size}: outside the {W}x{H} image")
        if x % scale or y % scale or size % scale:
            raise HarnessError(f"--crop {x},{y},{size}: use multiples of the scale ({scale})")
    sub = max(4, size // 6)
    ix, iy = _window_argmax(d[y : y + size, x : x + size], sub, 1)
    inset_box = (ix, iy, ix + sub, iy + sub)

    def panel(title: str, source: Path, a: np.ndarray, box, up: int) -> Panel:
        x0, y0, x1, y1 = box
        arr = a[y0:y1, x0:x1]
        if up > 1:
            arr = np.repeat(np.repeat(arr, up, axis=0), up, axis=1)
        return Panel(title, str(source), box, up, inset_box, arr, arr[iy : iy + sub, ix : ix + sub])

    panels = []
    if lr is not None:
        lbox = (x // scale, y // scale, (x + size) // scale, (y + size) // scale)
        panels.append(panel(f"LR ×{scale} (nearest)", src.lr, lr, lbox, scale))
    for lab, a in srs.items():
        panels.append(panel(lab, src.sr[lab], a, (x, y, x + size, y + size), 1))
    if hr is not None:
        panels.append(panel("HR", src.hr, hr, (x, y, x + size, y + size), 1))

    scores = _scores(runs, table, image)
    ncol = len(panels) + 1
    fig = Figure(figsize=(2.3 * ncol, 2.9), layout="constrained")
    axes = fig.subplots(1, ncol, squeeze=False)[0]
    axes[0].imshow(ref, interpolation="nearest")
    axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, ec="red", lw=1.5))
    axes[0].set_title(f"{image}\n({'HR' if hr is not None else 'SR'}, {W}x{H})", fontsize=8)
    for ax, p in zip(axes[1:], panels):
        ax.imshow(p.array, interpolation="nearest")
        ax.add_patch(Rectangle((ix - 0.5, iy - 0.5), sub, sub, fill=False, ec="yellow", lw=1.2))
        # the inset goes to the corner farthest from the region it enlarges
        right = ix + sub / 2 < size / 2
        bottom = iy + sub / 2 < size / 2
        ins = ax.inset_axes([0.56 if right else 0.02, 0.02 if bottom else 0.56, 0.42, 0.42])
        ins.imshow(p.inset, interpolation="nearest")
        ins.set_xticks([])
        ins.set_yticks([])
        for spine in ins.spines.values():
            spine.set_edgecolor("yellow")
            spine.set_linewidth(1.2)
        ax.set_title(p.title + scores.get(p.title, ""), fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    record = {
        "dataset": table.dataset,
        "image": image,
        "crop": {"x": x, "y": y, "size": size, "scale": scale,
                 "chosen": "user" if crop is not None else "largest disagreement"},
        "lr_upscaling": "nearest",
        "inset_box_in_crop": list(inset_box),
        "panels": [
            {k: list(v) if isinstance(v, tuple) else v
             for k, v in asdict(p).items() if k not in ("array", "inset")}
            | {"sha256": sha256_file(p.source)}
            for p in panels
        ],
        "notes": src.notes,
    }  # fmt: skip
    return fig, panels, record


def _scores(runs: list[RunData], table: DatasetTable, image: str) -> dict[str, str]:
    """'\\nPSNR 27.10 SSIM 0.781' under each method's title: its scores on this image."""
    by_path = {str(r.path): r for r in runs}
    out = {}
    specs = [s for s in table.metrics if s.get("per", "image") != "set"][:2]
    for _, row in labels_for(table).iterrows():
        parts = []
        for s in specs:
            v = by_path[row["run"]].values(row["method"], table.dataset, s["name"])
            if v is not None and image in v.index and not np.isnan(v[image]):
                parts.append(f"{s['name'].upper()} {v[image]:.{s.get('decimals', 4)}f}")
        if parts:
            out[row["label"]] = "\n" + " ".join(parts)
    return out


def write_record(record: dict, path: Path) -> None:
    write_text(path, json.dumps(record, indent=2) + "\n")
