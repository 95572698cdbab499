"""Build each metric once and score image pairs (and image sets) with it.

A metric knows nothing about methods: it scores tensors, or two folders for set-level metrics
(FID). A metric that cannot be built (a weight file missing or with a wrong hash, a missing
package) or that fails on an image is reported as *missing, with its reason* -- never as 0 and
never dropped silently; the store and the report carry the reason through. Missing weight files
are detected before pyiqa is called, so there is no download attempt, no URLError and no retry
loop; ``strict=True`` turns any missing metric into an error instead.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.metrics.images import ImageBatch
from harness.metrics.specs import METRICS, MetricSpec

Scorer = Callable[..., torch.Tensor]


@dataclass
class Score:
    """Values per metric for one image; ``None`` values have a reason in ``missing``."""

    values: dict[str, float | None]
    missing: dict[str, str]


class _Unavailable(Exception):
    pass


def _build(spec: MetricSpec, device: torch.device) -> Scorer:
    """A scorer: ``(sr, hr)`` ImageBatches (``hr`` None for NR metrics) -> values, or for
    set-level metrics ``(sr_dir, hr_dir)`` -> value."""
    if spec.impl == "harness":
        if dict(spec.options) != {"test_y_channel": True, "color_space": "ycbcr"}:
            raise HarnessError(f"{spec.name}: the harness implementation is Y of YCbCr only")
        if spec.name == "ssim":
            from harness.metrics.ssim import ssim_planes

            return lambda sr, hr: _per_plane(ssim_planes, sr.y255(), hr.y255(), "SSIM")
        if spec.name == "psnr":
            from harness.metrics.fullref import psnr_planes

            return lambda sr, hr: _per_plane(psnr_planes, sr.y(), hr.y(), "PSNR")
        raise HarnessError(f"{spec.name}: no harness implementation")
    options = dict(spec.options)
    if spec.weights:
        from harness.weights import load_manifest, location_dir, path_of, require

        manifest = load_manifest()
        entries = [manifest[w] for w in spec.weights]
        reason = require(entries, spec.name)
        if reason:
            raise _Unavailable(reason)
        import pyiqa.utils.download_util as dl

        # pyiqa fixes its cache folder when it is imported; point it at the managed one.
        pyiqa_entries = [e for e in entries if e.location == "pyiqa"]
        if pyiqa_entries:
            dl.DEFAULT_CACHE_DIR = str(location_dir(pyiqa_entries[0]))
        if spec.name == "clipiqa":
            # a file path is loaded as is; by name, pyiqa re-checks the hash and re-downloads
            options["backbone"] = str(path_of(manifest["clip-rn50"]))
    import pyiqa

    kwargs = {k: v for k, v in options.items() if spec.per != "set" or k != "mode"}
    # pyiqa prints and warns while loading: keep stdout for results, stderr for our log
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pyiqa.create_metric(spec.pyiqa_id, device=device, as_loss=False, **kwargs)
    if spec.per == "set":
        mode = options.get("mode", "clean")
        return lambda sr_dir, hr_dir: net(str(sr_dir), str(hr_dir), mode=mode, num_workers=0,
                                          verbose=False)  # fmt: skip
    if spec.reference == "FR":
        return lambda sr, hr: net(sr.tensor(device), hr.tensor(device))
    return lambda sr, hr: net(sr.tensor(device))


def _per_plane(fn, a: list, b: list, what: str) -> torch.Tensor:
    if a[0].shape != b[0].shape:
        raise ValueError(f"{what} needs equal shapes, got {a[0].shape} and {b[0].shape}")
    return torch.tensor([fn(p, q) for p, q in zip(a, b)], dtype=torch.float64)


class MetricSuite:
    """The metrics of one run, each built once and reused for every method and dataset.

    Args:
        names: metric names from the metric table.
        device: where metric networks run.
        autocast: run no-reference networks under fp16 (CUDA) / bf16 (CPU) autocast, as S3Diff's
            protocol does; off by default (fp32, the OSEDiff/AdcSR protocol). Recorded in results.
        strict: raise instead of reporting a metric as missing.
    """

    def __init__(self, names: Sequence[str], device: torch.device | str = "cpu",
                 autocast: bool = False, strict: bool = False) -> None:  # fmt: skip
        if not names:
            raise HarnessError("no metrics selected (option --metrics)")
        self.specs = [METRICS.get(n) for n in names]
        self.device = torch.device(device)
        self.autocast = autocast
        self._scorers: dict[str, Scorer] = {}
        self.unavailable: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # time spent inside each metric (benchmarks)
        self._lock = threading.Lock()  # score() may run in several threads at once
        from harness.weights.guard import guarded

        for spec in self.specs:
            try:
                with guarded():  # pyiqa, torchvision, CLIP unpickle nothing themselves
                    self._scorers[spec.name] = _build(spec, self.device)
            except _Unavailable as e:
                self.unavailable[spec.name] = str(e)
            except Exception as e:  # a metric that cannot be built is missing, with its reason
                self.unavailable[spec.name] = f"could not build {spec.pyiqa_id}: {_one_line(e)}"
            if strict and spec.name in self.unavailable:
                raise HarnessError(f"metric {spec.name}: {self.unavailable[spec.name]} (--strict)")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def image_names(self) -> list[str]:
        """Metrics with one value per image (the columns of per_image.csv)."""
        return [s.name for s in self.specs if s.per == "image"]

    @property
    def runs_networks(self) -> bool:
        """Whether a per-image metric of this suite is a torch network (not PSNR/SSIM)."""
        return any(
            s.per == "image" and s.impl != "harness" and s.name in self._scorers for s in self.specs
        )

    def applicable(self, has_hr: bool) -> list[MetricSpec]:
        """Full-reference metrics need HR; on LR-only datasets only no-reference ones run."""
        return [s for s in self.specs if has_hr or s.reference == "NR"]

    def _context(self, spec: MetricSpec):
        if self.autocast and spec.reference == "NR":
            dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            return torch.autocast(self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def score(
        self, sr: ImageBatch | torch.Tensor, hr: ImageBatch | torch.Tensor | None
    ) -> list[Score]:
        """Score a batch: ``sr`` and ``hr`` as :class:`ImageBatch` or float32 ``(N, 3, H, W)``
        tensors in [0, 1]. Each metric converts the images as it needs (once per batch)."""
        sr = ImageBatch.of(sr)
        hr = ImageBatch.of(hr) if hr is not None else None
        n = len(sr)
        out = [Score({}, {}) for _ in range(n)]
        for spec in self.specs:
            if spec.per != "image" or (spec.reference == "FR" and hr is None):
                continue
            reason = self.unavailable.get(spec.name)
            vals: list[float | None] = [None] * n
            if reason is None:
                t0 = time.perf_counter()
                try:
                    with self._context(spec):
                        v = self._scorers[spec.name](sr, hr)
                    vals = [float(x) for x in v.detach().double().flatten().cpu()]
                except Exception as e:
                    reason = f"{spec.name} failed: {_one_line(e)}"
                elapsed = time.perf_counter() - t0
                with self._lock:
                    self.seconds[spec.name] = self.seconds.get(spec.name, 0.0) + elapsed
            for i, s in enumerate(out):
                s.values[spec.name] = vals[i]
                if vals[i] is None:
                    s.missing[spec.name] = reason or "no value"
                elif vals[i] != vals[i]:  # NaN is a failure, not a number
                    s.values[spec.name] = None
                    s.missing[spec.name] = f"{spec.name} returned NaN"
        return out

    def score_sets(self, sr_dir: Path, hr_dir: Path) -> Score:
        """Set-level metrics (FID) of a folder of SR images against the HR folder."""
        out = Score({}, {})
        for spec in self.specs:
            if spec.per != "set":
                continue
            reason = self.unavailable.get(spec.name)
            value = None
            if reason is None:
                t0 = time.perf_counter()
                try:
                    with torch.inference_mode(), _one_blas_thread():
                        value = float(self._scorers[spec.name](sr_dir, hr_dir))
                except Exception as e:
                    reason = f"{spec.name} failed: {_one_line(e)}"
                elapsed = time.perf_counter() - t0
                self.seconds[spec.name] = self.seconds.get(spec.name, 0.0) + elapsed
            if value is not None and value != value:
                value, reason = None, f"{spec.name} returned NaN"
            out.values[spec.name] = value
            if value is None:
                out.missing[spec.name] = reason or "no value"
        return out


def _one_blas_thread():
    """FID's ``scipy.linalg.sqrtm`` of a 2048x2048 matrix (a Schur decomposition: many small
    BLAS calls) took 113 s with two OpenBLAS threads and 25 s with one on a shared 2-core CPU
    (the official chain pays the same 113 s): thread hand-offs cost more than they share."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()
