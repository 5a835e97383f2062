"""The audit's pictures of one video, each an <img> with a PNG data URI (the pages open
offline): the source frame with the keyboard quad and the 88 keys drawn, a strip of kept
crops, one frame per drop reason, and the label piano roll over the video's timeline
with the kept/dropped bar under it.

Kept crops come from the corpus; the source frame and the dropped frames (the corpus
keeps no picture of those) come from the download cache when the video is still there.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.layout import CacheLayout, CorpusLayout
from contract.piano import BLACK_LENGTH, N_WHITE, key_layout
from contract.store import pull
from contract.vocab import DROP_REASONS
from curation.rectify import rectify_keyboard

_DROP_COLOURS = dict(zip(DROP_REASONS, (("#888888", "grey"), ("#cc4444", "red"), ("#e9a23b", "orange"))))
DROP_COLOURS = {reason: colour for reason, (colour, _) in _DROP_COLOURS.items()}
KEPT_COLOUR = "#4c9a2a"
STRIP = 6  # kept crops shown


def image_tag(image_bgr: np.ndarray, alt: str, quality: int = 85) -> str:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode the picture {alt!r}")
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}">'


def figure_tag(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


@dataclass
class VideoFrames:
    """One video's frame table (kept flags and drop reasons; JPEGs of kept frames) and rolls."""

    frame: np.ndarray
    t: np.ndarray  # seconds into the source video
    kept: np.ndarray
    drop_reason: list
    jpeg: list
    rolls: np.ndarray | None  # (n, 88) bool, frame rolls of the label version


def read_video_frames(corpus: CorpusLayout, video_id: str, split: str, version: str) -> VideoFrames:
    """The video's rows of its split's frames parts, and of the label parts beside them."""
    frames, rolls = [], []
    for part in corpus.frame_parts(split):
        table = pq.read_table(pull(part), filters=[("video_id", "=", video_id)])
        if not table.num_rows:
            continue
        frames.append(table)
        labels = pull(corpus.label_part(version, split, part))
        if labels.is_file():
            rows = pq.read_table(labels, columns=["video_id", "frame", "frame_roll"], filters=[("video_id", "=", video_id)])
            rolls.append(np.asarray(rows.column("frame_roll").to_pylist(), bool).reshape(-1, 88))
    if not frames:
        return VideoFrames(np.zeros(0, int), np.zeros(0), np.zeros(0, bool), [], [], None)
    table = pa.concat_tables(frames)
    return VideoFrames(frame=np.asarray(table.column("frame").to_pylist()), t=np.asarray(table.column("t").to_pylist()),
                       kept=np.asarray(table.column("kept").to_pylist()),
                       drop_reason=table.column("drop_reason").to_pylist(), jpeg=table.column("jpeg").to_pylist(),
                       rolls=np.concatenate(rolls) if rolls else None)


def draw_keys(frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The frame with the quad (A0's corners marked) and every key's outline drawn through it."""
    out = frame.copy()
    to_frame = cv2.getPerspectiveTransform(np.float32([[0, 0], [N_WHITE, 0], [N_WHITE, 1], [0, 1]]),
                                           np.asarray(quad, np.float32))

    def polyline(points, colour, thickness=1):
        xy = cv2.perspectiveTransform(np.asarray(points, np.float32)[None], to_frame)[0]
        cv2.polylines(out, [np.round(xy).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)

    layout = key_layout()
    for m in range(N_WHITE + 1):
        polyline([[m, 0], [m, 1]], (255, 200, 0))
    for left, right in zip(layout.left[layout.black], layout.right[layout.black]):
        polyline([[left, 0], [left, BLACK_LENGTH], [right, BLACK_LENGTH], [right, 0]], (255, 0, 255))
    polyline([*np.asarray(quad).tolist(), np.asarray(quad)[0].tolist()], (0, 255, 0), 2)
    a0 = np.round(np.asarray(quad)[0]).astype(int)
    cv2.circle(out, tuple(int(v) for v in a0), 7, (0, 0, 255), -1)
    cv2.putText(out, "A0", (int(a0[0]) + 9, int(a0[1]) + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
    return out


def source_frames(media, times: list[float]) -> dict[float, np.ndarray]:
    """The source video's frames at these times (a seek each: a long video is not decoded
    up to them)."""
    import av

    found: dict[float, np.ndarray] = {}
    with av.open(str(media)) as container:
        stream = container.streams.video[0]
        base = float(stream.time_base)
        start = float(stream.start_time or 0) * base  # the frames' t counts from the stream's start
        for t in sorted(set(times)):
            container.seek(int((start + max(t - 1.0, 0)) / base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts * base - start >= t - 0.02:
                    found[t] = frame.to_ndarray(format="bgr24")
                    break
    return found


def timeline(frames: VideoFrames, fps: float, title: str) -> str:
    """The label piano roll (note names) over time, and under it the kept/dropped bar."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from pretty_midi import note_number_to_name

    n = len(frames.frame)
    fig, (roll_ax, bar_ax) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True,
                                          gridspec_kw={"height_ratios": [6, 1], "hspace": 0.08})
    end = n / fps
    if frames.rolls is not None and len(frames.rolls):
        roll_ax.imshow(frames.rolls.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                       extent=(0, end, 20.5, 108.5))
    ticks = [m for m in range(21, 109) if m % 12 == 0 or m == 21]
    roll_ax.set_yticks(ticks, [note_number_to_name(m) for m in ticks])
    roll_ax.set_ylabel("note")
    roll_ax.set_title(title)
    codes = np.array([0 if k else 1 + DROP_REASONS.index(r) if r in DROP_REASONS else 1 for k, r in
                      zip(frames.kept, frames.drop_reason)])
    cmap = ListedColormap([KEPT_COLOUR, *DROP_COLOURS.values()])
    bar_ax.imshow(codes[None], aspect="auto", cmap=cmap, vmin=0, vmax=len(DROP_REASONS), interpolation="nearest",
                  extent=(0, end, 0, 1))
    bar_ax.set_yticks([])
    bar_ax.set_xlabel("seconds")
    present = ["kept"] + sorted({r for k, r in zip(frames.kept, frames.drop_reason) if not k and r})
    bar_ax.set_title("frames: " + ", ".join(f"{p} ({'green' if p == 'kept' else _DROP_COLOURS[p][1]})" for p in present),
                     fontsize=9, loc="left")
    return figure_tag(fig, "label piano roll and kept/dropped frames")


