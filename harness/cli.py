"""The ``harness`` command line: argparse in front of Hydra.

Each flag is a shorthand for a Hydra override (``--methods a,b`` is ``methods=[a,b]``), and any
``key=value`` argument is passed to Hydra as it is. User errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.errors import HarnessError

RUN_EPILOG = """\
Hydra overrides (after the options, any number):
  key=value                 any key of configs/run.yaml, e.g. seed=1 data_root=/data
  method.KEY=VALUE          set KEY for every selected method, e.g. method.batch_size=4
  method.NAME.KEY=VALUE     set KEY for one method
  dataset.KEY=VALUE         likewise for datasets, e.g. dataset.root=/data/DRealSR
  suite=NAME                a metric list from configs/suite/

The run directory (default runs/<config hash>) gets config.yaml, manifest.json, rows.jsonl,
per_image.csv, summary.json, efficiency.csv/json (profile.enabled=true; profile.lr_size,
profile.runs, profile.warmup, profile.reference) and report.md. Rerunning the same command
resumes: cached SR images and scored images are not computed again (--force redoes both).
`harness report DIR...` prints a finished run's tables again and writes them as md/tex/csv
with statistics and figures (several directories merge into one table per dataset).

Names: `harness list methods|datasets|metrics`.
"""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _list_override(key: str, text: str | None) -> list[str]:
    if text is None:
        return []
    return [f"{key}=[{','.join(_csv(text))}]"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", help="comma-separated metric names (default: psnr,ssim)")
    p.add_argument("--out", help="run directory to write (resumed when it exists)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where models run")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="model precision")
    p.add_argument("--force", action="store_true", help="recompute instead of resuming")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a metric that cannot be computed is an error, not a missing value",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="upscale datasets with methods and score them",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--methods", help="comma-separated method names (default: bicubic,lanczos,realesrgan)"
    )
    run.add_argument("--datasets", help="comma-separated dataset names (default: embedded)")
    _common(run)
    run.add_argument(
        "--cache-dir", help="SR cache folder (default $HARNESS_CACHE or ~/.cache/harness)"
    )
    run.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")

    ev = sub.add_parser("eval", help="score an existing folder of SR outputs against HR")
    ev.add_argument(
        "--sr",
        required=True,
        action="append",
        metavar="[NAME=]DIR",
        help="folder of SR outputs; repeat as NAME=DIR to score several methods in one run",
    )
    ev.add_argument("--hr", required=True, help="folder of HR references (same file stems)")
    ev.add_argument("--lr", help="folder of LR inputs (optional; names are checked)")
    ev.add_argument("--name", help="method name for the results (default: the SR folder name)")
    _common(ev)
    ev.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")

    pr = sub.add_parser(
        "profile",
        help="parameters, MACs, latency and memory of methods",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument("--methods", help="comma-separated method names")
    pr.add_argument("--lr-size", type=int, help="square LR input side (default 128)")
    pr.add_argument("--runs", type=int, help="timed runs after warm-up (default 10)")
    pr.add_argument("--warmup", type=int, help="untimed warm-up runs (default 3)")
    pr.add_argument("--random-init", action="store_true", help="architecture only, no weights")
    pr.add_argument("--reference", help="method the ratios are computed against")
    pr.add_argument("--out", help="output directory")
    pr.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where models run")
    pr.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="model precision")
    pr.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")

    tr = sub.add_parser("train", help="train a method (AdcSR: stage=decoder|distill)")
    tr.add_argument("method", choices=["adcsr"])
    tr.add_argument(
        "--recipe",
        help="configs/train/<recipe>.yaml (default: <method>_tiny, a "
        "CPU smoke run; <method>_paper is the paper's recipe)",
    )
    tr.add_argument("--out", help="training directory (checkpoints, log, exported weights)")
    tr.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="Hydra overrides, e.g. stage=distill distill.half_decoder=PATH",
    )

    from harness.weights.cli import add_parser as add_weights_parser

    add_weights_parser(sub)

    from harness.gate.cli import add_parser as add_gate_parser
    from harness.leaderboard.cli import add_parser as add_leaderboard_parser

    add_gate_parser(sub)
    add_leaderboard_parser(sub)

    rp = sub.add_parser(
        "report",
        help="tables (Markdown, LaTeX, CSV), statistics and figures from result directories",
    )
    rp.add_argument("run_dir", nargs="+", help="directories written by harness run, eval, profile")
    rp.add_argument("--out", help="where to write (default: the one directory given)")
    rp.add_argument("--format", default="md,tex,csv", help="any of md,tex,csv (default: all)")
    rp.add_argument("--ci", action="store_true", help="95%% confidence intervals in md and tex")
    rp.add_argument(
        "--allow-drift",
        action="store_true",
        help="show numbers computed under different protocols side by side, unranked",
    )
    rp.add_argument(
        "--figures", default="", help="any of pareto,dist,compare or all (default: none)"
    )
    rp.add_argument("--images", help="compare these images (default: where methods disagree most)")
    rp.add_argument("--n-compare", type=int, default=2, help="images to compare (default 2)")
    rp.add_argument("--crop", help="X,Y,SIZE of the compared crop in HR pixels (default: auto)")
    rp.add_argument("--seed", type=int, default=0, help="bootstrap and jitter seed (default 0)")
    rp.add_argument("--alpha", type=float, default=0.05, help="test level (default 0.05)")

    mg = sub.add_parser(
        "merge",
        help="merge the finished parts (shards, jobs) of one run into one run directory",
        description="Check that the runs are parts of one run (same config except the part, "
        "same protocol, every image exactly once), then write the merged run.",
    )
    mg.add_argument("run_dir", nargs="+", help="run directories of the jobs (harness run)")
    mg.add_argument("--out", required=True, help="the merged run directory to write")

    ls = sub.add_parser("list", help="list registered methods, datasets or metrics")
    ls.add_argument("what", choices=["methods", "datasets", "metrics"])
    return parser


def _overrides(args: argparse.Namespace, paths: Sequence[str]) -> list[str]:
    from harness.config import quote

    out: list[str] = []
    out += _list_override("metrics", args.metrics)
    for key in paths:
        value = getattr(args, key.replace("-", "_"), None)
        if value is not None:
            out.append(f"{key.replace('-', '_')}={quote(str(value))}")
    for key in ("device", "dtype"):
        if getattr(args, key):
            out.append(f"{key}={getattr(args, key)}")
    if args.force:
        out.append("force=true")
    if args.strict:
        out.append("strict=true")
    return out + list(args.overrides)


def _print_report(out_dir) -> None:
    from harness.reports import Request, make_report

    text, out = make_report(Request([out_dir], formats=("md", "csv")))
    print(text)
    print(f"results: {out}")


def cmd_run(args: argparse.Namespace) -> None:
    from harness.config import compose_run
    from harness.runner import run

    ov = _list_override("methods", args.methods) + _list_override("datasets", args.datasets)
    cfg = compose_run(ov + _overrides(args, ["out", "cache-dir"]))
    _print_report(run(cfg))


def _sr_override(values: Sequence[str]) -> list[str]:
    """``--sr DIR`` (one folder) or ``--sr NAME=DIR ...`` (a method per folder) as an override."""
    import re
    from pathlib import Path

    from harness.config import quote

    named = [v for v in values if "=" in v and not Path(v).exists()]
    if not named:
        if len(values) > 1:
            raise HarnessError("--sr: several folders need names (--sr NAME=DIR ...)")
        return [f"sr={quote(values[0])}"]
    if len(named) < len(values):
        raise HarnessError("--sr: name every folder (NAME=DIR) when giving several")
    entries: dict[str, str] = {}
    for v in named:
        name, _, folder = v.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+-]*", name):
            raise HarnessError(f"--sr {v}: method names use letters, digits, _ + - only")
        if name in entries:
            raise HarnessError(f"--sr: method '{name}' is given twice")
        entries[name] = folder
    return ["sr={" + ",".join(f"{k}:{quote(d)}" for k, d in entries.items()) + "}"]


def cmd_eval(args: argparse.Namespace) -> None:
    from harness.config import compose_eval
    from harness.runner import evaluate

    cfg = compose_eval(_sr_override(args.sr) + _overrides(args, ["hr", "lr", "name", "out"]))
    _print_report(evaluate(cfg))


def cmd_profile(args: argparse.Namespace) -> None:
    from harness.config import compose_run, quote
    from harness.runner import profile

    ov = _list_override("methods", args.methods) + ["datasets=[embedded]"]
    for flag, key in (("lr_size", "lr_size"), ("runs", "runs"), ("warmup", "warmup")):
        if getattr(args, flag) is not None:
            ov.append(f"profile.{key}={getattr(args, flag)}")
    if args.random_init:
        ov.append("profile.random_init=true")
    if args.reference:
        ov.append(f"profile.reference={quote(args.reference)}")
    if args.out:
        ov.append(f"out={quote(args.out)}")
    ov += [f"{k}={getattr(args, k)}" for k in ("device", "dtype") if getattr(args, k)]
    _print_report(profile(compose_run(ov + list(args.overrides))))


def cmd_train(args: argparse.Namespace) -> None:
    from harness.config import compose_train, quote
    from harness.methods.adcsr.train import train
    from harness.progress import log

    recipe = args.recipe or f"{args.method}_tiny"
    ov = list(args.overrides) + ([f"out={quote(args.out)}"] if args.out else [])
    cfg = compose_train(recipe, ov)
    log(f"training {args.method} stage={cfg.stage} with recipe {recipe} into {cfg.out}")
    result = train(cfg)
    last = result["rows"][-1] if result["rows"] else {}
    print(
        f"done: step {last.get('step', '-')}, skipped steps {result['skipped']}, "
        f"weights {result['weights']}"
    )


def cmd_report(args: argparse.Namespace) -> None:
    from harness.progress import log
    from harness.reports import FIGURES, Request, make_report

    figures = _csv(args.figures)
    crop = None
    if args.crop:
        try:
            x, y, size = (int(v) for v in _csv(args.crop))
        except ValueError:
            raise HarnessError(f"--crop {args.crop}: expected X,Y,SIZE (integers)") from None
        crop = (x, y, size)
    req = Request(
        paths=args.run_dir,
        out=args.out,
        formats=tuple(_csv(args.format)),
        ci=args.ci,
        allow_drift=args.allow_drift,
        figures=FIGURES if "all" in figures else tuple(figures),
        images=tuple(_csv(args.images or "")),
        n_compare=args.n_compare,
        crop=crop,
        seed=args.seed,
        alpha=args.alpha,
    )
    text, out = make_report(req)
    for path in req.written:
        log(f"wrote {path}")
    print(text)
    print(f"results: {out}")


def cmd_merge(args: argparse.Namespace) -> None:
    from harness.merge import merge

    _print_report(merge(args.run_dir, args.out))


def cmd_list(args: argparse.Namespace) -> None:
    from harness.config import group_options

    if args.what == "methods":
        from harness.methods import METHODS

        for name in METHODS:
            card = METHODS.get(name).card
            print(f"{name:12s} x{card.scale}  {card.display_name}: {card.paper}")
    elif args.what == "datasets":
        from omegaconf import OmegaConf

        from harness.config import CONFIG_DIR

        for name in group_options("dataset"):
            first = (CONFIG_DIR / "dataset" / f"{name}.yaml").read_text().splitlines()[0]
            kind = OmegaConf.load(CONFIG_DIR / "dataset" / f"{name}.yaml").get("type")
            print(f"{name:12s} {kind:9s} {first.lstrip('# ')}")
    else:
        from harness.metrics import METRICS

        for name in METRICS:
            s = METRICS.get(name)
            arrow = "lower" if s.lower_better else "higher"
            print(f"{name:10s} {s.reference}  {arrow} is better  {s.doc}")


def main(argv: Sequence[str] | None = None) -> int:
    from harness.weights import configure_environment

    configure_environment()  # before pyiqa/timm are imported: they read these at import time
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options that come after a positional (`train adcsr --out D
    # k=v`); argparse leaves those over, anything else left over is a real error
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        for o in getattr(args, "overrides", []):
            if "=" not in o:
                raise HarnessError(f"argument '{o}': overrides look like key=value")
        if args.command == "weights":
            from harness.weights.cli import run as weights

            return weights(args)
        if args.command == "gate":
            from harness.gate.cli import run as gate

            return gate(args)
        if args.command == "leaderboard":
            from harness.leaderboard.cli import run as leaderboard

            return leaderboard(args)
        commands = {"run": cmd_run, "eval": cmd_eval, "profile": cmd_profile, "list": cmd_list,
                    "train": cmd_train, "report": cmd_report, "merge": cmd_merge}  # fmt: skip
        commands[args.command](args)
    except HarnessError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
