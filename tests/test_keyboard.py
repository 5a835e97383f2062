"""Keyboard location against the synthetic truth, and its explicit failures."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import av
import cv2
import numpy as np
import pytest

from curation.keyboard import KeyboardNotFound, locate, locate_in_frames, manifest_crop_location, quad_iou
from synth.video import SynthConfig, make_video
from tests.conftest import write_video


def test_locate_finds_the_truth_quad_through_hands_title_and_cut(synth_720p):
    location = locate(synth_720p.mp4)
    truth = synth_720p.truth["keyboard"]
    assert quad_iou(location.quad, truth["quad"], (720, 1280)) > 0.95
    assert np.abs(np.array(location.quad) - np.array(truth["quad"])).max() < 6  # pixels
    assert location.score > 0.8 and location.frames_used >= 3
    x0, y0, x1, y1 = location.bbox
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in location.quad)
    ranges = np.array(location.key_ranges)
    assert ranges.shape == (88, 2) and ranges[0, 0] == 0 and ranges[-1, 1] == 1


def test_locate_works_on_a_frame_grab(synth_720p, tmp_path):
    frames = synth_720p.frames()
    k = int(np.flatnonzero(synth_720p.truth["playing"])[10])
    cv2.imwrite(str(tmp_path / "grab.png"), frames[k])
    location = locate(tmp_path / "grab.png")
    assert quad_iou(location.quad, synth_720p.truth["keyboard"]["quad"], (720, 1280)) > 0.93


def test_a_cropped_keyboard_is_partial_not_a_guess(synth_720p):
    frames = synth_720p.frames()
    frame = frames[int(np.flatnonzero(synth_720p.truth["playing"])[10])]
    x0, _, x1, _ = synth_720p.truth["keyboard"]["bbox"]
    with pytest.raises(KeyboardNotFound) as caught:
        locate_in_frames([frame[:, (x0 + x1) // 2 - 200:]])
    assert caught.value.reason == "partial_keyboard"


def test_bad_inputs_get_a_clear_failure_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "nokeys.mp4", [rng.integers(0, 255, (180, 320, 3), np.uint8) for _ in range(30)])
    (tmp_path / "corrupt.mp4").write_bytes(rng.integers(0, 255, 5000, np.uint8).tobytes())
    (tmp_path / "empty.mp4").write_bytes(b"")
    with wave.open(str(tmp_path / "audio.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000)
    portrait = make_video(tmp_path, "portrait", 3, SynthConfig(seconds=4, width=360, height=640, audio="pretty_midi"))
    cases = {"nokeys.mp4": "no keyboard", "corrupt.mp4": "cannot decode", "empty.mp4": "cannot decode",
             "audio.wav": "no video stream", "portrait.mp4": "portrait", "absent.mp4": "no such file"}
    assert portrait.with_suffix(".mp4").is_file()
    for name, message in cases.items():
        with pytest.raises(KeyboardNotFound) as caught:
            locate(tmp_path / name)
        assert caught.value.reason == "no_keyboard" and name in str(caught.value) and message in str(caught.value)


def test_a_manifest_crop_is_scaled_to_the_downloaded_resolution():
    location = manifest_crop_location([[68, 674], [1869, 674], [1869, 863], [68, 863]], (1920, 1080), (1280, 720))
    assert location.source == "manifest" and location.bbox == [45, 449, 1246, 576]
    assert location.quad[0] == [pytest.approx(45.33, abs=0.01), pytest.approx(449.33, abs=0.01)]


def test_cli_locate_prints_json_and_exits_3_when_nothing_is_found(synth_720p, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "locate", str(synth_720p.mp4), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert {"bbox", "quad", "score", "orientation", "clipped_left", "clipped_right"} <= set(answer)
    assert len(answer["quad"]) == 4 and answer["orientation"] == "normal" and answer["clipped_left"] == 0
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "locate", str(tmp_path / "x.mp4"), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 3 and json.loads(result.stdout)["error"] == "no_keyboard"


def test_sampling_gives_all_frames_asked_for_with_few_keyframes(tmp_path):
    """A file with 10 keyframes (the old keyframe-only sampling returned just those, as it
    got 8-12 from some low-resolution uploads) gives 24 frames spread over its length."""
    frames = [np.full((90, 160, 3), k * 2, np.uint8) for k in range(120)]  # brightness = 2 x frame index
    path = tmp_path / "onekey.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "12", "keyint_min": "12", "sc_threshold": "0"})
        stream.height, stream.width, stream.pix_fmt = 90, 160, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))
    from curation.keyboard import sample_frames

    sampled, size = sample_frames(path, 24)
    index = np.array([float(f.mean()) / 2 for f in sampled])
    assert size == (160, 90) and len(sampled) == 24
    assert np.all(np.diff(index) > 2)  # distinct and in order
    slot = 120 / 24
    assert np.all((index > np.arange(24) * slot - 2) & (index < (np.arange(24) + 1) * slot))  # each in its own slot


def _bit_frame(k: int, bits: int = 9) -> np.ndarray:
    """Frame k with its index written as `bits` black/white squares (survives compression)."""
    frame = np.zeros((32, 32 * bits, 3), np.uint8)
    for b in range(bits):
        frame[:, 32 * b:32 * (b + 1)] = 255 * ((k >> b) & 1)
    return frame


def test_frames_of_a_stream_of_unknown_length_are_spread_and_bounded(tmp_path):
    """The fallback when a video has no duration, on frames decoded from real videos that
    carry their index: never more than 2n held, evenly spaced from the first on."""
    from curation.keyboard import _evenly_spaced

    for total in (10, 100, 400):
        path = tmp_path / f"indexed{total}.mp4"
        write_video(path, [_bit_frame(k) for k in range(total)])
        with av.open(str(path)) as container:
            kept = _evenly_spaced(container.decode(video=0), 24)
        indices = [sum(1 << b for b in range(9) if frame[:, 32 * b:32 * (b + 1)].mean() > 127) for frame in kept]
        assert len(kept) <= 48 and (len(kept) >= 24 or len(kept) == total)
        gaps = set(np.diff(indices))
        assert len(gaps) == 1 and indices[0] == 0 and total - indices[-1] <= 2 * gaps.pop()
