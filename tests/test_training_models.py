"""Roll2Midi and the onset model: shapes, learning on a tiny corpus, resume, and metrics
against an independent computation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mir_eval
import numpy as np
import pretty_midi
import pytest
import torch
from sklearn import metrics as skm

from labeling.metrics import frame_scores, frame_scores_per_frame
from labeling.rolls import frame_roll, roll_notes
from tests.handmade_corpus import VERSION, write_corpus
from training.data import open_split
from training.onset import OnsetNet, peak_onsets, summarise, video_onset_scores
from training.roll2midi import (Roll2Midi, RollCritic, VideoRolls, cache_path, cached_rolls, refine,
                                source_checkpoint, stack_windows, window_spans)
from training.train import TrainConfig, load_checkpoint, predict, train

VIDEOS = {"a": ("train", [True] * 40), "b": ("train", [True] * 30 + [False] * 3 + [True] * 17),
          "t": ("test", [True] * 24)}
TINY = (16, 144)
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these networks are tiny, and two threads on a busy 2-core machine
    spend most of their time waiting for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("models") / "c", VIDEOS, rows_per_part=40, shard_samples=30)


@pytest.fixture(scope="module")
def video2roll_run(corpus, tmp_path_factory):
    """A real Video2Roll run, stopped after its first step (its outputs are what Roll2Midi reads)."""
    run = tmp_path_factory.mktemp("v2r") / "run"
    train(TrainConfig(corpus=str(corpus), out=str(run), epochs=1, batch_size=8, size=TINY, workers=0,
                      shuffle_buffer=0, max_minutes=1e-4), progress=False)
    return run


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_roll_notes_give_the_roll_back():
    roll = np.random.default_rng(0).random((30, 88)) < 0.2
    notes = roll_notes(roll, 25.0)
    assert (frame_roll(notes, 30, 25.0) == roll).all()
    low = roll_notes(np.eye(3, 51, dtype=bool), 25.0, lowest_midi=36)
    assert [(n.pitch, n.onset, n.offset) for n in low] == [(36, 0.0, 0.04), (37, 0.04, 0.08), (38, 0.08, 0.12)]


# --- Roll2Midi ------------------------------------------------------------------------------

@pytest.mark.parametrize("keys,n", [("88", 88), ("audeo51", 51)])
@pytest.mark.parametrize("window", [50, 13])
def test_roll2midi_maps_a_window_to_a_refined_roll_that_starts_as_its_input(keys, n, window):
    model = Roll2Midi(keys, window).eval()
    probability = torch.rand(2, n, window)
    logits = model(probability)
    assert logits.shape == (2, n, window)
    assert torch.allclose(torch.sigmoid(logits), probability.clamp(1e-3, 1 - 1e-3), atol=1e-5)  # zero last layer
    assert RollCritic()(probability, (probability > 0.5).float()).shape == (2, 1, n // 4, window // 4)


def test_windows_cut_each_run_of_frames_and_pad_the_last_piece():
    frames = np.array([*range(10), 12, 13, 14])  # a gap after frame 9
    assert window_spans(frames, 4) == [(0, 4), (4, 8), (8, 10), (10, 13)]
    rng = np.random.default_rng(1)
    video = VideoRolls(frames, rng.random((13, 88)).astype(np.float32), rng.random((13, 88)) < 0.1)
    probability, reference, mask = stack_windows(video, 4, slice(15, 66))
    assert probability.shape == reference.shape == (4, 51, 4) and mask.shape == (4, 4)
    assert mask.sum(dim=1).tolist() == [4, 4, 2, 3]
    assert torch.equal(probability[2, :, :2], torch.from_numpy(video.probability[8:10, 15:66].T))
    assert probability[2, :, 2:].abs().sum() == 0  # padding is silence
    refined = refine(Roll2Midi("audeo51", 4), video, slice(15, 66), CPU)  # an untrained one gives its input back
    assert np.allclose(refined, video.probability[:, 15:66].clip(1e-3, 1 - 1e-3), atol=1e-5)


def _noisy_video2roll_outputs(run, source, corpus, split: str, seed: int) -> None:
    """Replace the cached Video2Roll outputs of a split by its reference rolls with holes and
    blips (a Video2Roll that has learnt the keys but flickers): what Roll2Midi is for. The
    frames and reference rolls stay those the real checkpoint's pass over the corpus gave."""
    cached_rolls(source, corpus, split, label_version=VERSION, reader="wds", cache=run / "video2roll", device=CPU)
    path = cache_path(run / "video2roll", source, corpus, split, VERSION)
    data = dict(np.load(path))
    rng, reference = np.random.default_rng(seed), data["reference"]
    probability = np.where(reference, 0.75, 0.05)
    probability[reference & (rng.random(reference.shape) < 0.25)] = 0.15  # holes in notes
    probability[~reference & (rng.random(reference.shape) < 0.02)] = 0.65  # blips
    data["probability"] = probability.astype(np.float32)
    with open(path, "wb") as handle:
        np.savez(handle, **data)


