"""Note events -> piano rolls at video frame times.

Convention (used by the synthetic renderer and the labels alike): frame k covers the
interval [k/fps, (k+1)/fps) and its time `t` is the centre (k+0.5)/fps. A note sounding
over [onset, offset) sets `frame_roll` in every frame whose interval it overlaps, so a
note from 1.00 s to 1.50 s at 25 fps sets frames 25..37 and a note shorter than a frame
still sets the frame it falls in.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from curation.piano import LOWEST_MIDI, N_KEYS

_EPS = 1e-6  # seconds*fps products are rounded to this before floor/ceil


def note_frame_span(onset: float, offset: float, fps: float) -> tuple[int, int]:
    """First and one-past-last frame that a note [onset, offset) overlaps."""
    first = int(np.floor(round(onset * fps, 6) + _EPS))
    stop = int(np.ceil(round(offset * fps, 6) - _EPS))
    return first, max(stop, first + 1)


def frame_roll(notes: Iterable, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames, 88) bool: key sounding in the frame. `notes` have .start .end .pitch."""
    roll = np.zeros((n_frames, N_KEYS), bool)
    for note in notes:
        key = int(note.pitch) - LOWEST_MIDI
        if not 0 <= key < N_KEYS:
            continue
        first, stop = note_frame_span(note.start, note.end, fps)
        roll[max(first, 0):max(min(stop, n_frames), 0), key] = True
    return roll
