"""Result directories for report tests, written in the store's real formats (harness.store)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.hashing import sha256_file, sha256_json
from harness.imageio import write_png
from harness.store import Row, RunStore, summarise

Y = {"test_y_channel": True, "color_space": "ycbcr"}


def spec(name, lower_better=False, decimals=4, per="image", options=None, reference="FR"):
    return {
        "name": name, "pyiqa_id": name, "reference": reference, "lower_better": lower_better,
        "score_range": "", "options": dict(Y if options is None else options), "impl": "pyiqa",
        "decimals": decimals, "weights": [], "per": per, "doc": "", "weights_sha256": {},
    }  # fmt: skip


PSNR = spec("psnr", decimals=2)
SSIM = spec("ssim")
LPIPS = spec("lpips", lower_better=True, options={})
FID = spec("fid", lower_better=True, decimals=2, per="set", options={"mode": "clean"})


def make_run(
    path: Path,
    values: dict[str, dict[str, list[float]]],
    specs: list[dict],
    dataset: str = "ds",
    images: list[str] | None = None,
    set_values: dict[str, dict[str, float]] | None = None,
    pyiqa_version: str = "0.1.16",
    files: list[dict] | None = None,
    sr_dirs: dict[str, Path] | None = None,
    lr_dir: Path | None = None,
    hr_dir: Path | None = None,
    efficiency: list[dict] | None = None,
    cards: dict[str, dict] | None = None,
) -> Path:
    """A finished run directory: ``values[method][metric]`` per image (in ``images`` order);
    ``cards[method]``: fields of its method card in the manifest (e.g. family, steps)."""
    store = RunStore(path)
    path.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(next(iter(values.values())).values())))
    images = images or [f"img{i:03d}" for i in range(n)]
    per_image = [s["name"] for s in specs if s["per"] == "image"]
    rows = [
        Row(
            m,
            dataset,
            img,
            "k",
            {k: None if vals[k][i] is None else float(vals[k][i]) for k in per_image},
            {k: "weights missing" for k in per_image if vals[k][i] is None},
        )  # fmt: skip
        for m, vals in values.items()
        for i, img in enumerate(images)
    ]
    store.write_per_image(rows, per_image)
    sets = {(m, dataset): (v, {}) for m, v in (set_values or {}).items()}
    results = summarise(
        rows, [(m, dataset, n) for m in values], specs, {dataset: [s["name"] for s in specs]}, sets
    )
    store.write_summary(
        {
            "schema": "harness.summary/1",
            "config_hash": "x",
            "command": "run",
            "methods": list(values),
            "datasets": [dataset],
            "pyiqa_version": pyiqa_version,
            "metrics": specs,
            "unavailable_metrics": {},
            "metrics_autocast": False,
            "results": results,
        }  # fmt: skip
    )
    files = files or [{"name": i, "lr_sha256": f"lr-{i}", "hr_sha256": f"hr-{i}"} for i in images]
    manifest = {
        "command": "run",
        "environment": {"packages": {"pyiqa": pyiqa_version}},
        "datasets": {
            dataset: {
                "manifest_hash": sha256_json({"scale": 4, "files": files}),
                "n_images": n,
                "scale": 4,
                "files": files,
                "lr_dir": str(lr_dir) if lr_dir else None,
                "hr_dir": str(hr_dir) if hr_dir else None,
            }  # fmt: skip
        },
        "methods": {m: {"sr_dir": {dataset: str(d)}} for m, d in (sr_dirs or {}).items()},
    }
    for m, card in (cards or {}).items():
        manifest["methods"].setdefault(m, {})["card"] = card
    store.write_manifest(manifest)
    if efficiency:
        store.write_efficiency(efficiency, {"device": {"type": "cpu", "name": "test"}})
    return path


def eff_row(method, latency, macs=None, device="test"):
    return {
        "method": method, "steps": 1, "lr_size": 32, "sr_size": 128, "weights": "random",
        "params": 1e6, "macs_fvcore": macs, "macs_fvcore_plus_attention": macs,
        "latency_median_s": latency, "latency_p10_s": latency * 0.9,
        "latency_p90_s": latency * 1.1, "peak_memory_bytes": 2**20, "memory_kind": "cpu_peak_rss",
        "reference": method, "latency_median_s_ratio": 1.0, "device": device, "dtype": "float32",
    }  # fmt: skip


def make_images(root: Path, names: list[str], methods: list[str], seed: int = 0, size: int = 32):
    """LR (size/4) and HR (size) PNGs, and per method an SR folder; returns (lr, hr, srs, files)."""
    rng = np.random.default_rng(seed)
    lr_dir, hr_dir = root / "LR", root / "HR"
    srs = {m: root / m for m in methods}
    files = []
    for name in names:
        hr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        lr = hr[::4, ::4]
        write_png(hr_dir / f"{name}.png", hr)
        write_png(lr_dir / f"{name}.png", lr)
        for j, m in enumerate(methods):
            sr = np.clip(hr.astype(int) + rng.integers(-40, 41, hr.shape) * (j + 1), 0, 255)
            write_png(srs[m] / f"{name}.png", sr.astype(np.uint8))
        files.append(
            {
                "name": name,
                "lr_sha256": sha256_file(lr_dir / f"{name}.png"),
                "hr_sha256": sha256_file(hr_dir / f"{name}.png"),
            }
        )
    return lr_dir, hr_dir, srs, files


def csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
