"""Equivalence of the DAPE tagger with the official OSEDiff code, on the same random weights.

    python tools/equivalence_dape.py OFFICIAL_CHECKOUT --official-python PY [--lr-dir DIR]

OFFICIAL_CHECKOUT: a checkout of cswry/OSEDiff (its ``ram/`` package and data files are used
from there, never copied). ``--official-python``: the interpreter of a separate environment with
the official pins (torch 2.0.1, torchvision 0.15.2, transformers 4.28.1, timm 0.4.12 -- RAM's own
pin --, loralib, fairscale, numpy < 2, scipy). ``--lr-dir``: LR images (default: the DRealSR
pairs in ../shared).

Procedure (fp32, CPU):

1. Inputs as ``test_osediff.py`` makes them: an LR image, PIL bicubic x4 (after the enlargement
   of LR images with a short side under 128), PIL Lanczos to sides divisible by 8, ``ToTensor``.
   LR images: the first LR files of ``--lr-dir`` (when present) and scikit-image photos
   reduced x4 with PIL bicubic.
2. Random full-size RAM + DAPE files in the official layout (``harness.methods.dape.fabricate``:
   every LoRA non-zero, tied ``tag_encoder`` weights different from the head's), with the REAL
   tag list and thresholds of the checkout. Random weights give logits near one value for all
   classes, so the head's bias is then set so that about 3% of the (image, tag) pairs exceed
   their thresholds: ``bias = quantile(logit(threshold) - logit, 0.03)`` over all pairs, from a
   first pass of our tagger. Both sides load the same files.
3. The official side (a subprocess of this script in the official environment) builds
   ``ram(pretrained=..., pretrained_condition=..., image_size=384, vit='swin_l')``, calls
   ``eval()``, applies the test script's ``ram_transforms`` and ``inference_ram`` (tags), and
   ``condition_forward`` (raw logits). Its ``init_tokenizer`` reads a hard-coded local
   bert-base-uncased folder; it is replaced by a stub of the same length (30524), which only
   sizes the unused text embeddings: tags do not depend on it.
4. Compared: tag strings, max |logit difference|, max |sigmoid difference|, and how close the
   nearest tag is to its threshold (so that identical tags are not luck). Also reported: how
   much the LoRA moves the logits, and how many tags change if the tensor resize antialiases
   (torchvision >= 0.17's default, not the official pins').

Writes ``equivalence.json`` into the work folder and prints a summary. Exit 1 if tags differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED_LR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "drealsr" / "LR"
PHOTOS = ("astronaut", "coffee", "chelsea")
TOKENIZER_LEN = 30524  # bert-base-uncased (30522) + [DEC] + [ENC]


# -- the official side: runs in the official environment, imports only from the checkout ---------
def official_worker(checkout: Path, work: Path) -> None:
    import numpy as np
    import torch
    from torchvision import transforms

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sys.path.insert(0, str(checkout))
    import ram.models.ram_lora as ram_lora
    from ram import inference_ram

    class StubTokenizer:  # sizes the (unused) caption embeddings only
        enc_token_id = TOKENIZER_LEN - 1

        def __len__(self) -> int:
            return TOKENIZER_LEN

        def __call__(self, text):
            return type("Ids", (), {"input_ids": [0] * (len(text.split()) + 2)})()

    ram_lora.init_tokenizer = StubTokenizer
    model = ram_lora.ram(pretrained=str(work / "ram_swin_large_14m.pth"),
                         pretrained_condition=str(work / "DAPE.pth"), image_size=384,
                         vit="swin_l")  # fmt: skip
    model.eval()
    ram_transforms = transforms.Compose([  # as in test_osediff.py
        transforms.Resize((384, 384)),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])  # fmt: skip
    names = json.loads((work / "inputs.json").read_text())
    tags, logits = [], []
    for name in names:
        lq = torch.from_numpy(np.load(work / f"input-{name}.npy"))
        lq_ram = ram_transforms(lq).to(dtype=torch.float32)
        tags.append(inference_ram(lq_ram, model)[0])
        with torch.no_grad():
            logits.append(model.condition_forward(lq_ram, only_feature=False)[1][0].numpy())
    np.save(work / "official-logits.npy", np.stack(logits))
    versions = {"torch": torch.__version__, "torchvision": __import__("torchvision").__version__,
                "transformers": __import__("transformers").__version__,
                "timm": __import__("timm").__version__}  # fmt: skip
    (work / "official.json").write_text(json.dumps({"tags": tags, "versions": versions}))


# -- our side ---------------------------------------------------------------------------------
def _inputs(work: Path, lr_dir: Path, n_lr: int) -> list[str]:
    """Save the tagger inputs (float32 [0, 1], (1, 3, H, W)) as the official script makes them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    def upscaled(lr: Image.Image) -> np.ndarray:
        w, h = lr.size
        if min(w, h) < 128:  # process_size 512 // upscale 4
            s = 128 / min(w, h)
            lr = lr.resize((int(s * w), int(s * h)))
        img = lr.resize((lr.width * 4, lr.height * 4))
        img = img.resize((img.width - img.width % 8, img.height - img.height % 8), Image.LANCZOS)
        return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()

    lrs = {}
    if lr_dir.is_dir():
        for p in sorted(lr_dir.glob("*.png"))[:n_lr]:
            lrs[p.stem] = Image.open(p).convert("RGB")
    for name in PHOTOS:
        hr = Image.fromarray(getattr(data, name)())
        lrs[name] = hr.resize((hr.width // 4, hr.height // 4), Image.BICUBIC)
    for name, lr in lrs.items():
        np.save(work / f"input-{name}.npy", upscaled(lr))
    (work / "inputs.json").write_text(json.dumps(list(lrs)))
    return list(lrs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--official-python", help="python of the official environment (required)")
    ap.add_argument("--lr-dir", type=Path, default=SHARED_LR)
    ap.add_argument("--work", type=Path, help="folder for files (default: a temporary one)")
    ap.add_argument("--lr-images", type=int, default=3, help="DRealSR LR images to use")
    ap.add_argument("--fire-rate", type=float, default=0.03)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    checkout = args.checkout.resolve()
    if args.worker:
        official_worker(checkout, args.work)
        return 0
    data_dir = checkout / "ram" / "data"
    if not (checkout / "ram" / "models" / "ram_lora.py").is_file():
        print(f"error: {checkout} is not an OSEDiff checkout (no ram/models/ram_lora.py)")
        return 2
    if not args.official_python or not Path(args.official_python).is_file():
        print(f"error: --official-python {args.official_python} not found")
        return 2

    import numpy as np
    import torch

    from harness.checkpoints import load_tensors
    from harness.methods.dape import DapeTagger, RamConfig
    from harness.methods.dape.convert import from_official
    from harness.methods.dape.fabricate import write_official_files

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = (args.work or Path(tempfile.mkdtemp(prefix="dape-eq-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = _inputs(work, args.lr_dir, args.lr_images)
    images = [torch.from_numpy(np.load(work / f"input-{n}.npy")) for n in names]
    print(f"inputs: {', '.join(f'{n} {tuple(x.shape[2:])}' for n, x in zip(names, images))}")
    tag_files = (data_dir / "ram_tag_list.txt", data_dir / "ram_tag_list_threshold.txt")
    files = write_official_files(work, RamConfig.official(), seed=0, tag_files=tag_files)

    # calibrate the head's bias so that some tags fire (random weights: see the module doc)
    tagger = DapeTagger.from_files(files)
    first = torch.cat([tagger.logits(x) for x in images])
    margin = torch.logit(tagger.thresholds.double()) - first.double()
    bias = float(margin.flatten().quantile(args.fire_rate))
    ram = load_tensors(files["ram-swin-large-14m"])
    ram["model"]["fc.bias"] = torch.full_like(ram["model"]["fc.bias"], bias)
    torch.save(ram, files["ram-swin-large-14m"])
    del tagger, ram

    tagger = DapeTagger.from_files(files)
    ours_logits = torch.cat([tagger.logits(x) for x in images])
    ours_tags = [tagger.tags(x)[0] for x in images]
    tagger.resize_antialias = True
    aa_tags = [tagger.tags(x)[0] for x in images]
    tagger.resize_antialias = False
    # the LoRA's effect, so that agreement is not vacuous: the same files without DAPE
    plain = DapeTagger(tagger.model.__class__(tagger.model.cfg), tagger.tag_list,
                       tagger.thresholds)  # fmt: skip
    raw = load_tensors(files["ram-swin-large-14m"])["model"]
    plain.model.load_state_dict(from_official(raw, None, plain.model.state_dict(),
                                              tagger.model.cfg))  # fmt: skip
    lora_shift = (plain.logits(images[0]) - ours_logits[:1]).abs().max().item()
    del plain, raw

    print("running the official code ...", flush=True)
    log = work / "official.log"
    with open(log, "w") as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        cmd = [args.official_python, __file__, str(checkout), "--work", str(work), "--worker"]
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if rc:
        print(f"error: the official side failed (exit {rc}); see {log}")
        return 2
    official = json.loads((work / "official.json").read_text())
    off_logits = torch.from_numpy(np.load(work / "official-logits.npy"))

    thr = tagger.thresholds
    diff = (ours_logits - off_logits).abs()
    sig_diff = (torch.sigmoid(ours_logits) - torch.sigmoid(off_logits)).abs()
    closest = (torch.sigmoid(off_logits) - thr).abs()
    rows = []
    for i, name in enumerate(names):
        rows.append({
            "image": name, "size": list(images[i].shape[2:]),
            "tags_equal": ours_tags[i] == official["tags"][i],
            "n_tags": len(ours_tags[i].split(", ")) if ours_tags[i] else 0,
            "max_abs_logit_diff": diff[i].max().item(),
            "max_abs_sigmoid_diff": sig_diff[i].max().item(),
            "nearest_threshold_gap": closest[i].min().item(),
            "tags_changed_by_antialias": len(set(aa_tags[i].split(", "))
                                             ^ set(ours_tags[i].split(", "))),
            "ours": ours_tags[i], "official": official["tags"][i],
        })  # fmt: skip
    summary = {
        "official_versions": official["versions"], "torch_ours": torch.__version__,
        "head_bias": bias, "lora_max_logit_shift_first_image": lora_shift,
        "all_tags_equal": all(r["tags_equal"] for r in rows),
        "max_abs_logit_diff": diff.max().item(), "max_abs_sigmoid_diff": sig_diff.max().item(),
        "rows": rows,
    }  # fmt: skip
    (work / "equivalence.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"official: {official['versions']}; ours: torch {torch.__version__}")
    print(f"head bias {bias:.4f}; LoRA moves logits by up to {lora_shift:.3f} (first image)")
    print(f"{'image':12s} {'tags equal':10s} {'#tags':>5s} {'max|dlogit|':>12s} "
          f"{'max|dsigm|':>11s} {'nearest gap':>11s} {'AA changes':>10s}")  # fmt: skip
    for r in rows:
        print(f"{r['image']:12s} {str(r['tags_equal']):10s} {r['n_tags']:5d} "
              f"{r['max_abs_logit_diff']:12.3e} {r['max_abs_sigmoid_diff']:11.3e} "
              f"{r['nearest_threshold_gap']:11.3e} "
              f"{r['tags_changed_by_antialias']:10d}")  # fmt: skip
    print(f"all tags equal: {summary['all_tags_equal']}; details in {work / 'equivalence.json'}")
    return 0 if summary["all_tags_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
