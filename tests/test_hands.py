"""Hand keypoints (curation/hands.py): the keyboard coordinates of a point, the key
under a fingertip and PianoVAM's near-a-fingertip rule on known geometry, and MediaPipe
itself on frames the tests make (its models ship in the wheel: nothing is downloaded)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from contract.config import FrameConfig, HandsConfig
from contract.piano import BLACK_LENGTH, N_WHITE, key_layout
from curation.frames import rectifier
from curation.hands import N_LANDMARKS, HandTracker, keys_under, near_fingertip, to_keyboard
from synth.video import SynthConfig, make_video


def test_a_point_on_a_keystoned_keyboard_reads_in_keyboard_coordinates():
    quad = np.array([[100, 300], [1180, 280], [1220, 420], [60, 440]], float)  # A0 back, C8 back, C8 front, A0 front
    config = FrameConfig()
    matrix = rectifier(quad, config)
    size = (config.crop_width, config.crop_height)
    corners = to_keyboard(quad, matrix, size)
    assert np.allclose(corners, [[0, 0], [1, 0], [1, 1], [0, 1]], atol=1e-4)
    middle_front = (quad[2] + quad[3]) / 2  # halfway along the front edge, in the picture
    u, v = to_keyboard(middle_front[None], matrix, size)[0]
    assert abs(v - 1) < 1e-4 and 0.4 < u < 0.6  # perspective: not exactly 0.5
    assert np.isnan(to_keyboard(np.full((2, 2), np.nan), matrix, size)).all()  # no hand is no point (OpenCV says 0)


def test_the_key_under_a_point_is_black_within_the_black_keys_length_else_white():
    layout = key_layout()
    c4, c_sharp4 = 39, 40  # C4 (MIDI 60) and C#4
    centre_black = layout.centre[c_sharp4] / N_WHITE
    assert keys_under(np.array([centre_black, 0.3])) == c_sharp4
    assert keys_under(np.array([centre_black, BLACK_LENGTH + 0.05])) in (c4, c4 + 2)  # below the black key: a white one
    assert keys_under(np.array([layout.centre[c4] / N_WHITE, 0.9])) == c4
    assert keys_under(np.array([0.001, 0.9])) == 0 and keys_under(np.array([0.999, 0.9])) == 87
    off = np.array([[-0.01, 0.5], [1.01, 0.5], [0.5, 1.2], [0.5, -0.1], [np.nan, np.nan]])
    assert (keys_under(off) == -1).all()
    every_white = (np.flatnonzero(~layout.black) + 0.0)
    whites = keys_under(np.column_stack([(np.arange(N_WHITE) + 0.5) / N_WHITE, np.full(N_WHITE, 0.9)]))
    assert np.array_equal(whites, every_white.astype(int))


def test_an_onset_is_near_a_fingertip_within_two_white_keys_in_its_frame_or_a_neighbour():
    layout = key_layout()
    tips = np.full((10, 5), np.nan)
    tips[4, 0] = layout.centre[39] / N_WHITE  # a fingertip over C4 in frame 4
    tips[7, 1] = layout.centre[60] / N_WHITE  # one over key 60 in frame 7
    frames = np.array([4, 5, 4, 4, 0, 9])
    keys = np.array([39, 41, 44, 51, 39, 39])  # C4 itself, D4 (1 white key), F4 (3 white keys), far away, no hand, no hand
    assert near_fingertip(tips, frames, keys).tolist() == [1, 1, 0, 0, -1, -1]


@pytest.fixture(scope="module")
def tracker():
    tracker = HandTracker(HandsConfig(max_hands=2), static=True)
    yield tracker
    tracker.close()


def test_mediapipe_finds_no_hand_on_a_keyboard_without_hands(tracker, synth_no_hands):
    for frame in synth_no_hands.frames()[::40]:
        hands = tracker(frame)
        assert hands.landmarks.shape == (2, N_LANDMARKS, 2) and hands.count == 0
        assert np.isnan(hands.landmarks).all() and (hands.handedness == -1).all()


# --- through a real build ---------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def hands_corpus(tmp_path_factory):
    """A video built with --hands and --onset-filter hands (Ray, basic-pitch)."""
    media = tmp_path_factory.mktemp("hands_media")
    truth = json.loads(make_video(media, "v", 81, SynthConfig(seconds=8, width=640, height=360, audio="pretty_midi"))
                       .read_text())
    (media / "manifest.csv").write_text(f"video_id,url,split\nv,{(media / 'v.mp4').as_uri()},train\n")
    out = tmp_path_factory.mktemp("hands") / "corpus"
    built = _cli("build", str(media / "manifest.csv"), "--out", str(out), "--labeler", "basic-pitch", "--hands",
                 "--max-hands", "2", "--onset-filter", "hands", "--num-cpus", "2")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out, truth


def test_a_build_with_hands_keeps_each_kept_frames_keypoints_beside_its_labels(hands_corpus):
    out, truth = hands_corpus
    meta = json.loads((out / "corpus.json").read_text())
    version = meta["default_label_version"]
    spec = json.loads((out / "labels" / version / "label.json").read_text())
    hands_version = spec["hands"]
    assert spec["onset_filter"] == f"hands {hands_version}" and meta["config"]["hands"]["max_hands"] == 2
    record = json.loads((out / "hands" / hands_version / "hands.json").read_text())
    video = pq.read_table(out / "videos.parquet").to_pylist()[0]
    assert record["videos"]["v"]["status"] == "ok" and record["videos"]["v"]["frames_searched"] == video["n_kept"]
    with np.load(out / "hands" / hands_version / "v.npz") as data:
        landmarks, keyboard, side = data["landmarks"], data["keyboard"], data["handedness"]
        tips = data["tip_keys"]
    assert landmarks.shape == (video["n_frames"], 2, N_LANDMARKS, 2) and tips.shape == (video["n_frames"], 2, 5)
    found = side >= 0
    assert np.isfinite(landmarks[found]).all() and np.isnan(landmarks[~found]).all() and (tips[~found] == -1).all()
    kept = pq.read_table(out / "frames" / "train", columns=["kept"]).column("kept").to_numpy()
    assert not found[~kept].any()  # dropped frames are not searched
    quad = np.asarray(video["kb_quad"]).reshape(4, 2)
    config = FrameConfig()
    expected = to_keyboard(landmarks, rectifier(quad, config), (config.crop_width, config.crop_height))
    assert np.allclose(keyboard[found], expected[found], atol=2e-3, equal_nan=True)
    av = pq.read_table(out / "labels" / version / "av.parquet").to_pylist()[0]
    if not found.any():  # drawn hands: MediaPipe sees none, so no onset can be judged, none dropped
        assert av["av_hands_near"] is None and av["av_hands_dropped"] == 0
    verified = _cli("verify", str(out))
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]


def test_the_webdataset_samples_carry_their_frames_hand_keypoints(hands_corpus):
    out, _ = hands_corpus
    version = json.loads((out / "corpus.json").read_text())["default_label_version"]
    shards = sorted((out / "wds" / version / "train").glob("*.tar"))
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        first = next(n for n in names if n.endswith(".hands.npy"))
        keypoints = np.load(io.BytesIO(tar.extractfile(first).read()))
    assert keypoints.shape == (2, N_LANDMARKS, 2)
    assert sum(n.endswith(".hands.npy") for n in names) == sum(n.endswith(".jpg") for n in names)


def test_an_onset_filter_without_hands_is_refused_naming_the_corpus(tmp_path):
    (tmp_path / "m.csv").write_text("video_id,url,split\nv,synth://v?seconds=2,train\n")
    refused = _cli("build", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c"), "--onset-filter", "hands")
    assert refused.returncode != 0 and "--onset-filter hands needs" in refused.stderr and str(tmp_path / "c") in refused.stderr


def test_the_hands_onset_filter_drops_only_onsets_no_fingertip_was_near(tmp_path):
    """The label stage's filter on a hands file written as the hand pass writes it: a hand
    over C4 for the first second, none after; an onset of C4 stays, one of C7 then goes,
    and every onset after the first second stays (no hand in view: nothing to judge)."""
    from contract.layout import CorpusLayout
    from labeling.events import NoteEvent
    from labeling.label import _hands_checked

    corpus, fps, n = CorpusLayout(tmp_path), 25.0, 100
    keyboard = np.full((n, 2, N_LANDMARKS, 2), np.nan, np.float16)
    keyboard[:25, 0, :, 0] = key_layout().centre[39] / N_WHITE  # every landmark of hand 0 over C4
    keyboard[:25, 0, :, 1] = 0.8
    path = corpus.work.hands("h1", "v")
    path.parent.mkdir(parents=True)
    np.savez(path, keyboard=keyboard)
    notes = [NoteEvent(0.2, 0.5, 60, 80), NoteEvent(0.3, 0.6, 96, 80), NoteEvent(2.0, 2.5, 96, 80)]
    kept, record = _hands_checked(corpus, {"hands": "h1", "onset_filter": "hands h1"}, "v", notes, fps)
    assert [note.pitch for note in kept] == [60, 96] and kept[1].onset == 2.0
    assert record == {"av_hands_near": 0.5, "av_hands_dropped": 1}
    measured, record = _hands_checked(corpus, {"hands": "h1", "onset_filter": "none"}, "v", notes, fps)
    assert measured == notes and record["av_hands_dropped"] == 0 and record["av_hands_near"] == 0.5


def test_relabel_of_a_corpus_with_hands_keeps_them_and_can_filter_by_them(hands_corpus):
    out, _ = hands_corpus
    before = json.loads((out / "corpus.json").read_text())
    relabelled = _cli("relabel", str(out), "--labeler", "basic-pitch", "--av-align", "off", "--num-cpus", "2")
    assert relabelled.returncode == 0, relabelled.stdout[-3000:] + relabelled.stderr[-3000:]
    meta = json.loads((out / "corpus.json").read_text())
    new = next(v for v in meta["label_versions"] if v not in before["label_versions"])
    spec = meta["label_versions"][new]
    assert spec["onset_filter"] == "none" and spec["hands"]  # measured against the hands, not filtered
    assert (out / "hands" / spec["hands"] / "v.npz").is_file()  # carried into the new generation
    shard = sorted((out / "wds" / new / "train").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        assert any(n.endswith(".hands.npy") for n in tar.getnames())


def test_the_audit_reports_the_fingertips_agreement_per_split(hands_corpus):
    out, _ = hands_corpus
    audited = _cli("audit", str(out))
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]
    figures = json.loads((out / "stats" / "audit.json").read_text())["av"]
    version = json.loads((out / "corpus.json").read_text())["default_label_version"]
    av = pq.read_table(out / "labels" / version / "av.parquet").to_pylist()
    assert figures["overall"]["hands_dropped"] == sum(r["av_hands_dropped"] or 0 for r in av)
    assert "mean_hands_near" in figures["train"]
