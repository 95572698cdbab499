"""The runner: dataset -> method -> cached SR images -> metrics -> results store.

``run`` drives methods, datasets and metrics for ``harness run``; ``evaluate`` scores a folder of
existing outputs for ``harness eval``. Both validate every input before any work starts, journal
each scored image, and write the final tables atomically from the journal (see ``store``).
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from harness.cache import SRCache
from harness.datasets import ImageDataset, build_dataset
from harness.datasets.base import (
    Conversions,
    describe_conversions,
    match_by_stem,
    note_conversions,
    require_scale,
)
from harness.envinfo import environment, package_versions, resolve_device
from harness.errors import HarnessError
from harness.evaluate import Item, check_sizes, score_items
from harness.hashing import config_hash, sha256_file, sha256_json
from harness.imageio import (
    check_folder,
    from_tensor,
    image_info,
    image_size,
    list_images,
    read_rgb,
    to_tensor,
    write_png,
    write_text,
)
from harness.methods import DTYPES, METHODS, SRMethod
from harness.metrics import MetricSuite, Score
from harness.profiler import load_measured
from harness.progress import log, progress_bar
from harness.shards import check_part, dataset_entry, is_partial, profiles_here, selected, shard_of
from harness.store import Row, RunStore, check_out, summarise


@dataclass
class Group:
    """One (method, dataset) cell of the results: the images to score and their SR key."""

    method: str
    dataset: str
    items: list[Item]
    sr_key: str
    metrics: list[str]  # the metrics that apply (FR ones only with HR)
    sr_dir: Path | None = None  # folders for set-level metrics (FID)
    hr_dir: Path | None = None


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise HarnessError(f"option --dtype: '{name}' is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


def image_seed(seed: int, dataset: str, image: str) -> int:
    """Per-image seed: results never depend on file order or batch composition."""
    digest = hashlib.sha256(f"{seed}/{dataset}/{image}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------- SR stage


def sr_key_inputs(
    method: SRMethod,
    weights: str,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    ds: ImageDataset,
) -> dict[str, Any]:
    """What the SR cache key hashes. The run seed counts only for stochastic methods: a
    deterministic method's outputs are shared across seeds."""
    return {
        "method": method.card.name,
        "adapter_version": method.version,
        "config": method.cfg,
        "weights": weights,
        "signature": method.output_signature(device, dtype),
        "seed": seed if method.card.stochastic else None,
        "dataset": ds.manifest_hash(),
    }


def sr_stage(
    method: SRMethod,
    ds: ImageDataset,
    cache: SRCache,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    force: bool,
) -> None:
    """Upscale every LR image of ``ds`` that is not cached yet (all of them with ``force``);
    ``method`` is loaded first unless it already is, as this run needs it."""
    name = method.card.name
    todo = [s for s in ds if force or not cache.has(s.name)]
    cached = len(ds) - len(todo)
    why = " (--force)" if force and cached == 0 else ""
    log(f"{name} on {ds.name}: {cached} SR images reused from cache, {len(todo)} to compute{why}")
    if not todo:
        return
    if method.loaded_as != (device, dtype, False):
        load_measured(method, device, dtype)  # records the memory baseline for the profiler
    batch_size = max(1, int(method.cfg.get("batch_size", 1)))
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def decode(batch: list) -> list[torch.Tensor]:
        return [to_tensor(read_rgb(s.lr)) for s in batch]

    # Decoding the next batch and PNG-encoding finished images run on I/O threads while the
    # method computes (zlib and the decoders release the GIL): on a GPU a 128->512 PNG encode
    # costs about as much as a one-step method's forward. Writes are atomic (temporary name,
    # then rename), so a killed run leaves only whole cached images.
    with (
        progress_bar(f"{name} on {ds.name}", total=len(todo)) as advance,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="sr-io") as pool,
    ):
        pending: list[Future] = []
        ahead = pool.submit(decode, batches[0])
        for i, batch in enumerate(batches):
            lrs = ahead.result()
            if i + 1 < len(batches):
                ahead = pool.submit(decode, batches[i + 1])
            if len({t.shape for t in lrs}) > 1:  # mixed sizes: one image at a time
                parts = [([s], [t]) for s, t in zip(batch, lrs)]
            else:
                parts = [(batch, lrs)]
            for samples, tensors in parts:
                images = _upscale(method, ds, samples, torch.cat(tensors).to(device), seed)
                info = method.last_info()  # per-image facts (prompts), kept with the cache
                if info:
                    cache.record_info({s.name: facts for s, facts in zip(samples, info)})
                for s, img in zip(samples, images):
                    pending.append(pool.submit(write_png, cache.path(s.name), img))
                    advance()
            while len(pending) > 2 * batch_size + 2:  # bounded: finished images wait in memory
                pending.pop(0).result()
        for f in pending:
            f.result()  # a failed write is an error of the run


