"""The frame pass: decode at the corpus fps, rectify the keyboard to a fixed crop, decide
for every frame whether it is kept, and JPEG-encode the kept crops.

Drop reasons, checked in this order (the first that applies is recorded):
- `outside_range`: the frame's time is before the manifest's `start_s` or at/after `end_s`.
- `no_keyboard`: the rectified crop does not look like the video's keyboard: the
  correlation of its black-key column profile (top 45 % of the crop, where hands cover
  least) with the reference crop's is below `keyboard_similarity` (0.5). The reference is
  the per-pixel median of the crops of the frames the locator fitted (hands move, the
  keyboard does not). Title cards, cuts, camera moves and a keyboard largely covered
  all fall here. Each frame's similarity is stored with it (`keyboard_similarity`), so a
  user can see how close a frame came to the threshold.
A kept frame's key levels (curation/presses.py) come with it too: the pictures' evidence
of key presses, which the labels are checked against (labeling/agreement.py).
- `silent`: the audio is silent for a long stretch: before the first sound and after the
  last (beyond `edge_margin_s`, 0.5 s: hands approaching the keys stay), and inside the performance only for silences
  longer than `rest_max_s` (3 s), keeping `rest_margin_s` (0.5 s) at each side. Brief
  rests inside a performance stay, as Audeo kept them. A frame is silent when the audio
  RMS over its interval is below `silence_db` (-50 dB) relative to the file's loud level
  (95th percentile of the frame RMS) and below an absolute floor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from contract.config import FrameConfig
from contract.threads import thread_decoder
from contract.vocab import NO_KEYBOARD, OUTSIDE_RANGE, SILENT
from curation.presses import key_levels
from curation.rectify import rectification_matrix


@dataclass(frozen=True)
class FrameRecord:
    frame: int  # 0-based index at the corpus fps
    t: float  # seconds, frame centre
    kept: bool
    drop_reason: str | None
    jpeg: bytes | None  # the rectified crop of a kept frame
    keyboard_similarity: float = float("nan")  # correlation with the reference crop that `no_keyboard` decides on
    key_levels: np.ndarray | None = None  # (2, 88) of a kept frame: its crop's key levels, as rectified and mirrored


def rectifier(quad, config: FrameConfig) -> np.ndarray:
    return rectification_matrix(quad, config.crop_width, config.crop_height)


def rectify(frame: np.ndarray, matrix: np.ndarray, config: FrameConfig) -> np.ndarray:
    return cv2.warpPerspective(frame, matrix, (config.crop_width, config.crop_height), flags=cv2.INTER_LINEAR)


def black_key_profile(crop: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm column profile of the crop's top 45 % (gray)."""
    top = crop[: max(1, int(0.45 * crop.shape[0]))]
    gray = cv2.cvtColor(top, cv2.COLOR_BGR2GRAY) if top.ndim == 3 else top
    profile = gray.mean(axis=0)
    profile = profile - profile.mean()
    norm = np.linalg.norm(profile)
    return profile / norm if norm > 1e-6 else profile


def reference_crop(frames: list[np.ndarray], quad, config: FrameConfig) -> np.ndarray:
    """Per-pixel median of the frames' crops: the keyboard without hands."""
    matrix = rectifier(quad, config)
    return np.median(np.stack([rectify(f, matrix, config) for f in frames]), axis=0).astype(np.uint8)


