"""Do the labels agree with the pictures? The sync offset, the agreement and the flags
(labeling/agreement.py) on the key levels of a synthetic video's real frame pass: first
against its truth MIDI moved by known offsets, then through a real build (Ray,
basic-pitch) of videos whose audio is late, another performance's, or mirrored."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pretty_midi
import pyarrow.parquet as pq
import pytest

from contract.config import FrameConfig
from contract.piano import key_layout
from curation.frames import frame_pass, reference_crop
from curation.keyboard import locate_in_frames, sample_frames
from labeling.agreement import CONFIDENT_Z, check
from labeling.rolls import onset_frames, rolls_for_frames
from synth.video import SynthConfig, make_video


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A 12-s video's frame-pass key levels (n_frames, 2, 88) and its truth notes."""
    folder = tmp_path_factory.mktemp("agreement")
    truth = json.loads(make_video(folder, "v", 61, SynthConfig(seconds=12, width=640, height=360, cut=False)).read_text())
    mp4 = folder / "v.mp4"
    frames, _ = sample_frames(mp4)
    location = locate_in_frames(frames)
    config = FrameConfig()
    reference = reference_crop([frames[i] for i in location.fitted], location.quad, config)
    levels = np.stack([np.full((2, 88), np.nan) if r.key_levels is None else r.key_levels
                       for batch in frame_pass(mp4, location.quad, reference, config) for r in batch])
    notes = pretty_midi.PrettyMIDI(str(folder / "v.mid")).instruments
    notes = sorted((n for inst in notes for n in inst.notes), key=lambda n: n.start)
    return levels, np.array([n.start for n in notes]), np.array([n.pitch - 21 for n in notes]), truth


@pytest.mark.parametrize("offset", [-0.45, -0.1, 0.07, 0.33])
def test_the_offset_of_late_or_early_labels_is_found_to_a_fraction_of_a_frame(pictures, offset):
    levels, onsets, keys, _ = pictures
    found = check(levels, onsets + offset, keys, 25, align=True)
    assert abs(found.offset_s - offset) <= 0.02  # a frame is 0.04 s
    assert found.confidence >= CONFIDENT_Z and found.applied_s == found.offset_s
    assert not (found.mismatch or found.mirrored or found.key_shift)
    assert found.precision > 0.8 and found.n_onsets > 40
    assert found.curve[int(round((found.offset_s + 1.0) / 0.01))] > 0.9  # the stored curve peaks there
    unaligned = check(levels, onsets + offset, keys, 25, align=False)
    assert unaligned.applied_s == 0 and unaligned.offset_s == found.offset_s


def test_audio_of_another_performance_is_a_mismatch_and_moves_nothing(pictures):
    levels, onsets, keys, _ = pictures
    rng = np.random.default_rng(4)
    other = check(levels, np.sort(rng.uniform(onsets.min(), onsets.max(), len(onsets))), rng.permutation(keys), 25,
                  align=True)
    assert other.mismatch and other.confidence < CONFIDENT_Z and other.applied_s == 0
    assert other.score < 0.2


def test_a_few_cells_far_above_any_press_do_not_line_up_another_performance(pictures):
    """Another performance's onsets, five of which land, at one offset, on a key that goes
    dark by far more than a press darkens it (a hand's shadow, a light change on one key):
    those five cells count as presses, not as 200 gray levels each (their mean lifted that
    offset to a confident peak: audio of another performance was taken for this one's)."""
    levels, onsets, keys, _ = pictures
    rng = np.random.default_rng(4)
    times = np.sort(rng.uniform(onsets.min(), onsets.max(), len(onsets)))
    other_keys = rng.permutation(keys)
    frames = onset_frames(times - 0.3, 25)
    inside = (frames >= 1) & (frames < len(levels))
    inside[inside] = np.isfinite(levels[frames[inside], 0]).all(axis=1)
    chosen = np.flatnonzero(inside & ~key_layout().black[other_keys])[:5]
    dark = levels.copy()
    dark[frames[chosen], 0, other_keys[chosen]] = 0.0  # one frame black at that key, then back
    other = check(dark, times, other_keys, 25, align=True)
    assert other.mismatch and other.confidence < CONFIDENT_Z and other.applied_s == 0


