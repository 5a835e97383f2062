"""Assemble the corpus's split shards from the per-video work files.

Deterministic: videos in id order, parts cut every `rows_per_part` frames, WebDataset
shards cut at `shard_samples` samples or `shard_bytes` bytes, so the same work files give
the same shards whatever ran them. Frames and labels parts are cut at the same rows:
part N of `frames/SPLIT` and of `labels/VERSION/SPLIT` hold the same frames.

Each file is written by a task of its own (`run_tasks`: Ray tasks, in parallel on any
node, when Ray is up; in turn here when not), from a plan the driver makes out of small
summaries: the frames parts from each video's frame count (its work file's footer), the
labels parts one per frames part, the tars from each frames part's kept samples' sizes (a
task per part measures them). So the driver never holds frames, and its memory does not
grow with the corpus. Files are written into a new generation's empty folders
(contract/publish.py), each under a temporary name, then renamed.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_parquet, atomic_path
from contract.config import ShardConfig
from contract.integrity import file_record
from contract.layout import CorpusLayout, part_name, shard_name
from contract.piano import N_KEYS
from contract.records import FRAMES_SCHEMA, LABELS_SCHEMA
from contract.store import parquet_rows, pull, restaged

Run = tuple[str, int, int]  # (a source, first row, one past the last): a run of rows of one file


def run_tasks(task: Callable, jobs: list[tuple]) -> list:
    """task(*job) for every job, in order: as Ray tasks when Ray is up, else here in turn.
    The paths of a corpus on object storage travel as paths of the receiving node's stage."""
    import ray

    if not ray.is_initialized():
        return [task(*job) for job in jobs]
    remote = ray.remote(num_cpus=1)(task)
    return ray.get([remote.remote(*restaged(job)) for job in jobs])


def _cut(counts: list[tuple[str, int]], rows_per_part: int) -> list[list[Run]]:
    """The sources' rows, in order, cut every `rows_per_part` rows: each part's runs."""
    parts: list[list[Run]] = [[]]
    room = rows_per_part
    for source, n in counts:
        start = 0
        while start < n:
            take = min(room, n - start)
            parts[-1].append((source, start, start + take))
            start, room = start + take, room - take
            if not room:
                parts.append([])
                room = rows_per_part
    return [runs for runs in parts if runs]


def _rows(path: str | Path, start: int, stop: int) -> pa.Table:
    """Rows [start, stop) of a video's frame table, reading only the row groups that hold
    them (the frame pass writes one a batch)."""
    file = pq.ParquetFile(pull(Path(path)))
    groups, first, offset = [], None, 0
    for g in range(file.metadata.num_row_groups):
        n = file.metadata.row_group(g).num_rows
        if offset < stop and offset + n > start:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    return file.read_row_groups(groups).cast(FRAMES_SCHEMA).slice(start - first, stop - start)


def write_frame_part(runs: list[Run], path: Path) -> dict:
    """One frames part from runs of the videos' frame tables; its file record (name, size,
    hash, rows, kept frames)."""
    table = pa.concat_tables([_rows(source, a, b) for source, a, b in runs]).combine_chunks()
    atomic_parquet(table, path)
    kept = int(pa.compute.sum(table.column("kept")).as_py() or 0)
    return file_record(path, rows=table.num_rows, kept=kept)


def write_frame_parts(sources: list[Path], folder: Path, rows_per_part: int) -> list[dict]:
    """The per-video frame tables, in order, as folder/part-NNNNN.parquet; a file record of each."""
    counts = [(str(p), parquet_rows(p)) for p in sources]
    plan = _cut(counts, rows_per_part)
    return run_tasks(write_frame_part, [(runs, folder / part_name(n)) for n, runs in enumerate(plan)])


class _LabelTables:
    """Per-video label tables, read once each (a video's frames are contiguous)."""

    def __init__(self, sources: dict[str, Path]):
        self.sources, self.video_id, self.table = sources, None, None

    def rows(self, video_id: str, frames: list[int]) -> pa.Table:
        if video_id != self.video_id:
            self.video_id, self.table = video_id, pq.read_table(pull(self.sources[video_id]), schema=LABELS_SCHEMA)
        return self.table.take(pa.array(frames))  # a label table's row k is frame k


