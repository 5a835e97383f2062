"""Every path of a corpus, of its work state and of the download cache: nowhere else
spells them.

    CORPUS/
      current -> data/gNNNNNN     the published generation (one symlink: the pointer)
      data/gNNNNNN/               one generation, holding (each also reachable as CORPUS/NAME,
                                  a symlink into current/):
      corpus.json  videos.parquet
      frames/SPLIT/part-NNNNN.parquet
      labels/VERSION/label.json
      labels/VERSION/SPLIT/part-NNNNN.parquet        part N holds the frames of frames part N
      labels/VERSION/midi/VIDEO_ID.mid
      labels/VERSION/av.parquet                      per video: sync offset, agreement, flags
      hands/VERSION/hands.json  hands/VERSION/VIDEO_ID.npz   hand keypoints of the kept frames (optional)
      wds/VERSION/SPLIT/SPLIT-NNNNNN.tar
      stats/summary.json  stats/audit.json  stats/report.html
      stats/wds/VERSION/SPLIT-NNNNNN_stats.json
    CORPUS/audio/VIDEO_ID.flac                       beside the generations (written once per video)
      .work/videos/VIDEO_ID.json                     a video's row, final for its settings
      .work/frames/VIDEO_ID.parquet                  its frames
      .work/frames/VIDEO_ID.keys.npy                 its frames' key levels (the pictures' press evidence)
      .work/labels/VERSION/VIDEO_ID.parquet|.json|.mid  its rolls, label record and MIDI
      .work/hands/VERSION/VIDEO_ID.npz|.json         its hand keypoints and their record
      .work/published.json                           what the published files were assembled from
      .cache/                                        the download cache (default)
      .lock                                          the one writer's lock (contract/lock.py)

    CACHE/
      VIDEO_ID.EXT  VIDEO_ID.info.json  fetch.parquet  .tmp/VIDEO_ID/  .synth/

A corpus or cache on object storage (`s3://...`: contract/store.py) has the same paths,
under this node's stage of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contract.store import Store, files_in, folders_in, is_remote, open_store, store_of

MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv")


def part_name(n: int) -> str:
    return f"part-{n:05d}.parquet"


def shard_name(split: str, n: int) -> str:
    return f"{split}-{n:06d}.tar"


class WorkLayout:
    """CORPUS/.work: the per-video results a re-run resumes from (not part of the contract)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def video_json(self, video_id: str) -> Path:
        return self.root / "videos" / f"{video_id}.json"

    @property
    def actors(self) -> Path:
        """This run's transcriber actors, a json each (labeler, device, node)."""
        return self.root / "actors"

    def frames(self, video_id: str) -> Path:
        return self.root / "frames" / f"{video_id}.parquet"

    def key_levels(self, video_id: str) -> Path:
        """Its frames' key levels, as rectified and mirrored (curation/presses.py): the
        evidence the labels' agreement with the pictures is measured on."""
        return self.root / "frames" / f"{video_id}.keys.npy"

    def labels_dir(self, version: str) -> Path:
        return self.root / "labels" / version

    def hands(self, version: str, video_id: str) -> Path:
        """Its kept frames' hand keypoints (curation/hands.py)."""
        return self.root / "hands" / version / f"{video_id}.npz"

    def hands_record(self, version: str, video_id: str) -> Path:
        return self.root / "hands" / version / f"{video_id}.json"

    def label_midi(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / f"{video_id}.mid"

    def label_rolls(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / f"{video_id}.parquet"

    def label_record(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / f"{video_id}.json"

    @property
    def published(self) -> Path:
        """What the published files were last assembled from (a digest): an unchanged re-run skips assembly."""
        return self.root / "published.json"

    def stage_records(self, *versions: str, hands: str | None = None, actors: bool = False) -> None:
        """For a corpus on object storage, the records of the work state (videos, the labels
        of `versions`, the hands of `hands`, the actors) into this node's stage, one listing
        a folder, for a reader of them all (the driver); nothing for a local corpus."""
        if (store := store_of(self.root)) is None:
            return
        store.pull_tree(self.root / "videos")
        for version in versions:
            store.pull_tree(self.labels_dir(version), (".json",))
        if hands:
            store.pull_tree(self.root / "hands" / hands, (".json",))
        if actors:
            store.pull_tree(self.actors)

    def label_versions(self) -> list[str]:
        return folders_in(self.root / "labels")


def opened(location: str | Path) -> tuple[Store | None, Path, str | Path]:
    """(its store, or None; the local folder its paths are under: a store's stage on this
    node; its location as named) of a folder or URI."""
    store = open_store(str(location)) if is_remote(location) else None
    root = store.stage if store else Path(location)
    return store, root, store.uri if store else root


class CacheLayout:
    """The download cache, keyed by video id: a folder, or a URI whose files are staged on
    each node (yt-dlp downloads into the stage; a complete file is put to the store under
    its final name, its info json after it)."""

    def __init__(self, root: str | Path):
        self.store, self.root, self.location = opened(root)

    @property
    def fetch_table(self) -> Path:
        return self.root / "fetch.parquet"

    def media(self, video_id: str, suffix: str) -> Path:
        return self.root / f"{video_id}{suffix}"

    def cached_media(self, video_id: str) -> Path | None:
        """The complete media file of `video_id`, if the cache has one (in a store: brought
        into this node's stage)."""
        by_suffix = [self.media(video_id, suffix) for suffix in MEDIA_SUFFIXES]
        if self.store is None:
            return next((p for p in by_suffix if p.is_file()), None)
        # In a store the info json is put after the media: where it is, so is the file it
        # names (each suffix is asked for only where it names none).
        if not self.store.pull(self.info_json(video_id)):
            return None
        named = self._named_media(video_id)
        return next((p for p in ([named] if named else by_suffix) if self.store.pull(p)), None)

    def _named_media(self, video_id: str) -> Path | None:
        """The media file its info json names (fetch writes `file` there), None for one that names none."""
        try:
            name = json.loads(self.info_json(video_id).read_text()).get("file")
        except (OSError, ValueError, AttributeError):
            return None
        return self.root / name if isinstance(name, str) and "/" not in name else None

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


PUBLISHED = ("corpus.json", "videos.parquet", "frames", "labels", "hands", "wds", "stats")  # what a generation holds


class CorpusLayout:
    """A corpus folder: one generation of the contract's files (the published one, read
    once from the `current` pointer, unless another is named), its audio, work state and
    default cache. A corpus made before generations has its files in the folder itself.

    A corpus on object storage (`s3://...`: contract/store.py) has the same paths, under
    this node's stage of it; `location` is its URI, and a layout sent to another node
    (pickled) opens that node's stage."""

    def __init__(self, root: str | Path, generation: str | None = None):
        self.store, self.root, self.location = opened(root)
        self.work = WorkLayout(self.root / ".work")
        self._generation = generation

    def __reduce__(self):
        return CorpusLayout, (str(self.location), self._generation)

    @classmethod
    def published(cls, corpus: "str | Path | CorpusLayout") -> "CorpusLayout":
        """The corpus pinned to the generation published now: a reader that reads
        everything through it sees that one generation whole, whatever is published after."""
        if isinstance(corpus, CorpusLayout):
            return corpus
        layout = cls(corpus)
        return cls(layout.location, layout.generation)

    def __str__(self) -> str:  # messages name the corpus folder (or URI)
        return str(self.location)

    @property
    def pointer(self) -> Path:
        return self.root / "current"

    @property
    def generation(self) -> str:
        """`gNNNNNN`, or "" for a corpus without generations: none published yet, made
        before them, or copied by a tool that followed the symlinks (its files are then
        real copies at the top, and read there)."""
        if self._generation is None:
            if self.store is not None:  # the pointer is an object naming the generation
                self._generation = (self.store.read_text(self.pointer) or "").strip().rsplit("/", 1)[-1]
            else:
                self._generation = os.readlink(self.pointer).rsplit("/", 1)[-1] if self.pointer.is_symlink() else ""
        return self._generation

    @property
    def data(self) -> Path:
        return self.root / "data" / self.generation if self.generation else self.root

    def generations(self) -> list[str]:
        return folders_in(self.root / "data")

    def next_generation(self) -> "CorpusLayout":
        """The layout of the generation a new publish writes (the one after the current)."""
        number = int(self.generation[1:]) if self.generation else 0
        return CorpusLayout(self.location, f"g{number + 1:06d}")

    @property
    def corpus_json(self) -> Path:
        return self.data / "corpus.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def videos(self) -> Path:
        return self.data / "videos.parquet"

    @property
    def default_cache(self) -> Path:
        """CORPUS/.cache; for a corpus on object storage, a local folder on each node beside
        (not in) its stage, so nothing of it is put to the store (`--cache URI` puts a cache there)."""
        if self.store is not None:
            return self.root.with_name(f"{self.root.name}.cache")
        return self.root / ".cache"

    def audio(self, video_id: str) -> Path:
        return self.root / "audio" / f"{video_id}.flac"

    def frames_dir(self, split: str) -> Path:
        return self.data / "frames" / split

    def frame_parts(self, split: str) -> list[Path]:
        return files_in(self.frames_dir(split), "part-*.parquet")

    def splits(self) -> list[str]:
        """The splits that have frames (those with at least one ok video)."""
        return folders_in(self.data / "frames")

    def labels_dir(self, version: str) -> Path:
        return self.data / "labels" / version

    def label_json(self, version: str) -> Path:
        return self.labels_dir(version) / "label.json"

    def label_parts_dir(self, version: str, split: str) -> Path:
        return self.labels_dir(version) / split

    def label_part(self, version: str, split: str, frames_part: Path) -> Path:
        """The labels part that holds the frames of `frames_part`."""
        return self.label_parts_dir(version, split) / frames_part.name

    def midi(self, version: str, video_id: str) -> Path:
        return self.labels_dir(version) / "midi" / f"{video_id}.mid"

    def av_table(self, version: str) -> Path:
        """Per video, the labels' agreement with the pictures (labeling/agreement.py)."""
        return self.labels_dir(version) / "av.parquet"

    def hands_dir(self, version: str) -> Path:
        return self.data / "hands" / version

    def hands_json(self, version: str) -> Path:
        return self.hands_dir(version) / "hands.json"

    def hands_file(self, version: str, video_id: str) -> Path:
        return self.hands_dir(version) / f"{video_id}.npz"

    def wds_dir(self, version: str, split: str) -> Path:
        return self.data / "wds" / version / split

    def wds_shards(self, version: str, split: str) -> list[Path]:
        return files_in(self.wds_dir(version, split), f"{split}-*.tar")

    def wds_stats_dir(self, version: str) -> Path:
        return self.data / "stats" / "wds" / version

    def wds_stats(self, version: str, shard: Path | str) -> Path:
        return self.wds_stats_dir(version) / f"{Path(shard).stem}_stats.json"

    @property
    def summary_json(self) -> Path:
        return self.data / "stats" / "summary.json"

    @property
    def audit_json(self) -> Path:
        return self.data / "stats" / "audit.json"

    @property
    def report_html(self) -> Path:
        return self.data / "stats" / "report.html"

    def video_page(self, video_id: str) -> Path:
        """The audit's page of one video (linked from report.html)."""
        return self.data / "stats" / "videos" / f"{video_id}.html"
