"""Visual evidence of key presses, from the rectified crops the frame pass already makes.

Per kept frame, the mean gray of each key's own zone of the crop, as it is and mirrored
(`key_levels`): for a
white key the front part that only it covers (rows 66-95 % of the crop, where the black
keys end at 63 %), for a black key its middle (rows 8-50 %), each over the middle 70 %
of the key's width, its saturated pixels counted as black (a hand is skin, a lit key or
an overlay is coloured: a finger landing on a key darkens it). A key going down changes its zone (a white key's front dips into
shadow, a black key's top moves and shows the gap behind it), and so does a finger
landing on it; a hand moving over many keys at once, or the light changing, moves
every key's level alike. So the evidence of a press at frame k (`press_evidence`) is
the key's change from frame k-1 (a white key's darkening only: its release brightens
it), less the median change of all keys at k. Dropped frames (their crops are not the
keyboard) have NaN levels and no evidence.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from contract.piano import N_KEYS, key_layout

WHITE_ROWS = (0.66, 0.95)  # of the crop's height: the white keys' fronts, below the black keys
BLACK_ROWS = (0.08, 0.50)
KEY_WIDTH_USED = 0.7  # the middle of each key's width: its neighbours' edges stay out
PLAIN_SATURATION = 64  # of 255: pixels below it are the key's own (skin and coloured light are above)


@lru_cache(maxsize=8)
def _zones(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
    """Per key its first and one-past-last crop column, whether it is black, and the two row bands."""
    layout = key_layout()
    left, right = layout.normalised()
    margin = (right - left) * (1 - KEY_WIDTH_USED) / 2
    first = np.floor((left + margin) * width).astype(np.int64)
    stop = np.maximum(np.ceil((right - margin) * width).astype(np.int64), first + 1)
    rows = [(int(a * height), max(int(a * height) + 1, int(b * height))) for a, b in (WHITE_ROWS, BLACK_ROWS)]
    return first, stop, np.asarray(layout.black), rows[0], rows[1]


def key_levels(crop: np.ndarray) -> np.ndarray:
    """(2, 88) float32: the mean gray of each key's zone of a rectified crop (A0 first), for
    the crop as it is and mirrored left-right (the columns read backwards), its saturated
    pixels counted as black (keys are gray; skin and lit overlays are not, so a finger
    landing on a key darkens it as the key's own shadow does)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    plain = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[..., 1] < PLAIN_SATURATION if crop.ndim == 3 else gray >= 0
    height, width = gray.shape
    first, stop, black, white_rows, black_rows = _zones(width, height)
    levels = np.empty((2, N_KEYS), np.float32)
    for rows, which in ((white_rows, ~black), (black_rows, black)):
        band, used = gray[rows[0]:rows[1]], plain[rows[0]:rows[1]]
        columns = np.where(used, band, 0).sum(axis=0, dtype=np.float64)
        area = (stop[which] - first[which]) * (rows[1] - rows[0])
        for reading, ordered in enumerate((columns, columns[::-1])):
            sums = np.concatenate([[0.0], np.cumsum(ordered)])
            levels[reading, which] = (sums[stop[which]] - sums[first[which]]) / area
    return levels


def press_evidence(levels: np.ndarray) -> np.ndarray:
    """(n_frames, 88) float32 >= 0: each key's change of level from the previous frame
    (for a white key its darkening only: a key or a finger going down shades it, a key
    released brightens it), beyond the median change of all keys at that frame; 0 where
    either frame was dropped (NaN levels) and at frame 0."""
    levels = np.asarray(levels, np.float32)
    change = np.zeros_like(levels)
    if len(levels) > 1:
        step = levels[1:] - levels[:-1]
        change[1:] = np.where(key_layout().black, np.abs(step), -step)
    change = np.nan_to_num(change, nan=0.0).clip(0, None)
    return np.clip(change - np.median(change, axis=1, keepdims=True), 0, None).astype(np.float32)
