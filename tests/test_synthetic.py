"""Synthetic videos: the truth is checked against the decoded media, not against itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from contract.piano import key_layout
from curation.rectify import rectify_keyboard
from labeling.rolls import frame_roll
from synth.audio import fluidsynth_ready
from synth.video import Segment, SynthConfig, compose_performance, make_video

PX = 16  # rectified pixels per white key in these checks


def _rectified(video, frame):
    width = 52 * PX
    height = int(round(width * video.truth["style"]["key_length"] / 52))
    return rectify_keyboard(frame, video.truth["keyboard"]["quad"], width, height), height


def _black_key_pattern_score(gray_strip: np.ndarray) -> float:
    """Correlation of a rectified strip's upper columns with the 36 black keys' mask."""
    layout = key_layout()
    columns = gray_strip[: int(0.45 * gray_strip.shape[0])].mean(axis=0)
    x = (np.arange(len(columns)) + 0.5) / PX
    expected = np.zeros_like(columns)
    for i in np.flatnonzero(layout.black):
        expected[(x > layout.left[i]) & (x < layout.right[i])] = 1.0
    return float(np.corrcoef(-columns, expected)[0, 1])


def test_frame_count_size_and_duration_match_the_truth(synth_720p):
    truth = synth_720p.truth["video"]
    frames = synth_720p.frames()
    assert len(frames) == truth["n_frames"] == 8 * 25 == len(synth_720p.truth["playing"])
    assert frames[0].shape == (720, 1280, 3)
    audio, rate = synth_720p.audio()
    assert rate == synth_720p.truth["audio"]["sample_rate"]
    assert abs(len(audio) / rate - truth["duration_s"]) < 0.05


def test_keyboard_pixels_lie_inside_the_truth_quad(synth_720p):
    import cv2

    quad = np.array(synth_720p.truth["keyboard"]["quad"], np.float32)
    x0, y0, x1, y1 = synth_720p.truth["keyboard"]["bbox"]
    assert x0 <= quad[:, 0].min() and quad[:, 0].max() <= x1 and y0 <= quad[:, 1].min() and quad[:, 1].max() <= y1
    frames = synth_720p.frames()
    playing = np.flatnonzero(synth_720p.truth["playing"])
    inside = np.zeros(frames[0].shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
    inside = cv2.dilate(inside, np.ones((7, 7), np.uint8)).astype(bool)
    for k in playing[:: max(1, len(playing) // 6)]:
        f = frames[k].astype(np.int16)
        key_white = (f.min(axis=2) > 170) & (f.max(axis=2) - f.min(axis=2) < 30)
        assert key_white.sum() > 0.3 * inside.sum() * 0.8  # the keys fill much of the quad
        assert key_white[inside].sum() / key_white.sum() > 0.995, f"frame {k}: white pixels outside the quad"


def test_keyboard_pattern_shows_in_playing_frames_only(synth_720p):
    frames = synth_720p.frames()
    for k, playing in enumerate(synth_720p.truth["playing"]):
        if k % 5:
            continue
        strip, _ = _rectified(synth_720p, frames[k])
        score = _black_key_pattern_score(strip.mean(axis=2))
        if playing:
            assert score > 0.7, f"frame {k}: keyboard pattern missing at the truth quad ({score:.2f})"
        else:
            assert score < 0.4, f"frame {k}: keyboard pattern in a non-playing frame ({score:.2f})"
    kinds = {s["kind"] for s in synth_720p.truth["segments"]}
    assert kinds == {"title", "play", "cut", "outro"}


def test_pressed_keys_are_visible_and_match_the_midi(synth_no_hands):
    layout = key_layout()
    frames = synth_no_hands.frames()
    roll = frame_roll(synth_no_hands.notes, len(frames), synth_no_hands.truth["video"]["fps"])
    playing = np.flatnonzero(synth_no_hands.truth["playing"])
    assert roll[playing].sum() > 50 and not roll[~np.asarray(synth_no_hands.truth["playing"])].any()
    seen = np.zeros((len(playing), 88), bool)
    for row, k in enumerate(playing):
        strip, height = _rectified(synth_no_hands, frames[k])
        gray = strip.mean(axis=2)
        for i in range(88):
            x0, x1 = int(layout.left[i] * PX) + 3, int(layout.right[i] * PX) - 3
            if layout.black[i]:  # a pressed black key is lighter grey
                seen[row, i] = gray[int(0.15 * height):int(0.5 * height), x0 + 1:x1 - 1].mean() > 50
            else:  # a pressed white key's front is darker
                seen[row, i] = gray[int(0.75 * height):int(0.95 * height), x0:x1].mean() < 205
    assert (seen == roll[playing]).mean() > 0.999
    assert (seen & roll[playing]).sum() / roll[playing].sum() > 0.99


def _band_energy(audio, rate, start, end, f0):
    segment = audio[int(start * rate):int(end * rate)] * np.hanning(int(end * rate) - int(start * rate))
    spectrum = np.abs(np.fft.rfft(segment)) ** 2
    freqs = np.fft.rfftfreq(len(segment), 1 / rate)
    tol = np.maximum(0.03 * np.array([f0, 2 * f0]), freqs[1])
    band = (np.abs(freqs - f0) <= tol[0]) | (np.abs(freqs - 2 * f0) <= tol[1])
    return spectrum[band].sum() + 1e-9


def test_audio_energy_rises_at_midi_onsets_and_is_silent_outside_the_performance(synth_720p):
    audio, rate = synth_720p.audio()
    notes = synth_720p.notes
    assert len(notes) > 20
    ratios = np.array([_band_energy(audio, rate, n.start + 0.01, n.start + 0.1, 440 * 2 ** ((n.pitch - 69) / 12)) /
                       _band_energy(audio, rate, n.start - 0.1, n.start - 0.01, 440 * 2 ** ((n.pitch - 69) / 12))
                       for n in notes])
    assert np.median(ratios) > 10 and (ratios > 2).mean() > 0.8
    fps = synth_720p.truth["video"]["fps"]
    for seg in synth_720p.truth["segments"]:
        a, b = int((seg["start_frame"] / fps + 0.1) * rate), int((seg["end_frame"] / fps - 0.1) * rate)
        rms = float(np.sqrt(np.mean(audio[a:b] ** 2)))
        assert (rms > 0.01) if seg["kind"] == "play" else (rms < 1e-3), (seg, rms)


def test_same_seed_gives_the_same_truth_bytes_and_another_seed_differs(tmp_path):
    config = SynthConfig(seconds=4, width=320, height=180, audio="pretty_midi")
    first = make_video(tmp_path / "a", "v", 7, config)
    again = make_video(tmp_path / "b", "v", 7, config)
    other = make_video(tmp_path / "c", "v", 8, config)
    for suffix in (".json", ".mid"):
        assert first.with_suffix(suffix).read_bytes() == again.with_suffix(suffix).read_bytes()
        assert first.with_suffix(suffix).read_bytes() != other.with_suffix(suffix).read_bytes()


def test_pretty_midi_fallback_is_recorded_in_the_truth(tmp_path):
    import json

    truth = json.loads(make_video(tmp_path, "v", 1, SynthConfig(seconds=4, width=320, height=180,
                                                                audio="pretty_midi")).read_text())
    assert truth["audio"]["source"] == "pretty_midi" and truth["audio"]["soundfont"] is None


@pytest.mark.skipif(not fluidsynth_ready(), reason="FluidSynth + soundfont not installed (make test installs them as root)")
def test_fluidsynth_is_used_when_installed(synth_720p):
    assert synth_720p.truth["audio"]["source"] == "fluidsynth"
    assert synth_720p.truth["audio"]["soundfont"].endswith(".sf2")


@pytest.mark.parametrize("bad", [dict(seconds=1), dict(width=321), dict(fps=0), dict(audio="organ")])
def test_bad_configuration_gets_a_clear_error(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        make_video(tmp_path, "v", 1, SynthConfig(**{**dict(seconds=4, width=320, height=180), **bad}))


def test_cli_writes_playable_videos_with_truth(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", str(out), "--n", "2", "--seconds", "4",
                             "--seed", "3", "--width", "320", "--height", "180"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"synth-3-00{i}.{ext}" for i in range(2) for ext in ("json", "mid", "mp4")]
    import av

    with av.open(str(out / "synth-3-001.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 100


def test_cli_reports_bad_arguments_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", str(tmp_path), "--seconds", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "seconds must be >= 3" in result.stderr and "Traceback" not in result.stderr


def test_composed_music_stays_in_the_middle_of_the_keyboard_as_real_piano_music_does():
    """Label benchmarks score on these notes: a register spread far wider than real music's
    (it once had 9 % of notes at C7 and above) measures the transcribers' weakest keys."""
    pitches = np.array([n.pitch for seed in range(20)
                        for inst in compose_performance([Segment("play", 0, 750)], 25, np.random.default_rng(seed)).instruments
                        for n in inst.notes])
    assert len(pitches) > 2000
    assert 55 <= pitches.mean() <= 68 and 10 <= pitches.std() <= 18
    assert (pitches >= 96).mean() < 0.03 and (pitches < 33).mean() < 0.05
    assert {21, 108} & set(pitches.tolist())  # the keyboard's ends are still struck now and then
