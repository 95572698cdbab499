"""The efficiency profiler: parameters, MACs, latency and memory of methods, comparably.

``profile_method`` measures one method at one LR size; ``add_ratios`` expresses every row
relative to a reference method measured in the same process. The result rows are the columns
of ``efficiency.csv`` (documented in ARCHITECTURE.md).

Memory: ``peak_memory_bytes`` is the absolute peak during the timed runs (the whole process's
RSS on a CPU, all CUDA allocations on a GPU), which depends on whatever ran before.
``added_memory_bytes`` is what the method adds: the memory in use that its load added
(measured around ``load_measured``) plus the peak of the timed runs above the memory in use
just before them -- the peak minus the baseline before the method was loaded, without counting
work that happened in between (``added_memory_kind``: ``cuda_allocated``, ``cpu_malloc`` or,
without glibc's ``mallinfo2``, ``cpu_rss``).

A latency whose IQR/median exceeds ``unreliable_spread`` is flagged ``latency_unreliable``.

With ``fast=True``, a method that has a fast mode (``SRMethod.fast_mode``: torch.compile,
channels_last, reduced precision) is timed a second time in it, on the same input, into the
``fast_*`` columns; ``fast_max_diff_levels`` is the largest difference between the two outputs
in 8-bit levels. The official configuration's columns never include the fast mode.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import Any

import torch

from harness.envinfo import device_info
from harness.methods import SRMethod
from harness.profiler.count import (
    component_params,
    count_params,
    flopcounter_macs,
    fvcore_macs,
    ptflops_macs,
)
from harness.profiler.timing import measure, memory_in_use

COUNTERS = ("fvcore", "flopcounter", "ptflops")
PTFLOPS_BACKEND = "pytorch"


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Settings that change timings: device, versions, precision flags, attention backends."""
    env: dict[str, Any] = {
        "device": device_info(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if device.type == "cuda":
        env["attention_backends"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
    else:
        env["attention_backends"] = {"cpu": "torch CPU SDPA (flash kernel where it applies)"}
    return env


UNRELIABLE_SPREAD = 0.2  # default IQR/median above which a latency is flagged unreliable

# method -> (memory in use before its load, memory its load added), for ``added_memory_bytes``
_LOADS: weakref.WeakKeyDictionary[SRMethod, tuple[int, int]] = weakref.WeakKeyDictionary()


def load_measured(
    method: SRMethod, device: torch.device, dtype: torch.dtype, random_init: bool = False
) -> None:
    """``method.load`` with the memory before and after recorded (the SR stage loads through
    this too, so the profiler knows the baseline however much ran in between)."""
    before = memory_in_use(device)
    method.load(device, dtype, random_init=random_init)
    _LOADS[method] = (before, max(0, memory_in_use(device) - before))


def weights_kind(method: SRMethod, random_init: bool) -> str:
    """The ``weights`` column: ``none`` for a method without a network (bicubic), else
    ``random`` or ``loaded``."""
    if type(method).build_model is SRMethod.build_model:
        return "none"
    return "random" if random_init else "loaded"


def profile_method(
    method: SRMethod,
    lr_size: int,
    device: torch.device,
    dtype: torch.dtype,
    runs: int | None = None,
    warmup: int = 1,
    random_init: bool = False,
    counters: tuple[str, ...] = COUNTERS,
    min_runs: int = 3,
    max_time: float = 1.0,
    unreliable_spread: float = UNRELIABLE_SPREAD,
    fast: bool = False,
) -> dict[str, Any]:
    """One efficiency row. MAC columns are None (with ``notes``) when there is no network.

    ``runs=None`` chooses the number of timed runs from ``max_time`` (at least ``min_runs``).
    """
    from harness.progress import log

    name = method.card.name
    method.check_input_size(lr_size, lr_size)
    weights = weights_kind(method, random_init)
    if method.loaded_as != (device, dtype, random_init) or method not in _LOADS:
        what = {"none": "preparing (no network, no weights)",
                "random": "building the network with random weights",
                "loaded": "loading its weights"}[weights]  # fmt: skip
        log(f"profiling {name}: {what}")
        load_measured(method, device, dtype, random_init)  # not loaded already by the SR stage
    lr = torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))
    lr = lr.to(device)
    row: dict[str, Any] = {
        "device": device_info(device)["name"],
        "dtype": str(getattr(method, "dtype", dtype)).removeprefix("torch."),  # as it ran
        "torch": torch.__version__,
        "method": method.card.name, "steps": method.card.steps, "lr_size": lr_size,
        "sr_size": lr_size * method.scale, "weights": weights,
        "params": 0, "params_components": {}, "macs_fvcore": None, "macs_attention": None,
        "macs_fvcore_plus_attention": None, "macs_flopcounter": None, "macs_ptflops": None,
        "ptflops_backend": PTFLOPS_BACKEND, "notes": "",
    }  # fmt: skip
    model = getattr(method, "net", None)
    if isinstance(model, torch.nn.Module):
        row["params"] = count_params(model)
        row["params_components"] = component_params(method.components(model))
        inputs = method.network_inputs(lr)
        log(f"profiling {name}: counting MACs ({', '.join(c for c in COUNTERS if c in counters)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "fvcore" in counters:
                total, attention = fvcore_macs(model, inputs)
                row |= {"macs_fvcore": total, "macs_attention": attention,
                        "macs_fvcore_plus_attention": total + attention}  # fmt: skip
            if "flopcounter" in counters:
                row["macs_flopcounter"] = flopcounter_macs(model, inputs)
            if "ptflops" in counters:
                row["macs_ptflops"] = ptflops_macs(model, inputs, PTFLOPS_BACKEND)
    else:
        row["notes"] = "no neural network: MACs not applicable"

    def call() -> None:
        with torch.inference_mode():
            method.upscale(lr)

    how = f"{runs} timed runs" if runs else f"timed runs for {max_time:g} s (at least {min_runs})"
    log(f"profiling {name}: LR {lr_size}x{lr_size}, {warmup} warm-up + {how}")
    with _PhaseBars(name) as bars:
        t = measure(call, device, runs=runs, warmup=warmup, min_runs=min_runs,
                    max_time=max_time, on_progress=bars)  # fmt: skip
    load_added = _LOADS.get(method, (0, 0))[1]
    added = load_added + max(0, t.in_use_peak_bytes - t.in_use_before_bytes)
    row |= {
        "latency_median_s": t.median, "latency_p10_s": t.quantile(0.1),
        "latency_p90_s": t.quantile(0.9), "latency_iqr_s": t.iqr, "latency_runs": len(t.runs),
        "latency_spread": t.spread, "latency_unreliable": t.spread > unreliable_spread,
        "warmup_runs": t.warmup, "timer": t.timer, "wall_minus_event_s": t.wall_minus_event_s,
        "peak_memory_bytes": t.peak_memory_bytes, "added_memory_bytes": added,
        "added_memory_kind": t.in_use_kind, "baseline_memory_bytes": t.baseline_memory_bytes,
        "memory_kind": t.memory_kind,
        "latency_runs_s": t.runs,
    }  # fmt: skip
    row |= dict.fromkeys(FAST_COLUMNS)
    if fast and method.fast_mode:
        row |= _profile_fast(method, lr, device, t.median, runs, warmup, min_runs, max_time)
    elif fast:
        log(f"profiling {name}: no fast mode, fast columns left empty")
    return row


FAST_COLUMNS = ("fast_mode", "fast_latency_median_s", "fast_latency_p10_s", "fast_latency_p90_s",
                "fast_latency_runs", "fast_peak_memory_bytes", "fast_speedup",
                "fast_max_diff_levels")  # fmt: skip


def _profile_fast(
    method: SRMethod,
    lr: torch.Tensor,
    device: torch.device,
    official_median: float,
    runs: int | None,
    warmup: int,
    min_runs: int,
    max_time: float,
) -> dict[str, Any]:
    """The ``fast_*`` columns: the method timed in its fast mode, and how far its output moves."""
    from harness.progress import log

    name = method.card.name
    with torch.inference_mode():
        official = method.upscale(lr)
    method.set_fast(True)
    try:

        def call() -> None:
            with torch.inference_mode():
                method.upscale(lr)

        # compilation and CUDA-graph recording happen in the first calls: more warm-up
        log(f"profiling {name}: fast mode ({method.fast_mode})")
        with _PhaseBars(f"{name} fast") as bars:
            t = measure(call, device, runs=runs, warmup=max(warmup, 3), min_runs=min_runs,
                        max_time=max_time, on_progress=bars)  # fmt: skip
        with torch.inference_mode():
            out = method.upscale(lr)
    finally:
        method.set_fast(False)
    levels = ((official.float() * 255).round() - (out.float() * 255).round()).abs().max()
    return {
        "fast_mode": method.fast_mode, "fast_latency_median_s": t.median,
        "fast_latency_p10_s": t.quantile(0.1), "fast_latency_p90_s": t.quantile(0.9),
        "fast_latency_runs": len(t.runs), "fast_peak_memory_bytes": t.peak_memory_bytes,
        "fast_speedup": official_median / t.median if t.median else None,
        "fast_max_diff_levels": int(levels.item()),
    }  # fmt: skip


class _PhaseBars(contextlib.ExitStack):
    """Progress of ``measure``: one bar per phase, opened once the phase's total is known."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.phase, self.advance = name, "", lambda: None

    def __call__(self, phase: str, done: int, total: int) -> None:
        from harness.progress import progress_bar

        if phase != self.phase:
            self.close()
            self.advance = self.enter_context(progress_bar(f"{self.name}: {phase}", total))
            self.phase = phase
        self.advance()


def add_ratios(rows: list[dict[str, Any]], reference: str | None) -> str | None:
    """Add ``*_ratio`` columns relative to ``reference`` (default: the first row's method)."""
    if not rows:
        return None
    ref_name = reference or rows[0]["method"]
    ref = next((r for r in rows if r["method"] == ref_name), None)
    if ref is None:
        from harness.errors import HarnessError

        raise HarnessError(f"profile.reference: '{ref_name}' is not among the profiled methods")
    for r in rows:
        r["reference"] = ref_name
        for key in ("latency_median_s", "macs_fvcore", "params"):
            a, b = r.get(key), ref.get(key)
            r[f"{key}_ratio"] = (a / b) if a is not None and b else None
    return ref_name


__all__ = [
    "COUNTERS",
    "FAST_COLUMNS",
    "add_ratios",
    "environment",
    "load_measured",
    "profile_method",
    "weights_kind",
]
