"""The metric stage: decode SR (and HR) images and score them with a :class:`MetricSuite`.

Shared by ``harness run`` (SR images from the cache) and ``harness eval`` (a folder of outputs).
Images are decoded and scored in a pool of threads (every core on a CPU); results are handed
back in input order, so journals and tables do not depend on the thread count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError
from harness.imageio import read_rgb
from harness.metrics import MetricSuite, Score
from harness.metrics.images import ImageBatch
from harness.metrics.specs import METRICS, MetricSpec
from harness.progress import progress_bar


@dataclass(frozen=True)
class Item:
    """One image to score: its name, the SR file and, for FR metrics, the HR file."""

    image: str
    sr: Path
    hr: Path | None


def check_sizes(
    metrics: Iterable[str | MetricSpec], sizes: Mapping[str, tuple[int, int]], has_hr: bool = True
) -> None:
    """Refuse an image smaller than a metric's ``min_size``: a one-line error naming the image,
    its size, the minimum and the metrics that have it (those with the largest minimum the
    image misses), never a silent skew (an 80 dB PSNR in the mean, a column of SSIM gone n/a).
    It needs only the names and the headers' sizes: call it before any work, metrics built
    included.

    ``metrics``: names (or specs) of the selected metrics; with ``has_hr`` False only the
    no-reference ones score, so only theirs count. ``sizes``: (width, height) of each image
    they score, keyed by what names it in the error (a path)."""
    specs = [METRICS.get(m) if isinstance(m, str) else m for m in metrics]
    specs = [s for s in specs if has_hr or s.reference == "NR"]
    for label, (w, h) in sizes.items():
        need = max((s.min_size for s in specs if min(w, h) < s.min_size), default=0)
        if need:
            names = [s.name for s in specs if s.min_size == need]
            which = f"metric {names[0]} scores" if len(names) == 1 else (
                f"metrics {', '.join(names)} score")  # fmt: skip
            raise HarnessError(
                f"{label}: {w}x{h} is smaller than {need}x{need}, the smallest image {which} "
                "(--metrics)"
            )


def _decode(item: Item) -> tuple[np.ndarray, np.ndarray | None]:
    sr = read_rgb(item.sr)
    hr = read_rgb(item.hr) if item.hr is not None else None
    if hr is not None and hr.shape != sr.shape:
        raise HarnessError(
            f"{item.sr}: size {sr.shape[1]}x{sr.shape[0]} differs from HR {item.hr} "
            f"({hr.shape[1]}x{hr.shape[0]})"
        )
    return sr, hr


def default_workers(device: torch.device | str = "cpu") -> int:
    """Images in flight at once: every core on a CPU (decode and the float64 SSIM filters release
    the GIL); two on a GPU, so one image decodes while the other's metrics run."""
    if torch.device(device).type != "cpu":
        return 2
    return max(1, min(8, os.cpu_count() or 1))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_nothing = contextlib.nullcontext


@contextlib.contextmanager
def worker_threads(
    workers: int, device: torch.device | str = "cpu", networks: bool = True
) -> Iterator[int]:
    """While the stage's ``workers`` threads score images, each gets its share of the cores
    (yielded), ``cores // workers`` threads and at least one, for BLAS (SSIM's products) and,
    when ``networks`` run on a CPU, for torch's intra-op pool. Without this each worker's calls
    spread over all cores and the workers fight over them (on 2 cores, 2 workers x 2 torch
    threads ran the network metrics slower than one image at a time).

    Torch's pool is left alone for PSNR/SSIM-only suites: PSNR's float32 mean, like pyiqa's,
    depends on torch's thread count in its last bit (1 float32 ulp, ~4e-6 dB), and the default
    count is what a per-image pyiqa loop uses. Both settings are restored afterwards."""
    from threadpoolctl import threadpool_limits

    share = max(1, _cores() // max(1, workers))
    before = torch.get_num_threads()
    set_torch = networks and torch.device(device).type == "cpu" and share < before
    try:
        if set_torch:
            torch.set_num_threads(share)
        with threadpool_limits(limits=share, user_api="blas") if workers > 1 else _nothing():
            yield share
    finally:
        if set_torch:
            torch.set_num_threads(before)


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
        sr = ImageBatch(rgb8=[d[1] for d in run])
        hr = ImageBatch(rgb8=[d[2] for d in run]) if first[2] is not None else None
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
    if len(chunks) == 1:
        n_workers = 1
    with (
        progress_bar(label, total=len(items)) as advance,
        worker_threads(n_workers, suite.device, networks=suite.runs_networks),
    ):
        if n_workers == 1:
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
