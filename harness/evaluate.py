"""The metric stage: decode SR (and HR) images and score them with a :class:`MetricSuite`.

Shared by ``harness run`` (SR images from the cache) and ``harness eval`` (a folder of outputs).
Images are decoded and scored in a pool of threads (every core on a CPU); results are handed
back in input order, so journals and tables do not depend on the thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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


def default_workers(device: torch.device | str = "cpu") -> int:
    """Images in flight at once: every core on a CPU (decode and the float64 SSIM filters release
    the GIL); two on a GPU, so one image decodes while the other's metrics run."""
    if torch.device(device).type != "cpu":
        return 2
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(items: Sequence[Item], size: int) -> list[list[Item]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _score_chunk(suite: MetricSuite, chunk: list[Item]) -> list[tuple[Item, Score]]:
    """Decode ``chunk`` and score it, same-sized neighbours together (one batch per size run)."""
    decoded = [(item, *_decode(item)) for item in chunk]
    out: list[tuple[Item, Score]] = []
    start = 0
    while start < len(decoded):
        end = start + 1
        first = decoded[start]
        while (
            end < len(decoded)
            and decoded[end][1].shape == first[1].shape
            and ((decoded[end][2] is None) == (first[2] is None))
        ):
            end += 1
        run = decoded[start:end]
        sr = torch.cat([d[1] for d in run])
        hr = torch.cat([d[2] for d in run]) if first[2] is not None else None
        out += [(d[0], score) for d, score in zip(run, suite.score(sr, hr))]
        start = end
    return out


def score_items(
    suite: MetricSuite,
    items: Sequence[Item],
    on_scored: Callable[[Item, Score], None],
    label: str = "metrics",
    batch_size: int = 1,
    workers: int | None = None,
) -> None:
    """Score ``items``, calling ``on_scored`` for each image in order (e.g. to journal it).

    ``batch_size`` same-sized images go through each metric call together; ``workers`` batches
    are decoded and scored at once in threads (default :func:`default_workers`). Every image's
    values are those of scoring it alone: metrics are per image and the threads share nothing
    but the built metric networks, which are only read. ``on_scored`` runs in the calling thread.
    """
    chunks = _chunks(items, max(1, batch_size))
    n_workers = max(1, workers if workers else default_workers(suite.device))
    with progress_bar(label, total=len(items)) as advance:
        if n_workers == 1 or len(chunks) == 1:
            for chunk in chunks:
                for item, score in _score_chunk(suite, chunk):
                    on_scored(item, score)
                    advance()
            return
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="score") as pool:
            window = 2 * n_workers  # bounded look-ahead: memory stays ~2 batches per worker
            pending = [pool.submit(_score_chunk, suite, c) for c in chunks[:window]]
            nxt = len(pending)
            while pending:
                done = pending.pop(0).result()
                if nxt < len(chunks):
                    pending.append(pool.submit(_score_chunk, suite, chunks[nxt]))
                    nxt += 1
                for item, score in done:
                    on_scored(item, score)
                    advance()