def _release(methods: list[SRMethod], i: int) -> None:
    """Free ``methods[i]``'s model, if it was loaded: the list gets a fresh, unloaded instance
    in its place (the only reference the run keeps), and the memory is returned now."""
    if methods[i].loaded_as is None:
        return
    methods[i] = type(methods[i])(methods[i].cfg)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log(f"{methods[i].card.name}: released")


def _upscale(method, ds, group, lr: torch.Tensor, seed: int) -> list:
    """The 8-bit SR images (H, W, 3 uint8 arrays) of one batch."""
    seeds = [image_seed(seed, ds.name, s.name) for s in group]
    torch.manual_seed(seeds[0])  # for adapters that still draw from the global generator
    with torch.inference_mode():
        sr = method.upscale_seeded(lr, seeds)  # stochastic methods: one seed per image
    want = (lr.shape[0], 3, lr.shape[2] * method.scale, lr.shape[3] * method.scale)
    if tuple(sr.shape) != want:
        raise RuntimeError(f"{method.card.name} returned {tuple(sr.shape)}, expected {want}")
    return [from_tensor(img) for img in sr]


# ----------------------------------------------------------------------------- metric stage


def _score_groups(
    store: RunStore,
    suite: MetricSuite,
    groups: Sequence[Group],
    force: bool,
    batch_size: int,
    workers: int = 0,
) -> tuple[list[Row], dict[tuple[str, str], Score]]:
    if force:
        store.reset_journal()
    done = store.read_journal()
    per_image = set(suite.image_names)
    for g in groups:
        todo = []
        wanted = set(g.metrics) & per_image
        for it in g.items:
            row = done.get((g.method, g.dataset, it.image))
            if row is None or row.sr_key != g.sr_key or not wanted <= set(row.values):
                todo.append(it)
        if len(todo) < len(g.items):
            log(
                f"{g.method} on {g.dataset}: {len(g.items) - len(todo)} images already scored "
                f"in {store.journal}, {len(todo)} to score"
            )

        def journal(item: Item, score: Score, g: Group = g) -> None:
            row = Row(g.method, g.dataset, item.image, g.sr_key, score.values, score.missing)
            store.append([row])
            done[row.key] = row

        label = f"metrics {g.method} on {g.dataset}"
        score_items(suite, todo, journal, label, batch_size, workers or None)
    rows = [done[(g.method, g.dataset, it.image)] for g in groups for it in g.items]
    return rows, _score_sets(store, suite, groups, force)


def _score_sets(store: RunStore, suite: MetricSuite, groups: Sequence[Group], force: bool):
    """Set-level metrics (FID) per group, cached in ``set_scores.json`` by SR key."""
    wanted = [s.name for s in suite.specs if s.per == "set"]
    saved = {} if force else store.read_set_scores()
    out: dict[tuple[str, str], Score] = {}
    for g in groups:
        names = [n for n in wanted if n in g.metrics]
        if not names:
            continue
        if g.sr_dir is None:  # a shard: a set-level value needs the whole SR folder
            why = (
                "set-level metric of a shard: merge the shards (harness merge), then score "
                "the merged run (harness run --stage score --out MERGED)"
            )
            out[(g.method, g.dataset)] = Score(dict.fromkeys(names), dict.fromkeys(names, why))
            log(f"{g.method} on {g.dataset}: {', '.join(names)} skipped ({why})")
            continue
        key = f"{g.method}|{g.dataset}|{g.sr_key}"
        if key in saved and set(names) <= set(saved[key]["values"]):
            out[(g.method, g.dataset)] = Score(saved[key]["values"], saved[key]["missing"])
            log(f"{g.method} on {g.dataset}: {', '.join(names)} reused from set_scores.json")
            continue
        log(f"{g.method} on {g.dataset}: computing {', '.join(names)} (SR folder vs HR folder)")
        score = suite.score_sets(g.sr_dir, g.hr_dir)
        out[(g.method, g.dataset)] = score
        saved[key] = {"values": score.values, "missing": score.missing}
        store.write_set_scores(saved)
    return out


