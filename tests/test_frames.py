"""The frame pass against the synthetic truth, and the drop rules on known inputs."""

from __future__ import annotations

import collections

import cv2
import numpy as np
import pytest

from contract.config import FrameConfig
from curation.audio import audio_to_flac, load_audio
from curation.frames import (
    decode_at_fps,
    frame_pass,
    frame_rms,
    keyboard_rows,
    rectifier,
    rectify,
    reference_crop,
    silent_frames,
    to_bgr,
)
from curation.keyboard import locate_in_frames, sample_frames
from curation.presses import key_levels
from tests.conftest import write_video


def _pass(video, config=FrameConfig(), **kw):
    frames, _ = sample_frames(video.mp4)
    location = locate_in_frames(frames)
    reference = reference_crop(frames, location.quad, config)
    audio, rate = load_audio(video.mp4)
    silent = silent_frames(frame_rms(audio, rate, video.truth["video"]["n_frames"], config.fps), config.fps, config)
    return [r for batch in frame_pass(video.mp4, location.quad, reference, config, silent=silent, **kw) for r in batch]


def test_kept_frames_agree_with_the_truth_and_drops_say_why(synth_720p):
    records = _pass(synth_720p)
    truth = np.array(synth_720p.truth["playing"])
    assert [r.frame for r in records] == list(range(len(truth)))
    assert all(abs(r.t - (r.frame + 0.5) / 25) < 1e-9 for r in records)
    kept = np.array([r.kept for r in records])
    assert (kept == truth).mean() >= 0.98
    kinds = {}
    for seg in synth_720p.truth["segments"]:
        kinds.update({k: seg["kind"] for k in range(seg["start_frame"], seg["end_frame"])})
    reasons = collections.Counter(r.drop_reason for r in records if kinds[r.frame] != "play")
    assert reasons["no_keyboard"] >= 0.95 * sum(reasons.values())
    crop = cv2.imdecode(np.frombuffer(next(r.jpeg for r in records if r.kept), np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (100, 900, 3)
    assert all((r.jpeg is None) == (not r.kept) for r in records)


def test_outside_range_comes_first(synth_no_hands):
    records = _pass(synth_no_hands, start_s=2.0, end_s=4.0)
    for r in records:
        inside = 2.0 <= r.t < 4.0
        assert (r.drop_reason == "outside_range") == (not inside)


def test_silence_rule_keeps_brief_rests_and_drops_long_silences():
    fps, config = 25.0, FrameConfig()
    rms = np.full(1000, 0.1)
    rms[:100] = 0  # 4 s before the first note
    rms[300:340] = 0  # a 1.6 s rest: stays
    rms[500:700] = 0  # an 8 s silence inside: dropped, but for 0.5 s at each side
    rms[900:] = 0  # after the last note
    silent = silent_frames(rms, fps, config)
    m = round(0.5 * fps)  # the 0.5 s margins, in frames (12)
    assert silent[:100 - m].all() and not silent[100 - m:100].any()
    assert not silent[300:340].any()
    assert not silent[500:500 + m].any() and silent[500 + m:700 - m].all() and not silent[700 - m:700].any()
    assert not silent[900:900 + m].any() and silent[900 + m:].all()
    assert not silent[100:300].any()
    assert silent_frames(np.zeros(50), fps, config).all()


def test_a_band_of_rows_converts_as_the_same_rows_of_the_whole_frame(synth_no_hands, tmp_path):
    """The frame pass converts only the keyboard's rows of a 4:2:0 frame from its planes;
    they must be the whole frame's rows exactly (a chroma row off by one would tint every
    crop), at odd bounds and at the frame's edges; other pixel formats take FFmpeg's path."""
    import av

    with av.open(str(synth_no_hands.mp4)) as container:
        frame = next(container.decode(video=0))
        assert frame.format.name == "yuv420p"
        whole = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
        for rows in [(0, 7), (100, 301), (355, 720), (-8, 40), (601, 9999)]:
            top, bottom = max(0, rows[0]), min(whole.shape[0], rows[1])
            band = to_bgr(frame, rows)
            assert np.array_equal(band, whole[top:bottom]), rows
    video = tmp_path / "full444.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv444p"
        picture = np.random.default_rng(3).integers(0, 255, (64, 96, 3), np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="bgr24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
        assert np.array_equal(to_bgr(frame, (10, 31)), frame.to_ndarray(format="bgr24")[10:31])


def test_the_frame_pass_crops_are_the_rectified_whole_frames(synth_no_hands):
    """Rectifying the keyboard's band must give the crop the whole frame gives: the band's
    top row is folded into the homography."""
    records = _pass(synth_no_hands)
    frames, _ = sample_frames(synth_no_hands.mp4)
    quad = locate_in_frames(frames).quad
    assert keyboard_rows(quad)[0] > 100  # the band starts well below the frame's top
    config, source = FrameConfig(), synth_no_hands.frames()
    matrix = rectifier(quad, config)
    kept = [r for r in records if r.kept][:20]
    assert kept
    for record in kept:
        expected = rectify(source[record.frame], matrix, config)
        crop = cv2.imdecode(np.frombuffer(record.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(crop.astype(int) - expected).mean() < 3, record.frame
        assert np.median(np.abs(record.key_levels - key_levels(expected))) < 2, record.frame


def test_decode_at_a_lower_fps_picks_the_frame_showing_at_each_centre(synth_no_hands):
    source = synth_no_hands.frames()
    picked = list(decode_at_fps(synth_no_hands.mp4, 10.0))
    assert len(picked) == round(len(source) / 25 * 10)
    for k, frame in picked:
        assert np.array_equal(frame, source[int((k + 0.5) / 10 * 25)])


def test_one_decoding_thread_gives_the_same_frames_as_ffmpegs_default(synth_no_hands, monkeypatch):
    """Ray gives each video task a budget of one thread (OMP_NUM_THREADS=1); the frames
    must not depend on it, or corpora built on different machines would differ."""
    default = list(decode_at_fps(synth_no_hands.mp4, 10.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    single = list(decode_at_fps(synth_no_hands.mp4, 10.0))
    assert [k for k, _ in single] == [k for k, _ in default]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(single, default))


def test_no_keyboard_holds_under_light_drift_and_a_camera_that_moves_once(synth_720p, tmp_path):
    """The light fades to 55 % over the video and the camera moves once, 60 % of the way
    in: the keyboard is located in the larger part, the frames after the move are dropped
    as no_keyboard, and every decision stores the similarity it was made on."""
    truth = np.array(synth_720p.truth["playing"])
    frames = synth_720p.frames()
    n, move = len(frames), int(0.6 * len(frames))
    shift = np.float32([[1, 0, 90], [0, 1, -70]])
    drifted = []
    for k, frame in enumerate(frames):
        gain = 1.0 - 0.45 * k / (n - 1)
        frame = np.clip(frame * gain, 0, 255).astype(np.uint8)
        if k >= move:
            frame = cv2.warpAffine(frame, shift, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
        drifted.append(frame)
    video = tmp_path / "drift.mp4"
    write_video(video, drifted)
    sampled, _ = sample_frames(video)
    location = locate_in_frames(sampled)
    config = FrameConfig()
    reference = reference_crop([sampled[i] for i in location.fitted], location.quad, config)
    records = [r for batch in frame_pass(video, location.quad, reference, config) for r in batch]
    kept = np.array([r.kept for r in records])
    before = np.arange(n) < move
    assert (kept[before] == truth[before]).mean() >= 0.97  # the fade does not drop the performance
    assert not kept[~before].any()  # after the move the crop shows no keyboard
    assert all(r.drop_reason == "no_keyboard" for r in records[move:])
    similarity = np.array([r.keyboard_similarity for r in records])
    assert np.all((similarity < config.keyboard_similarity) == (np.array([r.drop_reason for r in records]) == "no_keyboard"))


def test_audio_streamed_to_flac_gives_the_same_frame_rms_and_samples(synth_no_hands, tmp_path):
    """The video stage never holds the audio whole: its FLAC and per-frame RMS are made
    as the track decodes, and equal what the whole track gives."""
    audio, rate = load_audio(synth_no_hands.mp4, 44100)
    n = synth_no_hands.truth["video"]["n_frames"]
    rms = audio_to_flac(synth_no_hands.mp4, tmp_path / "a.flac", 44100, n, 25)
    assert np.allclose(rms, frame_rms(audio, rate, n, 25), rtol=1e-9, atol=1e-12) and rms.max() > 0.01
    flac, flac_rate = load_audio(tmp_path / "a.flac")
    assert flac_rate == 44100 and len(flac) == len(audio) and np.abs(flac - audio).max() < 1e-4
    assert not list(tmp_path.glob("*.part"))


def test_segments_of_the_frame_pass_joined_are_the_whole_pass(tmp_path):
    """A long video is decoded as segments, each from a seek to the keyframe before it:
    joined they must be the frames (crops, decisions, similarities, key levels) of one
    pass from the start, at segment bounds anywhere (between keyframes, at the end)."""
    import av

    from synth.video import SynthConfig, make_video

    make_video(tmp_path, "seg", 21, SynthConfig(seconds=8, width=640, height=360, cut=True, audio="pretty_midi"))
    video = tmp_path / "seg.mp4"
    keyed = tmp_path / "keyed.mp4"  # a keyframe every 25 frames, as YouTube's are every few seconds
    with av.open(str(video)) as source, av.open(str(keyed), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.gop_size = 25
        for frame in source.decode(video=0):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    config = FrameConfig()
    frames, _ = sample_frames(keyed)
    location = locate_in_frames(frames)
    reference = reference_crop(frames, location.quad, config)

    def records(first=0, stop=None):
        return [r for batch in frame_pass(keyed, location.quad, reference, config, first=first, stop=stop)
                for r in batch]

    whole = records()
    n = len(whole)
    for bounds in ([0, 60, 137, n], [0, 25, 50, n], [0, n - 1, n]):
        joined = [r for a, b in zip(bounds, bounds[1:]) for r in records(a, b)]
        assert [r.frame for r in joined] == list(range(n))
        for a, b in zip(whole, joined):
            assert (a.kept, a.drop_reason, a.jpeg, a.keyboard_similarity) == (b.kept, b.drop_reason, b.jpeg,
                                                                                b.keyboard_similarity), a.frame
            assert (a.key_levels is None) == (b.key_levels is None)
            assert a.key_levels is None or np.array_equal(a.key_levels, b.key_levels)


@pytest.mark.timeout(60)
def test_a_stream_of_unknown_duration_ends(tmp_path):
    """A raw H.264 stream carries no duration: its frames come out, the last once (the
    loop after the last frame never ended)."""
    import av

    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8),
                                                                    format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    picked = list(decode_at_fps(path, 25.0))
    assert 1 <= len(picked) <= 10 and [k for k, _ in picked] == list(range(len(picked)))