def test_a_crop_read_in_the_wrong_order_or_an_octave_off_is_flagged(pictures):
    levels, onsets, keys, _ = pictures
    mirrored = check(levels[:, ::-1], onsets, keys, 25, align=True)  # the mirrored reading where the crop's should be
    assert mirrored.mirrored and not mirrored.mismatch and mirrored.applied_s == 0
    low = keys >= 12
    shifted = check(levels, onsets[low], keys[low] - 12, 25, align=True)  # labels an octave below the pictures
    assert shifted.key_shift == 12 and not shifted.mismatch and shifted.applied_s == 0


def test_frames_dropped_mid_video_do_not_dilute_the_confidence(pictures):
    """A cut drops a third of the frames: the onsets there show nothing either way, so the
    confidence is that of the onsets on kept frames (it was diluted by the dropped ones'
    zeros, as if the labels agreed less)."""
    levels, onsets, keys, _ = pictures
    cut = levels.copy()
    third = len(levels) // 3
    cut[third:2 * third] = np.nan
    outside = (onsets < third / 25 - 0.5) | (onsets >= 2 * third / 25 + 0.5)
    alone = check(cut, onsets[outside], keys[outside], 25, align=True)
    together = check(cut, onsets, keys, 25, align=True)
    assert together.confidence >= 0.9 * alone.confidence
    assert abs(together.offset_s) <= 0.02 and together.applied_s == together.offset_s


def test_too_few_onsets_decide_nothing(pictures):
    levels, onsets, keys, _ = pictures
    few = check(levels, onsets[:5], keys[:5], 25, align=True)
    assert few.offset_s is None and few.mismatch is None and few.applied_s == 0 and few.n_onsets == 5


# --- through a real build ---------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def av_corpus(tmp_path_factory):
    """Late audio (0.2 s), another performance's audio, and a mirrored video under a crop
    given as a plain box (so the crop's key order is the mirror's), built with basic-pitch."""
    media = tmp_path_factory.mktemp("av_media")
    small = dict(seconds=12, width=640, height=360, cut=False, audio="pretty_midi")
    truths = {name: json.loads(make_video(media, name, seed, SynthConfig(**small, **extra)).read_text())
              for name, seed, extra in (("late", 71, {"av_offset_s": 0.2}), ("swapped", 72, {"audio_seed": 9}),
                                        ("mirror", 73, {"mirror": True}))}
    box = " ".join(str(v) for v in truths["mirror"]["keyboard"]["bbox"])
    (media / "manifest.csv").write_text(
        "video_id,url,split,crop,crop_frame\n"
        f"late,{(media / 'late.mp4').as_uri()},train,,\n"
        f"swapped,{(media / 'swapped.mp4').as_uri()},train,,\n"
        f"mirror,{(media / 'mirror.mp4').as_uri()},test,{box},640x360\n")
    out = tmp_path_factory.mktemp("av") / "corpus"
    built = _cli("build", str(media / "manifest.csv"), "--out", str(out), "--labeler", "basic-pitch", "--num-cpus", "2")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out, truths, media


def _onset_frames_off(corpus, version: str, video_id: str, truth_mid) -> float:
    """The median frame distance from each truth onset to the nearest labelled onset of its key."""
    labels = [r for split in ("train", "test")
              for r in pq.read_table(corpus / "labels" / version / split, filters=[("video_id", "=", video_id)]).to_pylist()]
    onset = np.array([r["onset_roll"] for r in sorted(labels, key=lambda r: r["frame"])])
    notes = [n for inst in pretty_midi.PrettyMIDI(str(truth_mid)).instruments for n in inst.notes]
    truth = rolls_for_frames(notes, len(onset), 25).onset
    distances = []
    for k, key in zip(*np.nonzero(truth)):
        found = np.flatnonzero(onset[:, key])
        if len(found):
            distances.append(np.min(np.abs(found - k)))
    return float(np.median(distances))


