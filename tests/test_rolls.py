"""Roll alignment on hand-made note lists, under the documented convention."""

import numpy as np

from labeling.events import NoteEvent
from labeling.rolls import apply_sustain, rolls_for_frames
from labeling.transcribers import label_version

C4 = 60 - 21


def test_note_from_1_00_to_1_50_at_25fps():
    rolls = rolls_for_frames([NoteEvent(1.00, 1.50, 60, 90)], 50, 25)
    assert np.flatnonzero(rolls.frame[:, C4]).tolist() == list(range(25, 38))
    assert np.flatnonzero(rolls.onset[:, C4]).tolist() == [25]
    assert np.flatnonzero(rolls.offset[:, C4]).tolist() == [37]
    assert rolls.velocity[25:38, C4].tolist() == [90] * 13 and rolls.velocity[:, C4].sum() == 90 * 13
    assert rolls.frame.sum() == 13 and rolls.onset.sum() == rolls.offset.sum() == 1
    assert rolls.frame.dtype == bool and rolls.velocity.dtype == np.uint8 and rolls.frame.shape == (50, 88)


def test_onset_on_a_frame_boundary_belongs_to_the_frame_that_starts_there():
    rolls = rolls_for_frames([NoteEvent(1.04, 1.20, 60, 80)], 50, 25)
    assert np.flatnonzero(rolls.onset[:, C4]).tolist() == [26]
    assert np.flatnonzero(rolls.frame[:, C4]).tolist() == [26, 27, 28, 29]  # 1.20 s starts frame 30


def test_note_shorter_than_a_frame_sets_onset_frame_and_offset_in_one_frame():
    rolls = rolls_for_frames([NoteEvent(1.005, 1.015, 21, 70), NoteEvent(1.035, 1.045, 108, 70)], 50, 25)
    assert np.flatnonzero(rolls.frame[:, 0]).tolist() == [25] and rolls.onset[25, 0] and rolls.offset[25, 0]
    assert np.flatnonzero(rolls.frame[:, 87]).tolist() == [25, 26]  # straddles 1.04 s


def test_notes_cut_by_the_clip_edges_keep_only_what_is_inside():
    rolls = rolls_for_frames([NoteEvent(1.8, 3.0, 60, 80), NoteEvent(-0.5, 0.1, 62, 80)], 50, 25)
    assert rolls.frame[45:, C4].all() and not rolls.offset[:, C4].any()  # ends after the clip
    assert np.flatnonzero(rolls.frame[:, C4 + 2]).tolist() == [0, 1, 2] and not rolls.onset[:, C4 + 2].any()


def test_later_note_wins_velocity_where_the_same_key_overlaps():
    rolls = rolls_for_frames([NoteEvent(0.0, 0.4, 60, 40), NoteEvent(0.2, 0.6, 60, 100)], 20, 25)
    assert rolls.velocity[4, C4] == 40 and rolls.velocity[5, C4] == 100 and rolls.velocity[14, C4] == 100


def test_sustain_pedal_holds_released_notes_until_lift_or_restrike():
    notes = [NoteEvent(0.0, 0.5, 60, 80), NoteEvent(1.5, 1.7, 60, 80), NoteEvent(0.2, 0.3, 64, 80),
             NoteEvent(2.5, 2.6, 67, 80)]
    held = {(n.pitch, n.onset): n.offset for n in apply_sustain(notes, [(0.4, 2.0)])}
    assert held[(60, 0.0)] == 1.5  # released under the pedal, cut by its own re-strike
    assert held[(60, 1.5)] == 2.0  # held to the lift
    assert held[(64, 0.2)] == 0.3  # released before the pedal went down
    assert held[(67, 2.5)] == 2.6  # after the lift


def test_label_version_changes_with_what_decides_the_labels_only():
    spec = {"backend": "basic-pitch", "weights_sha256": "ab" * 32, "params": {"onset_threshold": 0.6},
            "fps": 25.0, "sustain_pedal": False, "backend_version": "0.4.0", "weights": "nmp.onnx",
            "label_logic": "rolls/1 sustain/1 basic-pitch-post/1", "av_align": "auto av/1", "onset_filter": "none"}
    same = label_version({**spec, "weights": "renamed.onnx"})
    assert label_version(spec) == same and label_version(spec).startswith("basic-pitch-")
    assert label_version({**spec, "hands": "mediapipe-0123456789"}) == same  # checked against, not filtered by
    for change in ({"params": {"onset_threshold": 0.5}}, {"fps": 30.0}, {"sustain_pedal": True},
                   {"weights_sha256": "cd" * 32}, {"backend_version": "0.4.1"}, {"label_logic": "rolls/2"},
                   {"av_align": "off"}, {"av_align": "auto av/2"}, {"onset_filter": "hands mediapipe-0123456789"}):
        assert label_version({**spec, **change}) != label_version(spec)
