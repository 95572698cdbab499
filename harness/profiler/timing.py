"""Latency and peak memory of a callable, with warm-up runs excluded.

How many timed runs: ``runs`` when given; otherwise chosen from a time budget, as timeit's
``autorange`` and pytest-benchmark's ``max_time`` do: the first timed call (after the warm-up,
so not a cold one) estimates a call's duration, and the count is ``max_time`` / that duration,
at least ``min_runs`` and at most ``max_runs``. A slow method gets ``min_runs`` runs, a fast one
fills the budget.

On CUDA every run is timed twice: by CUDA events around the call, and by ``perf_counter`` after
``torch.cuda.synchronize()`` on both sides (the two must agree; their median gap is reported). On
the CPU ``perf_counter`` alone. Peak memory: ``torch.cuda.max_memory_allocated`` over the timed
runs on CUDA; on the CPU the process's peak resident set size during the timed runs, sampled
every 2 ms from ``/proc/self/statm`` (the figure includes the interpreter and libraries; the RSS
before the runs is reported beside it). Memory *in use* (``memory_in_use``), from which the
profiler computes what a method adds, is CUDA's allocated bytes, or on the CPU the bytes
glibc's allocator has handed out (``mallinfo2``: torch and numpy allocate through it) -- unlike
the RSS, it does not hide an allocation that reuses memory freed earlier; the RSS is the
fallback where ``mallinfo2`` is missing.
"""

from __future__ import annotations

import ctypes
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

MAX_RUNS = 1000  # a budget-chosen count never exceeds this (very fast calls)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    return fn


_MALLINFO2 = _mallinfo2()
CPU_IN_USE_KIND = "cpu_malloc" if _MALLINFO2 else "cpu_rss"


def _heap_bytes() -> int:
    """Bytes allocated by malloc and still in use (arenas plus mmapped blocks), else RSS."""
    if _MALLINFO2 is None:
        return _rss_bytes()
    m = _MALLINFO2()
    return int(m.uordblks + m.hblkhd)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssSampler:
    """Peak RSS and peak memory in use, sampled every ``period`` seconds in a thread."""

    def __init__(self, period: float = 0.002) -> None:
        self.period, self.peak, self._stop = period, _rss_bytes(), threading.Event()
        self.peak_in_use = _heap_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, _rss_bytes())
        self.peak_in_use = max(self.peak_in_use, _heap_bytes())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.period)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


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
    in_use_before_bytes: int = 0  # ``memory_in_use`` just before the timed runs
    in_use_peak_bytes: int = 0  # its peak during them
    in_use_kind: str = ""  # cuda_allocated | cpu_malloc | cpu_rss

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

    @property
    def spread(self) -> float:
        """IQR / median: the relative spread of the timed runs."""
        return self.iqr / self.median if self.median > 0 else 0.0


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: CUDA memory allocated on ``device``, or on the CPU the bytes malloc
    has handed out (the resident set where ``mallinfo2`` is missing)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _heap_bytes()


def run_count(estimate_s: float, min_runs: int, max_time: float, max_runs: int) -> int:
    """Timed runs for a call of ``estimate_s`` seconds: fill ``max_time``, within the bounds."""
    fill = math.ceil(max_time / estimate_s) if estimate_s > 0 else max_runs
    return max(min_runs, min(max_runs, fill))


Progress = Callable[[str, int, int], None]  # (phase "warm-up"|"timed", done, total)


def measure(
    fn: Callable[[], object],
    device: torch.device,
    runs: int | None = None,
    warmup: int = 1,
    min_runs: int = 3,
    max_time: float = 1.0,
    max_runs: int = MAX_RUNS,
    on_progress: Progress | None = None,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed (``None``: as many as
    fit in ``max_time`` seconds, at least ``min_runs``; see the module docstring)."""
    if (runs is not None and runs < 1) or warmup < 0 or min_runs < 1 or max_time < 0:
        raise ValueError("runs and min_runs must be >= 1, warmup and max_time >= 0")
    cuda = device.type == "cuda"
    tick = on_progress or (lambda phase, done, total: None)

    def wall_call() -> float:
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    for i in range(warmup):
        wall_call()
        tick("warm-up", i + 1, warmup)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        times, gaps = [], []
        i = 0
        while runs is None or i < runs:
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
            if runs is None:  # the first timed run sizes the count
                runs = run_count(wall, min_runs, max_time, max_runs)
            i += 1
            tick("timed", i, runs)
        peak = torch.cuda.max_memory_allocated(device)
        return Timing(times, warmup, "cuda_event", peak, "cuda_max_allocated", baseline,
                      statistics.median(gaps), in_use_before_bytes=baseline,
                      in_use_peak_bytes=peak, in_use_kind="cuda_allocated")  # fmt: skip
    baseline, in_use = _rss_bytes(), _heap_bytes()
    times = []
    with _RssSampler() as rss:
        while runs is None or len(times) < runs:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if runs is None:
                runs = run_count(times[0], min_runs, max_time, max_runs)
            tick("timed", len(times), runs)
    return Timing(times, warmup, "perf_counter", rss.peak, "cpu_peak_rss", baseline,
                  in_use_before_bytes=in_use, in_use_peak_bytes=rss.peak_in_use,
                  in_use_kind=CPU_IN_USE_KIND)  # fmt: skip
