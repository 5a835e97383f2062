"""One video's trip through the stages, as plain functions the Ray graph maps over.

`process_video`: fetch -> probe -> keyboard (manifest crop or located) -> audio (FLAC +
silence mask) -> frame pass, written to the work folder. `label_videos`: FLAC ->
transcriber -> rolls + MIDI. Each returns a small dict (a `videos.parquet` row, or a
label summary) and never raises for a bad video: the error becomes the row's status.
Every file is written under a temporary name and renamed, so a killed run leaves
nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.audio import NoAudioError, load_audio, write_flac
from curation.fetch import FetchOptions, fetch_video
from curation.frames import FrameConfig, frame_pass, frame_rms, reference_crop, silent_frames
from curation.keyboard import KeyboardNotFound, locate_in_frames, manifest_crop_location, quad_iou, sample_frames
from curation.probe import ProbeError, probe, sha256_file
from curation.threads import thread_budget
from manifests.schema import ManifestRow
from pipelines.atomic import atomic_json, atomic_parquet

AUDIO_RATE = 44100

FRAMES_SCHEMA = pa.schema([("video_id", pa.string()), ("frame", pa.int32()), ("t", pa.float64()),
                           ("kept", pa.bool_()), ("drop_reason", pa.string()), ("jpeg", pa.binary()),
                           ("keyboard_similarity", pa.float32())])
LABELS_SCHEMA = pa.schema([("video_id", pa.string()), ("frame", pa.int32()),
                           ("frame_roll", pa.list_(pa.bool_(), 88)), ("onset_roll", pa.list_(pa.bool_(), 88)),
                           ("offset_roll", pa.list_(pa.bool_(), 88)), ("velocity", pa.list_(pa.uint8(), 88))])


@dataclass(frozen=True)
class VideoSettings:
    """What decides a video's frames and audio (hashed for resume)."""

    frames: FrameConfig = field(default_factory=FrameConfig)
    locate_frames: int = 24

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class VideoFailure(Exception):
    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


def base_row(row: ManifestRow) -> dict:
    return {"video_id": row.video_id, "dataset": row.dataset, "split": row.split, "url": row.url, "status": "failed",
            "error_class": None, "error": None, "duration_s": None, "fps": None, "width": None, "height": None,
            "n_frames": 0, "n_kept": 0, "n_no_keyboard": 0, "n_silent": 0, "n_outside_range": 0,
            "kb_x0": None, "kb_y0": None, "kb_x1": None, "kb_y1": None, "kb_quad": None, "kb_score": None,
            "kb_source": None, "kb_located_iou": None, "kb_orientation": None, "kb_clipped_left": None,
            "kb_clipped_right": None, "source_sha256": None}


def process_video(row: ManifestRow, work: Path, corpus: Path, fetch: FetchOptions, settings: VideoSettings) -> dict:
    """The visual and audio half of one video; the row for videos.parquet."""
    if budget := thread_budget():
        cv2.setNumThreads(budget)  # OpenCV's 0 would mean "no threads", not "default"
    result = base_row(row)
    try:
        record = fetch_video(row, fetch)
        if record.status != "ok":
            raise VideoFailure(record.error_class or "other", record.error or record.status)
        _visual_and_audio(row, fetch.cache / record.path, work, corpus, settings, result)
        result["status"] = "ok"
    except VideoFailure as failure:
        result["error_class"], result["error"] = failure.error_class, f"{failure.error_class}: {failure}"
    except Exception as error:  # a bug or an unforeseen input: the run goes on, the row says what
        result["error_class"] = "other"
        result["error"] = f"other: {type(error).__name__}: {error} | {traceback.format_exc(limit=3)[-600:]}"
    atomic_json({**result, "settings": settings.digest()}, work / "videos" / f"{row.video_id}.json")
    return result


