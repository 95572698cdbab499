"""S3Diff: the harness adapter against the official inference script, same random weights, fp32.

    python tools/equivalence_s3diff.py OFFICIAL_CHECKOUT [--python ENV/bin/python]
        [--arch tiny|paper] [--latent sample|mean] [--images N] [--stages] [--out DIR]

1. Random weights are written in the official layouts (SD-Turbo folder in the diffusers layout,
   ``s3diff.pkl``, ``de_net.pth``) by ``harness.methods.s3diff.convert.write_official``.
2. LR images are written as PNG: 64x64 crops of two DRealSR LR images in ../shared (when
   present, else of a scikit-image photograph); for ``tiny`` also crops that, with small tile
   sizes given to both sides (``TINY_TILES``), switch on every tiling path.
3. The official ``src/inference_s3diff.py`` runs from the checkout, in the official environment
   (``--python``), through its own ``main``: its own file reading, pre-processing, model
   construction and loading (peft LoRA, the official forward and tiling), 8-bit conversion,
   colour fix and PNG writing. Run-time patches only: ``cuda`` -> ``cpu`` in the checkout's
   sources, the metric step (pyiqa, lpips, clip; needs downloads) replaced by a no-op,
   ``torchvision.transforms.functional_tensor`` (gone after torchvision 0.16, imported by the
   bundled BasicSR) aliased to ``torchvision.transforms.functional``, and the VAE posterior made
   repeatable: with ``--latent sample`` (the default, as both sides run by default) the global
   generator is seeded before each image with the seed the harness side gets, so the official
   ``latent_dist.sample()`` (the first and only draw before the UNet) draws exactly the noise
   tensor the harness draws; with ``--latent mean`` the posterior's ``sample`` returns its mean
   and the harness runs with ``latent=mean``. The official log is checked for weights that
   transformers or diffusers did not load (a fabricated file in a wrong layout).
4. The harness adapter upscales the same files; the PNGs are compared pixel by pixel.
5. Sensitivity: harness-side variants (guidance 1.0, the other latent mode, another seed, no
   colour fix) must differ from the official output by far more than 1/255, showing the
   comparison can fail.
6. ``--stages`` also records, on both sides, the intermediate tensors under the same names
   (degradation scores, network input, prompt embeddings, every LoRA layer's modulation
   matrix, posterior moments, each UNet call's input and output, the denoised latent, the
   decoded image) and prints their largest differences: where a mismatch starts.

Prints one line per image (max |diff| in 8-bit levels, share of differing pixels, mean |diff|
in 8-bit levels) and exits 1 when any image differs by more than 1 level.

Results (fp32, CPU; official environment: the pinned diffusers 0.25.1, transformers 4.35.2,
peft 0.10.0, accelerate 0.25.0 with torch 2.14.1 / torchvision 0.29.1 instead of the pinned
2.1.0 / 0.16.0; harness: diffusers 0.42.1, transformers 5.24.0, the same torch):

* ``--arch tiny`` (5 images: two DRealSR crops, three sizes that switch on the tiled VAE
  encoder, the tiled decoder and the tiled latent), ``--latent sample``: every image max 1/255,
  0.008-0.015% of the values differ (by 1 level), mean |diff| 0.0001-0.0002 levels. Sensitivity
  on the first image: guidance 1.0 12/255, latent=mean 235/255, seed+1 248/255, no colour fix
  72/255. ``--latent mean``: every image max 1/255, 0.008-0.017% of the values differ.
* ``--arch paper`` (SD-Turbo sizes, ranks 32/16; two DRealSR crops, 64 -> 256, official tile
  sizes), ``--latent mean --stages``: both images max 1/255, 0.041% and 0.045% of the values
  differ; degradation scores, network input, posterior moments, UNet inputs and all 288
  modulation matrices identical, prompt embeddings within 2.5e-6, UNet outputs within 6.8e-6,
  decoded image within 2.8e-5. About 7 GB of memory, 12 minutes on a shared 2-core CPU.
  ``--latent sample``: both images max 1/255, 0.033% and 0.038% of the values differ.
* ``--stages`` (tiny, one image, both latent modes): degradation scores, network input,
  posterior moments, UNet inputs (so the posterior noise too) and all 286 modulation matrices
  identical; prompt embeddings within 1.3e-6, UNet outputs within 3e-6, decoded image within
  7e-6: the remaining 1-level pixels are 8-bit truncation of values within float rounding of a
  level boundary.
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

SEED = 1234
# Small tiles for the tiny check, the same on both sides (official command-line options): tiled
# VAE encoder above 320 px, tiled decoder above 54 latents, tiled latent above 24 * 24 latents.
TINY_TILES = {"vae_encoder_tiled_size": 256, "vae_decoder_tiled_size": 32,
              "latent_tiled_size": 24, "latent_tiled_overlap": 8}  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
DREALSR = next(
    (p / "shared" / "data" / "drealsr" / "LR" for p in (ROOT.parent, ROOT.parent.parent)
     if (p / "shared" / "data" / "drealsr" / "LR").is_dir()),
    ROOT.parent / "shared" / "data" / "drealsr" / "LR",
)  # fmt: skip


# ----------------------------------------------------------------------------- official side
# Runs inside the official environment: imports nothing from the harness.


# the official environment, where the README sets it up (../envs beside the repository)
OFFICIAL_PYTHON = Path(__file__).resolve().parents[2] / "envs" / "s3diff" / "bin" / "python"


def _official(argv: list[str]) -> None:
    import importlib.abc
    import importlib.machinery
    import types

    checkout, job = Path(argv[0]).resolve(), json.loads(Path(argv[1]).read_text())
    sys.dont_write_bytecode = True

    class CpuLoader(importlib.machinery.SourceFileLoader):
        def source_to_code(self, data, path, *, _optimize=-1):  # noqa: D401
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            for a, b in ((".cuda()", ".cpu()"), ('"cuda"', '"cpu"'), ("'cuda'", "'cpu'")):
                text = text.replace(a, b)
            return compile(text, path, "exec", dont_inherit=True)

    class CpuFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec and spec.origin and spec.origin.endswith(".py") and \
                    Path(spec.origin).resolve().is_relative_to(checkout):  # fmt: skip
                spec.loader = CpuLoader(fullname, spec.origin)
            return spec

    sys.meta_path.insert(0, CpuFinder())
    for name in ("pyiqa", "lpips", "clip"):  # used by the metric step only
        sys.modules.setdefault(name, types.ModuleType(name))
    # the bundled BasicSR imports a torchvision module removed after 0.16 (the pinned version)
    import torchvision.transforms.functional as tvf

    sys.modules.setdefault("torchvision.transforms.functional_tensor", tvf)
    os.chdir(checkout)
    sys.path[:0] = [str(checkout / "src"), str(checkout)]
    sys.argv = ["inference_s3diff.py", *job["args"]]

    import inference_s3diff as inf  # noqa: I001 (official modules, from the checkout)
    import s3diff_tile
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(int(job.get("threads", 2)))
    seeds = iter(job["seeds"])
    forward = s3diff_tile.S3Diff.forward

    def seeded(self, *a, **k):  # the posterior sample of each image from its own seed
        torch.manual_seed(next(seeds))
        return forward(self, *a, **k)

    s3diff_tile.S3Diff.forward = seeded
    if job.get("dump"):
        records = _official_hooks(s3diff_tile, sys.modules["de_net"])
    if job.get("latent") == "mean":  # the posterior's sample() is its mean (mode)
        posterior = sys.modules[AutoencoderKL.__module__].DiagonalGaussianDistribution
        posterior.sample = lambda self, generator=None: self.mode()
    inf.evaluate = lambda *a, **k: []
    inf.main(inf.parse_args_paired_testing())
    if job.get("dump"):
        torch.save(records, job["dump"])


def _official_hooks(s3diff_tile, de_net) -> dict:
    """Record the official intermediate tensors (stage name -> list, one per call)."""
    records: dict = {}

    def keep(name, t):
        records.setdefault(name, []).append(t.detach().float().cpu().clone())

    de_forward = de_net.DEResNet.forward

    def de(self, x):
        out = de_forward(self, x)
        keep("degradation scores", out)
        return out

    de_net.DEResNet.forward = de
    forward = s3diff_tile.S3Diff.forward

    def hooked(self, c_t, *a, **k):
        if not getattr(self, "_hooked", False):
            self._hooked = True
            self.text_encoder.register_forward_hook(lambda m, i, o: keep("prompt embeddings", o[0]))
            self.vae.quant_conv.register_forward_hook(lambda m, i, o: keep("posterior moments", o))
            self.unet.register_forward_hook(lambda m, i, o: keep("unet input", i[0]))
            self.unet.register_forward_hook(lambda m, i, o: keep("unet output", o.sample))
            self.vae.post_quant_conv.register_forward_hook(
                lambda m, i, o: keep("denoised latent", i[0])
            )
        keep("network input", c_t)
        out = forward(self, c_t, *a, **k)
        keep("decoded image", out)
        for prefix, net, names in (
            ("unet", self.unet, self.unet_lora_layers),
            ("vae", self.vae, self.vae_lora_layers),
        ):
            for name in names:
                keep(f"{prefix} modulation {name}", net.get_submodule(name).de_mod)
        return out

    s3diff_tile.S3Diff.forward = hooked
    return records


# ----------------------------------------------------------------------------- harness side


def _images(folder: Path, arch: str) -> list[Path]:
    """LR test images: real crops, plus sizes that trigger each tiling path (tiny only)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    if DREALSR.is_dir():
        for f in sorted(DREALSR.glob("*.png"))[:2]:
            im = np.asarray(Image.open(f).convert("RGB"))
            h, w = im.shape[:2]
            crop = im[h // 2 - 32 : h // 2 + 32, w // 2 - 32 : w // 2 + 32]
            out.append(folder / f"drealsr_{f.stem}_64.png")
            Image.fromarray(crop).save(out[-1])
    else:
        out.append(folder / "chelsea_64.png")
        Image.fromarray(data.chelsea()[100:164, 150:214]).save(out[-1])
    if arch == "tiny":  # with TINY_TILES: every tiling path, on small images
        photo = data.astronaut()
        for name, (h, w) in {"tiled_all_120x100": (100, 120), "tiled_wide_150x40": (40, 150),
                             "odd_37x53": (53, 37)}.items():  # fmt: skip
            out.append(folder / f"{name}.png")
            Image.fromarray(photo[40 : 40 + h, 6 : 6 + w]).save(out[-1])
    return out


def _harness(lr_files, sd_dir, s3_dir, arch, out_dir: Path, seeds, dump=None, **cfg) -> None:
    """The adapter on each file with its seed; writes PNGs under the same names (and, with
    ``dump``, its intermediate tensors under the official stage names)."""
    import torch

    from harness.imageio import from_tensor, read_rgb, to_tensor, write_png
    from harness.methods.s3diff import S3Diff

    m = S3Diff({"arch": arch, "weights_dir": str(s3_dir), "sd_turbo_dir": str(sd_dir), **cfg})
    m.load(torch.device("cpu"), torch.float32)
    records = _harness_hooks(m.net) if dump else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, seed in zip(lr_files, seeds):
        lr = to_tensor(read_rgb(f))  # (1, 3, h, w) in [0, 1]
        with torch.inference_mode():
            sr = m.upscale(lr, seeds=[seed])
        write_png(out_dir / f.name, from_tensor(sr[0]))
    if dump:
        torch.save(records, dump)


def _harness_hooks(net) -> dict:
    """Record the harness network's intermediate tensors, named as :func:`_official_hooks`."""
    records: dict = {}

    def keep(name, t):
        records.setdefault(name, []).append(t.detach().float().cpu().clone())

    net.de_net.register_forward_hook(lambda m, i, o: keep("degradation scores", o))
    net.vae.quant_conv.register_forward_hook(lambda m, i, o: keep("posterior moments", o))
    net.unet.register_forward_hook(lambda m, i, o: keep("unet input", i[0]))
    net.unet.register_forward_hook(lambda m, i, o: keep("unet output", o.sample))
    net.vae.post_quant_conv.register_forward_hook(lambda m, i, o: keep("denoised latent", i[0]))

    def before(m, args):
        keep("prompt embeddings", net.pos_embeds)
        keep("prompt embeddings", net.neg_embeds)
        keep("network input", args[0])

    def after(m, i, out):
        keep("decoded image", out)
        for prefix, model, mod, names in (
            ("unet", net.unet, net.unet_mod, net.unet_lora),
            ("vae", net.vae, net.vae_mod, net.vae_lora),
        ):
            for name in names:
                keep(f"{prefix} modulation {name}", mod.matrix(model.get_submodule(name).block))

    net.register_forward_pre_hook(before)
    net.register_forward_hook(after)
    return records


def _compare_stages(official: Path, ours: Path) -> None:
    """Print, per stage, the largest difference and the largest reference value."""
    import torch

    a, b = torch.load(official, weights_only=True), torch.load(ours, weights_only=True)
    mods = [k for k in a if " modulation " in k]
    for name in [k for k in a if k not in mods] + [k for k in b if k not in a]:
        if name not in a or name not in b or len(a[name]) != len(b[name]):
            print(f"stage {name:24s} calls: official {len(a.get(name, []))}, "
                  f"harness {len(b.get(name, []))}")  # fmt: skip
            continue
        for i, (x, y) in enumerate(zip(a[name], b[name])):
            if x.shape != y.shape:
                print(f"stage {name:24s} [{i}] shapes {tuple(x.shape)} vs {tuple(y.shape)}")
                continue
            print(f"stage {name:24s} [{i}] max |diff| {(x - y).abs().max().item():.3e}  "
                  f"max |official| {x.abs().max().item():.3e}")  # fmt: skip
    worst = max(((x - y).abs().max().item(), k) for k in mods if k in b
                for x, y in zip(a[k], b[k]))  # fmt: skip
    print(
        f"stage modulation matrices ({len(mods)} layers) worst max |diff| {worst[0]:.3e} "
        f"({worst[1]})"
    )


def _compare(a: Path, b: Path) -> tuple[int, float, float]:
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return 255, 1.0, float("nan")
    d = np.abs(x - y)
    return int(d.max()), float((d > 0).mean()), float(d.mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkout", type=Path, help="official ArcticHare105/S3Diff checkout")
    p.add_argument("--python", default=str(OFFICIAL_PYTHON),
                   help="interpreter of the official environment")  # fmt: skip
    p.add_argument("--arch", choices=["tiny", "paper"], default="tiny")
    p.add_argument("--latent", choices=["sample", "mean"], default="sample",
                   help="posterior: sample from the per-image seed (default), or mean")  # fmt: skip
    p.add_argument("--images", type=int, help="only the first N LR images")
    p.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the harness variants")
    p.add_argument("--reuse-official", action="store_true",
                   help="keep official outputs already in --out (same weights)")  # fmt: skip
    p.add_argument(
        "--stages", action="store_true", help="also record and compare intermediate tensors"
    )
    p.add_argument("--default-tiles", action="store_true",
                   help="tiny: keep the official tile sizes (slow)")  # fmt: skip
    args = p.parse_args()
    if not (args.checkout / "src" / "inference_s3diff.py").is_file():
        print(f"{args.checkout}: no src/inference_s3diff.py (not an S3Diff checkout)")
        return 2
    work = args.out or Path(tempfile.mkdtemp(prefix="s3diff-eq-"))
    work.mkdir(parents=True, exist_ok=True)

    from harness.methods.s3diff import S3DiffConfig
    from harness.methods.s3diff.convert import write_official

    cfg = S3DiffConfig.tiny() if args.arch == "tiny" else S3DiffConfig.paper()
    t = time.time()
    if not (work / "s3diff" / "s3diff.pkl").is_file():
        write_official(work, cfg, seed=0)
    sd_dir, s3_dir = work / "sd-turbo", work / "s3diff"
    # sorted as the official dataset sorts the file names; seed i for the i-th file
    lr_files = sorted(_images(work / "lr", args.arch))[: args.images]
    seeds = [SEED + i for i in range(len(lr_files))]
    tiles = TINY_TILES if args.arch == "tiny" and not args.default_tiles else {}
    print(f"weights and {len(lr_files)} LR images ready in {work} ({time.time() - t:.0f} s)")

    lr_dir = work / f"lr-{len(lr_files)}"  # the official script reads a whole folder
    lr_dir.mkdir(exist_ok=True)
    for f in lr_files:
        if not (lr_dir / f.name).is_file():
            (lr_dir / f.name).write_bytes(f.read_bytes())
    out_name = f"official-{args.latent}"
    (work / "sr_test.yaml").write_text(
        f"sf: 4\nvalidation:\n  lr_path: {lr_dir}\n  io_backend:\n    type: disk\n"
    )
    job = {
        "dump": str(work / f"{out_name}-stages.pt") if args.stages else None,
        "latent": args.latent,
        "seeds": seeds,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "2")),
        "args": [
            f"--base_config={work / 'sr_test.yaml'}", f"--sd_path={sd_dir}",
            f"--de_net_path={s3_dir / 'de_net.pth'}", f"--pretrained_path={s3_dir / 's3diff.pkl'}",
            f"--output_dir={work / out_name}", "--align_method=wavelet",
            f"--lora_rank_unet={cfg.rank_unet}", f"--lora_rank_vae={cfg.rank_vae}",
            "--report_to=tensorboard",
        ] + [f"--{k}={v}" for k, v in tiles.items()],
    }  # fmt: skip
    (work / "job.json").write_text(json.dumps(job))
    t = time.time()
    official = work / out_name
    done = all((official / f.name).is_file() for f in lr_files) and (
        not args.stages or Path(job["dump"]).is_file()
    )
    if args.reuse_official and done:
        print(f"official: outputs reused from {official}")
    else:
        run = subprocess.run([args.python, __file__, "--official-driver", str(args.checkout),
                              str(work / "job.json")], capture_output=True, text=True)  # fmt: skip
        log = work / f"{out_name}.log"
        log.write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            print(f"official run failed (log: {log}):\n{run.stderr[-3000:]}")
            return 2
        marks = ("newly initialized", "were not used when initializing")
        unloaded = [ln[:300] for ln in (run.stdout + run.stderr).splitlines()
                    if any(m in ln for m in marks)]  # fmt: skip
        if unloaded:
            print("official run did not load every fabricated weight (layout differs):")
            print("\n".join(unloaded))
            return 2
        print(f"official: {time.time() - t:.0f} s")
    t = time.time()
    ours = work / f"harness-{args.latent}"
    dump = work / f"harness-{args.latent}-stages.pt" if args.stages else None
    _harness(lr_files, sd_dir, s3_dir, args.arch, ours, seeds, dump, latent=args.latent, **tiles)
    print(f"harness: {time.time() - t:.0f} s")
    if dump:
        _compare_stages(Path(job["dump"]), dump)
    worst = 0
    for f in lr_files:
        mx, share, mean = _compare(official / f.name, ours / f.name)
        worst = max(worst, mx)
        print(f"{f.name:32s} max |diff| {mx:3d}/255  differing pixels {share:.5f}  mean {mean:.6f}")
    print(f"worst max |diff|: {worst}/255 ({'PASS' if worst <= 1 else 'FAIL'}: goal <= 1/255)")
    if not args.no_sensitivity:
        other = "mean" if args.latent == "sample" else "sample"
        variants = {"guidance_scale=1.0": ({"guidance_scale": 1.0}, seeds),
                    f"latent={other}": ({"latent": other}, seeds),
                    "seed+1": ({}, [s + 1 for s in seeds]),
                    "color_fix=nofix": ({"color_fix": "nofix"}, seeds)}  # fmt: skip
        for name, (variant, vseeds) in variants.items():
            cfg = {"latent": args.latent, **tiles, **variant}
            out = work / f"variant-{args.latent}" / name
            _harness(lr_files[:1], sd_dir, s3_dir, args.arch, out, vseeds, **cfg)
            first = lr_files[0].name
            mx, share, _ = _compare(official / first, out / first)
            print(f"sensitivity {name:20s} max |diff| {mx:3d}/255  differing pixels {share:.3f}")
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--official-driver":
        _official(sys.argv[2:])
    else:
        sys.exit(main())
