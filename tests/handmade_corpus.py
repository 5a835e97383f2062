"""A small corpus written by the project's own shard writers from frames whose truth is known.

Each frame's crop is drawn from its (video, frame), so a test can tell which frame it is
looking at: the top half is a flat grey that encodes the frame, and the keys down in that
frame are dark bars at their columns in the bottom half, so a model can learn them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from contract.atomic import atomic_json, atomic_parquet
from contract.config import ShardConfig
from contract.layout import CorpusLayout
from contract.records import FRAMES_SCHEMA, LABELS_SCHEMA
from pipelines.shards import write_frame_parts, write_label_parts, write_wds_shards

VERSION = "handmade-0001"
CROP = (100, 900)  # H, W


def grey_of(video_index: int, frame: int) -> int:
    """The flat grey of a frame's top half: distinct for neighbouring frames and videos."""
    return 20 + (video_index * 53 + frame * 7) % 200


def keys_of(frame: int, video_index: int) -> list[int]:
    """Keys (88-key index) down in a frame: a slow scale, with a rest every 8th frame."""
    if frame % 8 == 7:
        return []
    return [(video_index * 11 + frame // 2) % 88, (video_index * 11 + frame // 2 + 40) % 88]


def crop_image(video_index: int, frame: int) -> np.ndarray:
    image = np.full((*CROP, 3), 235, np.uint8)
    image[: CROP[0] // 2] = grey_of(video_index, frame)
    for key in keys_of(frame, video_index):
        x0 = int(key * CROP[1] / 88)
        image[CROP[0] // 2:, x0:x0 + CROP[1] // 88] = 30
    return image


def write_corpus(root: Path, videos: dict[str, tuple[str, list[bool]]], rows_per_part: int = 9,
                 shard_samples: int = 7) -> Path:
    """videos: id -> (split, kept flag per frame). Small parts and shards, so videos straddle them."""
    work = root / ".work"
    by_split: dict[str, list[str]] = {}
    for index, (video_id, (split, kept)) in enumerate(sorted(videos.items())):
        by_split.setdefault(split, []).append(video_id)
        frames, labels = [], []
        for k, keep in enumerate(kept):
            jpeg = cv2.imencode(".jpg", crop_image(index, k), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            frames.append({"video_id": video_id, "frame": k, "t": (k + 0.5) / 25, "kept": keep,
                           "drop_reason": None if keep else "no_keyboard", "jpeg": jpeg if keep else None})
            roll, before = np.zeros(88, bool), np.zeros(88, bool)
            roll[keys_of(k, index)] = True
            before[keys_of(k - 1, index) if k else []] = True
            labels.append({"video_id": video_id, "frame": k, "frame_roll": roll.tolist(),
                           "onset_roll": (roll & ~before).tolist(), "offset_roll": (before & ~roll).tolist(),
                           "velocity": (roll * (40 + k % 50)).astype(np.uint8).tolist()})
        atomic_parquet(pa.Table.from_pylist(frames, schema=FRAMES_SCHEMA), work / "frames" / f"{video_id}.parquet")
        atomic_parquet(pa.Table.from_pylist(labels, schema=LABELS_SCHEMA), work / "labels" / f"{video_id}.parquet")
    for split, ids in by_split.items():
        parts = [root / "frames" / split / record["name"] for record in write_frame_parts(
            [work / "frames" / f"{v}.parquet" for v in ids], root / "frames" / split, rows_per_part)]
        sources = {v: work / "labels" / f"{v}.parquet" for v in ids}
        write_label_parts(parts, sources, root / "labels" / VERSION / split)
        write_wds_shards(parts, sources, split, VERSION, CorpusLayout(root),
                         ShardConfig(shard_samples=shard_samples, shard_bytes=2**30))
    atomic_json({"format": "pianocorpus/1", "label_versions": {VERSION: {"backend": "handmade"}},
                 "default_label_version": VERSION, "config": {"frames": {"fps": 25.0}}}, root / "corpus.json")
    return root


def expected_windows(videos: dict[str, tuple[str, list[bool]]], split: str) -> list[tuple[str, int]]:
    """(video, centre) of every sample, computed from the kept flags alone."""
    out = []
    for video_id, (s, kept) in sorted(videos.items()):
        if s != split:
            continue
        for t in range(2, len(kept) - 2):
            if all(kept[t - 2:t + 3]):
                out.append((video_id, t))
    return out


def video_index(videos: dict, video_id: str) -> int:
    return sorted(videos).index(video_id)