def video_pictures(corpus: CorpusLayout, row: dict, version: str, cache: CacheLayout | None,
                   crop_size: tuple[int, int]) -> dict[str, str]:
    """HTML of each picture of one ok video: source, kept, drops, timeline."""
    frames = read_video_frames(corpus, row["video_id"], row["split"], version)
    fps = float(row.get("fps") or 25.0)
    out = {"timeline": timeline(frames, fps, f"{row['video_id']}: labels {version}")}
    kept = np.flatnonzero(frames.kept)
    strip = kept[np.linspace(0, len(kept) - 1, min(STRIP, len(kept))).round().astype(int)] if len(kept) else []
    crops = [cv2.imdecode(np.frombuffer(frames.jpeg[i], np.uint8), cv2.IMREAD_COLOR) for i in strip]
    out["kept"] = "".join(image_tag(c, f"kept frame {int(frames.frame[i])}") + f"<figcaption>frame {int(frames.frame[i])} "
                          f"({frames.t[i]:.1f} s)</figcaption>" for c, i in zip(crops, strip))
    media = cache.cached_media(row["video_id"]) if cache is not None else None
    quad = np.asarray(row["kb_quad"], float).reshape(4, 2) if row.get("kb_quad") is not None else None
    drops = {}
    for reason in DROP_REASONS:
        where = [i for i, (k, r) in enumerate(zip(frames.kept, frames.drop_reason)) if not k and r == reason]
        if where:
            drops[reason] = where[len(where) // 2]
    middle = int(strip[len(strip) // 2]) if len(strip) else None
    wanted = [float(frames.t[i]) for i in [*([middle] if middle is not None else []), *drops.values()]]
    decoded = source_frames(media, wanted) if media is not None else {}
    if quad is not None and middle is not None and float(frames.t[middle]) in decoded:
        out["source"] = image_tag(draw_keys(decoded[float(frames.t[middle])], quad), "source frame with the keyboard")
    else:
        out["source"] = "<p>The source video is not in the download cache: no source frame.</p>"
    pictures = []
    for reason, i in drops.items():
        frame = decoded.get(float(frames.t[i]))
        if frame is None:
            pictures.append(f"<p>{html.escape(reason)}: frame {int(frames.frame[i])} (source not in the cache)</p>")
            continue
        shown = rectify_keyboard(frame, quad, *crop_size) if quad is not None and reason != "no_keyboard" else \
            cv2.resize(frame, (480, int(480 * frame.shape[0] / frame.shape[1])))  # the whole frame, small
        pictures.append(image_tag(shown, f"dropped: {reason}") + f"<figcaption>{html.escape(reason)}: frame "
                        f"{int(frames.frame[i])} ({frames.t[i]:.1f} s)</figcaption>")
    out["drops"] = "".join(pictures) or "<p>No frame was dropped.</p>"
    return out