def _visual_and_audio(row: ManifestRow, media: Path, work: Path, corpus: Path, settings: VideoSettings,
                      result: dict) -> None:
    config = settings.frames
    try:
        info = probe(media)
    except ProbeError as error:
        raise VideoFailure("corrupt", str(error)) from None
    if not info.has_video:
        raise VideoFailure("no_video", f"{media.name}: no video stream")
    if not info.has_audio:
        raise VideoFailure("no_audio", f"{media.name}: no audio stream")
    result.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                  source_sha256=sha256_file(media))
    frames, _ = sample_frames(media, settings.locate_frames)
    try:
        if row.crop is not None:
            location = manifest_crop_location(row.crop_quad, row.crop_frame, (info.width, info.height))
            result["kb_located_iou"] = _located_iou(frames, location.quad, (info.height, info.width))
        else:
            location = locate_in_frames(frames, row.video_id)
    except KeyboardNotFound as failure:
        raise VideoFailure(failure.reason, str(failure)) from None
    result.update(kb_x0=location.bbox[0], kb_y0=location.bbox[1], kb_x1=location.bbox[2], kb_y1=location.bbox[3],
                  kb_quad=[float(v) for corner in location.quad for v in corner], kb_score=location.score,
                  kb_source=location.source, kb_orientation=location.orientation,
                  kb_clipped_left=location.clipped_left, kb_clipped_right=location.clipped_right)
    try:
        audio, rate = load_audio(media, AUDIO_RATE)
    except NoAudioError as error:
        raise VideoFailure("no_audio", str(error)) from None
    fps = row.fps or config.fps
    config = FrameConfig(**{**asdict(config), "fps": fps})
    n_frames = int(round(info.duration_s * fps))
    silent = silent_frames(frame_rms(audio, rate, n_frames, fps), fps, config)
    # The keyboard without hands: the median over the frames it was seen in.
    reference = reference_crop([frames[i] for i in location.fitted] or frames, location.quad, config)
    counts = _write_frames(row.video_id, frame_pass(media, location.quad, reference, config, silent=silent,
                                                    start_s=row.start_s, end_s=row.end_s),
                           work / "frames" / f"{row.video_id}.parquet")
    if not counts["n_frames"]:
        raise VideoFailure("corrupt", f"{media.name}: no frames decoded")
    write_flac(corpus / "audio" / f"{row.video_id}.flac", audio, rate)
    result.update(fps=fps, **counts)


def _located_iou(frames: list[np.ndarray], manifest_quad, shape: tuple[int, int]) -> float | None:
    """How well a manifest crop agrees with where the locator finds the keyboard (IoU of
    the two quads; None when the locator finds none): the audit flags crops far off."""
    try:
        located = locate_in_frames(frames)
    except KeyboardNotFound:
        return None
    return round(quad_iou(manifest_quad, located.quad, shape), 4)


def _write_frames(video_id: str, batches, path: Path) -> dict:
    """Stream the frame pass's batches into one Parquet file (memory stays flat with
    the video's length); the file appears under its name only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    counts = {"n_frames": 0, "n_kept": 0, "n_no_keyboard": 0, "n_silent": 0, "n_outside_range": 0}
    with pq.ParquetWriter(part, FRAMES_SCHEMA) as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_pylist(
                [{"video_id": video_id, "frame": r.frame, "t": r.t, "kept": r.kept, "drop_reason": r.drop_reason,
                  "jpeg": r.jpeg, "keyboard_similarity": r.keyboard_similarity} for r in batch], schema=FRAMES_SCHEMA))
            for r in batch:
                counts["n_frames"] += 1
                counts["n_kept" if r.kept else f"n_{r.drop_reason}"] += 1
    if counts["n_frames"]:
        os.replace(part, path)
    else:
        part.unlink(missing_ok=True)
    return counts


def label_videos(rows: list[dict], transcriber, spec: dict, version: str, corpus: Path, work: Path) -> list[dict]:
    """Transcribe the FLAC of each ok video in one batch; rolls at its frame times + MIDI."""
    from labeling.midi import write_midi
    from labeling.rolls import apply_sustain, rolls_for_frames

    clips, ready = [], []
    for row in rows:
        try:
            clips.append(load_audio(corpus / "audio" / f"{row['video_id']}.flac"))
            ready.append(row)
        except NoAudioError as error:
            row_result = {"video_id": row["video_id"], "label_status": "failed", "label_error": str(error)}
            atomic_json(row_result, work / "labels" / version / f"{row['video_id']}.json")
    results = transcriber.transcribe_batch(clips) if clips else []
    summaries = []
    for row, result in zip(ready, results):
        notes = apply_sustain(result.notes, result.pedal) if spec["sustain_pedal"] else result.notes
        n, fps = int(row["n_frames"]), float(row["fps"])
        rolls = rolls_for_frames(notes, n, fps)
        table = pa.Table.from_pydict({
            "video_id": [row["video_id"]] * n, "frame": np.arange(n, dtype=np.int32),
            "frame_roll": list(rolls.frame), "onset_roll": list(rolls.onset), "offset_roll": list(rolls.offset),
            "velocity": list(rolls.velocity)}, schema=LABELS_SCHEMA)
        write_midi(notes, corpus / "labels" / version / "midi" / f"{row['video_id']}.mid", result.pedal)
        atomic_parquet(table, work / "labels" / version / f"{row['video_id']}.parquet")
        summary = {"video_id": row["video_id"], "label_status": "ok", "n_notes": len(notes)}
        atomic_json(summary, work / "labels" / version / f"{row['video_id']}.json")
        summaries.append(summary)
    return summaries
