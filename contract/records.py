"""The rows of a corpus and of the download cache, each with its Arrow schema.

- `videos.parquet`: one `VIDEOS_SCHEMA` row per manifest video (`new_video_row`);
- `frames/SPLIT/part-*.parquet`: `FRAMES_SCHEMA`, one row per decoded frame;
- `labels/VERSION/SPLIT/part-*.parquet`: `LABELS_SCHEMA`, the four rolls per frame;
- a label work record per video and version (`label_record`, with the `AV_COLUMNS`);
- `labels/VERSION/av.parquet`: `AV_SCHEMA`, the labels' agreement with the pictures;
- `CACHE/fetch.parquet`: `FETCH_SCHEMA`, one `FetchRecord` per manifest row.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from contract.piano import N_KEYS
from contract.vocab import DROP_REASONS

DROP_COUNTS = tuple(f"n_{reason}" for reason in DROP_REASONS)

# The labels' agreement with the pictures (labeling/agreement.py), per video: in
# videos.parquet for the corpus's default label version, in labels/VERSION/av.parquet
# (AV_SCHEMA, with the score curve over offsets) for each version.
AV_COLUMNS = (("av_offset_s", pa.float64()), ("av_confidence", pa.float64()), ("av_applied_s", pa.float64()),
              ("av_precision", pa.float64()), ("av_recall", pa.float64()), ("av_score", pa.float64()),
              ("av_mismatch", pa.bool_()), ("av_mirrored", pa.bool_()), ("av_key_shift", pa.int32()),
              ("av_n_onsets", pa.int32()),
              # with hand keypoints (curation/hands.py): the share of the onsets with a hand in view
              # that a fingertip was near (PianoVAM's rule), and those --onset-filter hands dropped
              ("av_hands_near", pa.float64()), ("av_hands_dropped", pa.int32()))
AV_SCHEMA = pa.schema([("video_id", pa.string()), ("split", pa.string()), *AV_COLUMNS,
                       ("av_curve", pa.list_(pa.float32()))])
# The audit's flags from the agreement (labeling/agreement.py): av_mismatch, av_mirrored, av_key_shift != 0.
AV_FLAGS = ("av_mismatch", "av_mirrored", "av_octave_shift")

VIDEOS_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("dataset", pa.string()), ("split", pa.string()), ("url", pa.string()),
    ("status", pa.string()), ("error_class", pa.string()), ("error", pa.string()), ("duration_s", pa.float64()),
    ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()), ("n_frames", pa.int32()),
    ("n_kept", pa.int32()), *[(name, pa.int32()) for name in DROP_COUNTS],
    ("kb_x0", pa.int32()), ("kb_y0", pa.int32()), ("kb_x1", pa.int32()), ("kb_y1", pa.int32()),
    ("kb_quad", pa.list_(pa.float64(), 8)), ("kb_score", pa.float64()), ("kb_source", pa.string()),
    ("kb_located_iou", pa.float64()), ("kb_orientation", pa.string()), ("kb_clipped_left", pa.float64()),
    ("kb_clipped_right", pa.float64()),
    ("source_sha256", pa.string()), ("label_status", pa.string()), ("n_notes", pa.int32()),
    *[(name, kind) for name, kind in AV_COLUMNS],
])
FRAME_COUNTS = ("n_frames", "n_kept", *DROP_COUNTS)

FRAMES_SCHEMA = pa.schema([("video_id", pa.string()), ("frame", pa.int32()), ("t", pa.float64()),
                           ("kept", pa.bool_()), ("drop_reason", pa.string()), ("jpeg", pa.binary()),
                           ("keyboard_similarity", pa.float32())])
LABELS_SCHEMA = pa.schema([("video_id", pa.string()), ("frame", pa.int32()),
                           ("frame_roll", pa.list_(pa.bool_(), N_KEYS)), ("onset_roll", pa.list_(pa.bool_(), N_KEYS)),
                           ("offset_roll", pa.list_(pa.bool_(), N_KEYS)), ("velocity", pa.list_(pa.uint8(), N_KEYS))])


def new_video_row(video_id: str, dataset: str | None, split: str, url: str | None) -> dict:
    """A videos.parquet row before anything is known: failed until the stages say ok."""
    row = dict.fromkeys(VIDEOS_SCHEMA.names)
    row.update(video_id=video_id, dataset=dataset, split=split, url=url, status="failed",
               **dict.fromkeys(FRAME_COUNTS, 0))
    return row


def label_record(video_id: str, n_notes: int | None = None, error: str | None = None,
                 rolls_sha256: str | None = None) -> dict:
    """A video's label outcome for one version (the work state; videos.parquet takes
    `label_status` and `n_notes` from it): ok with its notes and its rolls file's hash (a
    re-run takes the labels only with that very file), or failed with the exception's
    class and message (`AudioInputError: ...`)."""
    return {"video_id": video_id, "label_status": "failed" if error else "ok", "n_notes": n_notes,
            "label_error": error, "rolls_sha256": rolls_sha256}


def video_totals(video_rows: list[dict]) -> dict:
    """Videos ok / failed and skipped by class, hours, frames kept and dropped by reason,
    notes, kept ratio over `videos.parquet` rows: the build's summary and the audit's figures."""
    ok = [r for r in video_rows if r["status"] == "ok"]
    by_class: dict[str, dict[str, int]] = {"failed": {}, "skipped": {}}
    for r in video_rows:
        if r["status"] != "ok":
            counts = by_class[r["status"]]
            counts[r["error_class"] or "other"] = counts.get(r["error_class"] or "other", 0) + 1
    frames, kept = sum(r["n_frames"] or 0 for r in ok), sum(r["n_kept"] or 0 for r in ok)
    return {"videos": len(video_rows), "ok": len(ok), "failed": by_class["failed"], "skipped": by_class["skipped"],
            "hours": round(sum(r["duration_s"] or 0 for r in ok) / 3600, 4), "frames": frames, "kept": kept,
            "dropped": {reason: sum(r[f"n_{reason}"] or 0 for r in ok) for reason in DROP_REASONS},
            "notes": sum(r["n_notes"] or 0 for r in ok), "kept_ratio": round(kept / frames, 4) if frames else None}


@dataclass
class FetchRecord:
    """One row of fetch.parquet."""

    video_id: str
    url: str | None
    status: str  # ok | failed | skipped
    error_class: str | None = None
    error: str | None = None
    path: str | None = None  # the media file, relative to the cache
    bytes: int | None = None
    seconds: float | None = None  # wall time of the fetch (0 for a cache hit)
    attempts: int = 0
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None


FETCH_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("url", pa.string()), ("status", pa.string()), ("error_class", pa.string()),
    ("error", pa.string()), ("path", pa.string()), ("bytes", pa.int64()), ("seconds", pa.float64()),
    ("attempts", pa.int32()), ("duration_s", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
])
