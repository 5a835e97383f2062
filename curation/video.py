"""One video's trip through the curation stages, as a plain function the Ray graph maps over.

fetch -> probe -> keyboard (the manifest's crop, or located) -> audio (FLAC + silence
mask) -> frame pass, into the corpus's work state. It returns the video's
`videos.parquet` row and never raises for a bad video: a `Failure` (or anything
unforeseen, as `other`) becomes the row's status, class and message. Every file appears
under its name only when complete, so a killed run leaves nothing that looks finished.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_npy, atomic_path
from contract.config import FetchOptions, HandsConfig, VideoSettings
from contract.hashing import sha256_file
from contract.layout import CacheLayout, CorpusLayout
from contract.records import FRAME_COUNTS, FRAMES_SCHEMA, new_video_row
from contract.store import pull
from contract.threads import thread_budget
from contract.vocab import NOT_FINAL, Failure, is_resource_error
from curation.audio import NoAudioError, audio_to_flac
from curation.fetch import fetch_video
from curation.frames import frame_pass, reference_crop, silent_frames
from curation.hands import video_hands
from curation.keyboard import KeyboardNotFound, locate_in_frames, manifest_crop_location, quad_iou, sample_frames
from curation.probe import ProbeError, probe
from manifests.schema import ManifestRow

AUDIO_RATE = 44100


def process_video(row: ManifestRow, corpus: CorpusLayout, fetch: FetchOptions, settings: VideoSettings,
                  segment_s: float | None = None) -> dict:
    """The visual and audio half of one video; its videos.parquet row, also kept in the
    work state with the settings' digest (what resume compares). Inside Ray, a video
    longer than `segment_s` has its frame pass run as segments in parallel (`_frame_batches`)."""
    if budget := thread_budget():
        cv2.setNumThreads(budget)  # OpenCV's 0 would mean "no threads", not "default"
    result = new_video_row(row.video_id, row.dataset, row.split, row.url)
    try:
        record = fetch_video(row, fetch)
        if record.status != "ok":
            raise Failure(record.error_class or "other", record.error or record.status)
        media = CacheLayout(fetch.cache).root / record.path  # (a cache on object storage: this node's stage of it)
        try:
            _visual_and_audio(row, media, corpus, settings, result, segment_s)
        except av.error.FFmpegError as error:  # the container probed, the streams do not decode
            raise Failure("corrupt", f"{media.name}: decoding fails part-way through the file ({error})") from None
        result["status"] = "ok"
    except Failure as failure:
        result.update(status=failure.status, error_class=failure.error_class,
                      error=f"{failure.error_class}: {failure}")
    except Exception as error:
        if is_resource_error(error):  # disk full, memory: the machine's state, not the video's
            result.update(error_class="resources", error=f"resources: {type(error).__name__}: {error}")
        else:  # a bug or an unforeseen input: the run goes on, the row says what
            result.update(error_class="other",
                          error=f"other: {type(error).__name__}: {error} | {traceback.format_exc(limit=3)[-600:]}")
    final = result["error_class"] not in NOT_FINAL
    frames = corpus.work.frames(row.video_id)
    # The frames file's hash: a re-run takes this result only with these very frames
    # (a writer of an earlier, killed run may still rename its own over them).
    frames_sha256 = sha256_file(frames) if result["status"] == "ok" else None
    try:
        atomic_json({**result, "settings": settings.digest(), "final": final, "frames_sha256": frames_sha256,
                     "node": _ray_node()}, corpus.work.video_json(row.video_id))
    except OSError as error:  # the disk is still full: the row comes back, nothing is kept
        result.update(error_class="resources", error=f"resources: {type(error).__name__}: {error}")
    return result


def _visual_and_audio(row: ManifestRow, media: Path, corpus: CorpusLayout, settings: VideoSettings,
                      result: dict, segment_s: float | None) -> None:
    try:
        info = probe(media)
    except ProbeError as error:  # fetch probed it; the cached file changed since
        raise Failure("corrupt", str(error)) from None
    if not info.has_video:
        raise Failure("no_video", f"{media.name}: no video stream")
    if not info.has_audio:
        raise Failure("no_audio", f"{media.name}: no audio stream")
    result.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                  source_sha256=sha256_file(media))
    frames, _ = sample_frames(media, settings.locate_frames)
    if row.crop is not None:
        location = manifest_crop_location(row.crop_quad, row.crop_frame, (info.width, info.height))
        result["kb_located_iou"] = _located_iou(frames, location.quad, (info.height, info.width))
    else:
        location = locate_in_frames(frames, row.video_id)  # KeyboardNotFound is a Failure
    result.update(kb_x0=location.bbox[0], kb_y0=location.bbox[1], kb_x1=location.bbox[2], kb_y1=location.bbox[3],
                  kb_quad=[float(v) for corner in location.quad for v in corner], kb_score=location.score,
                  kb_source=location.source, kb_orientation=location.orientation,
                  kb_clipped_left=location.clipped_left, kb_clipped_right=location.clipped_right)
    config = replace(settings.frames, fps=row.fps or settings.frames.fps)
    n_frames = int(round(info.duration_s * config.fps))
    try:  # the FLAC first, streamed: the audio is never held whole
        rms = audio_to_flac(media, corpus.audio(row.video_id), AUDIO_RATE, n_frames, config.fps)
    except NoAudioError as error:
        raise Failure("no_audio", str(error)) from None
    silent = silent_frames(rms, config.fps, config)
    # The keyboard without hands: the median over the frames it was seen in.
    reference = reference_crop([frames[i] for i in location.fitted] or frames, location.quad, config)
    batches = _frame_batches(media, location.quad, reference, config, silent, row, n_frames, segment_s)
    counts = _write_frames(row.video_id, batches, corpus.work.frames(row.video_id),
                           corpus.work.key_levels(row.video_id))
    result.update(fps=config.fps, **counts)


def frame_segments(n_frames: int, fps: float, segment_s: float | None) -> list[tuple[int, int]]:
    """[first, stop) frame ranges of about `segment_s` each covering the video (one range
    when it is not longer, or `segment_s` is None or 0)."""
    if not segment_s or n_frames <= segment_s * fps:
        return [(0, n_frames)]
    count = int(np.ceil(n_frames / (segment_s * fps)))
    bounds = np.linspace(0, n_frames, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds, bounds[1:])]


def _frame_batches(media: Path, quad, reference: np.ndarray, config, silent: np.ndarray, row: ManifestRow,
                   n_frames: int, segment_s: float | None):
    """The frame pass's batches, in frame order: in one pass, or inside Ray for a video
    longer than `segment_s` as one task per segment (the video's task waits, its CPU
    lent to them), joined in order: the very frames one pass gives, a long recital no
    longer one straggler. The segments run on this node, where the downloaded video is
    (nodes share no disk)."""
    segments = frame_segments(n_frames, config.fps, segment_s)
    if len(segments) == 1 or not _in_ray():
        yield from frame_pass(media, quad, reference, config, silent=silent, start_s=row.start_s, end_s=row.end_s)
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(num_cpus=1, scheduling_strategy=here)(_segment_records)
    last = len(segments) - 1
    pending = [task.remote(str(media), quad, reference, config, silent, row.start_s, row.end_s, first,
                           None if i == last else stop) for i, (first, stop) in enumerate(segments)]
    batch: list = []  # cut as one pass cuts them (the work file's row groups follow the batches)
    for ref in pending:
        for record in ray.get(ref):
            batch.append(record)
            if len(batch) >= config.batch_frames:
                yield batch
                batch = []
    if batch:
        yield batch


def _segment_records(media: str, quad, reference, config, silent, start_s, end_s, first: int, stop: int | None):
    """One segment's FrameRecords (a Ray task: within its thread budget)."""
    if budget := thread_budget():
        cv2.setNumThreads(budget)
    return [r for batch in frame_pass(media, quad, reference, config, silent=silent, start_s=start_s, end_s=end_s,
                                      first=first, stop=stop) for r in batch]


