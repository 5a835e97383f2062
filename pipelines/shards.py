"""Assemble the corpus's split shards from the per-video work files.

Deterministic: videos in id order, parts cut every `rows_per_part` frames, WebDataset
shards cut at `shard_samples` samples or `shard_bytes` bytes, so the same work files give
the same shards whatever ran them. Frames and labels parts are cut at the same rows:
part N of `frames/SPLIT` and of `labels/VERSION/SPLIT` hold the same frames. Every file is
written under a temporary name and renamed.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.atomic import atomic_json, atomic_parquet
from pipelines.stages import FRAMES_SCHEMA, LABELS_SCHEMA


def _clear(folder: Path, pattern: str) -> None:
    """Remove an earlier assembly's shards, so a smaller rebuild leaves no stale part."""
    if folder.is_dir():
        for stale in folder.glob(pattern):
            stale.unlink()


def _parts(tables: Iterator[pa.Table], rows_per_part: int) -> Iterator[pa.Table]:
    buffer, size = [], 0
    for table in tables:
        buffer.append(table)
        size += table.num_rows
        while size >= rows_per_part:
            merged = pa.concat_tables(buffer)
            yield merged.slice(0, rows_per_part)
            rest = merged.slice(rows_per_part)
            buffer, size = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if size:
        yield pa.concat_tables(buffer)


def write_frame_parts(sources: list[Path], folder: Path, rows_per_part: int) -> list[Path]:
    """The per-video frame tables, in order, as folder/part-NNNNN.parquet."""
    _clear(folder, "part-*.parquet")
    paths = []
    for n, table in enumerate(_parts((pq.read_table(p, schema=FRAMES_SCHEMA) for p in sources), rows_per_part)):
        paths.append(folder / f"part-{n:05d}.parquet")
        atomic_parquet(table, paths[-1])
    return paths


def _frame_parts(frames_parts: list[Path], columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The split's frame parts in order; only `columns` when given (the JPEG column is
    most of a part and most of the time it takes to read one)."""
    for path in frames_parts:
        yield pq.read_table(path, schema=FRAMES_SCHEMA, columns=columns)


class _LabelTables:
    """Per-video label tables, read once each (a video's frames are contiguous)."""

    def __init__(self, sources: dict[str, Path]):
        self.sources, self.video_id, self.table = sources, None, None

    def rows(self, video_id: str, frames: list[int]) -> pa.Table:
        if video_id != self.video_id:
            self.video_id, self.table = video_id, pq.read_table(self.sources[video_id], schema=LABELS_SCHEMA)
        return self.table.take(pa.array(frames))  # a label table's row k is frame k


def _runs(video_ids: list[str]) -> Iterator[tuple[str, int, int]]:
    start = 0
    for i in range(1, len(video_ids) + 1):
        if i == len(video_ids) or video_ids[i] != video_ids[start]:
            yield video_ids[start], start, i
            start = i


def write_label_parts(frames_parts: list[Path], sources: dict[str, Path], folder: Path) -> int:
    """labels part N holds the rolls of exactly the frames of frames part N."""
    _clear(folder, "part-*.parquet")
    labels = _LabelTables(sources)
    for n, table in enumerate(_frame_parts(frames_parts, ["video_id", "frame"])):
        ids, frames = table.column("video_id").to_pylist(), table.column("frame").to_pylist()
        pieces = [labels.rows(v, frames[a:b]) for v, a, b in _runs(ids)]
        atomic_parquet(pa.concat_tables(pieces) if pieces else LABELS_SCHEMA.empty_table(),
                        folder / f"part-{n:05d}.parquet")
    return len(frames_parts)


def _samples(frames_parts: list[Path], sources: dict[str, Path], split: str, version: str) -> Iterator[dict]:
    labels = _LabelTables(sources)
    for table in _frame_parts(frames_parts):
        kept = table.filter(pa.compute.field("kept"))
        ids, frames = kept.column("video_id").to_pylist(), kept.column("frame").to_pylist()
        times, jpegs = kept.column("t").to_pylist(), kept.column("jpeg").to_pylist()
        for video_id, a, b in _runs(ids):
            rolls = labels.rows(video_id, frames[a:b])
            stacked = np.stack([np.array(rolls.column(c).to_pylist(), np.uint8)
                                for c in ("frame_roll", "onset_roll", "offset_roll", "velocity")], axis=1)
            for i in range(a, b):
                buffer = io.BytesIO()
                np.save(buffer, stacked[i - a])  # (4, 88): frame, onset, offset, velocity
                yield {"__key__": f"{video_id}_{frames[i]:06d}", "jpg": jpegs[i], "rolls.npy": buffer.getvalue(),
                       "json": json.dumps({"video_id": video_id, "frame": frames[i], "t": times[i], "split": split,
                                           "label_version": version}).encode()}


def _add_sample(tar: tarfile.TarFile, sample: dict) -> None:
    """A sample's files side by side as KEY.EXT, as webdataset's TarWriter lays them out
    (sorted, read-only, fixed owner and mtime: the same bytes every run). The standard
    library writes them: importing webdataset imports torch, 1.3 s of every build."""
    for ext in sorted(k for k in sample if k != "__key__"):
        info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
        info.size, info.mtime, info.mode, info.uname, info.gname = len(sample[ext]), 1, 0o444, "bigdata", "bigdata"
        tar.addfile(info, io.BytesIO(sample[ext]))


def write_wds_shards(frames_parts: list[Path], sources: dict[str, Path], split: str, version: str, folder: Path,
                     stats_folder: Path, shard_samples: int, shard_bytes: int) -> list[dict]:
    """Kept frames with their rolls as SPLIT-NNNNNN.tar; one stats json per shard."""
    _clear(folder, f"{split}-*.tar")
    _clear(stats_folder, f"{split}-*_stats.json")
    shards: list[dict] = []
    writer = handle = None

    def close() -> None:
        writer.close()
        handle.close()
        final = folder / f"{split}-{len(shards) - 1:06d}.tar"
        os.replace(final.with_name(final.name + ".part"), final)
        shards[-1]["bytes"] = final.stat().st_size
        atomic_json(shards[-1], stats_folder / f"{final.stem}_stats.json")

    for sample in _samples(frames_parts, sources, split, version):
        size = sum(len(v) for k, v in sample.items() if k != "__key__")
        if writer is None or shards[-1]["count"] >= shard_samples or shards[-1]["payload"] + size > shard_bytes:
            if writer is not None:
                close()
            folder.mkdir(parents=True, exist_ok=True)
            shards.append({"shard": f"{split}-{len(shards):06d}.tar", "split": split, "label_version": version,
                           "count": 0, "payload": 0, "videos": []})
            handle = open(folder / f"{shards[-1]['shard']}.part", "wb")
            writer = tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT)
        _add_sample(writer, sample)
        shards[-1]["count"] += 1
        shards[-1]["payload"] += size
        video_id = sample["__key__"].rsplit("_", 1)[0]
        if not shards[-1]["videos"] or shards[-1]["videos"][-1] != video_id:
            shards[-1]["videos"].append(video_id)
    if writer is not None:
        close()
    return shards
