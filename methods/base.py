"""The method adapter contract.

A method turns a batch of LR images into SR images and describes itself with a
:class:`MethodCard`. It knows nothing about datasets on disk, caching or scoring: the runner
feeds it tensors and stores what it returns.

Tensor conventions (all adapters): input ``float32`` ``(N, 3, h, w)`` in [0, 1] on the method's
device; output ``(N, 3, h*scale, w*scale)`` in [0, 1] (values outside are clamped when saved).

Randomness: a method whose output depends on random numbers sets ``MethodCard.stochastic``. The
runner then calls ``upscale(lr, seeds=...)`` with one seed per image (derived from the run seed
and the image's name) and puts the run seed into the SR cache key; image i's output must be a
function of image i and ``seeds[i]`` alone, whatever the batch. Deterministic methods never see
seeds, and their cached outputs are shared across run seeds.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

FAMILIES = ("", "classical", "gan", "diffusion")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightFile:
    """One file a method needs: where it comes from and how to verify it."""

    name: str
    url: str
    sha256: str | None = None  # None only while the official hash is not known
    size: int | None = None
    license: str = "unknown"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"weight file name must be a bare file name, got {self.name!r}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class MethodCard:
    """What a method is, validated when the adapter is defined (MTEB's ModelMeta, in small)."""

    name: str
    display_name: str
    paper: str
    license: str
    scale: int
    steps: int | None = None  # diffusion steps per image; None for non-iterative methods
    code: str | None = None  # official repository
    weights: tuple[WeightFile, ...] = ()
    deviations: tuple[str, ...] = ()  # every way the harness differs from the official code
    notes: str = ""
    stochastic: bool = False  # output depends on random numbers: upscale() takes per-image seeds
    # how the papers group methods in their tables: classical (interpolation), gan (one forward
    # pass of a network trained with an adversarial loss), diffusion (``steps`` tells one-step
    # from multi-step); '' = not stated (reports put such rows last, ungrouped)
    family: str = ""
    # the scale factors the method runs at (its network's); None: any (interpolation)
    scales: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"method name {self.name!r}: use lowercase letters, digits, '_'")
        if self.scale < 1:
            raise ValueError(f"{self.name}: scale must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"{self.name}: steps must be >= 1")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family {self.family!r} is not one of {FAMILIES}")
        if self.scales is not None and self.scale not in self.scales:
            raise ValueError(f"{self.name}: scale {self.scale} is not among scales {self.scales}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_strict(net: torch.nn.Module, state: Mapping[str, torch.Tensor], who: str, arch: str):
    """``net.load_state_dict(state, strict=True)``; a mismatch becomes a one-line
    :class:`HarnessError` naming the method, the architecture and torch's first line."""
    from harness.errors import HarnessError

    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise HarnessError(
            f"{who}: weights do not fit the '{arch}' architecture ({first})"
        ) from None


class SRMethod(ABC):
    """Base class of every method adapter.

    Subclasses set ``card`` and ``version`` (bump it whenever a code change alters outputs: it
    is part of the SR cache key), and implement :meth:`upscale`. Neural methods also implement
    :meth:`build_model` (the architecture, weights random) and :meth:`load`.
    """

    card: ClassVar[MethodCard]
    version: ClassVar[str] = "1"

    def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
        self.cfg: dict[str, Any] = dict(cfg or {})
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        # (device, dtype, random_init) of the last load(); None until loaded
        self.loaded_as: tuple[torch.device, torch.dtype, bool] | None = None

    @property
    def scale(self) -> int:
        return int(self.cfg.get("scale", self.card.scale))

    def build_model(self) -> torch.nn.Module | None:
        """The architecture with random weights (for params, MACs, latency); None if no network."""
        return None

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        """Build the model and load its weights onto ``device`` in ``dtype``.

        ``random_init`` builds the architecture with random weights and loads nothing: enough
        for parameters, MACs and latency (``harness profile --random-init``).
        """
        self.device, self.dtype = device, dtype
        self.loaded_as = (device, dtype, random_init)  # lets callers skip a second load

    # An optional execution mode for speed (torch.compile, channels_last, reduced precision):
    # what it does, in words; '' when the method has none. The profiler reports it in columns
    # of its own (``profile.fast``), never in place of the official configuration's numbers.
    fast_mode: ClassVar[str] = ""

    def set_fast(self, on: bool) -> None:
        """Switch the loaded method into (or out of) its fast mode (see ``fast_mode``)."""
        raise NotImplementedError(f"{self.card.name} has no fast mode")

    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The arguments ``build_model()``'s forward receives for the LR batch ``lr`` in [0, 1]
        (after the adapter's own pre-processing), for MAC counting."""
        return (lr,)

    def components(self, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
        """Named parts reported separately by the profiler (default: the model's children)."""
        return dict(model.named_children())

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``HarnessError`` for an LR size this method cannot take."""
        if height < 1 or width < 1:
            from harness.errors import HarnessError

            raise HarnessError(f"{self.card.name}: LR size {width}x{height} is not positive")

    def check_config(self) -> None:
        """Raise ``HarnessError`` for an option value this method cannot take (choices that a
        type check cannot see); reads no file. Default: nothing to check."""
        return None

    def validate(self) -> None:
        """Every option checked, reading no file: the scale against the card's ``scales``, then
        :meth:`check_config`. Called when a config is composed (so ``--dry-run`` and a run of
        several methods refuse a bad option before any work) and again by the runner."""
        from harness.errors import HarnessError

        if self.card.scales is not None and self.scale not in self.card.scales:
            runs = ", ".join(f"x{s}" for s in self.card.scales)
            raise HarnessError(
                f"method.scale: {self.card.name} runs at {runs} only, not x{self.scale}"
            )
        self.check_config()

    def weights_digest(self) -> str:
        """A digest of the weights in use (part of the SR cache key); '' for no weights."""
        return ""

    def output_signature(self, device: torch.device, dtype: torch.dtype) -> dict[str, str]:
        """Run settings that change the output bits (part of the SR cache key)."""
        return {"device": device.type, "dtype": str(dtype).removeprefix("torch.")}

    def last_info(self) -> list[dict[str, Any]] | None:
        """Per-image facts about the last :meth:`upscale` call, one JSON-able dict per image
        (e.g. ``{"prompt": ...}``: the text a diffusion method was conditioned on), or None.
        The runner records them with the SR images (``prompts.jsonl`` in the run directory)."""
        return None

    def upscale_seeded(self, lr: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """The runner's call: ``seeds[i]`` is image i's seed. Stochastic methods get them as
        ``upscale(lr, seeds=...)``; deterministic methods are called as ``upscale(lr)``."""
        if len(seeds) != lr.shape[0]:
            raise ValueError(f"{self.card.name}: {len(seeds)} seeds for {lr.shape[0]} images")
        if self.card.stochastic:
            return self.upscale(lr, seeds=[int(s) for s in seeds])  # type: ignore[call-arg]
        return self.upscale(lr)

    @abstractmethod
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` in [0, 1] -> ``(N, 3, h*scale, w*scale)`` in [0, 1].

        Stochastic methods (``card.stochastic``) take ``seeds: Sequence[int] | None = None`` as
        well: one seed per image, or None for a fixed default (profiling, direct calls)."""
