"""Cache of SR outputs: PNGs keyed by everything that determines their pixels.

The key is the sha256 of: method name, adapter version, the method's resolved config, its
weights digest, the output-relevant run settings (device type, dtype; see
``SRMethod.output_signature``), the seed (only for methods whose output depends on it,
``MethodCard.stochastic``), and the dataset manifest hash. Layout::

    <cache_dir>/sr/<method>/<key[:16]>/key.json      the key's inputs, for humans
    <cache_dir>/sr/<method>/<key[:16]>/<image>.png   one SR image per LR image

PNGs are written atomically, so a file under its final name is complete; a rerun skips them.
A killed run can leave temporary files (``.<name>.*.tmp``): they are never read, and ``open``
removes those older than a minute (``imageio.sweep_temporary``; younger ones may belong to a
run still writing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

    def path(self, image: str) -> Path:
        return self.dir / f"{image}.png"

    def has(self, image: str) -> bool:
        return self.path(image).is_file()
