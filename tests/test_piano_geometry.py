"""The 88-key layout and the frame convention of the rolls."""

import numpy as np
import pretty_midi

from contract.piano import N_BLACK, N_WHITE, key_layout, white_index
from labeling.rolls import frame_roll, note_frame_span


def test_layout_has_52_white_and_36_black_keys_in_the_real_grouping():
    layout = key_layout()
    assert (~layout.black).sum() == N_WHITE and layout.black.sum() == N_BLACK
    assert layout.left[0] == 0 and layout.right[-1] == N_WHITE  # A0 .. C8 fill the width
    # Black-key groups, from the left: 1, then (2, 3) x 7.
    blacks = np.flatnonzero(layout.black)
    centres = layout.centre[blacks]
    gaps = np.diff(centres)
    # A gap wider than 1.5 white widths separates groups (1.75 across, 1.17 within).
    sizes = np.diff(np.concatenate([[0], np.flatnonzero(gaps > 1.5) + 1, [len(blacks)]]))
    assert sizes.tolist() == [1] + [2, 3] * 7
    assert np.allclose(gaps[gaps < 1.5], 7 / 6) and np.all((gaps[gaps > 1.5] > 1.7) & (gaps[gaps > 1.5] < 1.8))


def test_middle_c_sits_at_0452_of_the_width():
    layout = key_layout()
    assert abs(layout.centre[60 - 21] / N_WHITE - 0.452) < 0.001
    assert white_index(21) == 0 and white_index(108) == 51


def test_black_keys_never_overlap_their_white_neighbours_edges_by_more_than_the_key():
    layout = key_layout()
    for i in np.flatnonzero(layout.black):
        assert layout.left[i - 1] < layout.left[i] < layout.right[i] < layout.right[i + 1]


def test_note_from_1_00_to_1_50_at_25fps_sets_frames_25_to_37():
    assert note_frame_span(1.00, 1.50, 25) == (25, 38)
    roll = frame_roll([pretty_midi.Note(80, 60, 1.00, 1.50)], 50, 25)
    assert np.flatnonzero(roll[:, 60 - 21]).tolist() == list(range(25, 38))


def test_note_ending_on_a_frame_boundary_does_not_set_the_next_frame():
    assert note_frame_span(1.00, 1.52, 25) == (25, 38)  # 1.52 s is the start of frame 38


def test_note_shorter_than_a_frame_sets_the_frame_it_falls_in():
    assert note_frame_span(1.01, 1.02, 25) == (25, 26)
    assert note_frame_span(1.035, 1.045, 25) == (25, 27)  # straddles a boundary: both frames


def test_notes_outside_the_keyboard_or_the_clip_are_ignored():
    roll = frame_roll([pretty_midi.Note(80, 20, 0, 1), pretty_midi.Note(80, 109, 0, 1),
                       pretty_midi.Note(80, 21, 3.0, 4.0)], 50, 25)
    assert not roll.any()
