"""``harness leaderboard build|validate|protocol``: a static leaderboard from result bundles."""

from __future__ import annotations

import argparse
import sys

import yaml

from harness.errors import HarnessError
from harness.leaderboard.bundle import Rejected, open_bundle
from harness.leaderboard.config import load_config
from harness.leaderboard.validate import NotForThisBoard, Submission, protocol_block, validate
from harness.progress import log

EPILOG = """\
A bundle is a finished run directory's files (manifest.json, summary.json, config.yaml,
per_image.csv; efficiency.json, efficiency.csv, report.md and figures/*.png when present), as a
folder or a .zip. Nothing in a bundle is executed or unpickled.

  harness leaderboard protocol runs/reference > protocol.yaml   # pin a reference run's protocol
  harness leaderboard validate submission.zip --config leaderboard.yaml
  harness leaderboard build --config leaderboard.yaml --out site runs/a runs/b submission.zip

validate exits 0 (accepted), 1 (rejected, with the reason) or 2 (bad input).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="build a static leaderboard site, validate submitted bundles",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["build", "validate", "protocol"])
    p.add_argument(
        "inputs", nargs="+", metavar="RUN_DIR", help="run directories or bundles (folder or .zip)"
    )
    p.add_argument(
        "--config",
        help="leaderboard.yaml: datasets, metrics, rank_by, version, "
        "protocol (default: everything found, this harness's versions)",
    )
    p.add_argument("--out", help="build: the site folder to write")


def _load(path: str, config) -> Submission:
    try:
        return validate(open_bundle(path), config.accepted, config.datasets)
    except Rejected as e:
        raise Rejected(f"{path}: rejected: {e}") from None


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.action == "validate":
        if len(args.inputs) != 1 or args.out:
            raise HarnessError("harness leaderboard validate takes one BUNDLE and no --out")
        try:
            sub = validate(open_bundle(args.inputs[0]), config.accepted, config.datasets)
        except Rejected as e:
            print(f"rejected: {args.inputs[0]}: {e}", file=sys.stderr)
            return 1
        pairs = ", ".join(f"{r['method']} on {r['dataset']}" for r in sub.summary["results"])
        print(
            f"accepted: {args.inputs[0]}: {pairs} (harness {sub.manifest['harness_version']}, "
            f"pyiqa {sub.summary['pyiqa_version']})"
        )
        for note in sub.notes:
            print(f"  note: {note}")
        return 0
    if args.action == "protocol":
        subs = [_load(p, config) for p in args.inputs]
        block = protocol_block(subs)
        print("# the protocol of: " + ", ".join(args.inputs))
        print(yaml.safe_dump({"protocol": block}, sort_keys=False, width=100), end="")
        return 0
    if not args.out:
        raise HarnessError("harness leaderboard build needs --out DIR")
    from harness.leaderboard.site import build

    subs: list[Submission] = []
    left_out: list[tuple[str, str]] = []
    for path in args.inputs:
        try:
            subs.append(validate(open_bundle(path), config.accepted, config.datasets))
        except NotForThisBoard as e:  # sound, but not for this board: the rest is built
            left_out.append((path, str(e)))
        except Rejected as e:
            raise Rejected(f"{path}: rejected: {e}") from None
    if not subs:
        reasons = "; ".join(f"{p}: {why}" for p, why in left_out)
        raise HarnessError(f"harness leaderboard build: no usable entries (left out: {reasons})")
    for path, why in left_out:
        log(f"left out: {path}: {why}")
    data = build(subs, config, args.out, left_out)
    n = sum(len(t["entries"]) for t in data["tables"])
    print(
        f"wrote {args.out}/index.html: {len(data['tables'])} tables, {n} entries, "
        f"ranked by {data['rank_by']}" + (f"; {len(left_out)} left out" if left_out else "")
    )
    return 0