def _runs(video_ids: list[str]) -> Iterator[tuple[str, int, int]]:
    start = 0
    for i in range(1, len(video_ids) + 1):
        if i == len(video_ids) or video_ids[i] != video_ids[start]:
            yield video_ids[start], start, i
            start = i


def write_label_part(frames_part: Path, sources: dict[str, Path], path: Path) -> dict:
    """The labels part that holds the rolls of exactly the frames of `frames_part`; its file record."""
    table = pq.read_table(pull(frames_part), schema=FRAMES_SCHEMA, columns=["video_id", "frame"])
    ids, frames = table.column("video_id").to_pylist(), table.column("frame").to_pylist()
    labels = _LabelTables(sources)
    pieces = [labels.rows(v, frames[a:b]) for v, a, b in _runs(ids)]
    atomic_parquet(pa.concat_tables(pieces).combine_chunks() if pieces else LABELS_SCHEMA.empty_table(), path)
    return file_record(path, rows=len(ids))


def write_label_parts(frames_parts: list[Path], sources: dict[str, Path], folder: Path) -> list[dict]:
    """A labels part of the same name beside each frames part; a file record of each."""
    return run_tasks(write_label_part, [(part, sources, folder / part.name) for part in frames_parts])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _kept(frames_part: Path, start: int = 0, stop: int | None = None, columns: list[str] | None = None) -> pa.Table:
    """Kept frames [start, stop) of a frames part (in the part's order); only `columns`
    (with `kept`) when given."""
    kept = pq.read_table(pull(frames_part), schema=FRAMES_SCHEMA, columns=columns).filter(pa.compute.field("kept"))
    return kept.slice(start, None if stop is None else stop - start)


def _rolls(labels: pa.Table) -> np.ndarray:
    """(rows, 4, 88) uint8: each row's frame, onset and offset rolls and velocities."""
    columns = [labels.column(c).combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.uint8)
               for c in ("frame_roll", "onset_roll", "offset_roll", "velocity")]
    return np.stack([c.reshape(-1, N_KEYS) for c in columns], axis=1)


def _sample_json(video_id: str, frame: int, t: float, split: str, version: str) -> bytes:
    return json.dumps({"video_id": video_id, "frame": frame, "t": t, "split": split, "label_version": version}).encode()


ROLLS_BYTES = len(_npy(np.zeros((4, N_KEYS), np.uint8)))  # every sample's rolls.npy


def _samples(kept: pa.Table, sources: dict[str, Path], split: str, version: str,
             hands: dict[str, Path] | None = None) -> Iterator[dict]:
    """The WebDataset samples of kept frames, in order."""
    labels, last_hands = _LabelTables(sources), {}
    ids, frames = kept.column("video_id").to_pylist(), kept.column("frame").to_pylist()
    times, jpegs = kept.column("t").to_pylist(), kept.column("jpeg").to_pylist()
    for video_id, a, b in _runs(ids):
        stacked = _rolls(labels.rows(video_id, frames[a:b]))
        keypoints = _hand_keypoints(hands, video_id, last_hands)
        for i in range(a, b):
            sample = {"__key__": f"{video_id}_{frames[i]:06d}", "jpg": jpegs[i],
                      "rolls.npy": _npy(stacked[i - a]),  # (4, 88): frame, onset, offset, velocity
                      "json": _sample_json(video_id, frames[i], times[i], split, version)}
            if keypoints is not None:  # (hands, 21, 2) in keyboard coordinates, NaN where no hand
                sample["hands.npy"] = _npy(keypoints[frames[i]])
            yield sample


def _payload(sample: dict) -> int:
    return sum(len(v) for k, v in sample.items() if k != "__key__")


