"""Assemble the corpus's split shards from the per-video work files.

Deterministic: videos in id order, parts cut every `rows_per_part` frames, WebDataset
shards cut at `shard_samples` samples or `shard_bytes` bytes, so the same work files give
the same shards whatever ran them. Frames and labels parts are cut at the same rows:
part N of `frames/SPLIT` and of `labels/VERSION/SPLIT` hold the same frames. They are
written into a new generation's empty folders (contract/publish.py), each file under a
temporary name, then renamed.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_parquet, atomic_path
from contract.config import ShardConfig
from contract.integrity import file_record
from contract.layout import CorpusLayout, part_name, shard_name
from contract.records import FRAMES_SCHEMA, LABELS_SCHEMA


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


def write_frame_parts(sources: list[Path], folder: Path, rows_per_part: int) -> list[dict]:
    """The per-video frame tables, in order, as folder/part-NNNNN.parquet; a file record
    (name, size, hash, rows, kept frames) of each."""
    records = []
    for n, table in enumerate(_parts((pq.read_table(p, schema=FRAMES_SCHEMA) for p in sources), rows_per_part)):
        atomic_parquet(table, folder / part_name(n))
        kept = int(pa.compute.sum(table.column("kept")).as_py() or 0)
        records.append(file_record(folder / part_name(n), rows=table.num_rows, kept=kept))
    return records


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


def write_label_parts(frames_parts: list[Path], sources: dict[str, Path], folder: Path) -> list[dict]:
    """The labels part of the same name as each frames part holds the rolls of exactly its
    frames; a file record of each."""
    labels, records = _LabelTables(sources), []
    for frames_part, table in zip(frames_parts, _frame_parts(frames_parts, ["video_id", "frame"])):
        ids, frames = table.column("video_id").to_pylist(), table.column("frame").to_pylist()
        pieces = [labels.rows(v, frames[a:b]) for v, a, b in _runs(ids)]
        atomic_parquet(pa.concat_tables(pieces) if pieces else LABELS_SCHEMA.empty_table(), folder / frames_part.name)
        records.append(file_record(folder / frames_part.name, rows=len(ids)))
    return records


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _samples(frames_parts: list[Path], sources: dict[str, Path], split: str, version: str,
             hands: dict[str, Path] | None = None) -> Iterator[dict]:
    labels, last_hands = _LabelTables(sources), {}
    for table in _frame_parts(frames_parts):
        kept = table.filter(pa.compute.field("kept"))
        ids, frames = kept.column("video_id").to_pylist(), kept.column("frame").to_pylist()
        times, jpegs = kept.column("t").to_pylist(), kept.column("jpeg").to_pylist()
        for video_id, a, b in _runs(ids):
            rolls = labels.rows(video_id, frames[a:b])
            stacked = np.stack([np.array(rolls.column(c).to_pylist(), np.uint8)
                                for c in ("frame_roll", "onset_roll", "offset_roll", "velocity")], axis=1)
            keypoints = _hand_keypoints(hands, video_id, last_hands)
            for i in range(a, b):
                sample = {"__key__": f"{video_id}_{frames[i]:06d}", "jpg": jpegs[i],
                          "rolls.npy": _npy(stacked[i - a]),  # (4, 88): frame, onset, offset, velocity
                          "json": json.dumps({"video_id": video_id, "frame": frames[i], "t": times[i], "split": split,
                                              "label_version": version}).encode()}
                if keypoints is not None:  # (hands, 21, 2) in keyboard coordinates, NaN where no hand
                    sample["hands.npy"] = _npy(keypoints[frames[i]])
                yield sample


def _hand_keypoints(hands: dict[str, Path] | None, video_id: str, last: dict) -> np.ndarray | None:
    """A video's hand keypoints in keyboard coordinates (n_frames, hands, 21, 2), when the
    corpus has hands and the video's are there; `last` keeps the video read last (its
    frames run on into the next part)."""
    path = (hands or {}).get(video_id)
    if path is None or not path.is_file():
        return None
    if last.get("video_id") != video_id:
        with np.load(path) as data:
            last.update(video_id=video_id, keypoints=data["keyboard"])
    return last["keypoints"]


def _add_sample(tar: tarfile.TarFile, sample: dict) -> None:
    """A sample's files side by side as KEY.EXT, as webdataset's TarWriter lays them out
    (sorted, read-only, fixed owner and mtime: the same bytes every run). The standard
    library writes them: importing webdataset imports torch, 1.3 s of every build."""
    for ext in sorted(k for k in sample if k != "__key__"):
        info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
        info.size, info.mtime, info.mode, info.uname, info.gname = len(sample[ext]), 1, 0o444, "bigdata", "bigdata"
        tar.addfile(info, io.BytesIO(sample[ext]))


class _ShardTar:
    """A tar written under its temporary name; `close` finishes it and renames it into place."""

    def __init__(self, path: Path):
        self._stack = ExitStack()
        part = self._stack.enter_context(atomic_path(path))
        self.tar = tarfile.open(fileobj=self._stack.enter_context(open(part, "wb")), mode="w",
                                format=tarfile.USTAR_FORMAT)

    def close(self) -> None:
        self.tar.close()
        self._stack.close()


def write_wds_shards(frames_parts: list[Path], sources: dict[str, Path], split: str, version: str,
                     corpus: CorpusLayout, config: ShardConfig, hands: dict[str, Path] | None = None) -> list[dict]:
    """Kept frames with their rolls (and hand keypoints, where `hands` has a video's) as
    wds/VERSION/SPLIT/SPLIT-NNNNNN.tar, a stats json per shard; a file record (name, size,
    hash, samples) of each."""
    folder = corpus.wds_dir(version, split)
    shards: list[dict] = []
    records: list[dict] = []
    tar = None

    def close() -> None:
        tar.close()
        final = folder / shards[-1]["shard"]
        shards[-1]["bytes"] = final.stat().st_size
        atomic_json(shards[-1], corpus.wds_stats(version, final))
        records.append(file_record(final, samples=shards[-1]["count"]))

    for sample in _samples(frames_parts, sources, split, version, hands):
        size = sum(len(v) for k, v in sample.items() if k != "__key__")
        full = tar is not None and (shards[-1]["count"] >= config.shard_samples
                                    or shards[-1]["payload"] + size > config.shard_bytes)
        if tar is None or full:
            if tar is not None:
                close()
            shards.append({"shard": shard_name(split, len(shards)), "split": split, "label_version": version,
                           "count": 0, "payload": 0, "videos": []})
            tar = _ShardTar(folder / shards[-1]["shard"])
        _add_sample(tar.tar, sample)
        shards[-1]["count"] += 1
        shards[-1]["payload"] += size
        video_id = sample["__key__"].rsplit("_", 1)[0]
        if not shards[-1]["videos"] or shards[-1]["videos"][-1] != video_id:
            shards[-1]["videos"].append(video_id)
    if tar is not None:
        close()
    return records
