"""Datasets: ordered lists of samples (an LR image, and its HR image when there is one).

A dataset knows nothing about methods or metrics. Its *manifest* (every file name with the
sha256 of its bytes) identifies its content; the manifest hash enters SR cache keys and the
results manifest, so a changed file can never be mistaken for the one scored before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.hashing import sha256_file, sha256_json
from harness.imageio import MAX_PIXELS, image_info, image_size, list_images

Conversions = dict[str, list[str]]  # kind (grayscale, alpha, 16-bit...) -> "LR/a.png", ...


@dataclass(frozen=True)
class Sample:
    """One test image. ``name`` is the LR file's stem; it names the SR output and CSV rows.
    ``lr_size``: the LR image's (width, height) from its header, when the builder read it."""

    name: str
    lr: Path
    hr: Path | None = None
    lr_size: tuple[int, int] | None = None


class ImageDataset(Sequence[Sample]):
    """An ordered, validated list of samples with a scale factor."""

    def __init__(
        self, name: str, samples: list[Sample], scale: int, conversions: Conversions | None = None
    ) -> None:
        self.name = name
        self.samples = samples
        self.scale = scale
        self.conversions: Conversions = conversions or {}  # what reading converts, per kind
        self._manifest: list[dict] | None = None

    @property
    def has_hr(self) -> bool:
        return all(s.hr is not None for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def sr_sizes(self) -> dict[str, tuple[int, int]]:
        """(width, height) of each sample's SR output (LR size x scale, the size of its HR too),
        keyed by ``"<LR path> (xN SR output)"``: what the metrics will score, known before any
        work (from the headers) so that an image too small for a metric is refused first."""
        out = {}
        for s in self.samples:
            w, h = s.lr_size or image_size(s.lr)
            out[f"{s.lr} (x{self.scale} SR output)"] = (w * self.scale, h * self.scale)
        return out

    def manifest(self) -> list[dict]:
        """``[{"name", "lr_sha256", "hr_sha256"}]`` in dataset order (computed once)."""
        if self._manifest is None:
            self._manifest = [
                {
                    "name": s.name,
                    "lr_sha256": sha256_file(s.lr),
                    "hr_sha256": sha256_file(s.hr) if s.hr else None,
                }
                for s in self.samples
            ]
        return self._manifest

    def manifest_hash(self) -> str:
        return sha256_json({"scale": self.scale, "files": self.manifest()})


def match_by_stem(
    left: list[Path], right: list[Path], left_dir: Path, right_dir: Path
) -> list[tuple[Path, Path]]:
    """Pair two sorted file lists by file stem; any file without a partner is an error."""
    rmap = {p.stem: p for p in right}
    lmap = {p.stem: p for p in left}
    for p in left:
        if p.stem not in rmap:
            raise HarnessError(f"{p}: no file named {p.stem}.* in {right_dir}")
    for p in right:
        if p.stem not in lmap:
            raise HarnessError(f"{p}: no file named {p.stem}.* in {left_dir}")
    return [(p, rmap[p.stem]) for p in left]


def check_scale(lr: Path, hr: Path, scale: int, what: str = "LR") -> None:
    """``hr`` must be exactly ``scale`` x ``lr`` (sizes from the headers)."""
    require_scale(lr, image_info(lr)[0], hr, image_info(hr)[0], scale, what)


def require_scale(lr: Path, lsize: tuple[int, int], hr: Path, hsize: tuple[int, int], scale: int,
                  what: str = "LR") -> None:  # fmt: skip
    """``hr`` (of size ``hsize``) must be exactly ``scale`` x ``lr`` (of size ``lsize``)."""
    (lw, lh), (hw, hh) = lsize, hsize
    if (hw, hh) != (lw * scale, lh * scale):
        raise HarnessError(f"{hr}: size {hw}x{hh} is not {scale}x the {what} {lr.name} ({lw}x{lh})")


def check_output_pixels(lr: Path, lsize: tuple[int, int], scale: int) -> None:
    """The SR output of ``lr`` (``scale`` x its ``lsize``) must hold at most ``MAX_PIXELS``
    pixels, as every input does: refused before a method computes it."""
    w, h = lsize[0] * scale, lsize[1] * scale
    if w * h > MAX_PIXELS:
        raise HarnessError(
            f"{lr}: its x{scale} SR output would be {w}x{h}, {w * h:,} pixels, over the "
            f"limit of {MAX_PIXELS:,}"
        )


def note_conversions(conversions: Conversions, kinds: tuple[str, ...], label: str) -> None:
    """Record that reading the file ``label`` (``LR/a.png``) applies ``kinds``."""
    for kind in kinds:
        conversions.setdefault(kind, []).append(label)


def describe_conversions(conversions: Conversions, n_files: int) -> str:
    """``3 of 12 files converted on read: 2 grayscale, 1 alpha (e.g. LR/a.png)``."""
    files = {f for names in conversions.values() for f in names}
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(conversions.items()))
    return f"{len(files)} of {n_files} files converted on read: {kinds} (e.g. {min(files)})"


def paired_folder(name: str, lr_dir: str | Path, hr_dir: str | Path, scale: int) -> ImageDataset:
    """LR/HR folders matched by file stem; every HR must be exactly ``scale`` x its LR."""
    lr_dir, hr_dir = Path(lr_dir), Path(hr_dir)
    pairs = match_by_stem(list_images(lr_dir), list_images(hr_dir), lr_dir, hr_dir)
    conversions: Conversions = {}
    samples = []
    for lr, hr in pairs:
        (lsize, lkinds), (hsize, hkinds) = image_info(lr), image_info(hr)
        require_scale(lr, lsize, hr, hsize, scale)
        note_conversions(conversions, lkinds, f"LR/{lr.name}")
        note_conversions(conversions, hkinds, f"HR/{hr.name}")
        samples.append(Sample(lr.stem, lr, hr, lsize))
    return ImageDataset(name, samples, scale, conversions)


def lr_folder(name: str, lr_dir: str | Path, scale: int) -> ImageDataset:
    """LR images only (real photos without ground truth): no-reference metrics only."""
    files = list_images(lr_dir)
    conversions: Conversions = {}
    samples = []
    for f in files:
        size, kinds = image_info(f)  # fails on a damaged or non-image file
        check_output_pixels(f, size, scale)
        note_conversions(conversions, kinds, f"LR/{f.name}")
        samples.append(Sample(f.stem, f, None, size))
    return ImageDataset(name, samples, scale, conversions)
