"""Every path of a corpus, of its work state and of the download cache: nowhere else
spells them.

    CORPUS/
      corpus.json  videos.parquet
      audio/VIDEO_ID.flac
      frames/SPLIT/part-NNNNN.parquet
      labels/VERSION/label.json
      labels/VERSION/SPLIT/part-NNNNN.parquet        part N holds the frames of frames part N
      labels/VERSION/midi/VIDEO_ID.mid
      wds/VERSION/SPLIT/SPLIT-NNNNNN.tar
      stats/summary.json  stats/audit.json  stats/report.html
      stats/wds/VERSION/SPLIT-NNNNNN_stats.json
      .work/videos/VIDEO_ID.json                     a video's row, final for its settings
      .work/frames/VIDEO_ID.parquet                  its frames
      .work/labels/VERSION/VIDEO_ID.parquet|.json    its rolls, and its label record
      .work/published.json                           what the published files were assembled from
      .cache/                                        the download cache (default)
      .lock                                          the one writer's lock (contract/lock.py)

    CACHE/
      VIDEO_ID.EXT  VIDEO_ID.info.json  fetch.parquet  .tmp/VIDEO_ID/  .synth/
"""

from __future__ import annotations

from pathlib import Path

MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv")


def part_name(n: int) -> str:
    return f"part-{n:05d}.parquet"


def part_files(folder: Path) -> list[Path]:
    """The Parquet parts in a folder, in order (none when it does not exist)."""
    return sorted(Path(folder).glob("part-*.parquet"))


def shard_name(split: str, n: int) -> str:
    return f"{split}-{n:06d}.tar"


class WorkLayout:
    """CORPUS/.work: the per-video results a re-run resumes from (not part of the contract)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def video_json(self, video_id: str) -> Path:
        return self.root / "videos" / f"{video_id}.json"

    def frames(self, video_id: str) -> Path:
        return self.root / "frames" / f"{video_id}.parquet"

    def labels_dir(self, version: str) -> Path:
        return self.root / "labels" / version

    def label_rolls(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / f"{video_id}.parquet"

    def label_record(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / f"{video_id}.json"

    @property
    def published(self) -> Path:
        """What the published files were last assembled from (a digest): an unchanged re-run skips assembly."""
        return self.root / "published.json"

    def label_versions(self) -> list[str]:
        folder = self.root / "labels"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


class CacheLayout:
    """The download cache, keyed by video id."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def fetch_table(self) -> Path:
        return self.root / "fetch.parquet"

    def media(self, video_id: str, suffix: str) -> Path:
        return self.root / f"{video_id}{suffix}"

    def cached_media(self, video_id: str) -> Path | None:
        """The complete media file of `video_id`, if the cache has one."""
        for suffix in MEDIA_SUFFIXES:
            if (candidate := self.media(video_id, suffix)).is_file():
                return candidate
        return None

    def info_json(self, video_id: str) -> Path:
        return self.root / f"{video_id}.info.json"

    @property
    def tmp(self) -> Path:
        return self.root / ".tmp"

    def download_dir(self, video_id: str) -> Path:
        return self.tmp / video_id

    @property
    def synth(self) -> Path:
        return self.root / ".synth"


class CorpusLayout:
    """A corpus folder: the contract's files, its work state and its default cache."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.work = WorkLayout(self.root / ".work")

    @property
    def corpus_json(self) -> Path:
        return self.root / "corpus.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def videos(self) -> Path:
        return self.root / "videos.parquet"

    @property
    def default_cache(self) -> Path:
        return self.root / ".cache"

    def audio(self, video_id: str) -> Path:
        return self.root / "audio" / f"{video_id}.flac"

    def frames_dir(self, split: str) -> Path:
        return self.root / "frames" / split

    def frame_parts(self, split: str) -> list[Path]:
        return part_files(self.frames_dir(split))

    def splits(self) -> list[str]:
        """The splits that have frames (those with at least one ok video)."""
        folder = self.root / "frames"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def labels_dir(self, version: str) -> Path:
        return self.root / "labels" / version

    def label_json(self, version: str) -> Path:
        return self.labels_dir(version) / "label.json"

    def label_parts_dir(self, version: str, split: str) -> Path:
        return self.labels_dir(version) / split

    def label_part(self, version: str, split: str, frames_part: Path) -> Path:
        """The labels part that holds the frames of `frames_part`."""
        return self.label_parts_dir(version, split) / frames_part.name

    def midi(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / "midi" / f"{video_id}.mid"

    def wds_dir(self, version: str, split: str) -> Path:
        return self.root / "wds" / version / split

    def wds_shards(self, version: str, split: str) -> list[Path]:
        return sorted(self.wds_dir(version, split).glob(f"{split}-*.tar"))

    def wds_stats_dir(self, version: str) -> Path:
        return self.root / "stats" / "wds" / version

    def wds_stats(self, version: str, shard: Path | str) -> Path:
        return self.wds_stats_dir(version) / f"{Path(shard).stem}_stats.json"

    def wds_stats_files(self, version: str, split: str) -> list[Path]:
        return sorted(self.wds_stats_dir(version).glob(f"{split}-*_stats.json"))

    @property
    def summary_json(self) -> Path:
        return self.root / "stats" / "summary.json"

    @property
    def audit_json(self) -> Path:
        return self.root / "stats" / "audit.json"

    @property
    def report_html(self) -> Path:
        return self.root / "stats" / "report.html"
