"""The ``harness`` command line: argparse in front of Hydra.

Each flag is a shorthand for a Hydra override (``--methods a,b`` is ``methods=[a,b]``), and any
``key=value`` argument is passed to Hydra as it is. User errors print one line and exit 2,
argparse's own included (``_Parser``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence

from harness.errors import HarnessError

DESCRIPTION = """\
Reproducible benchmarks for real-world image super-resolution: run methods over test sets,
score them with the papers' metrics (pyiqa settings), profile their cost, and print tables."""

EPILOG = """\
first steps:
  harness run                       bicubic and Lanczos on the embedded set (offline, seconds)
  harness list methods              also: harness list datasets, harness list metrics
  harness run --methods adcsr --datasets drealsr suite=paper
  harness run --datasets PATH       your own folder: PATH/LR and PATH/HR, or LR images only
  harness eval --sr DIR --hr DIR    score outputs you already have
  harness weights fetch NAME        weights of a metric or method (harness weights list)

`harness COMMAND --help` shows a command's options and key=value overrides.
"""

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

Names: `harness list methods`, `harness list datasets`, `harness list metrics`.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``harness run: error: ...``, and no
    abbreviated options (``--metric`` is not silently ``--metrics``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    _dry_run(p)


def _dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the options and print the resolved config; read and write nothing else",
    )


def _scale_out(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out (README: Scale out)")
    g.add_argument(
        "--launcher",
        metavar="NAME",
        help="one Hydra multirun job per (method, dataset, shard) through this launcher: "
        "joblib (local processes), submitit_slurm, slurm, slurm_score (configs/hydra/launcher), "
        "basic (one after the other); hydra.* overrides go to it; the jobs are then merged",
    )
    g.add_argument(
        "--shards", type=int, metavar="N", help="split each dataset into N shards by image name"
    )
    g.add_argument(
        "--stage",
        choices=["sr", "score", "all"],
        help="sr: SR images only (into the cache); score: score the cached images of a "
        "finished sr stage (same --out); all (default): both",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="upscale datasets with methods and score them",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--methods", help="comma-separated method names (default: bicubic,lanczos,realesrgan)"
    )
    run.add_argument(
        "--datasets",
        help="comma-separated dataset names or folder paths (PATH/LR + PATH/HR, or LR images; "
        "named after the folder) (default: embedded)",
    )
    _common(run)
    run.add_argument(
        "--cache-dir", help="SR cache folder (default $HARNESS_CACHE or ~/.cache/harness)"
    )
    _scale_out(run)
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
    ev.add_argument(
        "--lr", help="folder of LR inputs (optional; names and sizes checked: SR = scale x LR)"
    )
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
    pr.add_argument(
        "--runs",
        type=int,
        help="timed runs after warm-up (default: as many as fit in --max-time, at least "
        "profile.min_runs=3)",
    )
    pr.add_argument(
        "--max-time", type=float, help="seconds of timed runs per method when --runs is not given "
        "(default 1)",
    )  # fmt: skip
    pr.add_argument("--warmup", type=int, help="untimed warm-up runs (default 1)")
    pr.add_argument("--random-init", action="store_true", help="architecture only, no weights")
    pr.add_argument(
        "--fast",
        action="store_true",
        help="also time each method's fast mode (torch.compile, channels_last, bf16) in columns "
        "of its own, with the largest output difference in 8-bit levels",
    )
    pr.add_argument("--reference", help="method the ratios are computed against")
    pr.add_argument("--out", help="output directory")
    pr.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where models run")
    pr.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="model precision")
    _dry_run(pr)
    pr.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides")

    tr = sub.add_parser("train", help="train a method (AdcSR: stage=decoder|distill)")
    tr.add_argument("method", choices=["adcsr"])
    tr.add_argument(
        "--recipe",
        help="configs/train/<recipe>.yaml (default: <method>_tiny, a "
        "CPU smoke run; <method>_paper is the paper's recipe)",
    )
    tr.add_argument("--out", help="training directory (checkpoints, log, exported weights)")
    _dry_run(tr)
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
    rp.add_argument(
        "--no-published",
        action="store_true",
        help="leave out the comparison with the papers' printed numbers",
    )
    rp.add_argument(
        "--display-names",
        action="store_true",
        help="label rows with the methods' display names (Real-ESRGAN) instead of their ids",
    )
    rp.add_argument(
        "--allow-partial",
        action="store_true",
        help="report a run directory without summary.json (its efficiency alone), listing what "
        "was left out and why",
    )

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


def _dataset_entries(text: str | None) -> list[str]:
    """``--datasets`` as a quoted Hydra list: entries may be folder paths."""
    from harness.config import quote

    if text is None:
        return []
    return [f"datasets=[{','.join(quote(d) for d in _csv(text))}]"]


# Each command with a config: (args -> composed config), then the work. `--dry-run` stops
# after the first step and prints the config.
def config_run(args: argparse.Namespace):
    from harness.config import compose_run
    from harness.launch import check_launcher, split_overrides

    ov = _list_override("methods", args.methods) + _dataset_entries(args.datasets)
    ov += [f"{k}={getattr(args, k)}" for k in ("shards", "stage") if getattr(args, k) is not None]
    plain, hydra = split_overrides(args.overrides)
    if hydra and not args.launcher:
        raise HarnessError(f"override {hydra[0]}: hydra.* overrides need --launcher")
    args.overrides = plain
    cfg = compose_run(ov + _overrides(args, ["out", "cache-dir"]))
    args.overrides = plain + hydra
    if args.launcher:  # composed and validated by Hydra here, before any job starts
        check_launcher(cfg, args.launcher, hydra)
    return cfg