def _weight_digests(ids: Sequence[str]) -> dict[str, str | None]:
    """sha256 of each weight file in place (null when absent): reports refuse to rank numbers
    computed with different files under the same ids (random test weights, another release)."""
    if not ids:
        return {}
    from harness.checkpoints import file_digest
    from harness.weights import load_manifest, path_of

    manifest = load_manifest()
    out: dict[str, str | None] = {}
    for w in ids:
        path = path_of(manifest[w]) if w in manifest else None
        out[w] = file_digest(path) if path is not None and path.is_file() else None
    return out


def _finish(
    store: RunStore,
    suite: MetricSuite,
    groups: Sequence[Group],
    rows: list[Row],
    sets: dict[tuple[str, str], Score],
    config_hash_: str,
    extra: dict[str, Any],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Write the final tables, then mark the manifest finished (the run is complete)."""
    store.write_per_image(rows, suite.image_names)
    specs = [s.to_dict() | {"weights_sha256": _weight_digests(s.weights)} for s in suite.specs]
    applicable = {g.dataset: g.metrics for g in groups}
    summary = {
        "schema": "harness.summary/1",
        "config_hash": config_hash_,
        "metrics": specs,
        "pyiqa_version": package_versions()["pyiqa"],
        "unavailable_metrics": suite.unavailable,
        "metrics_autocast": suite.autocast,
        "results": summarise(
            rows,
            [(g.method, g.dataset, len(g.items)) for g in groups],
            specs,
            applicable,
            {k: (v.values, v.missing) for k, v in sets.items()},
        ),
    } | extra
    store.write_summary(summary)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    store.write_manifest(manifest)
    return summary


# ----------------------------------------------------------------------------- commands


def run(cfg: DictConfig) -> Path:
    """Execute a composed ``run`` config; returns the run directory."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    device, dtype = resolve_device(str(cfg.device)), resolve_dtype(str(cfg.dtype))
    cache_dir = Path(str(cfg.cache_dir)).expanduser()
    chash = config_hash(plain)
    out = Path(str(cfg.out)) if cfg.out else Path("runs") / chash[:12]
    check_out(out)  # a file, a folder of the user's, nowhere to write: refused before any work
    check_part(plain)
    stage = str(plain.get("stage", "all"))
    method_names, dataset_names = selected(plain)  # this job's part (all of it by default)

    # Validate everything before any work: options, names, folders, files, weights' presence.
    methods: list[SRMethod] = [METHODS.get(m)(plain["method"][m]) for m in method_names]
    _check_configs(methods)
    datasets = [
        shard_of(build_dataset(plain["dataset"][d], cache_dir), plain) for d in dataset_names
    ]
    for ds in datasets:  # an image too small for a metric or a method: refused before any work
        check_sizes(cfg.metrics, ds.sr_sizes(), ds.has_hr)
        if stage != "score":
            _check_lr_sizes(methods, ds)
    store = RunStore(out)
    recorded = None
    if stage == "score":  # the SR stage recorded its cache keys; its weights need not be here
        recorded = sr_record(store, chash)
        digests = {m.card.name: recorded["methods"][m.card.name]["weights_digest"] for m in methods}
    else:
        digests = {m.card.name: m.weights_digest() for m in methods}  # fails fast on no weights
    suite = MetricSuite(list(cfg.metrics), device, bool(cfg.metrics_autocast), bool(cfg.strict))
    for name, why in suite.unavailable.items():
        log(f"metric {name} is missing from this run: {why}")

    for ds in datasets:
        _warn_conversions(ds.name, ds.conversions, len(ds) * (2 if ds.has_hr else 1))
    _check_scales(methods, datasets)
    # From here ``methods`` holds the only references to the methods: ``_run`` releases them.
    store.claim(OmegaConf.to_yaml(cfg, resolve=True), chash)
    try:
        _run(cfg, store, datasets, methods, digests, suite, device, dtype, cache_dir, chash,
             recorded)  # fmt: skip
    except BaseException:
        # Whatever failed (an unreadable weights file found at load, a crash, Ctrl-C): a
        # directory this run created is removed while nothing is scored in it.
        store.discard()
        raise
    return out


def _check_configs(methods: Sequence[SRMethod]) -> None:
    for m in methods:
        m.validate()


def _check_scales(methods: Sequence[SRMethod], datasets: Sequence[ImageDataset]) -> None:
    for m in methods:
        for ds in datasets:
            if m.scale != ds.scale:
                raise HarnessError(
                    f"method '{m.card.name}' is x{m.scale} but dataset '{ds.name}' is x{ds.scale}"
                )


def _warn_conversions(dataset: str, conversions: Conversions, n_files: int) -> None:
    if conversions:
        log(f"warning: {dataset}: {describe_conversions(conversions, n_files)}; grayscale "
            "is replicated to RGB, alpha dropped, 16-bit keeps the high byte")  # fmt: skip


def _run(
    cfg: DictConfig,
    store: RunStore,
    datasets: Sequence[ImageDataset],
    methods: list[SRMethod],
    digests: dict[str, str],
    suite: MetricSuite,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path,
    chash: str,
    recorded: dict[str, Any] | None = None,
) -> None:
    """The work of ``run`` once everything is validated. ``recorded``: the SR stage's manifest
    (``stage=score``). A method is released after its last dataset: replaced in ``methods`` by
    a fresh, unloaded instance, so no reference keeps its model alive."""
    force, seed = bool(cfg.force), int(cfg.seed)
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    stage, out = str(plain.get("stage", "all")), store.path
    method_names, dataset_names = selected(plain)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest: dict[str, Any] = {
        "command": "run",
        "config_hash": chash,
        "seed": seed,
        "dtype": str(cfg.dtype),
        "started": started,
        "finished": None,
        "environment": environment(device),
        "datasets": {},
        "methods": {},
    }
    if stage == "score":  # keep the SR stage's record: a killed scoring job can be rerun
        kept = ("methods", "sr_finished", "merged_from")
        manifest |= {k: recorded[k] for k in kept if k in recorded}
        manifest["sr_environment"] = recorded.get("sr_environment", recorded.get("environment"))
    store.write_manifest(manifest)

    groups: list[Group] = []
    caches: dict[tuple[str, str], SRCache] = {}
    image_info: list[dict[str, Any]] = []  # per-image facts from the methods (prompts.jsonl)
    for ds in datasets:
        manifest["datasets"][ds.name] = {
            "manifest_hash": ds.manifest_hash(),
            "n_images": len(ds),
            "scale": ds.scale,
            "lr_dir": str(ds.samples[0].lr.parent.resolve()) if len(ds) else None,
            "hr_dir": str(ds.samples[0].hr.parent.resolve()) if ds.has_hr and len(ds) else None,
            "conversions": ds.conversions,
            "files": ds.manifest(),
        } | dataset_entry(ds)
        metrics = [s.name for s in suite.applicable(ds.has_hr)]
        skipped = [n for n in suite.names if n not in metrics]
        if skipped:
            log(f"{ds.name} has no HR images: skipping full-reference {', '.join(skipped)}")
        for m in methods:
            if stage == "score":
                cache = recorded_cache(recorded, cache_dir, m.card.name, ds)
                signature = recorded["methods"][m.card.name].get("signature")
            else:
                key_inputs = sr_key_inputs(m, digests[m.card.name], device, dtype, seed, ds)
                cache = SRCache(cache_dir, m.card.name, key_inputs).open()
                signature = key_inputs["signature"]
                if cache.swept:
                    log(f"{m.card.name} on {ds.name}: removed {cache.swept} temporary files "
                        "left by an interrupted run")  # fmt: skip
            entry = manifest["methods"].setdefault(
                m.card.name,
                {
                    "card": m.card.to_dict(),
                    "adapter_version": m.version,
                    "weights_digest": digests[m.card.name],
                    "signature": signature,
                    "sr_cache": {},
                    "sr_keys": {},
                },
            )
            entry["sr_cache"][ds.name] = str(cache.dir)
            entry["sr_keys"][ds.name] = cache.key
            caches[m.card.name, ds.name] = cache

    profile_now = bool(cfg.profile.enabled) and profiles_here(plain)
    if cfg.profile.enabled and not profile_now:
        log("profiling skipped: " + ("the scoring stage has no methods loaded" if stage == "score"
            else "in a fan-out the job with the first dataset's shard 0 profiles"))  # fmt: skip
    efficiency: list[dict[str, Any]] = []
    if stage != "score":
        # One method at a time: every dataset, then its profile while it is loaded, then
        # released, so a run of four diffusion methods holds one model in memory, not four.
        for i in range(len(methods)):
            for ds in datasets:
                cache = caches[methods[i].card.name, ds.name]
                sr_stage(methods[i], ds, cache, device, dtype, seed, force)
            if profile_now:
                efficiency.append(_profile_row(methods[i], cfg, device, dtype))
            _release(methods, i)
    for ds in datasets:
        metrics = [s.name for s in suite.applicable(ds.has_hr)]
        for m in methods:
            cache = caches[m.card.name, ds.name]
            facts = cache.read_info()
            image_info += [{"method": m.card.name, "dataset": ds.name, "image": s.name}
                           | facts[s.name] for s in ds if s.name in facts]  # fmt: skip
            items = [Item(s.name, cache.path(s.name), s.hr) for s in ds]
            hr_dir = ds.samples[0].hr.parent if ds.has_hr and len(ds) else None
            sr_dir = None if is_partial(ds) else cache.dir
            groups.append(Group(m.card.name, ds.name, items, cache.key, metrics, sr_dir, hr_dir))

    if stage != "score":
        manifest["sr_finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        store.write_manifest(manifest)
    if stage == "sr":
        if profile_now:
            _write_efficiency(store, efficiency, cfg, device, dtype)
        log(f"SR stage done; score the cached images with --stage score --out {out}")
        return out

    if image_info:
        store.write_prompts(image_info)
    rows, sets = _score_groups(
        store, suite, groups, force, int(cfg.metric_batch_size), int(cfg.metric_workers)
    )
    if profile_now and stage == "all":
        _write_efficiency(store, efficiency, cfg, device, dtype)
    extra = {"command": "run", "methods": method_names, "datasets": dataset_names}
    _finish(store, suite, groups, rows, sets, chash, extra, manifest)


def sr_record(store: RunStore, chash: str) -> dict[str, Any]:
    """The manifest of a finished SR stage in ``store`` (``--stage score`` reads its keys)."""
    recorded = store.read_manifest()
    if not recorded or not recorded.get("sr_finished"):
        raise HarnessError(
            f"{store.path}: no finished SR stage recorded in manifest.json; run the same "
            "command with --stage sr first (same --out)"
        )
    if recorded.get("config_hash") != chash:
        raise HarnessError(
            f"{store.path}: its SR stage ran another config (hash "
            f"{str(recorded.get('config_hash'))[:12]} != {chash[:12]})"
        )
    return recorded


def recorded_cache(recorded: dict[str, Any], cache_dir: Path, method: str, ds) -> SRCache:
    """The SR cache folder the SR stage wrote for (method, dataset), complete for ``ds``."""
    key = recorded["methods"].get(method, {}).get("sr_keys", {}).get(ds.name)
    if key is None:
        raise HarnessError(
            f"manifest.json: the SR stage did not compute {method} on {ds.name}; run it with "
            "--stage sr first"
        )
    cache = SRCache.existing(cache_dir, method, key)
    missing = [s.name for s in ds if not cache.has(s.name)]
    if missing:
        raise HarnessError(
            f"{cache.dir}: {len(missing)} of {len(ds)} SR images of {method} on {ds.name} "
            f"missing (e.g. {missing[0]}); rerun --stage sr"
        )
    return cache


def _profile(
    store: RunStore,
    methods: list[SRMethod],
    cfg: DictConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Profile each method in turn, releasing it before the next one loads."""
    rows = []
    for i in range(len(methods)):
        rows.append(_profile_row(methods[i], cfg, device, dtype))
        _release(methods, i)
    _write_efficiency(store, rows, cfg, device, dtype)


def _profile_row(
    method: SRMethod, cfg: DictConfig, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    from harness.profiler import profile_method

    p = cfg.profile
    return profile_method(
        method,
        int(p.lr_size),
        device,
        dtype,
        runs=None if p.runs is None else int(p.runs),
        warmup=int(p.warmup),
        random_init=bool(p.random_init),
        min_runs=int(p.min_runs),
        max_time=float(p.max_time),
        unreliable_spread=float(p.unreliable_spread),
        fast=bool(p.fast),
    )


def _write_efficiency(
    store: RunStore,
    rows: list[dict[str, Any]],
    cfg: DictConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    from harness.profiler import add_ratios, environment

    add_ratios(rows, cfg.profile.reference)
    store.write_efficiency(rows, environment(device, dtype))


def profile(cfg: DictConfig) -> Path:
    """``harness profile``: efficiency of the selected methods alone (no datasets, no metrics)."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    device, dtype = resolve_device(str(cfg.device)), resolve_dtype(str(cfg.dtype))
    what = {k: plain[k] for k in ("methods", "method", "profile", "device", "dtype")}
    chash = sha256_json(what)
    out = Path(str(cfg.out)) if cfg.out else Path("runs") / f"profile-{chash[:12]}"
    check_out(out)
    methods: list[SRMethod] = [METHODS.get(m)(plain["method"][m]) for m in cfg.methods]
    for m in methods:
        m.validate()
        m.check_input_size(int(cfg.profile.lr_size), int(cfg.profile.lr_size))
        if not cfg.profile.random_init:
            m.weights_digest()  # fails fast, naming a missing weights file
    store = RunStore(out)
    fresh = not store.path.is_dir() or not any(store.path.iterdir())
    try:
        try:
            store.path.mkdir(parents=True, exist_ok=True)
            text = OmegaConf.to_yaml(OmegaConf.create(what))
            write_text(store.path / "profile_config.yaml", text)
        except OSError as e:
            raise HarnessError(f"--out {out}: cannot write ({e.strerror or e})") from None
        _profile(store, methods, cfg, device, dtype)
    except BaseException:
        if fresh:  # nothing measured is kept: leave nothing behind
            shutil.rmtree(store.path, ignore_errors=True)
        raise
    return out


def _check_lr_sizes(methods: list[SRMethod], ds: ImageDataset) -> None:
    """Each method's ``check_input_size`` on every LR image of ``ds`` (sizes from the headers),
    so an image a method cannot take stops the run before any work, naming the image."""
    sizes = {(s.lr, s.lr_size or image_size(s.lr)) for s in ds}
    for m in methods:
        for lr, (w, h) in sorted(sizes):
            try:
                m.check_input_size(h, w)
            except HarnessError as e:
                raise HarnessError(f"{lr}: {e}") from None


def _sr_folders(cfg: DictConfig) -> dict[str, Path]:
    """``sr``: one folder (method named by ``name`` or the folder) or ``{method: folder}``."""
    if OmegaConf.is_dict(cfg.sr):
        if cfg.name:
            raise HarnessError("--name names a single --sr folder; with several use --sr NAME=DIR")
        folders = {str(k): check_folder(Path(str(v))) for k, v in cfg.sr.items()}
        if not folders:
            raise HarnessError("harness eval needs at least one --sr folder")
        return folders
    sr_dir = check_folder(Path(str(cfg.sr)))  # before .resolve(): a symlink loop named as one
    return {str(cfg.name or sr_dir.resolve().name): sr_dir}


def _eval_dataset(
    pairs: list[tuple[Path, Path]],
    lr_dir: Path | None,
    hr_dir: Path,
    scale: int | None,
    conversions: Conversions,
) -> dict[str, Any]:
    """The dataset entry of an eval manifest, shaped like a run's (``ImageDataset.manifest``):
    file stems with the sha256 of LR (null without ``--lr``) and HR, and their hash."""
    lrs = {p.stem: p for p in list_images(lr_dir)} if lr_dir else {}
    files = [
        {
            "name": hr.stem,
            "lr_sha256": sha256_file(lrs[hr.stem]) if lrs else None,
            "hr_sha256": sha256_file(hr),
        }
        for _, hr in pairs
    ]
    return {
        "manifest_hash": sha256_json({"scale": scale, "files": files}),
        "n_images": len(files),
        "scale": scale,
        "lr_dir": str(lr_dir.resolve()) if lr_dir else None,
        "hr_dir": str(hr_dir.resolve()),
        "conversions": conversions,
        "files": files,
    }


def evaluate(cfg: DictConfig) -> Path:
    """Score existing folders of SR outputs against HR (``harness eval``), one method per folder."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if not cfg.sr or not cfg.hr:
        raise HarnessError("harness eval needs both --sr DIR and --hr DIR")
    device = resolve_device(str(cfg.device))
    chash = config_hash(plain)
    out = Path(str(cfg.out)) if cfg.out else Path("runs") / f"eval-{chash[:12]}"
    check_out(out)
    hr_dir = Path(str(cfg.hr))
    folders = _sr_folders(cfg)
    hr_files = list_images(hr_dir)
    pairs = {m: match_by_stem(list_images(d), hr_files, d, hr_dir) for m, d in folders.items()}
    first = next(iter(pairs.values()))
    # Validate every file from its header before anything is written.
    conversions: Conversions = {}
    sizes: dict[Path, tuple[int, int]] = {}
    hr_seen: set[Path] = set()
    for method, method_pairs in pairs.items():
        for sr, hr in method_pairs:
            sizes[sr], sr_kinds = image_info(sr)
            if hr not in hr_seen:
                hr_seen.add(hr)
                sizes[hr], hr_kinds = image_info(hr)
                note_conversions(conversions, hr_kinds, f"HR/{hr.name}")
            if sizes[sr] != sizes[hr]:
                raise HarnessError(
                    f"{sr}: size {sizes[sr][0]}x{sizes[sr][1]} differs from HR {hr} "
                    f"({sizes[hr][0]}x{sizes[hr][1]})"
                )
            label = f"SR/{sr.name}" if len(pairs) == 1 else f"SR/{method}/{sr.name}"
            note_conversions(conversions, sr_kinds, label)
    scale = None
    lr_dir = Path(str(cfg.lr)) if cfg.lr else None
    if lr_dir:
        first_dir = folders[next(iter(pairs))]
        lr_pairs = match_by_stem(list_images(lr_dir), [sr for sr, _ in first], lr_dir, first_dir)
        for lr, sr in lr_pairs:
            lr_size, lr_kinds = image_info(lr)
            scale = scale or cfg.scale or _infer_scale(lr, lr_size, sr, sizes[sr])
            require_scale(lr, lr_size, sr, sizes[sr], int(scale))
            note_conversions(conversions, lr_kinds, f"LR/{lr.name}")
    hr_name = hr_dir.resolve().name
    dataset = str(
        cfg.dataset_name
        or (hr_dir.resolve().parent.name if hr_name.lower() in ("hr", "gt") else hr_name)
    )
    n_files = len(pairs) * (3 if cfg.lr else 2)
    _warn_conversions(dataset, conversions, n_files)
    check_sizes(cfg.metrics, {str(p): size for p, size in sizes.items()})
    suite = MetricSuite(list(cfg.metrics), device, bool(cfg.metrics_autocast), bool(cfg.strict))
    for name, why in suite.unavailable.items():
        log(f"metric {name} is missing from this run: {why}")

    store = RunStore(out)
    store.claim(OmegaConf.to_yaml(cfg, resolve=True), chash)
    manifest: dict[str, Any] = {
        "command": "eval",
        "config_hash": chash,
        "environment": environment(device),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        "datasets": {dataset: _eval_dataset(first, lr_dir, hr_dir, scale, conversions)},
        "methods": {},
    }
    try:
        groups = []
        for method, method_pairs in pairs.items():
            items = [Item(sr.stem, sr, hr) for sr, hr in method_pairs]
            # The SR files' content is the key: a changed output is scored again on resume.
            sr_key = sha256_json([[sr.name, sha256_file(sr)] for sr, _ in method_pairs])
            sr_dir = folders[method]
            groups.append(Group(method, dataset, items, sr_key, suite.names, sr_dir, hr_dir))
            manifest["methods"][method] = {
                "sr_dir": {dataset: str(sr_dir.resolve())},
                "sr_key": sr_key,
            }
        store.write_manifest(manifest)
        force, batch, workers = bool(cfg.force), int(cfg.metric_batch_size), int(cfg.metric_workers)
        rows, sets = _score_groups(store, suite, groups, force, batch, workers)
        extra = {"command": "eval", "methods": list(pairs), "datasets": [dataset]}
        _finish(store, suite, groups, rows, sets, chash, extra, manifest)
    except BaseException:
        store.discard()  # nothing scored yet: leave nothing behind
        raise
    return out


def _infer_scale(lr: Path, lr_size: tuple[int, int], sr: Path, sr_size: tuple[int, int]) -> int:
    """The SR/LR size ratio of the first pair: one integer for both sides."""
    (lw, lh), (sw, sh) = lr_size, sr_size
    if sw % lw or sh % lh or sw // lw != sh // lh:
        raise HarnessError(
            f"{sr}: size {sw}x{sh} is not an integer multiple of the LR {lr.name} ({lw}x{lh})"
        )
    return sw // lw
