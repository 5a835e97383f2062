"""Readers that serve a corpus's shards to training as Video2Roll samples.

A sample is the 5 frames t-2..t+2 of one video (grayscale, uint8 `frames` of shape
(5, H, W), 100x900 by default as Audeo) with the frame roll at t (`roll`, float, one
value per key of the chosen key set) and where it came from (`video_id`, `frame`).

Edge policy: frame t is a sample's centre only when t-2..t+2 are all kept frames of the
same video. So the first two and last two frames of every run of kept frames (a video's
start and end, and each side of a title card, cut or long silence) are never centres, and
no sample ever mixes two videos or steps over a dropped frame. Audeo skipped the first
and last two frames of each video the same way.

Both readers (`WebDatasetWindows` over `wds/VERSION/SPLIT/*.tar`, `ParquetWindows` over
`frames/SPLIT` + `labels/VERSION/SPLIT`) yield the same samples in the same order. Their
work unit is one shard (tar or Parquet part). A sample belongs to the unit that holds its
first frame, and a unit's reader also reads the first four records after the unit (its
halo), so samples that straddle shard boundaries are neither lost nor doubled, however
the units are dealt to DDP ranks and DataLoader workers (round robin, unit i to
slot i mod (world_size x workers)).

Options: a shuffle buffer (webdataset's; the units are also shuffled per epoch, in the
same order on every rank), and `balanced`, Audeo's sampler done on a stream: each draw
picks a class uniformly (one of the keys, or "no key down") among those present in the
buffer, then a sample of that class from the buffer, with replacement; an epoch is as
many draws as samples.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from contract.integrity import check_files, expected_files
from contract.layout import CorpusLayout
from contract.meta import corpus_label_version, corpus_meta
from contract.store import exists, is_remote, pull

WINDOW = 5  # frames t-2..t+2
HALO = WINDOW - 1
# Key sets as ranges of the 88-key index (0 = A0 = MIDI 21). Audeo models MIDI 36..86.
KEY_SETS = {"88": (0, 88), "audeo51": (36 - 21, 86 - 21 + 1)}


@dataclass(frozen=True)
class Record:
    """One kept frame as a shard holds it."""

    video_id: str
    frame: int
    jpeg: bytes
    frame_roll: np.ndarray  # (88,) bool
    rolls: np.ndarray | None = None  # (4, 88) uint8: frame, onset, offset, velocity (when a target needs them)


# target name -> (row of the (4, 88) rolls, sample key); "frame" is the sample's `roll`
TARGETS = {"frame": (0, "roll"), "onset": (1, "onset_roll"), "offset": (2, "offset_roll"), "velocity": (3, "velocity")}


def key_range(keys: str) -> tuple[int, int]:
    if keys not in KEY_SETS:
        raise ValueError(f"keys {keys!r}: expected one of {', '.join(KEY_SETS)}")
    return KEY_SETS[keys]


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def windows(records: Iterable[tuple[Record, bool]], decode) -> Iterator[tuple[list, Record]]:
    """Runs of 5 consecutive kept frames of one video, for every run whose first frame is
    one of this unit's own records (the flag); yields (decoded frames, centre record)."""
    run: deque = deque(maxlen=WINDOW)
    for record, own in records:
        if run and (record.video_id != run[-1][0].video_id or record.frame != run[-1][0].frame + 1):
            run.clear()
        run.append((record, own, decode(record.jpeg)))
        if len(run) == WINDOW and run[0][1]:
            yield [image for _, _, image in run], run[WINDOW // 2][0]


class _ClassIndex:
    """Which buffered samples hold each class, with O(1) add, remove and draw."""

    def __init__(self):
        self.members: dict[int, list[int]] = {}
        self.position: dict[tuple[int, int], int] = {}

    def add(self, item: int, classes) -> None:
        for c in classes:
            members = self.members.setdefault(c, [])
            self.position[c, item] = len(members)
            members.append(item)

    def remove(self, item: int, classes) -> None:
        for c in classes:
            members, i = self.members[c], self.position.pop((c, item))
            last = members.pop()
            if last != item:  # move the last member into the freed slot
                members[i] = last
                self.position[c, last] = i
            if not members:
                del self.members[c]

    def draw(self, rng: random.Random) -> int:
        members = self.members[rng.choice(sorted(self.members))]
        return members[rng.randrange(len(members))]


def _classes(sample: dict) -> list[int]:
    keys = np.flatnonzero(sample["roll"].numpy())
    return [int(k) for k in keys] if len(keys) else [-1]  # -1: no key down


def balanced(samples: Iterable[dict], buffer: int, rng: random.Random) -> Iterator[dict]:
    """Audeo's balanced sampler over a stream: draw a class (a key, or no key down) uniformly
    among those present in the buffer, then a buffered sample of that class, with
    replacement; the buffer holds the latest `buffer` samples; as many draws as samples."""
    pool: dict[int, tuple[dict, list[int]]] = {}
    index = _ClassIndex()
    seen = 0
    for seen, sample in enumerate(samples, start=1):
        if len(pool) == buffer:
            oldest = seen - 1 - buffer
            index.remove(oldest, pool.pop(oldest)[1])
        pool[seen - 1] = (sample, _classes(sample))
        index.add(seen - 1, pool[seen - 1][1])
        if len(pool) == buffer:
            yield pool[index.draw(rng)][0]
    for _ in range(seen if len(pool) < buffer else buffer - 1):
        yield pool[index.draw(rng)][0]


def _checked_files(corpus: CorpusLayout, kind: str, version: str | None, split: str) -> list[Path] | None:
    """The split's files of `kind` as corpus.json records them, each checked present and of
    its size (a clear error naming each missing or short one); None for a corpus built
    before file records were kept."""
    files = corpus_meta(corpus).get("files")
    if files is None:
        return None
    records = files.get(kind, {})
    records = {kind: {version: {split: records.get(version, {}).get(split, [])}}} if version else \
        {kind: {split: records.get(split, [])}}
    entries = expected_files(corpus, records)
    problems = check_files(entries)
    if problems:
        raise ValueError(f"{corpus}: split {split!r} is damaged: {'; '.join(problems[:5])}"
                         f"{f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''}; "
                         "`pianocorpus verify` says what repairs it")
    return [path for path, _ in entries]


class FrameWindows(IterableDataset):
    """Samples of one split of a corpus; subclasses say how a shard's records are read."""

    def __init__(self, corpus: str | Path, split: str = "train", *, label_version: str | None = None,
                 keys: str = "88", size: tuple[int, int] = (100, 900), shuffle_buffer: int = 0,
                 balanced: bool = False, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 targets: tuple[str, ...] = ("frame",), color: bool = False, transform=None):
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f"targets {list(targets)}: expected some of {', '.join(TARGETS)}")
        self.targets, self.color, self.transform = tuple(targets), color, transform
        self.corpus = corpus if is_remote(corpus) else Path(corpus)
        self.layout = CorpusLayout.published(corpus)  # every file from the generation published now
        self.split = split
        self.label_version = corpus_label_version(self.layout, label_version)
        self.keys = keys
        self.key_lo, self.key_hi = key_range(keys)
        self.height, self.width = size
        self.shuffle_buffer, self.balanced, self.seed = shuffle_buffer, balanced, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.units = self.list_units()
        if not self.units:
            raise ValueError(f"{self.corpus}: no {self.kind} shards for split {split!r} "
                             f"(label version {self.label_version})")

    kind = "?"

    def list_units(self) -> list:
        raise NotImplementedError

    def records(self, unit) -> Iterator[Record]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Reshuffles units and the buffer per epoch, identically on every rank."""
        self.epoch = epoch

    def decode(self, jpeg: bytes) -> np.ndarray:
        """(H, W) gray, or (3, H, W) RGB with `color`."""
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR if self.color else cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"{self.corpus}: an undecodable JPEG in split {self.split!r}")
        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1) if self.color else image

    @property
    def needs_rolls(self) -> bool:
        return self.targets != ("frame",)

    def __len__(self) -> int:
        """Samples an epoch yields: exact on one rank; under DDP the split's count shared
        out evenly (rounded up), as the units are dealt round robin."""
        if not hasattr(self, "_count"):
            self._count = count_windows(self.layout, self.split)
        world = self.world_size or _distributed()[1]
        return -(-self._count // world)

    def slot(self) -> tuple[int, int]:
        """(this reader's slot, number of slots): DDP rank x DataLoader worker."""
        rank, world = (self.rank, self.world_size) if self.world_size else _distributed()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return rank * workers + worker, world * workers

    def my_units(self) -> list[int]:
        """Indices of the units this slot reads."""
        order = list(range(len(self.units)))
        if self.shuffle_buffer or self.balanced:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        slot, slots = self.slot()
        return [u for i, u in enumerate(order) if i % slots == slot]

    def unit_records(self, index: int) -> Iterator[tuple[Record, bool]]:
        """The unit's own records, then up to four from the units after it (the halo)."""
        own = ((r, True) for r in self.records(self.units[index]))
        after = itertools.chain.from_iterable(self.records(u) for u in self.units[index + 1:])
        return itertools.chain(own, ((r, False) for r in itertools.islice(after, HALO)))

    def samples(self) -> Iterator[dict]:
        for index in self.my_units():
            for images, centre in windows(self.unit_records(index), self.decode):
                sample = {"frames": torch.from_numpy(np.stack(images)), "video_id": centre.video_id,
                          "frame": centre.frame, **self.target_values(centre)}
                yield self.transform(sample) if self.transform is not None else sample

    def target_values(self, centre: Record) -> dict:
        """The targets at the centre frame over the chosen keys, as floats (velocity / 127)."""
        out = {}
        for name in self.targets:
            row, key = TARGETS[name]
            values = centre.frame_roll if row == 0 else centre.rolls[row]
            values = values[self.key_lo:self.key_hi].astype(np.float32)
            out[key] = torch.from_numpy(values / 127 if name == "velocity" else values)
        return out

    def centre_targets(self, name: str) -> np.ndarray:
        """(samples, keys): target `name` (one of this reader's targets) at the centre of every
        sample of the split, on every rank, without decoding a picture: label statistics such
        as the onset model's class balance."""
        if name not in self.targets:
            raise ValueError(f"target {name!r} is not one of this reader's {list(self.targets)}")
        key = TARGETS[name][1]
        rows = [self.target_values(centre)[key].numpy() for index in range(len(self.units))
                for _, centre in windows(self.unit_records(index), decode=lambda jpeg: None)]
        return np.stack(rows) if rows else np.zeros((0, self.key_hi - self.key_lo), np.float32)

    def __iter__(self) -> Iterator[dict]:
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.slot()[0]}")
        stream = self.samples()
        if self.balanced:
            return balanced(stream, max(self.shuffle_buffer, 64), rng)
        if self.shuffle_buffer:
            from webdataset.filters import shuffle

            return shuffle(bufsize=self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(stream)
        return stream


class WebDatasetWindows(FrameWindows):
    """Samples from `wds/VERSION/SPLIT/SPLIT-NNNNNN.tar`, read with the webdataset library."""

    kind = "WebDataset"

    def list_units(self) -> list[Path]:
        listed = _checked_files(self.layout, "wds", self.label_version, self.split)
        return listed if listed is not None else self.layout.wds_shards(self.label_version, self.split)

    def records(self, unit: Path) -> Iterator[Record]:
        from webdataset.tariterators import tarfile_samples

        for sample in tarfile_samples([{"url": str(pull(unit))}]):  # (pull: a corpus on object storage)
            meta = json.loads(sample["json"])
            rolls = np.load(io.BytesIO(sample["rolls.npy"]))  # (4, 88): frame, onset, offset, velocity
            yield Record(meta["video_id"], int(meta["frame"]), sample["jpg"], rolls[0].astype(bool), rolls)


class ParquetWindows(FrameWindows):
    """Samples from `frames/SPLIT/part-N.parquet` read in step with `labels/VERSION/SPLIT/part-N.parquet`."""

    kind = "Parquet"
    batch_rows = 256

    def list_units(self) -> list[tuple[Path, Path]]:
        layout = self.layout
        frames = _checked_files(layout, "frames", None, self.split)
        _checked_files(layout, "labels", self.label_version, self.split)
        frames = frames if frames is not None else layout.frame_parts(self.split)
        units = [(f, layout.label_part(self.label_version, self.split, f)) for f in frames]
        missing = [str(lab) for _, lab in units if not exists(lab)]
        if missing:
            raise ValueError(f"{self.corpus}: frames parts without labels: {', '.join(missing[:5])}")
        return units

    def records(self, unit: tuple[Path, Path]) -> Iterator[Record]:
        frames_path, labels_path = unit
        frames = pq.ParquetFile(pull(frames_path)).iter_batches(self.batch_rows, columns=["video_id", "frame", "kept", "jpeg"])
        columns = ["video_id", "frame", "frame_roll"] + (["onset_roll", "offset_roll", "velocity"] if self.needs_rolls else [])
        labels = pq.ParquetFile(pull(labels_path)).iter_batches(self.batch_rows, columns=columns)
        for f, lab in zip(frames, labels, strict=True):
            ids, numbers = f.column("video_id").to_pylist(), f.column("frame").to_pylist()
            if ids != lab.column("video_id").to_pylist() or numbers != lab.column("frame").to_pylist():
                raise ValueError(f"{labels_path}: rows do not match {frames_path} (frames and labels parts must align)")
            kept, jpegs = f.column("kept").to_pylist(), f.column("jpeg").to_pylist()
            rolls = _roll_column(lab, "frame_roll").astype(bool)
            full = np.stack([_roll_column(lab, c) for c in columns[2:]], axis=1) if self.needs_rolls else None
            for i in np.flatnonzero(kept):
                yield Record(ids[i], numbers[i], jpegs[i], rolls[i], None if full is None else full[i])


def _roll_column(batch, name: str) -> np.ndarray:
    """(rows, 88) uint8 of one list column of a labels batch."""
    return np.asarray(batch.column(name).flatten().to_numpy(zero_copy_only=False)).astype(np.uint8).reshape(-1, 88)


READERS = {"wds": WebDatasetWindows, "parquet": ParquetWindows}


def open_split(corpus: str | Path, split: str, reader: str = "wds", **options) -> FrameWindows:
    """The reader named `reader` ("wds" or "parquet") over one split."""
    if reader not in READERS:
        raise ValueError(f"reader {reader!r}: expected one of {', '.join(READERS)}")
    return READERS[reader](corpus, split, **options)


def corpus_fps(corpus: str | Path | CorpusLayout) -> float:
    """The frame rate the corpus's frames were sampled at (a sample's frame k is at k / fps s)."""
    return float(corpus_meta(corpus)["config"]["frames"]["fps"])


def rows_by_video(video_ids) -> dict[str, np.ndarray]:
    """Each video's rows in a sequence of samples' video ids, videos in order of appearance."""
    ids = np.asarray(video_ids, dtype=str)
    videos, first = np.unique(ids, return_index=True)
    return {str(v): np.flatnonzero(ids == v) for v in videos[np.argsort(first)]}


def timeline(frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A video's per-sample rows placed on its frame timeline (row k = frame k), zeros at the
    frames that are no sample's centre (dropped, or too near a video's or a cut's edge)."""
    out = np.zeros((int(frames.max()) + 1 if len(frames) else 0, *values.shape[1:]), values.dtype)
    out[frames] = values
    return out


def key_slice(outer: str, inner: str) -> slice:
    """Where key set `inner` lies among the columns of key set `outer` (e.g. audeo51 in 88)."""
    (lo, hi), (inner_lo, inner_hi) = key_range(outer), key_range(inner)
    if not lo <= inner_lo < inner_hi <= hi:
        raise ValueError(f"keys {inner!r} are not all within keys {outer!r}")
    return slice(inner_lo - lo, inner_hi - lo)


def count_windows(corpus: str | Path | CorpusLayout, split: str) -> int:
    """How many samples a split has, from the frames parts' small columns (no JPEG read)."""
    layout = corpus if isinstance(corpus, CorpusLayout) else CorpusLayout.published(corpus)
    tables = [pq.read_table(pull(p), columns=["video_id", "frame", "kept"]) for p in layout.frame_parts(split)]
    records = ((Record(v, f, b"", None), True) for t in tables
               for v, f, k in zip(*(t.column(c).to_pylist() for c in ("video_id", "frame", "kept"))) if k)
    return sum(1 for _ in windows(records, decode=lambda jpeg: None))
