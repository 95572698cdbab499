"""The metric stage: decode SR (and HR) images and score them with a :class:`MetricSuite`.

Shared by ``harness run`` (SR images from the cache) and ``harness eval`` (a folder of outputs).
Decoding runs one image ahead in a thread, so PNG inflation overlaps the metric arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.imageio import read_rgb, to_tensor
from harness.metrics import MetricSuite, Score
from harness.progress import progress_bar


@dataclass(frozen=True)
class Item:
    """One image to score: its name, the SR file and, for FR metrics, the HR file."""

    image: str
    sr: Path
    hr: Path | None


def _decode(item: Item) -> tuple[torch.Tensor, torch.Tensor | None]:
    sr = read_rgb(item.sr)
    hr = read_rgb(item.hr) if item.hr is not None else None
    if hr is not None and hr.shape != sr.shape:
        raise HarnessError(
            f"{item.sr}: size {sr.shape[1]}x{sr.shape[0]} differs from HR {item.hr} "
            f"({hr.shape[1]}x{hr.shape[0]})"
        )
    return to_tensor(sr), (to_tensor(hr) if hr is not None else None)


def _prefetched(items: Sequence[Item]) -> Iterator[tuple[Item, torch.Tensor, torch.Tensor | None]]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(_decode, items[0]) if items else None
        for i, item in enumerate(items):
            sr, hr = nxt.result()
            nxt = pool.submit(_decode, items[i + 1]) if i + 1 < len(items) else None
            yield item, sr, hr


def score_items(
    suite: MetricSuite,
    items: Sequence[Item],
    on_scored: Callable[[Item, Score], None],
    label: str = "metrics",
    batch_size: int = 1,
) -> None:
    """Score ``items``, ``batch_size`` same-sized images at a time, calling ``on_scored`` for
    each image (e.g. to journal it). Each image is decoded once, one batch ahead of scoring."""
    batch: list[tuple[Item, torch.Tensor, torch.Tensor | None]] = []

    def flush(advance) -> None:
        if not batch:
            return
        sr = torch.cat([b[1] for b in batch])
        hr = torch.cat([b[2] for b in batch]) if batch[0][2] is not None else None
        for (item, _, _), score in zip(batch, suite.score(sr, hr)):
            on_scored(item, score)
            advance()
        batch.clear()

    with progress_bar(label, total=len(items)) as advance:
        for item, sr, hr in _prefetched(items):
            if batch and (batch[0][1].shape != sr.shape or (batch[0][2] is None) != (hr is None)):
                flush(advance)
            batch.append((item, sr, hr))
            if len(batch) >= max(1, batch_size):
                flush(advance)
        flush(advance)
