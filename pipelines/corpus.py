"""Reading a built corpus's own description: corpus.json, its label versions and splits.

One place for what every reader of a corpus (training, audit) asks first.
"""

from __future__ import annotations

import json
from pathlib import Path


def corpus_meta(corpus: str | Path) -> dict:
    path = Path(corpus) / "corpus.json"
    if not path.is_file():
        raise ValueError(f"{corpus}: not a corpus (no corpus.json)")
    return json.loads(path.read_text())


def corpus_label_version(corpus: str | Path, label_version: str | None) -> str:
    """The version asked for, or corpus.json's default; a clear error if it is not there."""
    meta = corpus_meta(corpus)
    version = label_version or meta["default_label_version"]
    if version not in meta["label_versions"]:
        known = ", ".join(sorted(meta["label_versions"]))
        raise ValueError(f"{corpus}: no label version {version!r} (it has: {known})")
    return version


def corpus_splits(corpus: str | Path) -> list[str]:
    """The splits that have frames (those with at least one ok video)."""
    folder = Path(corpus) / "frames"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
