"""Shard assembly (pipelines/shards.py): every frames part, labels part and tar written by a
task of its own from the driver's plan. The same work files give the same files byte for
byte whether real Ray tasks (2 CPUs) wrote them or the driver did in turn, the cuts follow
the shard sizes, and a part reads its rows from work files of many row groups."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract.config import ShardConfig
from contract.layout import CorpusLayout
from contract.records import FRAMES_SCHEMA
from pipelines.shards import write_frame_parts, write_label_parts, write_wds_shards
from tests.handmade_corpus import VERSION, write_corpus

VIDEOS = {
    "a": ("train", [True] * 23),
    "b": ("train", [True] * 9 + [False] * 2 + [True] * 3 + [False] + [True] * 12),
    "c": ("train", [False] * 3 + [True] * 4),
}
# A sample is 4.6-5.8 kB: 4 of them mostly fit in 22 kB, some not, so both rules cut.
SHARDS = ShardConfig(rows_per_part=9, shard_samples=4, shard_bytes=22_000)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[list[Path], dict[str, Path]]:
    """The handmade corpus's work files, each frames file rewritten as row groups of 4 rows
    (the frame pass writes one per batch)."""
    root = write_corpus(tmp_path_factory.mktemp("handmade") / "c", VIDEOS)
    frames = []
    for video_id in sorted(VIDEOS):
        path = root / ".work" / "frames" / f"{video_id}.parquet"
        table = pq.read_table(path, schema=FRAMES_SCHEMA)
        grouped = path.with_suffix(".groups.parquet")
        with pq.ParquetWriter(grouped, FRAMES_SCHEMA) as writer:
            for start in range(0, table.num_rows, 4):
                writer.write_table(table.slice(start, 4))
        assert pq.ParquetFile(grouped).metadata.num_row_groups > 1
        frames.append(grouped)
    return frames, {v: root / ".work" / "labels" / f"{v}.parquet" for v in sorted(VIDEOS)}


def _assemble(work, root: Path) -> dict[str, list[dict]]:
    frames, labels = work
    layout = CorpusLayout(root)
    records = {"frames": write_frame_parts(frames, layout.frames_dir("train"), SHARDS.rows_per_part)}
    parts = layout.frame_parts("train")
    records["labels"] = write_label_parts(parts, labels, layout.label_parts_dir(VERSION, "train"))
    records["wds"] = write_wds_shards(parts, labels, "train", VERSION, layout, SHARDS)
    return records


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def in_turn(work, tmp_path_factory):
    import ray

    assert not ray.is_initialized()
    root = tmp_path_factory.mktemp("in_turn")
    return root, _assemble(work, root)


def test_ray_tasks_write_the_same_files_as_the_driver_in_turn(work, in_turn, tmp_path):
    import ray

    root, records = in_turn
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        parallel = _assemble(work, tmp_path)
    finally:
        ray.shutdown()
    assert parallel == records
    assert _files(tmp_path) == _files(root)
    assert len(records["frames"]) == 7 and len(records["wds"]) > 7  # many tasks of each kind


def test_frames_parts_hold_the_videos_rows_in_order_cut_every_rows_per_part(work, in_turn):
    frames, _ = work
    root, records = in_turn
    whole = pa.concat_tables([pq.read_table(p, schema=FRAMES_SCHEMA) for p in frames])
    parts = CorpusLayout(root).frame_parts("train")
    assert [pq.ParquetFile(p).metadata.num_rows for p in parts] == [9] * 6 + [3]
    assert pa.concat_tables([pq.read_table(p, schema=FRAMES_SCHEMA) for p in parts]).equals(whole)
    assert [r["rows"] for r in records["labels"]] == [r["rows"] for r in records["frames"]]
    for part in parts:  # the labels part of the same name holds the same frames
        label = pq.read_table(CorpusLayout(root).label_parts_dir(VERSION, "train") / part.name)
        frame = pq.read_table(part, columns=["video_id", "frame"])
        assert label.select(["video_id", "frame"]).equals(frame.cast(label.select(["video_id", "frame"]).schema))


def _tar_samples(tar_path: Path) -> dict[str, int]:
    """Each sample's key and payload bytes, in the tar's order."""
    sizes: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            key = member.name.split(".", 1)[0]
            sizes[key] = sizes.get(key, 0) + member.size
    return sizes


def test_tars_are_cut_at_the_sample_count_or_before_the_byte_cap_and_hold_every_kept_frame(in_turn):
    root, _ = in_turn
    layout = CorpusLayout(root)
    tars = [_tar_samples(path) for path in layout.wds_shards(VERSION, "train")]
    for path, samples in zip(layout.wds_shards(VERSION, "train"), tars):
        stats = json.loads(layout.wds_stats(VERSION, path).read_text())
        assert stats["count"] == len(samples) <= SHARDS.shard_samples
        assert stats["payload"] == sum(samples.values()) and stats["bytes"] == path.stat().st_size
        assert stats["videos"] == sorted({key.rsplit("_", 1)[0] for key in samples})
        assert stats["payload"] <= SHARDS.shard_bytes or len(samples) == 1
    for this, after in zip(tars, tars[1:]):  # each cut came when the next sample would not fit
        full = len(this) == SHARDS.shard_samples
        assert full or sum(this.values()) + next(iter(after.values())) > SHARDS.shard_bytes
    assert any(len(t) < SHARDS.shard_samples for t in tars[:-1]) and any(len(t) == SHARDS.shard_samples for t in tars)
    keys = [key for samples in tars for key in samples]
    assert keys == [f"{v}_{k:06d}" for v in sorted(VIDEOS) for k, kept in enumerate(VIDEOS[v][1]) if kept]


def test_the_sizes_the_tars_are_cut_by_are_the_samples_payloads_with_and_without_hands(in_turn, work, tmp_path):
    """The plan measures each sample without making it (no labels read): its sizes must be
    those of the samples the tars get, hand keypoints included."""
    import numpy as np

    from pipelines.shards import _kept, _payload, _samples, sample_sizes

    root, _ = in_turn
    _, labels = work
    hands = {}
    for video_id, (_, kept) in VIDEOS.items():
        hands[video_id] = tmp_path / f"{video_id}.npz"
        np.savez(hands[video_id], keyboard=np.random.default_rng(1).random((len(kept), 2, 21, 2)))
    for part in CorpusLayout(root).frame_parts("train"):
        for with_hands in (None, hands):
            made = [_payload(s) for s in _samples(_kept(part), labels, "train", VERSION, with_hands)]
            assert sample_sizes(part, "train", VERSION, with_hands).tolist() == made
