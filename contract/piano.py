"""Geometry of the full 88-key keyboard (A0..C8), in white-key widths.

One place for the layout that the synthetic renderer draws and the keyboard locator
fits. Black keys sit at the centres of 12 equal slots per octave (C..B spans 7 white
widths), which matches measured pianos within 0.05 white widths (../shared/KEYBOARD.md);
putting them "on the boundaries" would be off by up to 0.16.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_KEYS = 88
LOWEST_MIDI = 21  # A0, roll index 0
HIGHEST_MIDI = 108  # C8, roll index 87
N_WHITE = 52
N_BLACK = 36
BLACK_PITCH_CLASSES = frozenset({1, 3, 6, 8, 10})
BLACK_WIDTH = 0.58  # of a white key's width
BLACK_LENGTH = 0.63  # of a white key's length
MIDDLE_C = 60


def is_black(midi: int) -> bool:
    return midi % 12 in BLACK_PITCH_CLASSES


def white_index(midi: int) -> int:
    """Number of white keys strictly left of `midi`'s left edge (A0 -> 0, C8 -> 51).

    Also defined for notes outside the keyboard, which the octave maths below needs.
    """
    octave, pc = divmod(midi, 12)
    whites_before_pc = (0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6)[pc]
    # C of octave 0 (MIDI 12) sits 5 white keys left of A0 (C D E F G, then A0).
    return (octave - 1) * 7 + whites_before_pc - 5


@dataclass(frozen=True)
class KeyLayout:
    """x extents of the 88 keys, in white-key widths from the keyboard's left edge."""

    midi: np.ndarray  # (88,) int
    left: np.ndarray  # (88,) float
    right: np.ndarray  # (88,) float
    black: np.ndarray  # (88,) bool

    @property
    def centre(self) -> np.ndarray:
        return (self.left + self.right) / 2

    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Left and right edges as fractions of the keyboard width (0..1)."""
        return self.left / N_WHITE, self.right / N_WHITE


@lru_cache(maxsize=1)
def key_layout() -> KeyLayout:
    midi = np.arange(LOWEST_MIDI, HIGHEST_MIDI + 1)
    left = np.empty(N_KEYS)
    right = np.empty(N_KEYS)
    black = np.array([is_black(int(m)) for m in midi])
    for i, m in enumerate(midi):
        m = int(m)
        if black[i]:
            pc = m % 12
            c_left = white_index(m - pc)
            centre = c_left + (pc + 0.5) * 7 / 12
            left[i], right[i] = centre - BLACK_WIDTH / 2, centre + BLACK_WIDTH / 2
        else:
            left[i] = white_index(m)
            right[i] = left[i] + 1
    for arr in (left, right, black, midi):
        arr.setflags(write=False)
    return KeyLayout(midi=midi, left=left, right=right, black=black)
