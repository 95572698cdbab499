"""Counting parameters and multiply-accumulates (MACs) of a network, with the conventions stated.

MACs: one multiply-add = 1 MAC (fvcore's "flop" unit is already a MAC).

* ``fvcore_macs``: fvcore's count, the convention of the Real-ISR papers' efficiency tables.
  It does NOT count ``scaled_dot_product_attention`` (nor element-wise ops).
* ``attention_macs``: the matmuls inside every ``scaled_dot_product_attention`` call
  (``Q K^T`` and ``A V``: ``B * H * Lq * Lk * (d_k + d_v)``), counted by our own handle.
  ``fvcore + attention`` is the count with attention included.
* ``flopcounter_macs``: torch's ``FlopCounterMode`` with attention forced onto the math path (on
  the fused kernels it reports 0 for attention), halved from FLOPs to MACs: an independent
  cross-check of ``fvcore + attention``.
* ``ptflops_macs``: ptflops with an explicit backend (docs and code disagree on the default; its
  aten backend returns 0 under ``inference_mode``, so it runs under ``no_grad``).

Parameters are counted once per tensor (deduplicated by identity): modules that alias the same
blocks, as the official AdcSR checkpoint does, are not counted twice.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def count_params(module: nn.Module) -> int:
    """Number of parameter elements, each tensor counted once however often it is registered."""
    seen: dict[int, int] = {}
    for _, p in module.named_parameters(remove_duplicate=False):
        seen[id(p)] = p.numel()
    return sum(seen.values())


def component_params(components: Mapping[str, nn.Module]) -> dict[str, int]:
    return {name: count_params(m) for name, m in components.items() if count_params(m)}


def _sdpa_handle(inputs: list[Any], outputs: list[Any]) -> int:
    q, k, v = (i.type().sizes() for i in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    lq, dk = q[-2], q[-1]
    lk, dv = k[-2], v[-1]
    return batch * lq * lk * (dk + dv)


def fvcore_macs(model: nn.Module, inputs: tuple) -> tuple[int, int]:
    """(fvcore total, attention matmuls) in MACs for one forward pass on ``inputs``."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        # one trace: attention gets its own handle, reported apart from fvcore's own total
        analysis = FlopCountAnalysis(model, inputs).set_op_handle(
            "aten::scaled_dot_product_attention", _sdpa_handle
        )
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    attention = sum(v for k, v in by_op.items() if "scaled_dot_product_attention" in k)
    return int(sum(by_op.values()) - attention), int(attention)


def flopcounter_macs(model: nn.Module, inputs: tuple) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(*inputs)
    return counter.get_total_flops() // 2


class _BindRest(nn.Module):
    """``model(x, *rest)`` behind a one-input forward: ptflops feeds a single tensor."""

    def __init__(self, model: nn.Module, rest: tuple) -> None:
        super().__init__()
        self.model, self.rest = model, rest

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, *self.rest)


def ptflops_macs(model: nn.Module, inputs: tuple, backend: str = "pytorch") -> int | None:
    from ptflops import get_model_complexity_info

    if len(inputs) > 1:
        model = _BindRest(model, tuple(inputs[1:]))
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = get_model_complexity_info(
            model, tuple(inputs[0].shape[1:]), input_constructor=lambda _: inputs[0],
            as_strings=False, backend=backend, print_per_layer_stat=False, verbose=False,
        )  # fmt: skip
    return int(macs) if macs is not None else None
