"""Note events -> piano rolls at video frame times.

Convention (used by the synthetic renderer and the labels alike): frame k covers the
interval [k/fps, (k+1)/fps) and its time `t` is the centre (k+0.5)/fps. For a note
sounding over [onset, offset):
- `frame_roll` is set in every frame whose interval the note overlaps, so a note from
  1.00 s to 1.50 s at 25 fps sets frames 25..37, and a note shorter than a frame still
  sets the frame it falls in (two, if it straddles a boundary);
- `onset_roll` is set in the frame containing the onset (an onset exactly on a frame
  boundary belongs to the frame that starts there): frame 25 above;
- `offset_roll` is set in the last frame the note sounds in: frame 37 above;
- `velocity` holds the note's MIDI velocity in every frame the note sounds (the later
  note wins where two overlap), 0 elsewhere.
Index 0 of the 88 keys is MIDI 21 (A0), index 87 is MIDI 108 (C8).

Sustain pedal: off by default (as the Audeo labels); with `sustain_pedal=True`, a note
released while the pedal is down sounds until the pedal is lifted or the same key is
struck again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from contract.piano import LOWEST_MIDI, N_KEYS

# The version of the convention above and of the sustain rule below: part of every label
# version (labeling/transcribers.py), so bump it when either changes what the rolls hold.
ROLLS_LOGIC = "rolls/1 sustain/1"
_EPS = 1e-6  # seconds*fps products are rounded to this before floor/ceil


def onset_frames(onsets: np.ndarray, fps: float) -> np.ndarray:
    """The frame each onset (seconds) falls in, under the convention above (vectorised)."""
    return np.floor(np.round(np.asarray(onsets, np.float64) * fps, 6) + _EPS).astype(np.int64)


def note_frame_span(onset: float, offset: float, fps: float) -> tuple[int, int]:
    """First and one-past-last frame that a note [onset, offset) overlaps."""
    first = int(onset_frames(onset, fps))
    stop = int(np.ceil(round(offset * fps, 6) - _EPS))
    return first, max(stop, first + 1)


def frame_roll(notes: Iterable, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames, 88) bool: key sounding in the frame. `notes` have .start .end .pitch."""
    return rolls_for_frames(notes, n_frames, fps).frame


@dataclass(frozen=True)
class Rolls:
    frame: np.ndarray  # (n_frames, 88) bool
    onset: np.ndarray  # (n_frames, 88) bool
    offset: np.ndarray  # (n_frames, 88) bool
    velocity: np.ndarray  # (n_frames, 88) uint8


def rolls_for_frames(notes: Iterable, n_frames: int, fps: float) -> Rolls:
    """All four rolls under the convention above; notes outside A0..C8 are ignored."""
    shape = (n_frames, N_KEYS)
    frame, onset, offset = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    velocity = np.zeros(shape, np.uint8)
    for note in sorted(notes, key=lambda n: n.start):
        key = int(note.pitch) - LOWEST_MIDI
        if not 0 <= key < N_KEYS:
            continue
        first, stop = note_frame_span(note.start, note.end, fps)
        a, b = max(first, 0), min(stop, n_frames)
        if a >= b:
            continue
        frame[a:b, key] = True
        velocity[a:b, key] = int(np.clip(getattr(note, "velocity", 0), 0, 127))
        if first >= 0:
            onset[first, key] = True
        if stop <= n_frames:
            offset[stop - 1, key] = True
    return Rolls(frame, onset, offset, velocity)


def roll_notes(roll: np.ndarray, fps: float, lowest_midi: int = LOWEST_MIDI, velocity: int = 80) -> list:
    """Notes of a (frames, keys) bool roll, one per run of frames a key is on, from the
    start of its first frame to the end of its last (so `frame_roll` gives the roll back);
    column 0 is `lowest_midi`. What a model's rolls become to be listened to."""
    from labeling.events import NoteEvent

    roll = np.asarray(roll, bool)
    edges = np.diff(np.pad(roll, ((1, 1), (0, 0))).astype(np.int8), axis=0)  # +1 where a run starts, -1 past its end
    notes = []
    for key in range(roll.shape[1]):
        starts, stops = np.flatnonzero(edges[:, key] == 1), np.flatnonzero(edges[:, key] == -1)
        notes += [NoteEvent(float(a / fps), float(b / fps), lowest_midi + key, velocity) for a, b in zip(starts, stops)]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def apply_sustain(notes: list, pedal: list[tuple[float, float]]) -> list:
    """Notes lengthened by the sustain pedal: a release while the pedal is down waits
    for the pedal to lift, or for the same key's next onset, whichever comes first."""
    from labeling.events import NoteEvent

    by_pitch: dict[int, list] = {}
    for note in sorted(notes, key=lambda n: n.start):
        by_pitch.setdefault(int(note.pitch), []).append(note)
    result = []
    for same_key in by_pitch.values():
        for i, note in enumerate(same_key):
            end = note.end
            for down, up in pedal:
                if down <= end < up:
                    end = up
                    break
            if i + 1 < len(same_key):
                end = min(end, same_key[i + 1].start)
            end = max(end, note.start + 1e-3)  # a re-strike at the same instant keeps a sliver
            result.append(NoteEvent(note.start, end, int(note.pitch), int(getattr(note, "velocity", 64))))
    return sorted(result, key=lambda n: (n.onset, n.pitch))
