"""The training readers on a corpus written by the project's shard writers from frames with
known content: exact samples, no sample across videos or dropped frames, the same samples
from both readers, every sample exactly once across ranks and workers."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.handmade_corpus import VERSION, expected_windows, grey_of, keys_of, video_index, write_corpus
from training.data import balanced, count_windows, open_split

# Video "b" has a dropped gap and a 3-frame run (too short for a window); "c" has only
# 4 kept frames; with 7 samples a shard and 9 rows a part, videos straddle shards.
VIDEOS = {
    "a": ("train", [True] * 23),
    "b": ("train", [True] * 9 + [False] * 2 + [True] * 3 + [False] + [True] * 12),
    "c": ("train", [False] * 3 + [True] * 4),
    "d": ("test", [True] * 11),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("handmade") / "c", VIDEOS)


def _check_sample(sample: dict) -> None:
    """The 5 frames are t-2..t+2 of the sample's own video, and the roll is frame t's."""
    video, t = sample["video_id"], int(sample["frame"])
    index = video_index(VIDEOS, video)
    greys = sample["frames"][:, :50].float().mean(dim=(1, 2)).numpy()
    assert np.abs(greys - [grey_of(index, t + d) for d in range(-2, 3)]).max() < 2, (video, t, greys)
    assert np.flatnonzero(sample["roll"].numpy()).tolist() == sorted(keys_of(t, index))


@pytest.mark.parametrize("reader", ["wds", "parquet"])
def test_reader_yields_exactly_the_expected_windows(corpus, reader):
    assert len(list((corpus / "wds" / VERSION / "train").glob("*.tar"))) >= 4  # videos straddle shards
    for split in ("train", "test"):
        samples = list(open_split(corpus, split, reader))
        assert [(s["video_id"], s["frame"]) for s in samples] == expected_windows(VIDEOS, split)
        assert count_windows(corpus, split) == len(samples)
        for sample in samples:
            assert sample["frames"].shape == (5, 100, 900) and sample["frames"].dtype == torch.uint8
            _check_sample(sample)


def test_both_readers_give_the_same_samples(corpus):
    wds = list(open_split(corpus, "train", "wds"))
    parquet = list(open_split(corpus, "train", "parquet"))
    assert len(wds) == len(parquet) > 0
    for a, b in zip(wds, parquet):
        assert (a["video_id"], a["frame"]) == (b["video_id"], b["frame"])
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["roll"], b["roll"])


@pytest.mark.parametrize("reader", ["wds", "parquet"])
def test_ranks_and_workers_share_the_samples_without_loss_or_repeats(corpus, reader):
    seen = []
    for rank in range(2):
        dataset = open_split(corpus, "train", reader, rank=rank, world_size=2)
        for batch in DataLoader(dataset, batch_size=4, num_workers=2):
            seen += list(zip(batch["video_id"], batch["frame"].tolist()))
    assert sorted(seen) == sorted(expected_windows(VIDEOS, "train"))


def test_shuffle_buffer_reorders_the_same_samples_per_epoch(corpus):
    plain = [(s["video_id"], s["frame"]) for s in open_split(corpus, "train")]
    dataset = open_split(corpus, "train", shuffle_buffer=8, seed=3)
    first = [(s["video_id"], s["frame"]) for s in dataset]
    again = [(s["video_id"], s["frame"]) for s in dataset]
    dataset.set_epoch(1)
    other = [(s["video_id"], s["frame"]) for s in dataset]
    assert sorted(first) == sorted(plain) == sorted(other)
    assert first != plain and first == again and other != first
    for sample in dataset:
        _check_sample(sample)


def test_balanced_sampler_evens_out_the_keys():
    """Key 0 in 90 % of the stream, key 1 in 9 %, key 2 in 1 %: drawn about a third each."""
    stream = [{"roll": torch.nn.functional.one_hot(torch.tensor(k), 88).float(), "i": i}
              for i, k in enumerate([0] * 900 + [1] * 90 + [2] * 10)]
    random.Random(0).shuffle(stream)
    drawn = list(balanced(iter(stream), 200, random.Random(1)))
    assert len(drawn) == len(stream)
    shares = collections.Counter(int(s["roll"].argmax()) for s in drawn)
    assert shares[2] / len(drawn) > 0.2 and shares[0] / len(drawn) < 0.45
    plain = collections.Counter(int(s["roll"].argmax()) for s in stream)
    assert plain[2] / len(stream) == 0.01


def test_balanced_reader_yields_valid_samples(corpus):
    plain = list(open_split(corpus, "train"))
    drawn = list(open_split(corpus, "train", balanced=True, shuffle_buffer=len(plain), seed=1))
    assert len(drawn) == len(plain)
    assert len({(s["video_id"], s["frame"]) for s in drawn}) < len(plain)  # with replacement
    for sample in drawn:
        _check_sample(sample)


def test_audeo_key_set_and_input_size(corpus):
    full = next(iter(open_split(corpus, "train")))
    audeo = next(iter(open_split(corpus, "train", "parquet", keys="audeo51", size=(50, 450))))
    assert audeo["roll"].shape == (51,) and torch.equal(audeo["roll"], full["roll"][15:66])
    assert audeo["frames"].shape == (5, 50, 450)


def test_clear_errors_for_a_wrong_version_split_or_reader(corpus, tmp_path):
    with pytest.raises(ValueError, match="no label version 'nope'.*handmade-0001"):
        open_split(corpus, "train", label_version="nope")
    with pytest.raises(ValueError, match="no WebDataset shards for split 'valid'"):
        open_split(corpus, "valid")
    with pytest.raises(ValueError, match="reader 'zip'"):
        open_split(corpus, "train", "zip")
    with pytest.raises(ValueError, match="not a corpus"):
        open_split(tmp_path, "train")
    with pytest.raises(ValueError, match="keys '61'"):
        open_split(corpus, "train", keys="61")


@pytest.mark.parametrize("reader", ["wds", "parquet"])
def test_len_targets_colour_and_a_transform(corpus, reader):
    """`len()` is the epoch's sample count (HF Trainer asks for it); onset, offset and
    velocity targets are the labels' own; colour crops are RGB (3, H, W) per frame; the
    transform sees each finished sample."""
    seen = []

    def transform(sample):
        seen.append(sample["frame"])
        return {**sample, "tag": "mine"}

    dataset = open_split(corpus, "train", reader, targets=("frame", "onset", "offset", "velocity"), color=True,
                         transform=transform)
    samples = list(dataset)
    assert len(dataset) == len(samples) == len(expected_windows(VIDEOS, "train"))
    assert seen == [s["frame"] for s in samples] and {s["tag"] for s in samples} == {"mine"}
    for sample in samples:
        video, t = sample["video_id"], int(sample["frame"])
        index = video_index(VIDEOS, video)
        now, before = set(keys_of(t, index)), set(keys_of(t - 1, index))
        assert np.flatnonzero(sample["onset_roll"].numpy()).tolist() == sorted(now - before)
        assert np.flatnonzero(sample["offset_roll"].numpy()).tolist() == sorted(before - now)
        velocity = sample["velocity"].numpy()
        assert np.allclose(velocity[sorted(now)], (40 + t % 50) / 127) and velocity.sum() > 0 if now else True
        assert sample["frames"].shape == (5, 3, 100, 900)
        top = sample["frames"][:, :, :50].float().mean(dim=(2, 3)).numpy()  # the grey top half, in all 3 channels
        assert np.abs(top - np.array([grey_of(index, t + d) for d in range(-2, 3)])[:, None]).max() < 3
    with pytest.raises(ValueError, match="targets.*expected some of frame, onset, offset, velocity"):
        open_split(corpus, "train", reader, targets=("pitch",))


def test_len_under_ddp_is_the_ranks_share(corpus):
    total = len(open_split(corpus, "train", "wds"))
    shares = [len(open_split(corpus, "train", "wds", rank=r, world_size=3)) for r in range(3)]
    assert shares == [-(-total // 3)] * 3