def _in_ray() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _ray_node() -> str | None:
    """The Ray node this video ran on (kept in its work state: on a cluster, where to look
    for its logs), or None outside Ray."""
    if not _in_ray():
        return None
    import ray

    return ray.get_runtime_context().get_node_id()


def _located_iou(frames: list[np.ndarray], manifest_quad, shape: tuple[int, int]) -> float | None:
    """How well a manifest crop agrees with where the locator finds the keyboard (IoU of
    the two quads; None when the locator finds none): the audit flags crops far off."""
    try:
        located = locate_in_frames(frames)
    except KeyboardNotFound:
        return None
    return round(quad_iou(manifest_quad, located.quad, shape), 4)


def _write_frames(video_id: str, batches, path: Path, levels_path: Path) -> dict:
    """Stream the frame pass's batches into one Parquet file (memory stays flat with
    the video's length) and the kept frames' key levels into `levels_path` ((n_frames, 2,
    88) float16, NaN for dropped frames); each file appears under its name only when complete."""
    counts = dict.fromkeys(FRAME_COUNTS, 0)
    levels = []
    with atomic_path(path) as part:
        with pq.ParquetWriter(part, FRAMES_SCHEMA) as writer:
            for batch in batches:
                writer.write_table(pa.Table.from_pylist(
                    [{"video_id": video_id, "frame": r.frame, "t": r.t, "kept": r.kept, "drop_reason": r.drop_reason,
                      "jpeg": r.jpeg, "keyboard_similarity": r.keyboard_similarity} for r in batch],
                    schema=FRAMES_SCHEMA))
                for r in batch:
                    counts["n_frames"] += 1
                    counts["n_kept" if r.kept else f"n_{r.drop_reason}"] += 1
                    levels.append(NO_LEVELS if r.key_levels is None else r.key_levels.astype(np.float16))
        if not counts["n_frames"]:
            raise Failure("corrupt", f"{video_id}: no frames decoded")
        atomic_npy(np.stack(levels), levels_path)
    return counts


NO_LEVELS = np.full((2, 88), np.nan, np.float16)


def process_hands(done: dict, corpus: CorpusLayout, cache: Path | str, settings: VideoSettings, hands: HandsConfig,
                  version: str) -> dict:
    """The hand keypoints of an ok video's kept frames (curation/hands.py) into the work
    state, unless there already; its hands record. Never raises: a video whose hands fail
    keeps its frames and labels, its record says why."""
    video_id = done["video_id"]
    out, record_path = corpus.work.hands(version, video_id), corpus.work.hands_record(version, video_id)
    if pull(out).is_file() and pull(record_path).is_file():  # (pull: a corpus on object storage)
        return json.loads(record_path.read_text())
    record = {"video_id": video_id, "hands_version": version, "status": "ok", "error": None}
    try:
        media = CacheLayout(cache).cached_media(video_id)
        if media is None:
            raise FileNotFoundError(f"{video_id}: its video is no longer in the download cache {cache}")
        kept = pq.read_table(corpus.work.frames(video_id), columns=["kept"]).column("kept").to_numpy()
        quad = np.asarray(done["kb_quad"], float).reshape(4, 2)
        frames = replace(settings.frames, fps=float(done["fps"]))
        record.update(video_hands(media, quad, kept, frames, hands, out))
    except Exception as error:  # MediaPipe missing, the cache emptied: this video has no hands
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
    atomic_json(record, record_path)
    return record
