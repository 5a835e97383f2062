"""Both real transcribers on synthetic piano audio with known notes; bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest

from labeling.events import AudioInputError
from labeling.metrics import onset_scores
from labeling.transcribers import label_spec, make_transcriber, resolve_labeler
from synth.audio import synthesize
from synth.video import performance_audio


@pytest.fixture(scope="module")
def basic_pitch():
    return make_transcriber("basic-pitch")


@pytest.fixture(scope="module")
def clip():
    audio, notes, source = performance_audio(seed=5, seconds=8.0)
    return audio, notes


def test_basic_pitch_finds_the_notes_of_a_synthetic_clip(basic_pitch, clip):
    audio, truth = clip
    result = basic_pitch.transcribe(audio, 44100)
    scores = onset_scores(truth, result.notes)
    assert scores["f1"] > 0.6, scores
    assert all(21 <= n.pitch <= 108 and n.offset > n.onset and 1 <= n.velocity <= 127 for n in result.notes)
    assert result.frame_posterior.shape == result.onset_posterior.shape == (len(result.posterior_times), 88)
    # Times come from model_frames_to_time, not i/86: matched onsets are centred on the truth.
    deviations = [min((n.onset - t.start for n in result.notes if n.pitch == t.pitch), key=abs, default=1.0)
                  for t in truth]
    assert abs(np.median([d for d in deviations if abs(d) < 0.05])) < 0.02


def test_basic_pitch_batch_gives_the_same_notes_as_one_by_one(basic_pitch, clip):
    audio, _ = clip
    other = audio[: 44100 * 3] * 0.5
    batch = basic_pitch.transcribe_batch([(audio, 44100), (other, 44100)])
    assert batch[0].notes == basic_pitch.transcribe(audio, 44100).notes
    assert batch[1].notes == basic_pitch.transcribe(other, 44100).notes


def test_basic_pitch_keeps_the_end_of_a_long_file(basic_pitch):
    """basic-pitch 0.4.0 trims its stitched output at 86 fps (it runs at ~86.58): a note in
    the last 2 s of a 5-minute file would be lost."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(100, 72, 298.6, 299.5), pretty_midi.Note(100, 60, 10.0, 10.8)]
    midi.instruments.append(piano)
    audio, _ = synthesize(midi, 300.0, 22050)
    result = basic_pitch.transcribe(audio, 22050)
    assert result.posterior_times[-1] > 299.5
    assert any(n.pitch == 72 and abs(n.onset - 298.6) < 0.05 for n in result.notes), result.notes[-3:]


def test_silent_and_very_short_audio_give_no_notes(basic_pitch):
    assert basic_pitch.transcribe(np.zeros(44100 * 3, np.float32), 44100).notes == []
    assert basic_pitch.transcribe(np.zeros(100, np.float32), 44100).notes == []


@pytest.mark.parametrize("rate", [11025, 16000, 48000, 96000])
def test_odd_sample_rates_are_resampled(basic_pitch, clip, rate):
    import soxr

    audio, truth = clip
    resampled = soxr.resample(audio, 44100, rate).astype(np.float32)
    assert onset_scores(truth, basic_pitch.transcribe(resampled, rate).notes)["f1"] > 0.55


def test_clipped_audio_is_transcribed(basic_pitch, clip):
    audio, truth = clip
    assert onset_scores(truth, basic_pitch.transcribe(audio * 4.0, 44100).notes)["f1"] > 0.5


@pytest.mark.parametrize("audio, rate, message", [
    (np.array([0.0, np.nan, 0.1], np.float32), 44100, "NaN"),
    (np.zeros((2, 100), np.float32), 44100, "mono"),
    (np.zeros(0, np.float32), 44100, "empty"),
    (np.zeros(100, np.int16), 44100, "float"),
    (np.zeros(100, np.float32), 1000, "sample rate"),
])
def test_bad_audio_gets_a_clear_error(basic_pitch, audio, rate, message):
    with pytest.raises(AudioInputError, match=message):
        basic_pitch.transcribe(audio, rate)


def test_unknown_labeler_and_parameter_are_clear():
    with pytest.raises(ValueError, match="unknown labeler 'onsets'"):
        make_transcriber("onsets")
    with pytest.raises(ValueError, match="unknown basic-pitch parameter"):
        make_transcriber("basic-pitch", onset=0.3)


def test_auto_picks_transkun_only_when_a_gpu_is_visible():
    import torch

    assert resolve_labeler("auto") == ("transkun" if torch.cuda.is_available() else "basic-pitch")


def test_transkun_finds_the_notes_on_the_cpu_and_keeps_pedal_apart():
    audio, truth, _ = performance_audio(seed=9, seconds=4.0)
    transkun = make_transcriber("transkun", device="cpu")
    result = transkun.transcribe(audio, 44100)
    assert onset_scores(truth, result.notes)["f1"] > 0.85
    assert all(21 <= n.pitch <= 108 for n in result.notes)
    spec = label_spec("transkun", {}, 25.0)
    assert spec["weights"] == "2.0.pt" and len(spec["weights_sha256"]) == 64


def test_cli_transcribe_writes_midi_and_rolls_aligned_to_the_video(synth_no_hands, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "transcribe", str(synth_no_hands.mp4),
                             "--labeler", "basic-pitch", "--midi", str(tmp_path / "o.mid"), "--rolls",
                             str(tmp_path / "o.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rolls = np.load(tmp_path / "o.npz")
    assert rolls["frame_roll"].shape == (synth_no_hands.truth["video"]["n_frames"], 88)
    assert json.loads(str(rolls["label_spec"]))["backend"] == "basic-pitch"
    est = pretty_midi.PrettyMIDI(str(tmp_path / "o.mid")).instruments[0].notes
    assert onset_scores(synth_no_hands.notes, est)["f1"] > 0.6
    missing = subprocess.run([sys.executable, "-m", "pipelines.cli", "transcribe", str(tmp_path / "nope.wav"),
                              "--midi", str(tmp_path / "x.mid")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.wav: no such file" in missing.stderr


def test_basic_pitch_keeps_to_the_thread_budget_ray_gives_its_actor(monkeypatch):
    """onnxruntime starts a thread per core unless told; under Ray (OMP_NUM_THREADS set
    to the actor's CPUs) it is told, and outside Ray it keeps its default (0)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert make_transcriber("basic-pitch").session.get_session_options().intra_op_num_threads == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert make_transcriber("basic-pitch").session.get_session_options().intra_op_num_threads == 1
