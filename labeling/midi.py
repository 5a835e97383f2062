"""MIDI files <-> note events."""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from contract.atomic import atomic_write
from labeling.events import NoteEvent


def write_midi(notes: list[NoteEvent], path: Path, pedal: list[tuple[float, float]] = ()) -> None:
    """One acoustic-piano track; sustain intervals as CC64 127/0."""
    midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0, name="piano")
    # A note or pedal moved before the start (labels shifted by a sync offset) starts at 0.
    piano.notes = [pretty_midi.Note(int(n.velocity), int(n.pitch), max(0.0, float(n.onset)), float(n.offset))
                   for n in notes]
    for down, up in pedal:
        if up > 0:
            piano.control_changes += [pretty_midi.ControlChange(64, 127, max(0.0, down)),
                                      pretty_midi.ControlChange(64, 0, up)]
    midi.instruments.append(piano)
    atomic_write(Path(path), lambda part: midi.write(str(part)))


def read_midi(path: Path) -> list[NoteEvent]:
    """Every note of every non-drum track, in time order."""
    midi = pretty_midi.PrettyMIDI(str(path))
    notes = [NoteEvent(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments if not inst.is_drum
             for n in inst.notes if n.end > n.start]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))