def frame_rms(audio: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """Audio RMS over each frame's interval [k/fps, (k+1)/fps)."""
    rms = np.zeros(n_frames)
    for k in range(n_frames):
        chunk = audio[int(k / fps * sample_rate):int((k + 1) / fps * sample_rate)]
        rms[k] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if chunk.size else 0.0
    return rms


def silent_frames(rms: np.ndarray, fps: float, config: FrameConfig) -> np.ndarray:
    """Frames in long silences (see the module docstring), as a bool array."""
    loud = float(np.percentile(rms, 95)) if rms.size else 0.0
    quiet = (rms < config.silence_floor) | (rms < loud * 10 ** (config.silence_db / 20))
    drop = np.zeros(len(rms), bool)
    if not (~quiet).any():
        return ~drop  # no sound at all
    first, last = int(np.argmax(~quiet)), len(rms) - 1 - int(np.argmax(~quiet[::-1]))
    edge = int(round(config.edge_margin_s * fps))
    drop[: max(0, first - edge)] = True
    drop[last + 1 + edge:] = True
    margin, longest = int(round(config.rest_margin_s * fps)), config.rest_max_s * fps
    k = first
    while k <= last:
        if quiet[k]:
            end = k
            while end <= last and quiet[end]:
                end += 1
            if end - k > longest:
                drop[k + margin:end - margin] = True
            k = end
        else:
            k += 1
    return drop


SEEK_MARGIN_S = 1.0  # a segment's seek aims this far before its first frame's time (and lands at the keyframe before)


def decode_at_fps(path: str | Path, fps: float, rows: tuple[int, int] | None = None, first: int = 0,
                  stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(corpus frame index, BGR frame): for corpus frame k, the source frame showing at
    its centre time (k+0.5)/fps; as many frames as the stream's duration holds at `fps`.
    With `rows` (start, stop), only those rows of each frame (the keyboard's band). A
    source frame is converted to BGR only when it is yielded, once. Decoding is threaded,
    within the task's thread budget. Only frames `first` <= k < `stop`: decoded from a
    seek to the keyframe before `first`, the very frames a decode from the start gives
    (from the start when the seek lands too late to tell: a container without an index)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        thread_decoder(stream)
        base = float(stream.time_base)
        start = float(stream.start_time or 0) * base
        if stream.duration:
            duration = float(stream.duration) * base
        else:
            duration = float(container.duration) / av.time_base if container.duration else None
        n_total = int(round(duration * fps)) if duration else None
        if n_total is not None:
            stop = n_total if stop is None else min(stop, n_total)
        k, previous, image = 0, None, None
        for frame in _decoded_from(container, stream, (first + 0.5) / fps if first > 0 else None, start, base):
            t = (frame.pts or 0) * base - start
            while previous is not None and (k + 0.5) / fps < t and (stop is None or k < stop):
                if k >= first:
                    image = to_bgr(previous, rows) if image is None else image
                    yield k, image
                k += 1
            if stop is not None and k >= stop:
                return
            previous, image = frame, None
        end = stop if stop is not None else k + 1  # a stream of unknown duration: its last frame once
        while previous is not None and k < end:
            if k >= first:
                image = to_bgr(previous, rows) if image is None else image
                yield k, image
            k += 1


def _decoded_from(container, stream, needed_s: float | None, start: float, base: float) -> Iterator:
    """The stream's frames from the keyframe before `needed_s` (seconds from the stream's
    start; None: from the start). A seek that lands after it starts again from the top."""
    if needed_s is None:
        yield from container.decode(stream)
        return
    container.seek(int(max(0.0, needed_s - SEEK_MARGIN_S + start) / base), stream=stream, backward=True)
    frames = container.decode(stream)
    head = next(frames, None)
    if head is not None and (head.pts or 0) * base - start > needed_s:
        container.seek(int(start / base), stream=stream, backward=True)
        frames = container.decode(stream)
        head = next(frames, None)
    if head is not None:
        yield head
        yield from frames


def to_bgr(frame, rows: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded PyAV frame's rows [start, stop) (all of them: None; clipped to the frame) as BGR. An 8-bit
    limited-range 4:2:0 frame (what YouTube serves) converts only those rows from its
    planes: converting a whole 720p frame costs as much as decoding it, and the frame pass
    needs only the keyboard's band. Other formats convert whole through FFmpeg."""
    top, bottom = (max(0, rows[0]), min(frame.height, max(0, rows[1]))) if rows is not None else (0, frame.height)
    planar = (frame.format.name == "yuv420p" and frame.color_range != 2 and frame.width % 2 == 0
              and frame.height % 2 == 0 and bottom > top)
    if rows is None or not planar:
        image = frame.to_ndarray(format="bgr24")
        return image if rows is None else image[top:bottom]
    first, stop, width = top // 2 * 2, bottom + bottom % 2, frame.width  # whole chroma rows
    luma, blue, red = (np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size) for plane in frame.planes)
    i420 = np.concatenate([luma[first:stop, :width].ravel(), blue[first // 2:stop // 2, :width // 2].ravel(),
                           red[first // 2:stop // 2, :width // 2].ravel()])
    return cv2.cvtColor(i420.reshape(-1, width), cv2.COLOR_YUV2BGR_I420)[top - first:bottom - first]


def keyboard_rows(quad, margin: int = 2) -> tuple[int, int]:
    """The rows [start, stop) of a frame that a quad's rectification reads (bilinear: one
    pixel beyond its corners, and a margin); the frame's height clips stop."""
    ys = np.asarray(quad, np.float64).reshape(4, 2)[:, 1]
    return max(0, int(np.floor(ys.min())) - margin), int(np.ceil(ys.max())) + margin + 1


def frame_pass(path: str | Path, quad, reference: np.ndarray, config: FrameConfig = FrameConfig(),
               silent: np.ndarray | None = None, start_s: float | None = None,
               end_s: float | None = None, with_key_levels: bool = True, first: int = 0,
               stop: int | None = None) -> Iterator[list[FrameRecord]]:
    """Batches of FrameRecords for every frame of the video at the corpus fps, or for the
    segment `first` <= k < `stop` of them (without the kept frames' key levels when not
    asked: benchmarks/av_agreement.py's anchor)."""
    rows = keyboard_rows(quad)  # only the keyboard's band is converted to BGR; its top row is the crop's origin
    matrix = rectifier(quad, config) @ np.array([[1, 0, 0], [0, 1, rows[0]], [0, 0, 1]], np.float64)
    reference_profile = black_key_profile(reference)
    encode = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    batch: list[FrameRecord] = []
    for k, frame in decode_at_fps(path, config.fps, rows, first, stop):
        t = (k + 0.5) / config.fps
        crop = rectify(frame, matrix, config)
        reason = None
        similarity = float(black_key_profile(crop) @ reference_profile)
        if (start_s is not None and t < start_s) or (end_s is not None and t >= end_s):
            reason = OUTSIDE_RANGE
        elif similarity < config.keyboard_similarity:
            reason = NO_KEYBOARD
        elif silent is not None and k < len(silent) and silent[k]:
            reason = SILENT
        jpeg = cv2.imencode(".jpg", crop, encode)[1].tobytes() if reason is None else None
        levels = key_levels(crop) if reason is None and with_key_levels else None
        batch.append(FrameRecord(frame=k, t=round(t, 6), kept=reason is None, drop_reason=reason, jpeg=jpeg,
                                 keyboard_similarity=round(similarity, 4), key_levels=levels))
        if len(batch) >= config.batch_frames:
            yield batch
            batch = []
    if batch:
        yield batch
