"""``harness gate``: compare a finished run with a committed baseline (exit 1 on a regression)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from harness.errors import HarnessError
from harness.gate import baseline as bl
from harness.gate.compare import compare, failed, render_markdown, render_text
from harness.gate.runview import RunView

DEFAULT_BASELINE = "gate-baseline.json"

EPILOG = """\
Exit status: 0 when nothing regressed, 1 on a regression, 2 on bad input.

Gated: metric means (absolute tolerance per metric), metric settings and dataset hashes,
parameters and MACs (exact), median latency (relative; only when device and dtype match the
baseline's, otherwise skipped). The baseline format is in ARCHITECTURE.md.

  harness run --out runs/pr && harness gate --baseline gate-baseline.json runs/pr
  harness gate --update --baseline gate-baseline.json runs/main   # accept runs/main
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gate",
        help="compare a run with a baseline; exit 1 on a regression",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        help="finished run directory (default: the baseline's own run, runs/<config hash>)",
    )
    p.add_argument(
        "--baseline", default=DEFAULT_BASELINE, help=f"baseline file (default {DEFAULT_BASELINE})"
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="write the baseline from the run instead (keeps its tolerances)",
    )
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=ABS",
        help="with --update: absolute tolerance of a metric, e.g. psnr=0.01",
    )
    p.add_argument(
        "--latency-tolerance",
        metavar="FRACTION|none",
        help="with --update: relative latency tolerance, e.g. 0.1, or none",
    )
    p.add_argument("--markdown", metavar="FILE", help="also write the diff as Markdown")


def _run_dir(args: argparse.Namespace, base: dict | None) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    src = (base or {}).get("source", {})
    chash, command = src.get("config_hash"), src.get("command")
    if not chash or command not in ("run", "eval"):
        raise HarnessError("harness gate: give RUN_DIR (the baseline does not name its run)")
    return Path("runs") / (f"eval-{chash[:12]}" if command == "eval" else chash[:12])


def _tolerances(args: argparse.Namespace) -> tuple[dict[str, float], float | None | str]:
    metric: dict[str, float] = {}
    for item in args.tolerance:
        name, _, value = item.partition("=")
        try:
            tol = float(value)
        except ValueError:
            tol = -1.0
        if not name or not math.isfinite(tol) or tol < 0:
            raise HarnessError(f"--tolerance {item!r}: expected METRIC=NUMBER with NUMBER >= 0")
        metric[name] = tol
    latency: float | None | str = "keep"
    if args.latency_tolerance is not None:
        text = args.latency_tolerance.strip().lower()
        if text in ("none", "null", "off"):
            latency = None
        else:
            try:
                latency = float(text)
            except ValueError:
                latency = -1.0
            if not math.isfinite(latency) or latency < 0:
                raise HarnessError(
                    f"--latency-tolerance {args.latency_tolerance!r}: a fraction >= 0, or none"
                )
    return metric, latency


def run(args: argparse.Namespace) -> int:
    metric_tol, latency_tol = _tolerances(args)
    if not args.update and (metric_tol or latency_tol != "keep"):
        raise HarnessError(
            "--tolerance/--latency-tolerance change a baseline: use them with --update"
        )
    path = Path(args.baseline)
    if args.update:
        old = bl.read(path) if path.exists() else None
        view = RunView.open(_run_dir(args, old))
        if old is not None:
            checks = compare(old, view)
            print(render_text(checks, f"changes against the previous {path}:"), end="")
        new = bl.from_run(view, old["tolerances"] if old else None, metric_tol, latency_tol)
        bl.write(path, new)
        print(f"wrote {path} from {view.path}")
        return 0
    base = bl.read(path)
    view = RunView.open(_run_dir(args, base))
    checks = compare(base, view)
    header = f"gate: {view.path} against {path} ({bl.SCHEMA})"
    print(render_text(checks, header), end="")
    if args.markdown:
        from harness.imageio import write_text

        write_text(args.markdown, render_markdown(checks, header))
    return 1 if failed(checks) else 0
