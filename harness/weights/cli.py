"""``harness weights list|check|fetch|import``: the weights manager on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError
from harness.weights.manager import fetch, install, status
from harness.weights.manifest import WeightEntry, load_manifest


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, check, fetch or import weight files and test sets")
    p.add_argument("action", choices=["list", "check", "fetch", "import", "fabricate"])
    p.add_argument("names", nargs="*",
                   help="entry ids or what uses them (lpips, adcsr, drealsr...), or 'all'; "
                        "for import, the folder first")  # fmt: skip
    p.add_argument("--mirror", help="fetch <mirror>/<file name> instead of the manifest URL")
    p.add_argument("--force", action="store_true", help="fetch even files already present")
    p.add_argument("--dry-run", action="store_true",
                   help="fetch: print what would be downloaded, download nothing")  # fmt: skip
    p.add_argument("--data-root", help="where test sets go (default $HARNESS_DATA or ./data)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="fabricate: tiny architectures where supported (method.arch=tiny)",
    )
    p.add_argument(
        "--manifest-out",
        help="fabricate: where to write the fabricated files' "
        "manifest (default: fabricated-manifest.json in the weights folder)",
    )


def select(entries: dict[str, WeightEntry], names: list[str]) -> list[WeightEntry]:
    if not names or names == ["all"]:
        return list(entries.values())
    out: list[WeightEntry] = []
    for n in names:
        hits = [e for e in entries.values() if n == e.id or n in e.used_by]
        if not hits:
            from harness.schema import suggest

            users = sorted({u for e in entries.values() for u in e.used_by})
            near = suggest(n, users + list(entries))
            raise HarnessError(
                f"weights: nothing named '{n}'{near} (ids or users: {', '.join(users)})"
            )
        out += [e for e in hits if e not in out]
    return out


def _weightless(entries: dict[str, WeightEntry], names: list[str]) -> list[str]:
    """The names that are metrics or methods needing no weight file (psnr, ssim, bicubic)."""
    from harness.methods import METHODS
    from harness.metrics import METRICS

    def free(n: str) -> bool:
        if any(n == e.id or n in e.used_by for e in entries.values()):
            return False
        if n in METRICS:
            return not METRICS.get(n).weights
        return n in METHODS and not METHODS.get(n).card.weights

    return [n for n in names if free(n)]


def run(args: argparse.Namespace) -> int:
    entries = load_manifest()
    names = list(args.names)
    free = _weightless(entries, names) if args.action != "import" else []
    if free:
        names = [n for n in names if n not in free]
        if names:
            select(entries, names)  # an unknown name fails before the note
        verb = "needs" if len(free) == 1 else "need"
        print(f"note: {', '.join(free)} {verb} no weight files")
        if not names:
            return 0
    if args.action == "import":
        if not names:
            raise HarnessError("harness weights import needs a folder: harness weights import DIR")
        folder = Path(names.pop(0)).expanduser()
        if not folder.is_dir():
            raise HarnessError(f"{folder}: folder not found")
        return _import(folder, select(entries, names), args.data_root)
    chosen = select(entries, names)
    if args.action == "fetch":
        return _fetch(chosen, args)
    if args.action == "fabricate":
        return _fabricate(chosen, args)
    bad = 0
    # protection: what keeps a file's pickled code from running (see manager.protection)
    wid = max([22] + [len(e.id) for e in chosen])
    wuse = max([22] + [len(",".join(e.used_by)) for e in chosen])
    print(f"{'state':10s} {'id':{wid}s} {'used by':{wuse}s} {'protection':18s} path")
    for e in chosen:
        st = status(e, args.data_root)
        bad += not st.usable
        detail = f"  ({st.detail})" if st.detail else ""
        print(f"{st.state:10s} {e.id:{wid}s} {','.join(e.used_by):{wuse}s} {st.protection:18s} "
              f"{st.path}{detail}")  # fmt: skip
    if args.action == "check" and bad:
        print(f"{bad} of {len(chosen)} files missing or wrong: `harness weights fetch NAME`")
        return 1
    return 0


def _fetch(chosen: list[WeightEntry], args: argparse.Namespace) -> int:
    from harness.progress import console

    for e in chosen:
        st = status(e, args.data_root)
        if st.state == "ok" or (st.state == "unverified" and not args.force):
            print(f"present    {e.id:22s} {st.path}")
            continue
        if args.dry_run:
            url = f"{args.mirror.rstrip('/')}/{e.name}" if args.mirror else e.url
            print(f"would get  {e.id:22s} {url} -> {st.path}")
            continue
        with console.status(f"fetching {e.name}") as spinner:

            def show(done: int, total: int | None, e=e) -> None:
                of = f" of {total / 2**20:.1f}" if total else ""
                spinner.update(f"fetching {e.name}: {done / 2**20:.1f}{of} MiB")

            path = fetch(e, args.data_root, mirror=args.mirror, on_progress=show)
        print(f"fetched    {e.id:22s} {path}")
    return 0


def files_in(folder: Path) -> list[Path]:
    """The regular files under ``folder``, sorted; symbolic links (to files or folders) are
    skipped and logged: an import copies what is in the folder, never what a link points at."""
    import os

    from harness.progress import log

    out = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            p = Path(top) / name
            if p.is_symlink():
                log(f"weights import: skipped {p} (a symbolic link)")
            elif name in files and p.is_file():
                out.append(p)
    return sorted(out)


def _import(folder: Path, chosen: list[WeightEntry], data_root: str | None) -> int:
    files = files_in(folder)
    found: dict[str, Path] = {}
    for p in files:
        found.setdefault(p.name, p)
    missing = 0
    for e in chosen:
        src = found.get(e.name)
        if "/" in e.name:  # a path inside a model folder (e.g. unet/...): match its tail
            src = next((p for p in files if p.as_posix().endswith("/" + e.name)), None)
        if src is None:
            missing += 1
            continue
        print(f"imported   {e.id:22s} {install(src, e, data_root)}")
    if missing == len(chosen):  # nothing imported: a wrong folder, not a partial import
        raise HarnessError(f"{folder}: none of the {len(chosen)} weight files is in this folder")
    if missing:
        print(f"{missing} of {len(chosen)} files not found in {folder}")
    return 0


def _fabricate(chosen: list[WeightEntry], args: argparse.Namespace) -> int:
    from harness.weights.fabricate import MAKERS, fabricate
    from harness.weights.manager import weights_root

    ids = [e.id for e in chosen if e.id in MAKERS]
    if not ids:
        raise HarnessError("weights fabricate: none of the selected files can be fabricated")
    out = Path(args.manifest_out or weights_root() / "fabricated-manifest.json").expanduser()
    print("RANDOM WEIGHTS: scores computed with them are meaningless (tests, benchmarks only)")
    for e in fabricate(ids, out, tiny=bool(getattr(args, "tiny", False))):
        print(f"fabricated {e.id:22s} {e.size} bytes")
    print(f"use them with: export HARNESS_WEIGHTS_MANIFEST={out}")
    return 0
