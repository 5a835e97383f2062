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


def video_totals(video_rows: list[dict]) -> dict:
    """Videos ok / failed by class, hours, frames kept and dropped by reason, notes, kept
    ratio over `videos.parquet` rows: the build's summary and the audit's split figures."""
    ok = [r for r in video_rows if r["status"] == "ok"]
    failed: dict[str, int] = {}
    for r in video_rows:
        if r["status"] != "ok":
            failed[r["error_class"] or "other"] = failed.get(r["error_class"] or "other", 0) + 1
    frames, kept = sum(r["n_frames"] or 0 for r in ok), sum(r["n_kept"] or 0 for r in ok)
    return {"videos": len(video_rows), "ok": len(ok), "failed": failed,
            "hours": round(sum(r["duration_s"] or 0 for r in ok) / 3600, 4), "frames": frames, "kept": kept,
            "dropped": {reason: sum(r[f"n_{reason}"] or 0 for r in ok) for reason in ("no_keyboard", "silent", "outside_range")},
            "notes": sum(r["n_notes"] or 0 for r in ok), "kept_ratio": round(kept / frames, 4) if frames else None}