def _hand_keypoints(hands: dict[str, Path] | None, video_id: str, last: dict) -> np.ndarray | None:
    """A video's hand keypoints in keyboard coordinates (n_frames, hands, 21, 2), when the
    corpus has hands and the video's are there; `last` keeps the video read last (its
    frames run on into the next part)."""
    if last.get("video_id") == video_id:
        return last["keypoints"]
    path = (hands or {}).get(video_id)
    if path is None or not pull(path).is_file():
        return None
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


def sample_sizes(frames_part: Path, split: str, version: str, hands: dict[str, Path] | None) -> np.ndarray:
    """The payload bytes of each kept frame's sample in a frames part (what the tars are
    cut by), as `_samples` makes them, without reading the labels or making the samples."""
    kept = _kept(frames_part, columns=["video_id", "frame", "t", "kept", "jpeg"])
    ids, frames, times = (kept.column(c).to_pylist() for c in ("video_id", "frame", "t"))
    sizes = pa.compute.binary_length(kept.column("jpeg")).to_numpy(zero_copy_only=False).astype(np.int64) + ROLLS_BYTES
    last_hands: dict = {}
    for video_id, a, b in _runs(ids):
        keypoints = _hand_keypoints(hands, video_id, last_hands)
        for i in range(a, b):
            sizes[i] += len(_sample_json(video_id, frames[i], times[i], split, version))
            sizes[i] += len(_npy(keypoints[frames[i]])) if keypoints is not None else 0
    return sizes


def _shard_plan(parts: list[Path], sizes: list[np.ndarray], config: ShardConfig) -> list[list[Run]]:
    """Each shard's runs of kept samples (frames part, first, one past the last): a shard
    is cut at `shard_samples` samples or before a sample that would take it over `shard_bytes`."""
    shards: list[list[Run]] = []
    count = payload = 0
    for part, part_sizes in zip(parts, sizes):
        for i, size in enumerate(part_sizes.tolist()):
            if not shards or count >= config.shard_samples or payload + size > config.shard_bytes:
                shards.append([])
                count = payload = 0
            runs = shards[-1]
            if runs and runs[-1][0] == str(part) and runs[-1][2] == i:
                runs[-1] = (str(part), runs[-1][1], i + 1)
            else:
                runs.append((str(part), i, i + 1))
            count, payload = count + 1, payload + size
    return shards


def write_wds_shard(runs: list[Run], sources: dict[str, Path], split: str, version: str,
                    hands: dict[str, Path] | None, path: Path, stats_path: Path) -> dict:
    """One tar of the runs' kept samples and its stats json (count, payload, videos,
    bytes); its file record (name, size, hash, samples)."""
    stats = {"shard": path.name, "split": split, "label_version": version, "count": 0, "payload": 0, "videos": []}
    tar = _ShardTar(path)
    for part, a, b in runs:
        for sample in _samples(_kept(Path(part), a, b), sources, split, version, hands):
            _add_sample(tar.tar, sample)
            stats["count"] += 1
            stats["payload"] += _payload(sample)
            video_id = sample["__key__"].rsplit("_", 1)[0]
            if not stats["videos"] or stats["videos"][-1] != video_id:
                stats["videos"].append(video_id)
    tar.close()
    stats["bytes"] = path.stat().st_size
    atomic_json(stats, stats_path)
    return file_record(path, samples=stats["count"])


def write_wds_shards(frames_parts: list[Path], sources: dict[str, Path], split: str, version: str,
                     corpus: CorpusLayout, config: ShardConfig, hands: dict[str, Path] | None = None) -> list[dict]:
    """Kept frames with their rolls (and hand keypoints, where `hands` has a video's) as
    wds/VERSION/SPLIT/SPLIT-NNNNNN.tar, a stats json per shard; a file record of each."""
    sizes = run_tasks(sample_sizes, [(part, split, version, hands) for part in frames_parts])
    folder = corpus.wds_dir(version, split)
    jobs = []
    for n, runs in enumerate(_shard_plan(frames_parts, sizes, config)):
        path = folder / shard_name(split, n)
        jobs.append((runs, sources, split, version, hands, path, corpus.wds_stats(version, path)))
    return run_tasks(write_wds_shard, jobs)
