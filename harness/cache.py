"""Cache of SR outputs: PNGs keyed by everything that determines their pixels.

The key is the sha256 of: method name, adapter version, the method's resolved config, its
weights digest, the output-relevant run settings (device type, dtype; see
``SRMethod.output_signature``), the seed (only for methods whose output depends on it,
``MethodCard.stochastic``), and the dataset manifest hash. Layout::

    <cache_dir>/sr/<method>/<key[:16]>/key.json      the key's inputs, for humans
    <cache_dir>/sr/<method>/<key[:16]>/<image>.png   one SR image per LR image
    <cache_dir>/sr/<method>/<key[:16]>/info.jsonl    per-image facts (``SRMethod.last_info``)

PNGs are written atomically, so a file under its final name is complete; a rerun skips them.
A killed run can leave temporary files (``.<name>.*.tmp``): they are never read, and ``open``
removes those older than a minute (``imageio.sweep_temporary``; younger ones may belong to a
run still writing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.hashing import sha256_json
from harness.imageio import sweep_temporary, write_text


class SRCache:
    def __init__(self, cache_dir: str | Path, method: str, key_inputs: dict[str, Any]) -> None:
        self.key = sha256_json(key_inputs)
        self.dir = Path(cache_dir).expanduser() / "sr" / method / self.key[:16]
        self.key_inputs = key_inputs
        self.swept = 0  # temporary files of a killed run removed by ``open``

    def open(self) -> SRCache:
        """Create the folder (with ``key.json``) and remove orphaned temporary files."""
        self.swept = sweep_temporary(self.dir)
        if not (self.dir / "key.json").is_file():
            write_text(self.dir / "key.json", json.dumps(self.key_inputs, indent=2) + "\n")
        return self

    @classmethod
    def existing(cls, cache_dir: str | Path, method: str, key: str) -> SRCache:
        """The folder of a key another job wrote (``--stage score``); its ``key.json`` must
        hash to ``key``."""
        folder = Path(cache_dir).expanduser() / "sr" / method / key[:16]
        try:
            inputs = json.loads((folder / "key.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HarnessError(
                f"{folder}: no SR images of this run's SR stage here (is --cache-dir the cache "
                "its jobs wrote?)"
            ) from None
        except json.JSONDecodeError as e:
            raise HarnessError(f"{folder / 'key.json'}: not valid JSON ({e})") from None
        cache = cls(cache_dir, method, inputs)
        if cache.key != key:
            raise HarnessError(f"{folder / 'key.json'}: its inputs do not hash to the recorded key")
        return cache

    def path(self, image: str) -> Path:
        return self.dir / f"{image}.png"

    def has(self, image: str) -> bool:
        return self.path(image).is_file()

    @property
    def info_path(self) -> Path:
        return self.dir / "info.jsonl"

    def record_info(self, info: dict[str, dict[str, Any]]) -> None:
        """Append ``{image: facts}`` (one JSON line per image; a later line wins)."""
        with open(self.info_path, "a", encoding="utf-8") as f:
            for image, facts in info.items():
                f.write(json.dumps({"image": image, **facts}, ensure_ascii=False) + "\n")

    def read_info(self) -> dict[str, dict[str, Any]]:
        """The recorded facts per image (a torn last line is ignored)."""
        out: dict[str, dict[str, Any]] = {}
        if not self.info_path.is_file():
            return out
        for line in self.info_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[str(row.pop("image"))] = row
        return out