def test_a_build_measures_each_video_and_moves_only_late_labels(av_corpus):
    out, _, media = av_corpus
    rows = {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}
    late, swapped, mirror = rows["late"], rows["swapped"], rows["mirror"]
    assert abs(late["av_offset_s"] - 0.2) <= 0.03 and late["av_applied_s"] == late["av_offset_s"]
    assert not late["av_mismatch"] and not late["av_mirrored"] and late["av_key_shift"] == 0
    assert swapped["av_mismatch"] and swapped["av_applied_s"] == 0
    assert mirror["av_mirrored"] and not mirror["av_mismatch"] and mirror["av_applied_s"] == 0
    version = json.loads((out / "corpus.json").read_text())["default_label_version"]
    assert json.loads((out / "labels" / version / "label.json").read_text())["av_align"].startswith("auto")
    table = pq.read_table(out / "labels" / version / "av.parquet").to_pylist()
    assert {r["video_id"] for r in table} == {"late", "swapped", "mirror"}
    assert all(len(r["av_curve"]) == 201 for r in table)
    assert _onset_frames_off(out, version, "late", media / "late.mid") <= 1  # moved back onto the pictures


def test_relabel_with_av_align_off_measures_the_same_offset_and_moves_nothing(av_corpus):
    out, _, media = av_corpus
    done = _cli("relabel", str(out), "--labeler", "basic-pitch", "--av-align", "off", "--num-cpus", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    meta = json.loads((out / "corpus.json").read_text())
    off = [v for v, spec in meta["label_versions"].items() if spec["av_align"] == "off"]
    assert len(off) == 1 and off[0] != meta["default_label_version"]
    late = next(r for r in pq.read_table(out / "labels" / off[0] / "av.parquet").to_pylist() if r["video_id"] == "late")
    assert abs(late["av_offset_s"] - 0.2) <= 0.03 and late["av_applied_s"] == 0
    assert _onset_frames_off(out, off[0], "late", media / "late.mid") >= 4  # 0.2 s late is 5 frames


def test_the_audit_reports_the_agreement_per_video_and_split_with_the_flagged_curves(av_corpus):
    out, _, _ = av_corpus
    done = _cli("audit", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "stats" / "audit.json").read_text())
    videos = {v["video_id"]: v for v in result["videos"]}
    assert "av_mismatch" in videos["swapped"]["flags"] and "av_mirrored" in videos["mirror"]["flags"]
    assert not {"av_mismatch", "av_mirrored", "av_octave_shift"} & set(videos["late"]["flags"])
    assert result["av"]["train"]["av_mismatch"] == ["swapped"] and result["av"]["test"]["av_mirrored"] == ["mirror"]
    assert result["av"]["train"]["aligned"] == 1 and abs(result["av"]["train"]["median_abs_offset_s"] - 0.2) <= 0.03
    assert result["flags"]["av_mismatch"] == 1 and result["flags"]["av_mirrored"] == 1
    report = (out / "stats" / "report.html").read_text()
    assert "<h2>Audio and pictures</h2>" in report
    assert 'alt="agreement over the offsets: swapped, mirror"' in report or \
        'alt="agreement over the offsets: mirror, swapped"' in report


def test_verify_names_a_damaged_agreement_table(av_corpus, tmp_path):
    """labels/VERSION/av.parquet is in corpus.json's file records like the parts and tars:
    verify names it when it is cut short (it was not checked at all)."""
    import shutil

    out, _, _ = av_corpus
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    version = json.loads((copy / "corpus.json").read_text())["default_label_version"]
    table = (copy / "labels" / version / "av.parquet").resolve()
    table.write_bytes(table.read_bytes()[:-40])
    verified = _cli("verify", str(copy))
    assert verified.returncode != 0 and "av.parquet" in verified.stdout + verified.stderr
