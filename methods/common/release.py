"""Weights of methods that load one release file, and seeded test weights for their networks.

:class:`ReleaseFile` gives an adapter ``weights`` = ``official`` (the weights-manifest entry
named by :meth:`ReleaseFile.release_id`, found in ``weights_dir`` and checked against the
manifest's sha256 when it has one) or a file path, resolved once and digested for the SR cache
key. :func:`seeded_state_dict` draws random weights that exercise every part of a network (for
golden tests and ``harness weights fabricate``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.checkpoints import file_digest
from harness.errors import HarnessError


class ReleaseFile:
    """Mixin for :class:`~harness.methods.base.SRMethod` subclasses with one weights file."""

    _resolved: tuple[str, Path] | None = None

    def release_id(self) -> str:
        """The weights-manifest entry of ``weights=official`` (may depend on options)."""
        raise NotImplementedError

    def _weights_path(self) -> Path:
        choice = str(self.cfg.get("weights", "official"))
        if choice != "official":
            path = Path(choice).expanduser()
            if not path.is_file():
                raise HarnessError(
                    f"method.weights: '{choice}' is not official or an existing file"
                )
            return path
        from harness.weights.manifest import load_manifest

        entry = load_manifest()[self.release_id()]
        folder = Path(str(self.cfg.get("weights_dir", "."))).expanduser()
        path = folder / entry.name
        if not path.is_file():
            raise HarnessError(
                f"{self.card.name}: needs {entry.name} in {folder}: `harness weights fetch "
                f"{entry.id}` (from {entry.url}) or `harness weights import DIR`"
            )
        if entry.sha256 and file_digest(path) != entry.sha256:
            raise HarnessError(
                f"{path}: sha256 {file_digest(path)[:16]}... is not the manifest's "
                f"{entry.sha256[:16]}... (entry {entry.id})"
            )
        return path

    def weights_file(self) -> Path:
        """The checked weights file (options checked first); resolved once per instance."""
        if self._resolved is None:
            self.check_config()
            path = self._weights_path()
            self._resolved = (file_digest(path)[:32], path)
        return self._resolved[1]

    def weights_digest(self) -> str:
        self.weights_file()
        return self._resolved[0]

    def release_tensors(self, containers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The weights file's tensors, read by the restricted loader; a checkpoint that keeps
        them under a key (BasicSR's ``params_ema`` / ``params``) is opened at the first of
        ``containers`` it has."""
        from harness.checkpoints import load_tensors, tensors_only

        path = self.weights_file()
        obj = load_tensors(path)
        if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            obj = next((obj[k] for k in containers if k in obj), obj)
        return tensors_only(obj, str(path))


def seeded_state_dict(
    net: torch.nn.Module, seed: int, stds: dict[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """``net``'s state dict with every parameter redrawn from one seeded generator: matrices
    ~ N(0, 1/fan_in), 1-d ``.weight`` (norm scales) ~ 1 + N(0, 0.1^2), other 1-d tensors
    (biases) ~ N(0, 0.1^2), and a parameter whose name ends with a key of ``stds`` ~ N(0,
    std^2) (position-bias tables, codebooks: parts a fresh network leaves at zero or tiny).
    Buffers are kept as built."""
    g = torch.Generator().manual_seed(seed)
    params = dict(net.named_parameters())
    out = {}
    for key, value in net.state_dict().items():
        if key not in params:
            out[key] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=g)
        std = next((s for suffix, s in (stds or {}).items() if key.endswith(suffix)), None)
        if std is not None:
            out[key] = noise * std
        elif value.dim() >= 2:
            out[key] = noise / value[0].numel() ** 0.5
        elif key.endswith(".weight"):
            out[key] = 1 + noise * 0.1
        else:
            out[key] = noise * 0.1
    return out