def test_roll2midi_learns_to_clean_flickering_rolls_and_resumes(corpus, video2roll_run, tmp_path):
    run = tmp_path / "r2m"
    source = source_checkpoint(str(video2roll_run), None)
    assert source == (video2roll_run / "checkpoints" / "epoch-001.pt").resolve()
    for seed, split in enumerate(("train", "test")):
        _noisy_video2roll_outputs(run, source, corpus, split, seed)
    config = TrainConfig(corpus=str(corpus), out=str(run), model="roll2midi", source=str(video2roll_run),
                         epochs=6, batch_size=4, window=16, lr=1e-2, lr_decay=0.9, workers=0)
    history = train(config, progress=False)
    assert history[-1]["train_loss"] < 0.75 * history[0]["train_loss"]
    assert {"adversarial_loss", "discriminator_loss"} <= set(history[0])
    final = history[-1]["eval"]["test"]
    assert final["f1"] > final["video2roll_f1"] + 0.1, final  # the refined roll beats its input
    assert len(list((run / "video2roll").glob("*.npz"))) == 2  # computed once per split

    resumed = train(TrainConfig(**{**config.__dict__, "epochs": 8}), progress=False)
    assert [h["epoch"] for h in resumed] == list(range(1, 9)) and resumed[:6] == history
    assert [h["lr"] for h in resumed] == pytest.approx([1e-2 * 0.9 ** k for k in range(8)])
    before = torch.load(run / "checkpoints" / "epoch-006.pt", weights_only=False)
    after = torch.load(run / "checkpoints" / "epoch-008.pt", weights_only=False)
    assert after["source_checkpoint"] == str(source) and after["kind"] == "roll2midi"
    for part in ("model", "discriminator"):  # both networks trained on from epoch 6
        assert any(not torch.equal(before[part][k], after[part][k]) for k in before[part])
    with pytest.raises(ValueError, match="other window"):
        train(TrainConfig(**{**config.__dict__, "epochs": 9, "window": 8}), progress=False)
    with pytest.raises(ValueError, match="give --from"):
        train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "other"), "source": None}), progress=False)


def test_roll2midi_eval_shows_the_gain_over_video2roll_and_writes_rolls_and_midi(corpus, video2roll_run, tmp_path):
    run = tmp_path / "r2m"
    train(TrainConfig(corpus=str(corpus), out=str(run), model="roll2midi", source=str(video2roll_run), keys="audeo51",
                      epochs=1, batch_size=4, window=16, workers=0, reader="parquet"), progress=False)
    out = tmp_path / "eval.json"
    result = _cli("eval", str(corpus), "--checkpoint", str(run / "last.pt"), "--split", "train", "--split", "test",
                  "--json", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "test video2roll" in result.stdout and "test roll2midi" in result.stdout
    written = json.loads(out.read_text())
    assert written["model"] == "roll2midi" and written["threshold"] == written["video2roll_threshold"] == 0.4

    # The cache (made through the Parquet reader) holds what Video2Roll gives through the WebDataset one.
    v2r, _ = load_checkpoint(video2roll_run / "last.pt")
    reference, probability, _, _ = predict(v2r, open_split(corpus, "test", "wds", size=TINY), CPU)
    test = cached_rolls(source_checkpoint(str(video2roll_run), None), corpus, "test", label_version=VERSION,
                        reader="wds", cache=run / "video2roll", device=CPU)
    assert list(test) == ["t"] and np.allclose(test["t"].probability, probability, atol=1e-5)
    assert np.array_equal(test["t"].reference, reference)

    # Video2Roll alone: its probabilities at 0.4 against the reference, over the 51 keys, by sklearn.
    keys = slice(15, 66)
    base, ref = probability[:, keys] >= 0.4, reference[:, keys]
    alone = written["splits"]["test"]["video2roll"]
    assert alone["summed"]["tp"] == int((base & ref).sum()) and alone["frames"] == len(ref) == 20
    assert alone["audeo"]["f1"] == pytest.approx(skm.f1_score(ref, base, average="samples", zero_division=1))
    model, _ = load_checkpoint(run / "last.pt")
    refined = refine(model, test["t"], keys, CPU) >= 0.4
    assert written["splits"]["test"]["roll2midi"]["audeo"] == pytest.approx(frame_scores_per_frame(ref, refined))
    assert written["splits"]["test"]["roll2midi"]["summed"]["f1"] == pytest.approx(frame_scores(ref, refined)["f1"])
    assert written["overall"]["roll2midi"]["frames"] == 20 + 75

    # The refined roll on the video's frame timeline, and MIDI files of it and of Video2Roll's.
    folder = out.with_suffix("")
    assert written["outputs"] == {"folder": str(folder), "videos": 3}
    saved = np.load(folder / "test" / "t.roll2midi.npy")
    assert saved.shape == (22, 51) and (saved[:2] == 0).all()  # frames 2..21 are the samples' centres
    assert np.array_equal(saved[2:] >= 0.4, refined)
    midi = pretty_midi.PrettyMIDI(str(folder / "test" / "t.roll2midi.mid"))
    notes = sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for n in midi.instruments[0].notes)
    assert notes == sorted((n.pitch, round(n.onset, 3), round(n.offset, 3)) for n in roll_notes(saved >= 0.4, 25.0, 36))
    assert (folder / "train" / "b.video2roll.mid").is_file()


