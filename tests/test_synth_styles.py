"""Style families of the synthetic videos: the truth (quad in keyboard order, orientation,
clipped ends, negatives) is checked against the drawn pixels, not against itself."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

import synth.video as synthetic
from contract.piano import N_WHITE, key_layout, white_index
from curation.rectify import rectify_keyboard
from synth.looks import FAMILIES, HELD_OUT, KEY_RANGES, STYLE_FAMILIES, TUNING
from synth.render import HandPose, SceneRenderer, Style
from synth.video import SynthConfig, make_video
from tests.conftest import SynthVideo

PX, HEIGHT = 12, 84  # rectified pixels per white key, rectified key length
SMALL = dict(seconds=3, width=640, height=360, fps=10, audio="pretty_midi", cut=False)


def _render(tmp_path, look: str, seed: int, **config) -> SynthVideo:
    return SynthVideo(make_video(tmp_path / f"{look}-{seed}", "v", seed, SynthConfig(**{**SMALL, "look": look, **config})))


def _truth_only(tmp_path, monkeypatch, look: str, seed: int) -> dict:
    """The truth without rendering frames (the mp4 writer never pulls them)."""
    monkeypatch.setattr(synthetic, "_write_mp4", lambda *args: None)
    return json.loads(make_video(tmp_path / f"t-{look}-{seed}", "v", seed, SynthConfig(**{**SMALL, "look": look})).read_text())


def _pattern_scores(video: SynthVideo) -> tuple[float, float]:
    """Correlation of the dark columns with the black keys' mask in the back half and in
    the front fifth of the keys, after rectifying a playing frame with the truth quad
    (corner 0 to the top left): about 0.75 and 0.25 (the gaps between white keys) when
    the quad follows the keyboard; a quad mirrored, rotated or flipped fails one or both."""
    keyboard = video.truth["keyboard"]
    low = keyboard["lowest_midi"]
    n_white = white_index(low + keyboard["n_keys"] - 1) + 1 - white_index(low)
    frame = video.frames()[int(np.flatnonzero(video.truth["playing"])[3])]
    strip = rectify_keyboard(frame, keyboard["quad"], n_white * PX, HEIGHT).mean(axis=2)
    layout = key_layout()
    x = (np.arange(n_white * PX) + 0.5) / PX + white_index(low)
    expected = np.zeros(len(x))
    for i in np.flatnonzero(layout.black & (layout.midi >= low) & (layout.midi < low + keyboard["n_keys"])):
        expected[(x > layout.left[i] + 0.1) & (x < layout.right[i] - 0.1)] = 1.0
    inside = (x - white_index(low) > keyboard["clipped_left"] + 0.3) & (x - white_index(low) < n_white - keyboard["clipped_right"] - 0.3)
    back = strip[int(0.1 * HEIGHT):int(0.5 * HEIGHT)].mean(axis=0)
    front = strip[int(0.78 * HEIGHT):int(0.95 * HEIGHT)].mean(axis=0)
    return (float(np.corrcoef(-back[inside], expected[inside])[0, 1]),
            float(np.corrcoef(-front[inside], expected[inside])[0, 1]))


def test_families_are_registered_and_two_are_held_out():
    assert set(STYLE_FAMILIES) == set(FAMILIES) == set(TUNING) | set(HELD_OUT)
    assert len(HELD_OUT) == 2 and not set(HELD_OUT) & set(TUNING) and "studio" in TUNING


@pytest.mark.parametrize("look", list(FAMILIES) + ["keys61", "keys76", "cropped"])
def test_truth_quad_back_edge_is_on_the_black_keys_side(tmp_path, look):
    video = _render(tmp_path, look, 3, hands=False)
    back, front = _pattern_scores(video)
    assert back > 0.6, f"{look}: no black keys along the quad's back edge (corners 0-1): {back:.2f}"
    assert back - front > 0.3, f"{look}: black keys along the quad's front edge (corners 2-3): {front:.2f}"
    assert video.truth["keyboard"]["style"] == look and video.truth["keyboard"]["look"] == look


@pytest.mark.parametrize("seed, orientation", [(5, "normal"), (8, "rotated"), (0, "mirrored"), (2, "flipped")])
def test_orientation_truth_matches_the_drawing(tmp_path, seed, orientation):
    video = _render(tmp_path, "oblique", seed, hands=False)
    keyboard = video.truth["keyboard"]
    assert keyboard["orientation"] == orientation
    quad = np.array(keyboard["quad"])
    a0_right = quad[0, 0] > quad[1, 0]  # A0 end on the image right
    back_below = quad[:2, 1].mean() > quad[2:, 1].mean()  # black keys toward the image bottom
    assert (a0_right, back_below) == {"normal": (False, False), "rotated": (True, True),
                                      "mirrored": (True, False), "flipped": (False, True)}[orientation]
    back, front = _pattern_scores(video)  # the pixels agree: A0's end and the back edge are where the quad says
    assert back > 0.6 and back - front > 0.3, (back, front)


@pytest.mark.parametrize("look, seed", [("concert_grand", s) for s in range(6)] + [("cropped", s) for s in range(4)])
def test_clipped_ends_are_in_the_truth_when_the_quad_leaves_the_frame(tmp_path, monkeypatch, look, seed):
    truth = _truth_only(tmp_path, monkeypatch, look, seed)
    keyboard, width = truth["keyboard"], truth["video"]["width"]
    quad = np.array(keyboard["quad"])
    assert (keyboard["clipped_left"] > 0) == (quad[[0, 3], 0].mean() < 0)
    assert (keyboard["clipped_right"] > 0) == (quad[[1, 2], 0].mean() > width)
    if look == "concert_grand":  # spans the frame: flush or clipped by up to one white key
        assert max(keyboard["clipped_left"], keyboard["clipped_right"]) <= 1.05
        assert quad[[0, 3], 0].mean() < 0.03 * width and quad[[1, 2], 0].mean() > 0.97 * width
        assert keyboard["full_keyboard"]
    else:
        assert max(keyboard["clipped_left"], keyboard["clipped_right"]) > 2.2
        assert not keyboard["full_keyboard"] and keyboard["reason"] == "partial_keyboard"


def test_concert_grand_clips_an_end_for_some_seeds(tmp_path, monkeypatch):
    clipped = [max(_truth_only(tmp_path, monkeypatch, "concert_grand", s)["keyboard"]["clipped_left"],
                   _truth_only(tmp_path, monkeypatch, "concert_grand", s)["keyboard"]["clipped_right"]) for s in range(6)]
    assert any(c > 0.3 for c in clipped) and any(c < 0.3 for c in clipped), clipped


@pytest.mark.parametrize("look, n_keys, lowest, reason", [("keys61", 61, 36, "partial_keyboard"),
                                                          ("keys76", 76, 28, "partial_keyboard"),
                                                          ("cropped", 88, 21, "partial_keyboard"),
                                                          ("empty", 0, 21, "no_keyboard")])
def test_negatives_carry_their_truth(tmp_path, monkeypatch, look, n_keys, lowest, reason):
    keyboard = _truth_only(tmp_path, monkeypatch, look, 1)["keyboard"]
    assert keyboard["full_keyboard"] is False and keyboard["reason"] == reason
    assert keyboard["n_keys"] == n_keys and keyboard["lowest_midi"] == lowest
    if look in KEY_RANGES:
        assert KEY_RANGES[look] == (lowest, lowest + n_keys - 1)


def test_no_keyboard_video_never_shows_one(tmp_path):
    video = _render(tmp_path, "empty", 2)
    for frame in video.frames()[::5]:
        gray = frame.mean(axis=2)
        assert ((gray > 200).mean() < 0.05), "bright key-like area in a no_keyboard video"


def test_studio_gives_the_renderers_frames_unchanged(tmp_path, monkeypatch):
    """The studio family is today's look: the frames of Style.draw + SceneRenderer, byte for byte."""
    frames = []
    monkeypatch.setattr(synthetic, "_write_mp4", lambda path, gen, config, audio: frames.extend(gen))
    config = SynthConfig(**{**SMALL, "cut": None})
    truth = json.loads(make_video(tmp_path, "v", 21, config).read_text())
    rng = np.random.default_rng(21)
    cut = bool(rng.random() < 0.5)
    style = Style.draw(rng, hands=True)
    n = len(frames)
    segments = synthetic.plan_segments(n, config.fps, rng, cut)
    midi = synthetic.compose_performance(segments, config.fps, rng)
    renderer = SceneRenderer(style, config.width, config.height, rng)
    roll = synthetic.frame_roll([x for inst in midi.instruments for x in inst.notes], n, config.fps)
    poses = synthetic.hand_poses(midi, n, config.fps)
    play = np.flatnonzero(truth["playing"])
    renderer._noise_i = int(play[0])  # title frames used the noise bank first
    for k in play[:8]:
        assert np.array_equal(frames[k], renderer.keyboard_frame(roll[k], poses[k])), f"frame {k} differs"
    assert truth["style"] == json.loads(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                                    for k, v in asdict(style).items()}))
    assert truth["keyboard"]["orientation"] == "normal" and truth["keyboard"]["full_keyboard"]


