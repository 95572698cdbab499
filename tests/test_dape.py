"""DAPE tagger (RAM + DAPE LoRA) on tiny widths, with files fabricated in the official layout.

Equivalence with the official code (full size) is ``tools/equivalence_dape.py``."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.dape import DapeTagger, RamConfig, RamTagger
from harness.methods.dape.fabricate import write_official_files
from harness.methods.dape.tagger import read_thresholds
from harness.weights.manifest import load_manifest

TINY = RamConfig.tiny()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return write_official_files(tmp_path_factory.mktemp("dape"), TINY, seed=0)


@pytest.fixture(scope="module")
def tagger(files) -> DapeTagger:
    return DapeTagger.from_files(files, config=TINY)


def _official(files) -> tuple[dict, dict]:
    ram = torch.load(files["ram-swin-large-14m"], weights_only=True)["model"]
    return ram, torch.load(files["dape-lora"], weights_only=True)


def _save(obj, path: Path) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(buf.getvalue())
    return path


def test_official_files_load_with_lora_merged_as_loralib_does(files, tagger):
    ram, dape = _official(files)
    sd = tagger.module.state_dict()
    # Swin qkv (loralib MergedLinear, enable_lora=[q, k, v] = [T, F, T], r = 8, alpha 1)
    key = "visual_encoder.layers.1.blocks.1.attn.qkv"
    w, a, b = ram[f"{key}.weight"], dape[f"{key}.lora_A"], dape[f"{key}.lora_B"]
    d = w.shape[0] // 3
    want = w.clone()
    want[:d] += b[:d] @ a[:8] / 8
    want[2 * d :] += b[d:] @ a[8:] / 8
    assert torch.allclose(sd[f"{key}.weight"], want, atol=1e-6)
    assert torch.equal(sd[f"{key}.weight"][d : 2 * d], w[d : 2 * d])  # k has no LoRA
    # the head's cross-attention query is shared with tag_encoder's (tied): the head's value
    # loads last, and both modules' LoRA deltas are merged into it (tag_encoder's first)
    head = "tagging_head.encoder.layer.0.crossattention.self.query"
    tied = "tag_encoder.encoder.layer.0.crossattention.self.query"
    assert not torch.equal(ram[f"{head}.weight"], ram[f"{tied}.weight"])
    want = ram[f"{head}.weight"] + dape[f"{tied}.lora_B"] @ dape[f"{tied}.lora_A"] / 8
    want += dape[f"{head}.lora_B"] @ dape[f"{head}.lora_A"] / 8
    assert torch.allclose(sd["tagging_head.0.query.weight"], want, atol=1e-6)
    # value has no LoRA; timm downsamples at the start of a stage, the original at the end
    head_v = "tagging_head.encoder.layer.1.crossattention.self.value.weight"
    assert torch.equal(sd["tagging_head.1.value.weight"], ram[head_v])
    assert torch.equal(
        sd["visual_encoder.layers.2.downsample.reduction.weight"],
        ram["visual_encoder.layers.1.downsample.reduction.weight"],
    )


def test_loading_is_strict_and_names_the_keys(files, tmp_path):
    ram, dape = _official(files)
    gone = "tagging_head.encoder.layer.1.crossattention.self.key.lora_B"
    cases = {
        "missing keys fc.weight": ({k: v for k, v in ram.items() if k != "fc.weight"}, dape),
        "unexpected keys visual_encoder.layers.0.blocks.0.attn.extra": (
            ram | {"visual_encoder.layers.0.blocks.0.attn.extra": torch.zeros(1)}, dape),
        "unexpected keys tagging_head.encoder.layer.2": (
            ram | {"tagging_head.encoder.layer.2.output.dense.weight": torch.zeros(1)}, dape),
        "wrong shapes: image_proj.weight": (ram | {"image_proj.weight": torch.zeros(3, 3)}, dape),
        f"missing LoRA keys {gone}": (ram, {k: v for k, v in dape.items() if k != gone}),
    }  # fmt: skip
    for i, (message, (r, d)) in enumerate(cases.items()):
        bad = dict(files)
        bad["ram-swin-large-14m"] = _save({"model": r}, tmp_path / f"ram{i}.pth")
        bad["dape-lora"] = _save(d, tmp_path / f"dape{i}.pth")
        with pytest.raises(HarnessError, match=message.replace(".", r"\.").replace("(", r"\(")):
            DapeTagger.from_files(bad, config=TINY)
    # caption-module keys (never used for tags) are accepted and ignored, as officially
    assert any(k.startswith("text_decoder.") for k in ram)


def test_hostile_pickles_are_refused_without_running(files, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for which in ("ram-swin-large-14m", "dape-lora"):
        bad = dict(files)
        bad[which] = _save({"model": Payload(), "x": Payload()}, tmp_path / f"{which}.pth")
        with pytest.raises(HarnessError, match="holds no state dict of tensors"):
            DapeTagger.from_files(bad, config=TINY)
    assert not marker.exists()


def test_missing_files_name_the_fetch_command(files, tmp_path):
    bad = dict(files) | {"dape-lora": tmp_path / "DAPE.pth"}
    with pytest.raises(HarnessError, match=r"DAPE\.pth .*`harness weights fetch osediff`"):
        DapeTagger.from_files(bad, config=TINY)
    with pytest.raises(HarnessError, match="no file given for ram-tag-list"):
        DapeTagger.from_files({k: v for k, v in files.items() if k != "ram-tag-list"})


def test_tags_are_deterministic(files, tagger):
    images = torch.rand(2, 3, 200, 152, generator=torch.Generator().manual_seed(0))
    again = DapeTagger.from_files(files, config=TINY)
    assert torch.equal(tagger.logits(images), again.logits(images))
    assert tagger.tags(images) == again.tags(images) == tagger.tags(images)
    assert DapeTagger.random(seed=3).tags(images) == DapeTagger.random(seed=3).tags(images)


def _fixed_probability_tagger(p: float, thresholds: list[float], names: list[str]):
    """Every tag gets sigmoid(logit) = p exactly (fc weight 0, bias logit(p))."""
    model = RamTagger(replace(TINY, num_classes=len(names)))
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(torch.logit(torch.tensor(p)).item())
    return DapeTagger(model, names, torch.tensor(thresholds))


def test_per_class_thresholds_and_tag_string_format():
    p = torch.sigmoid(torch.logit(torch.tensor(0.7))).item()  # the fp32 value the model makes
    names = ["3D CG rendering", "abacus", "zoo", "sky", "sea", "dog"]
    thresholds = [0.65, 0.75, p, 0.69, 1.0, 0.45]  # p itself does not fire: strictly greater
    tagger = _fixed_probability_tagger(0.7, thresholds, names)
    image = torch.rand(1, 3, 96, 64)
    assert tagger.tags(image) == ["3D CG rendering, sky, dog"]
    none = _fixed_probability_tagger(0.7, [0.9] * len(names), names)
    assert none.tags(image) == [""]  # the official prompt then starts ", "


def test_threshold_file_parsing(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("0.65\n1.0\n0.95\n0.45")
    assert read_thresholds(good).tolist() == pytest.approx([0.65, 1.0, 0.95, 0.45])
    bad = tmp_path / "bad.txt"
    bad.write_text("0.65\n\n0.8\n")
    with pytest.raises(HarnessError, match=r"bad\.txt: line 2 is not a number"):
        read_thresholds(bad)


def test_preprocessing_matches_the_official_transform_under_its_pins(tagger):
    from torchvision import transforms

    # torchvision 0.15 (the official pin) resizes tensors without antialiasing
    size = tagger.input_size
    official = transforms.Compose([
        transforms.Resize((size, size), antialias=False),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])  # fmt: skip
    for shape in ((1, 3, 517, 389), (1, 3, size, size), (1, 3, 64, 200)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        assert torch.equal(tagger.preprocess(x), official(x))
    with pytest.raises(HarnessError, match="float RGB"):
        tagger.preprocess(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_random_tiny_tagger_fires_some_tags_and_runs_in_half_precision():
    tagger = DapeTagger.random(tiny=True, seed=0)
    images = torch.rand(1, 3, 64, 64)
    fired = tagger.fired(images)[0]
    assert 0 < fired.sum() < fired.numel()
    bf16 = DapeTagger.random(tiny=True, seed=0).to(dtype=torch.bfloat16)
    assert bf16.module.fc.weight.dtype == torch.bfloat16
    assert torch.allclose(bf16.logits(images), tagger.logits(images), atol=0.1)


def test_manifest_lists_every_file_the_tagger_needs():
    entries = load_manifest()
    for i in DapeTagger.weight_ids:
        assert entries[i].location == "harness:osediff" and "osediff" in entries[i].used_by
    assert entries["ram-tag-list"].sha256 and entries["ram-tag-list-threshold"].sha256