# --- the onset model ------------------------------------------------------------------------

@pytest.mark.parametrize("keys,head,n", [("88", "keys", 88), ("audeo51", "keys", 51), ("88", "global", 88)])
def test_onset_model_maps_five_frames_and_the_key_position_to_one_logit_per_key(keys, head, n):
    model = OnsetNet(keys, size=TINY, head=head).eval()
    frames = torch.randint(0, 256, (2, 5, *TINY), dtype=torch.uint8)
    logits = model(frames)
    assert logits.shape == (2, n)
    assert torch.allclose(logits, model(frames.float() / 255), atol=1e-5)
    assert model.stem[0].in_channels == 2  # the picture and the key-position ramp
    assert model.time[0].kernel_size[0] == 5  # one 3D convolution over the 5 frames


def _note(frame: int, key: int) -> tuple[list[float], float]:
    return [frame / 25, (frame + 1) / 25], 440.0 * 2 ** ((21 + key - 69) / 12)


def test_onset_peaks_and_scores_match_a_count_by_hand_and_mir_eval():
    reference, probability = np.zeros((40, 88), bool), np.zeros((40, 88), np.float32)
    for frame, key in [(5, 3), (20, 3), (12, 10), (25, 40)]:
        reference[frame, key] = True
    probability[[5, 21, 22, 30], 3] = [0.9, 0.8, 0.5, 0.7]  # on time, 1 frame (40 ms) late, its tail, a false one
    probability[[11, 12, 13], 10] = [0.6, 0.9, 0.6]  # one onset spread over three frames
    probability[8, 50] = 0.3  # under the threshold
    probability[[15, 16], 60] = 0.7  # a plateau: one (false) onset, at its last frame
    probability[27, 40] = 0.9  # 2 frames (80 ms) after the reference: outside 50 ms
    peaks = peak_onsets(probability, 0.4)
    assert sorted(zip(*np.nonzero(peaks))) == [(5, 3), (12, 10), (16, 60), (21, 3), (27, 40), (30, 3)]
    mine = video_onset_scores(np.arange(40), reference, probability, threshold=0.4, fps=25.0, lowest_midi=21)
    assert (mine["matched"], mine["reference"], mine["estimated"]) == (3, 4, 6)  # by hand: 5, 21 and 12 match
    assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx((0.5, 0.75, 0.6))
    ref = [_note(f, k) for f, k in zip(*np.nonzero(reference))]
    est = [_note(f, k) for f, k in zip(*np.nonzero(peaks))]
    expected = mir_eval.transcription.precision_recall_f1_overlap(
        np.array([i for i, _ in ref]), np.array([p for _, p in ref]), np.array([i for i, _ in est]),
        np.array([p for _, p in est]), onset_tolerance=0.05, offset_ratio=None)[:3]
    assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx(expected)
    split = summarise({"x": mine, "y": video_onset_scores(np.arange(3), reference[:3], probability[:3],
                                                          threshold=0.4, fps=25.0, lowest_midi=21)})
    assert split["summed"]["f1"] == pytest.approx(0.6) and split["mean_per_video"]["f1"] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def onset_run(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("onset") / "run"
    config = TrainConfig(corpus=str(corpus), out=str(run), model="onset", epochs=2, batch_size=8, size=TINY,
                         workers=0, shuffle_buffer=64, lr=1e-3, reader="parquet")
    return run, config, train(config, progress=False)


def test_onset_model_learns_with_balanced_classes_and_resumes(corpus, onset_run, tmp_path):
    run, config, history = onset_run
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    onsets = np.stack([s["onset_roll"].numpy() for s in open_split(corpus, "train", targets=("frame", "onset"))])
    assert history[0]["positive_rate"] == pytest.approx(onsets.mean()) and 0 < onsets.mean() < 0.05
    assert history[0]["pos_weight"] == pytest.approx((1 - onsets.mean()) / onsets.mean())
    assert set(history[0]["eval"]["test"]) == {"precision", "recall", "f1"}

    shutil.copytree(run, tmp_path / "run")
    resumed = train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "run"), "epochs": 3}), progress=False)
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[:2] == history
    assert [h["lr"] for h in resumed] == pytest.approx([1e-3 * 0.8 ** k for k in range(3)])
    before = torch.load(run / "checkpoints" / "epoch-002.pt", weights_only=False)
    after = torch.load(tmp_path / "run" / "checkpoints" / "epoch-003.pt", weights_only=False)
    assert not torch.equal(before["model"]["head.bias"], after["model"]["head.bias"])
    with pytest.raises(ValueError, match="other head"):
        train(TrainConfig(**{**config.__dict__, "epochs": 4, "head": "global"}), progress=False)
    with pytest.raises(ValueError, match="other model"):
        train(TrainConfig(**{**config.__dict__, "epochs": 4, "model": "video2roll"}), progress=False)


