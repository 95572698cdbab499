"""Pixel equivalence of the harness's ``osediff`` method with the official OSEDiff code.

    python tools/equivalence_osediff.py OFFICIAL_CHECKOUT \
        [--official-python ../envs/osediff/bin/python] [--arch paper|tiny] \
        [--lr-dir ../shared/data/drealsr/LR] [--crops 64,128] [--images 2] [--tiles] [--work DIR]

1. Random weights (seeded, every LoRA adapter non-zero) are written in the official layouts:
   ``osediff.pkl`` (LoRA lists, ranks, LoRA + conv_in tensors) and an SD2.1-base folder in the
   diffusers layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/) whose safetensors are
   also the harness's SD files. fp32 throughout.
2. Inputs: top-left crops of real LR images (one crop size per image, cycling through
   ``--crops``; 64 exercises the official small-input enlargement, 128 the plain path).
3. The official ``test_osediff.py`` runs from the checkout in its own environment through
   ``tools/osediff_official_driver.py`` (CPU, latent mode, fp32, the tagger replaced by fixed
   tags); the harness runs the same files with the same tags (prompt=dape through a stand-in
   tagger), latent mode, fp32.
4. Outputs are compared in 8-bit levels at the official output's size (``max_levels``), and
   at 4x (``max_levels_4x``): where the official output is not 4x the input (its resize-back
   line has no effect) it is resized with PIL bicubic as that line intends, as the harness does.
   ``--tiles`` forces latent and VAE tiling on both sides with small tiles (use with
   ``--arch tiny``). The official scheduler step adds unseeded noise of std
   1e-10 (fp32) that the harness leaves out; it is switched off on the official side unless
   ``--step-noise``: random weights amplify it into a few 1-level truncation flips.

Prints one JSON line per image and a summary; exits 1 if any difference exceeds 1 level.
With ``adain`` a 1-level truncation flip of the network's 8-bit output is scaled by the fix's
gain (std of the upscaled LR / std of the output: above 1 for low-contrast random-weight
outputs) before the second truncation, and can reach 2 levels; ``--color-fix nofix`` shows the
networks' own agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
TAGS = ["building, city, sky, street", "flower, garden, green, plant", "dog, grass, outdoor"]
SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}  # fmt: skip
SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
           "unk_token": "<|endoftext|>"}  # fmt: skip


# the official environment, where the README sets it up (../envs beside the repository)
OFFICIAL_PYTHON = Path(__file__).resolve().parents[2] / "envs" / "osediff" / "bin" / "python"


def write_weights(work: Path, arch: str, seed: int) -> dict[str, Path]:
    """Random weights in both layouts; returns the harness's role -> path mapping."""
    from harness.methods.common import sd
    from harness.methods.osediff.arch import OSEDiffConfig
    from harness.methods.osediff.weights import SD_FILES, random_net, write_files

    cfg = OSEDiffConfig.tiny() if arch == "tiny" else OSEDiffConfig.paper()
    harness_dir = work / "harness_weights"
    harness_dir.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": harness_dir / "osediff.pkl"}
    paths |= {k: harness_dir / v for k, v in SD_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        net = random_net(cfg, seed)
        write_files(net, paths)
        del net
    sd21 = work / "sd21"
    layout = {
        "unet": ("unet", "diffusion_pytorch_model.safetensors", cfg.unet),
        "vae": ("vae", "diffusion_pytorch_model.safetensors", cfg.vae),
        "text_encoder": ("text_encoder", "model.safetensors", cfg.text),
    }
    for role, (folder, name, config) in layout.items():
        (sd21 / folder).mkdir(parents=True, exist_ok=True)
        link = sd21 / folder / name
        if not link.exists():
            os.symlink(paths[role], link)
        conf = sd.diffusers_config(role, config)
        (sd21 / folder / "config.json").write_text(json.dumps(conf, indent=1))
    tok = sd21 / "tokenizer"
    tok.mkdir(exist_ok=True)
    for role, name in (("vocab", "vocab.json"), ("merges", "merges.txt")):
        if not (tok / name).exists():
            os.symlink(paths[role], tok / name)
    (tok / "special_tokens_map.json").write_text(json.dumps(SPECIAL))
    tok_conf = SPECIAL | {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
                          "do_lower_case": True, "errors": "replace"}  # fmt: skip
    (tok / "tokenizer_config.json").write_text(json.dumps(tok_conf))
    (sd21 / "scheduler").mkdir(exist_ok=True)
    (sd21 / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    return paths


def make_inputs(lr_dir: Path, out: Path, crops: list[int], n: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in lr_dir.iterdir() if p.suffix.lower() == ".png")[:n]
    made = []
    for i, f in enumerate(files):
        c = crops[i % len(crops)]
        im = Image.open(f).convert("RGB")
        dst = out / f"{i:02d}_{f.stem}_{c}.png"
        im.crop((0, 0, c, c)).save(dst)
        made.append(dst)
    return made


def run_official(args, inputs: Path, out: Path, sd21: Path, pkl: Path, tags: list[str]) -> float:
    argv = ["-i", str(inputs), "-o", str(out), "--pretrained_model_name_or_path", str(sd21),
            "--osediff_path", str(pkl), "--mixed_precision", "fp32",
            "--align_method", args.color_fix]  # fmt: skip
    if args.tiles:
        argv += ["--latent_tiled_size", "32", "--latent_tiled_overlap", "16",
                 "--vae_encoder_tiled_size", "256", "--vae_decoder_tiled_size", "32"]  # fmt: skip
    job = {"checkout": str(Path(args.checkout).resolve()), "argv": argv, "tags": tags,
           "step_noise": args.step_noise}  # fmt: skip
    job_file = out.parent / "official_job.json"
    job_file.write_text(json.dumps(job))
    t = time.perf_counter()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    subprocess.run([args.official_python, str(HERE / "osediff_official_driver.py"), str(job_file)],
                   check=True, env=env)  # fmt: skip
    return time.perf_counter() - t


class StubTagger:
    """Returns the current image's tags (the official side gets the same, in its order)."""

    current = ""

    def tags(self, images: torch.Tensor) -> list[str]:
        return [self.current] * images.shape[0]


def run_harness(args, inputs: list[Path], out: Path, weights: Path, tags: list[str]) -> float:
    import types

    from harness.imageio import from_tensor, read_rgb, to_tensor, write_png
    from harness.methods.osediff import adapter

    stub = StubTagger()
    fake = types.SimpleNamespace(DapeTagger=types.SimpleNamespace(
        weight_ids=(), from_files=lambda *args, **kwargs: stub))  # fmt: skip
    adapter.dape_module = lambda: fake
    cfg = {"arch": args.arch, "prompt": "dape", "weights_dir": str(weights), "precision": "fp32",
           "latent": "mode", "color_fix": args.color_fix}  # fmt: skip
    if args.tiles:
        cfg |= {"latent_tile": 32, "latent_overlap": 16, "vae_encoder_tile": 256,
                "vae_decoder_tile": 32}  # fmt: skip
    m = adapter.OSEDiff(cfg)
    t = time.perf_counter()
    m.load(torch.device("cpu"), torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    (out / "processed").mkdir(exist_ok=True)
    for f, tag in zip(inputs, tags):
        stub.current = tag
        lr = to_tensor(read_rgb(f))
        with torch.inference_mode():
            sr = m.upscale(lr)
            processed = m.process(lr)  # the official script's output size
        write_png(out / f.name, from_tensor(sr[0]))
        write_png(out / "processed" / f.name, processed[0].permute(1, 2, 0).cpu().numpy())
        (out / f"{f.stem}.prompt.txt").write_text(m.last_info()[0]["prompt"])
    return time.perf_counter() - t


def _diff(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))


def compare(ours: Path, processed: Path, official: Path, lr: Path) -> dict:
    """The official output against ours at its own size (``max_levels``), and at 4x after
    the resize-back the official code intends (``max_levels_4x``)."""
    off = Image.open(official)
    d = _diff(Image.open(processed), off)
    w, h = Image.open(lr).size
    final = off if off.size == (4 * w, 4 * h) else off.resize((4 * w, 4 * h), Image.BICUBIC)
    d4 = _diff(Image.open(ours), final)
    return {"image": ours.name, "official_size": list(off.size[::-1]),
            "max_levels": int(d.max()), "mean_levels": float(d.mean()),
            "frac_differing": float((d > 0).mean()), "max_levels_4x": int(d4.max())}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="a checkout of github.com/cswry/OSEDiff")
    ap.add_argument(
        "--official-python",
        default=str(OFFICIAL_PYTHON),
    )
    ap.add_argument("--arch", choices=["paper", "tiny"], default="paper")
    ap.add_argument("--lr-dir", type=Path,
                    default=HERE.parents[1] / "shared" / "data" / "drealsr" / "LR")  # fmt: skip
    ap.add_argument("--crops", default="64,128", help="crop sizes, cycled over the images")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--tiles", action="store_true", help="force small tiles on both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--color-fix", choices=["adain", "wavelet", "nofix"], default="adain")
    ap.add_argument(
        "--step-noise",
        action="store_true",
        help="keep the official scheduler's 1e-10 noise (unseeded) on its side",
    )
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="osediff-eq-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = write_weights(work, args.arch, args.seed)
    crops = [int(c) for c in args.crops.split(",")]
    inputs = make_inputs(args.lr_dir, work / "inputs", crops, args.images)
    tags = [TAGS[i % len(TAGS)] for i in range(len(inputs))]
    t_off = run_official(args, work / "inputs", work / "official", work / "sd21",
                         paths["checkpoint"], tags)  # fmt: skip
    t_ours = run_harness(args, inputs, work / "harness", paths["checkpoint"].parent, tags)
    rows = []
    for f in inputs:
        row = compare(work / "harness" / f.name, work / "harness" / "processed" / f.name,
                      work / "official" / f.name, f)  # fmt: skip
        ours = (work / "harness" / f"{f.stem}.prompt.txt").read_text()
        row["same_prompt"] = ours == (work / "official" / "txt" / f"{f.stem}.txt").read_text()
        rows.append(row | {"prompt": ours})
    for r in rows:
        print(json.dumps(r))
    worst = max(r["max_levels"] for r in rows)
    same = all(r["same_prompt"] for r in rows)
    print(json.dumps({"arch": args.arch, "tiles": args.tiles, "color_fix": args.color_fix,
                      "step_noise": args.step_noise, "images": len(rows),
                      "max_levels": worst, "same_prompts": same,
                      "official_s": round(t_off, 1), "harness_s": round(t_ours, 1),
                      "work": str(work)}))  # fmt: skip
    return 0 if worst <= 1 and same else 1


if __name__ == "__main__":
    sys.exit(main())
