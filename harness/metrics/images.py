"""A batch of images as the metrics see it: decoded once, converted on first use.

Network metrics need a float tensor on their device; PSNR and SSIM need only the Y plane, which
is computed straight from the 8-bit pixels (``harness.metrics.fullref.y_plane_rgb8``) without
making a float image at all. A batch keeps each form once made, so five metrics on one batch
convert it once. A batch belongs to one thread (the metric stage scores each in one worker).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.metrics.fullref import y_plane, y_plane_255, y_plane_rgb8


class ImageBatch:
    """``N`` same-sized RGB images: uint8 ``(H, W, 3)`` arrays, or a float32 ``(N, 3, H, W)``
    tensor in [0, 1] (``harness.imageio.to_tensor`` convention). Give one of the two."""

    def __init__(
        self, rgb8: Sequence[np.ndarray] | None = None, tensor: torch.Tensor | None = None
    ) -> None:
        if (rgb8 is None) == (tensor is None):
            raise ValueError("give the images as uint8 arrays or as one tensor")
        if rgb8 is not None:
            if not rgb8 or any(a.shape != rgb8[0].shape for a in rgb8):
                raise ValueError("a batch needs one or more images of one size")
            h, w, _ = rgb8[0].shape
            self.shape = (len(rgb8), 3, h, w)
        else:
            if tensor.ndim != 4 or tensor.shape[1] != 3:
                raise ValueError(f"expected RGB batches (N, 3, H, W), got {tuple(tensor.shape)}")
            self.shape = tuple(tensor.shape)
        self._rgb8 = list(rgb8) if rgb8 is not None else None
        self._tensors: dict[torch.device, torch.Tensor] = {}
        if tensor is not None:
            self._tensors[tensor.device] = tensor
        self._y: list[np.ndarray] | None = None
        self._y255: list[np.ndarray] | None = None

    @classmethod
    def of(cls, images: ImageBatch | torch.Tensor) -> ImageBatch:
        return images if isinstance(images, ImageBatch) else cls(tensor=images)

    def __len__(self) -> int:
        return self.shape[0]

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """float32 ``(N, 3, H, W)`` in [0, 1] on ``device``."""
        device = torch.device(device)
        if device not in self._tensors:
            if self._rgb8 is not None and "cpu" not in {d.type for d in self._tensors}:
                from harness.imageio import to_tensor

                self._tensors[torch.device("cpu")] = torch.cat([to_tensor(a) for a in self._rgb8])
            source = next(iter(self._tensors.values()))
            self._tensors[device] = source.to(device)
        return self._tensors[device]

    def y(self) -> list[np.ndarray]:
        """Y of YCbCr per image, float32 ``(H, W)`` in [16/255, 235/255], bitwise pyiqa's."""
        if self._y is None:
            if self._rgb8 is not None:
                self._y = [y_plane_rgb8(a) for a in self._rgb8]
            else:
                x = next(iter(self._tensors.values())).detach().float().cpu().numpy()
                self._y = [y_plane(p) for p in x]
        return self._y

    def y255(self) -> list[np.ndarray]:
        """``y()`` scaled to [16, 235] and rounded, float64 (SSIM's input)."""
        if self._y255 is None:
            self._y255 = [y_plane_255(p) for p in self.y()]
        return self._y255