THRESHOLD = 0.2


def _peaks_by_hand(probability: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    frames = len(probability)
    return {(k, j) for j in range(probability.shape[1]) for k in range(frames)
            if probability[k, j] >= threshold and probability[k, j] >= (probability[k - 1, j] if k else -1)
            and probability[k, j] > (probability[k + 1, j] if k + 1 < frames else -1)}


def test_onset_eval_command_scores_each_video_as_mir_eval_does(corpus, onset_run, tmp_path):
    """At a threshold of its own (two epochs in, the model's probabilities are still low)."""
    run, _, _ = onset_run
    out = tmp_path / "onsets.json"
    result = _cli("eval", str(corpus), "--checkpoint", str(run / "checkpoints" / "epoch-002.pt"), "--split", "train",
                  "--split", "test", "--threshold", str(THRESHOLD), "--json", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "note onsets (mir_eval, 50 ms)" in result.stdout and "overall" in result.stdout
    written = json.loads(out.read_text())
    assert written["model"] == "onset" and written["threshold"] == THRESHOLD
    assert set(written["splits"]) == {"train", "test"}

    model, _ = load_checkpoint(run / "checkpoints" / "epoch-002.pt")
    matched = reference_count = estimated = 0
    for split, videos in (("train", ("a", "b")), ("test", ("t",))):
        reference, probability, ids, frames = predict(
            model, open_split(corpus, split, size=TINY, targets=("frame", "onset")), CPU, target="onset_roll")
        for video in videos:
            rows = [i for i, v in enumerate(ids) if v == video]
            on_time = np.zeros((max(frames[i] for i in rows) + 1, 88))
            on_time[[frames[i] for i in rows]] = probability[rows]
            ref = [_note(frames[i], k) for i in rows for k in np.flatnonzero(reference[i])]
            est = [_note(k, j) for k, j in sorted(_peaks_by_hand(on_time, THRESHOLD))]
            mine = written["splits"][split]["per_video"][video]
            assert (mine["reference"], mine["estimated"]) == (len(ref), len(est))
            p, r, f = mir_eval.transcription.precision_recall_f1_overlap(
                np.array([i for i, _ in ref]), np.array([h for _, h in ref]), np.array([i for i, _ in est]),
                np.array([h for _, h in est]), onset_tolerance=0.05, offset_ratio=None)[:3] if est else (0, 0, 0)
            assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx((p, r, f))
            matched, reference_count, estimated = (matched + mine["matched"], reference_count + len(ref),
                                                   estimated + len(est))
    overall = written["overall"]["summed"]
    assert (overall["matched"], overall["reference"], overall["estimated"]) == (matched, reference_count, estimated)
    assert overall["f1"] == pytest.approx(2 * matched / (reference_count + estimated))
    assert written["overall"]["videos"] == 3 and estimated > matched > 0
