"""Shared parts of the single-network equivalence scripts (Real-ESRGAN, BSRGAN, SwinIR, FeMaSR):
the LR crops both sides read, one row per image comparing the two pipelines, the summary that
is printed and written, and the golden-file digest of an output tensor."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

SHARED_LR = Path(__file__).resolve().parents[2] / "shared" / "data" / "drealsr" / "LR"
GOLDEN_SAMPLES = 97  # output values a golden case keeps, at evenly spaced flat indices


def scratch(prefix: str) -> Path:
    """A new scratch folder for the official run's inputs, weights and outputs."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def cleanup(work: Path, keep: bool) -> None:
    """Remove the scratch folder (its checkpoint alone is tens to hundreds of MB) unless
    ``keep``; say where it is when kept."""
    if keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def lr_crops(folder: Path, limit: int, crop: int, dest: Path) -> list[str]:
    """The first ``limit`` PNGs of ``folder`` as RGB, their top-left ``crop`` x ``crop`` (0 =
    whole), saved in ``dest`` under their names; returns the stems."""
    from PIL import Image

    dest.mkdir(parents=True)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:limit]
    for p in files:
        img = Image.open(p).convert("RGB")
        if crop:
            img = img.crop((0, 0, min(crop, img.width), min(crop, img.height)))
        img.save(dest / p.name)
    return [p.stem for p in files]


def image_row(name: str, lr, theirs, mine, net_a, net_b, **extra) -> dict:
    """One image: the 8-bit outputs (HxWx3 arrays) and the networks' float outputs compared."""
    import numpy as np

    diff = np.abs(theirs.astype(int) - mine.astype(int))
    row = {
        "image": name,
        "lr_size": list(lr.shape[:2]),
        "net_max_abs_diff": float((net_a - net_b).abs().max()),
        "max_diff_8bit": int(diff.max()),
        "differing_values": float((diff > 0).mean()),
    } | extra
    print(json.dumps(row), flush=True)
    return row


def finish(rows: list[dict], out: Path | None, **settings) -> dict:
    """The summary over ``rows`` (worst cases, mean share of differing values), printed and, with
    ``out``, written as JSON with the rows."""
    import torch

    summary = settings | {
        "images": len(rows),
        "net_max_abs_diff": max(r["net_max_abs_diff"] for r in rows),
        "max_diff_8bit": max(r["max_diff_8bit"] for r in rows),
        "differing_values": sum(r["differing_values"] for r in rows) / len(rows),
        "torch": torch.__version__,
    }
    print(json.dumps(summary))
    if out:
        out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return summary


def golden_input(h: int, w: int):
    """The seeded input of a golden case: ``torch.rand(1, 3, h, w)`` from seed ``h * 100 + w``."""
    import torch

    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))


def write_golden(path: Path, what: str, sizes, forward) -> None:
    """A golden file: ``forward`` (an official network) on :func:`golden_input` of each (h, w)
    in ``sizes``, kept as :func:`golden_summary` digests; ``what`` says what was run."""
    import torch

    cases = []
    for h, w in sizes:
        with torch.no_grad():
            cases.append({"input": [h, w]} | golden_summary(forward(golden_input(h, w))))
    doc = {"what": what, "torch": torch.__version__, "cases": cases}
    path.write_text(json.dumps(doc, indent=0) + "\n")


def golden_summary(y) -> dict:
    """What a golden file keeps of an output ``(1, 3, H, W)``: row and column means and evenly
    spaced values (enough to catch any wrong part, small enough to read)."""
    flat = y.flatten()
    step = max(1, flat.numel() // GOLDEN_SAMPLES)
    return {
        "shape": list(y.shape),
        "row_means": y.mean(dim=(0, 1, 3)).tolist(),
        "col_means": y.mean(dim=(0, 1, 2)).tolist(),
        "samples": flat[::step].tolist(),
    }