def cmd_run(args: argparse.Namespace) -> None:
    from harness.runner import run

    cfg = config_run(args)
    if args.launcher:
        from harness.launch import launch, out_dir, split_overrides
        from harness.store import check_out

        check_out(out_dir(cfg))  # before the plan is written and any job starts
        out = launch(cfg, args.launcher, split_overrides(args.overrides)[1])
    else:
        out = run(cfg)
        if cfg.stage == "sr":
            out = None
    if out is not None:
        _print_report(out)


def config_eval(args: argparse.Namespace):
    from harness.config import compose_eval

    return compose_eval(_sr_override(args.sr) + _overrides(args, ["hr", "lr", "name", "out"]))


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
    from harness.runner import evaluate

    _print_report(evaluate(config_eval(args)))


def config_profile(args: argparse.Namespace):
    from harness.config import compose_run, quote

    ov = _list_override("methods", args.methods) + ["datasets=[embedded]"]
    flags = ("lr_size", "runs", "warmup", "max_time")
    ov += [f"profile.{k}={getattr(args, k)}" for k in flags if getattr(args, k) is not None]
    if args.random_init:
        ov.append("profile.random_init=true")
    if args.fast:
        ov.append("profile.fast=true")
    if args.reference:
        ov.append(f"profile.reference={quote(args.reference)}")
    if args.out:
        ov.append(f"out={quote(args.out)}")
    ov += [f"{k}={getattr(args, k)}" for k in ("device", "dtype") if getattr(args, k)]
    return compose_run(ov + list(args.overrides))


def cmd_profile(args: argparse.Namespace) -> None:
    from harness.runner import profile

    _print_report(profile(config_profile(args)))


def config_train(args: argparse.Namespace):
    from harness.config import compose_train, quote

    recipe = args.recipe or f"{args.method}_tiny"
    ov = list(args.overrides) + ([f"out={quote(args.out)}"] if args.out else [])
    return compose_train(recipe, ov)


def cmd_train(args: argparse.Namespace) -> None:
    from harness.methods.adcsr.train import train
    from harness.progress import log

    recipe = args.recipe or f"{args.method}_tiny"
    cfg = config_train(args)
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
        published=not args.no_published,
        display_names=args.display_names,
        allow_partial=args.allow_partial,
    )
    text, out = make_report(req)
    for path in req.written:
        log(f"wrote {path}")
    print(text)
    print(f"results: {out}")


def _columns(rows: list[list[str]], indent: int = 2) -> list[str]:
    """Rows of cells as aligned columns; the last cell wraps under itself at the terminal."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    left = sum(widths) + indent * len(widths)
    width = max(40, shutil.get_terminal_size((100, 24)).columns - left)
    out = []
    for r in rows:
        head = "".join(c.ljust(w + indent) for c, w in zip(r, widths))
        hang = "  " if r[-1].startswith("- ") else ""  # bullets wrap under their text
        lines = textwrap.wrap(r[-1], width, subsequent_indent=hang, break_on_hyphens=False) or [""]
        out += [head + lines[0]] + [" " * left + line for line in lines[1:]]
    return out


def _comment(path) -> str:
    """The leading comment block of a YAML file, as one paragraph."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def cmd_merge(args: argparse.Namespace) -> None:
    from harness.merge import merge

    _print_report(merge(args.run_dir, args.out))


def cmd_list(args: argparse.Namespace) -> None:
    from harness.config import group_options

    if args.what == "methods":
        from harness.methods import METHODS

        rows = [["NAME", "TYPE", "SCALE", "STEPS",
                 "METHOD (paper; deviations from the official code)"]]  # fmt: skip
        for name in METHODS:
            card = METHODS.get(name).card
            rows.append([name, card.family or "-", f"x{card.scale}", str(card.steps or "-"),
                         f"{card.display_name}: {card.paper}"])  # fmt: skip
            rows += [["", "", "", "", f"- {d}"] for d in card.deviations]
        print("\n".join(_columns(rows)))
    elif args.what == "datasets":
        from omegaconf import OmegaConf

        from harness.config import CONFIG_DIR

        rows = [["NAME", "TYPE", "SCALE", "DESCRIPTION"]]
        for name in group_options("dataset"):
            path = CONFIG_DIR / "dataset" / f"{name}.yaml"
            node = OmegaConf.load(path)
            rows.append([name, str(node.get("type", "paired")), f"x{node.get('scale', '?')}",
                         _comment(path)])  # fmt: skip
        print("\n".join(_columns(rows)))
        print("\nOr a folder of your own: --datasets PATH (PATH/LR and PATH/HR, or LR images).")
    else:
        from harness.metrics import METRICS

        rows = [["NAME", "TYPE", "BETTER", "WHAT"]]
        for name in METRICS:
            s = METRICS.get(name)
            rows.append([name, s.reference, "lower" if s.lower_better else "higher", s.doc])
        print("\n".join(_columns(rows)))


CONFIGS = {"run": config_run, "eval": config_eval, "profile": config_profile,
           "train": config_train}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    from harness.weights import configure_environment

    configure_environment()  # before pyiqa/timm are imported: they read these at import time
    from harness.weights.guard import guarded

    with guarded():  # no library unpickles a file itself while a command runs
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options that come after a positional (`train adcsr --out D
    # k=v`); argparse leaves those over, anything else left over is a real error
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        prog = f"harness {args.command}"
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(stray or extra)} "
                       f"(see {prog} --help)\n")  # fmt: skip
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
        if getattr(args, "dry_run", False) and args.command in CONFIGS:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(CONFIGS[args.command](args)), end="")
            return 0
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
