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
def _zone_weights(width: int, height: int) -> tuple[slice, slice, np.ndarray]:
    """The two row bands (white keys' fronts, black keys' middles) and a (2 * width, 2 * 88)
    matrix that turns the bands' column sums into each key's mean, as rectified (first 88
    columns) and mirrored (the columns read backwards: last 88)."""
    layout = key_layout()
    left, right = layout.normalised()
    margin = (right - left) * (1 - KEY_WIDTH_USED) / 2
    first = np.floor((left + margin) * width).astype(np.int64)
    stop = np.maximum(np.ceil((right - margin) * width).astype(np.int64), first + 1)
    bands = [slice(int(a * height), max(int(a * height) + 1, int(b * height))) for a, b in (WHITE_ROWS, BLACK_ROWS)]
    weights = np.zeros((2, width, 2, N_KEYS))  # band, column, reading, key
    for key, black in enumerate(layout.black):
        band = bands[int(black)]
        share = 1.0 / ((stop[key] - first[key]) * (band.stop - band.start))
        weights[int(black), first[key]:stop[key], 0, key] = share
        weights[int(black), width - stop[key]:width - first[key], 1, key] = share
    return bands[0], bands[1], weights.reshape(2 * width, 2 * N_KEYS)


def key_levels(crop: np.ndarray) -> np.ndarray:
    """(2, 88) float32: the mean gray of each key's zone of a rectified crop (A0 first), for
    the crop as it is and mirrored left-right (the columns read backwards), its saturated
    pixels counted as black (keys are gray; skin and lit overlays are not, so a finger
    landing on a key darkens it as the key's own shadow does)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    if crop.ndim == 3:
        saturation = cv2.extractChannel(cv2.cvtColor(crop, cv2.COLOR_BGR2HSV), 1)
        gray = cv2.bitwise_and(gray, cv2.compare(saturation, PLAIN_SATURATION, cv2.CMP_LT))
    white_rows, black_rows, weights = _zone_weights(gray.shape[1], gray.shape[0])
    columns = np.concatenate([cv2.reduce(gray[rows], 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
                              for rows in (white_rows, black_rows)])
    return (columns.astype(np.float64) @ weights).astype(np.float32).reshape(2, N_KEYS)


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
