"""Latency and peak memory of a callable, with warm-up runs excluded.

On CUDA every run is timed twice: by CUDA events around the call, and by ``perf_counter`` after
``torch.cuda.synchronize()`` on both sides (the two must agree; their median gap is reported). On
the CPU ``perf_counter`` alone. Peak memory: ``torch.cuda.max_memory_allocated`` over the timed
runs on CUDA; on the CPU the process's peak resident set size during the timed runs, sampled
every 2 ms from ``/proc/self/statm`` (the figure includes the interpreter and libraries; the RSS
before the runs is reported beside it).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssSampler:
    def __init__(self, period: float = 0.002) -> None:
        self.period, self.peak, self._stop = period, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.period)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


@dataclass
class Timing:
    """Seconds per run of the timed (post-warm-up) calls, and memory."""

    runs: list[float]
    warmup: int
    timer: str
    peak_memory_bytes: int
    memory_kind: str
    baseline_memory_bytes: int
    wall_minus_event_s: float | None = None
    extra: dict = field(default_factory=dict)

    def quantile(self, q: float) -> float:
        xs = sorted(self.runs)
        if len(xs) == 1:
            return xs[0]
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def iqr(self) -> float:
        return self.quantile(0.75) - self.quantile(0.25)


def measure(fn: Callable[[], object], device: torch.device, runs: int, warmup: int) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        times, gaps = [], []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            wall = time.perf_counter() - t0
            event = start.elapsed_time(end) / 1000.0
            times.append(event)
            gaps.append(wall - event)
        peak = torch.cuda.max_memory_allocated(device)
        return Timing(times, warmup, "cuda_event", peak, "cuda_max_allocated", baseline,
                      statistics.median(gaps))  # fmt: skip
    baseline = _rss_bytes()
    times = []
    with _RssSampler() as rss:
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return Timing(times, warmup, "perf_counter", rss.peak, "cpu_peak_rss", baseline)