def test_big_hands_can_cover_half_the_keyboard():
    """Bigger hands and four hands hide half the keys' width (real close-up cameras do)."""
    style = Style.draw(np.random.default_rng(4))
    big = SceneRenderer(Style(**{**asdict(style), "hand_scale": 1.9, "extra_hands": True}), 1280, 720, np.random.default_rng(0))
    small = SceneRenderer(style, 1280, 720, np.random.default_rng(0))

    def covered(renderer):  # share of the keyboard's width with a hand over the keys
        _, hands = renderer.keyboard_frame_and_hands(np.zeros(88, bool), [HandPose(12.0), HandPose(36.0)], True)
        keys = rectify_keyboard(hands.astype(np.uint8), renderer.quad, N_WHITE * PX, HEIGHT)
        return keys[: int(0.95 * HEIGHT)].any(axis=0).mean()

    assert covered(big) > 0.45 and covered(big) > 1.5 * covered(small), (covered(big), covered(small))


def test_overlay_bars_move_and_lit_keys_are_coloured(tmp_path):
    video = _render(tmp_path, "overlay", 4)
    frames = video.frames()
    play = np.flatnonzero(video.truth["playing"])
    a, b = frames[play[2]].astype(int), frames[play[3]].astype(int)
    quad = np.array(video.truth["keyboard"]["quad"])
    above = slice(0, int(quad[:2, 1].min()) - 4)
    assert np.abs(a[above] - b[above]).max() > 60, "falling-note bars do not move"
    saturation = np.stack(frames)[play].max(axis=3) - np.stack(frames)[play].min(axis=3)
    assert (saturation > 100).mean() > 0.002  # coloured bars and lit keys


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_hd_sizes_render(tmp_path, monkeypatch, size):
    frames = []
    monkeypatch.setattr(synthetic, "_write_mp4", lambda path, gen, config, audio: frames.extend(gen))
    truth = json.loads(make_video(tmp_path, "v", 9, SynthConfig(**{**SMALL, "width": size[0], "height": size[1],
                                                                     "look": "concert_grand"})).read_text())
    assert frames[0].shape == (size[1], size[0], 3) and len(frames) == truth["video"]["n_frames"]
    assert np.ptp(np.array(truth["keyboard"]["quad"])[:, 0]) > 0.95 * size[0]


def test_cli_synth_draws_the_look_asked_for_and_names_the_known_ones(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", str(tmp_path), "--n", "1", "--seconds", "3",
                             "--width", "640", "--height", "360", "--look", "digital"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    truth = json.loads((tmp_path / "synth-0-000.json").read_text())
    assert truth["keyboard"]["look"] == "digital"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", str(tmp_path), "--look", "nope"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown look 'nope'" in result.stderr and "concert_grand" in result.stderr
