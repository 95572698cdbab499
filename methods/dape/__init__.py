"""DAPE, OSEDiff's prompt extractor: RAM (Swin-L) with the DAPE LoRA, tags per image.

``DapeTagger.from_files(files, device, dtype)`` loads the official files (manifest ids in
``DapeTagger.weight_ids``); ``DapeTagger.random(tiny=...)`` builds random weights;
``tagger.tags(images)`` returns the tag string the official OSEDiff script puts before
``", {prompt},"``. Layout: ``arch.py`` network, ``convert.py`` official key layout and LoRA
merging, ``tagger.py`` preprocessing and thresholds, ``fabricate.py`` random official files.
"""

from harness.methods.dape.arch import RamConfig, RamTagger
from harness.methods.dape.tagger import DapeTagger

__all__ = ["DapeTagger", "RamConfig", "RamTagger"]
