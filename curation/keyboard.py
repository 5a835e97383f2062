"""Locate the full 88-key keyboard in a video: its quad (TL, TR, BR, BL) in source pixels.

The method, per sampled frame (OpenCV + NumPy only, see ../shared/KEYBOARD.md):
1. the key band: the largest wide blob of bright, unsaturated pixels (white keys; skin is
   saturated, so hands do not join it), its rotated rectangle straightened into a strip;
2. the black keys: dark blobs in the strip's upper part, with their tops and bottoms;
3. the 88-key model: the 36 black keys' centres (12 equal slots per octave) are matched
   to the blobs by a 1-D scale + offset fit, done separately at the blobs' tops and
   bottoms so a keystone (perspective) is followed; only a full keyboard has 36 black
   keys with the single A#0 first, so a cropped or 61-key keyboard fails the match;
4. the ends (A0's left edge, C8's right edge) come from that fit, and the key fronts from
   the black-key length, which is 0.63 of the white keys' (hands hide the fronts, not
   the black keys' tops).
The corners are then the median over all sampled frames where the fit succeeded (hands
move; the keyboard does not), and the score is the share of the 36 black keys found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from curation.piano import BLACK_LENGTH, N_BLACK, N_WHITE, key_layout
from curation.threads import thread_decoder

WORK_WIDTH = 960  # frames are downscaled to this width for the search
STRIP_PX_PER_WHITE = 20
MIN_BLACK_MATCHED = 30  # of 36
MIN_BLACK_PARTIAL = 12  # this many key-like blobs on a key band, but no full fit: a partial keyboard


class KeyboardNotFound(Exception):
    """`reason` is no_keyboard or partial_keyboard; the message says what was seen."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class KeyboardFit:
    quad: np.ndarray  # (4, 2) TL, TR, BR, BL, in the pixels of the frame it was fitted on
    score: float  # share of the 36 black keys matched, times fit quality
    matched: int


@dataclass
class KeyboardLocation:
    """The answer for one video."""

    quad: list[list[float]]  # TL, TR, BR, BL in source pixels
    bbox: list[int]  # x0, y0, x1, y1
    score: float
    frames_used: int
    frames_sampled: int
    source: str = "detected"  # detected | manifest
    key_ranges: list[list[float]] = field(default_factory=list)  # 88 x [x0, x1] in the rectified crop, 0..1
    fitted: list[int] = field(default_factory=list)  # indices of the frames the keyboard was fitted in

    def to_json(self) -> dict:
        return {"bbox": self.bbox, "quad": self.quad, "score": round(self.score, 4), "source": self.source,
                "frames_used": self.frames_used, "frames_sampled": self.frames_sampled, "key_ranges": self.key_ranges}


# --- per frame --------------------------------------------------------------------------
def _key_band(frame: np.ndarray):
    """Rotated rectangle of the white-key band, or None."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    white = ((hsv[..., 2] > 150) & (hsv[..., 1] < 50)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, frame.shape[1] // 60), 3))
    white = cv2.morphologyEx(white, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(white, connectivity=8)
    best = None
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 0.01 * white.size or stats[i, cv2.CC_STAT_WIDTH] < 0.3 * frame.shape[1]:
            continue
        points = np.column_stack(np.nonzero(labels == i)[::-1]).astype(np.float32)
        (cx, cy), (w, h), angle = cv2.minAreaRect(points)
        if w < h:
            w, h, angle = h, w, angle + 90
        if not 4.0 <= w / max(h, 1) <= 20.0:
            continue
        if best is None or stats[i, cv2.CC_STAT_AREA] > best[0]:
            best = (stats[i, cv2.CC_STAT_AREA], ((cx, cy), (w, h), angle))
    return None if best is None else best[1]


def _strip_transform(rect, margin: float = 0.35):
    """Homography from the frame to an upright strip around the band (with vertical margin)."""
    (cx, cy), (w, h), angle = rect
    a = np.deg2rad(angle)
    ux, uy = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    half_w, half_h = w / 2 * 1.04, h / 2 * (1 + margin)
    centre = np.array([cx, cy])
    src = np.array([centre - ux * half_w - uy * half_h, centre + ux * half_w - uy * half_h,
                    centre + ux * half_w + uy * half_h, centre - ux * half_w + uy * half_h], np.float32)
    width = N_WHITE * STRIP_PX_PER_WHITE * 1.04
    height = width * half_h / half_w
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    return cv2.getPerspectiveTransform(src, dst), (int(width), int(height))


def _black_blobs(strip: np.ndarray, widths: tuple[float, float] = (0.3, 0.9)) -> np.ndarray:
    """(n, 5) rows: x at top, x at bottom, top y, bottom y, width — of dark key-like blobs
    whose width lies in `widths` (in white-key widths, assuming the strip holds 52)."""
    gray = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    bright = gray[gray > np.percentile(gray, 60)]
    level = 0.5 * (float(np.median(bright)) + float(np.percentile(gray, 5))) if bright.size else 100.0
    dark = (gray < level).astype(np.uint8)
    u = STRIP_PX_PER_WHITE
    # Thin dark lines (the gaps between white keys) go; so do wide dark regions (the
    # fallboard above the keys, the shadow at their fronts), which would join the blobs.
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((1, max(2, int(0.3 * u))), np.uint8))
    wide = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((1, int(1.3 * u)), np.uint8))
    dark = dark & (1 - wide)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    rows = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        mean_width = area / h  # a key slanted by perspective has a wider box, not a wider body
        if not (widths[0] * u <= mean_width <= widths[1] * u and h >= 1.2 * u and h >= 1.5 * mean_width
                and area >= 0.5 * w * h):
            continue
        mask = labels[y:y + h, x:x + w] == i
        cols = np.arange(x, x + w)
        top_part, bottom_part = mask[: max(1, h // 5)], mask[-max(1, h // 5):]
        x_top = float((top_part * cols).sum() / max(top_part.sum(), 1))
        x_bottom = float((bottom_part * cols).sum() / max(bottom_part.sum(), 1))
        rows.append((x_top, x_bottom, float(y), float(y + h), float(mean_width)))
    return np.array(rows, float).reshape(-1, 5)


def _match_black_keys(xs: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """Scale a and offset b with x = a * model + b matching blobs to black-key centres."""
    model = key_layout().centre[key_layout().black]
    if len(xs) < MIN_BLACK_MATCHED:
        return None
    order = np.sort(xs)
    gaps = np.diff(order)
    small = np.median(gaps[gaps < np.percentile(gaps, 45) * 1.3]) if len(gaps) else 0
    if small <= 0:
        return None
    a0 = small / (7 / 6)  # neighbours inside a group are 7/6 white keys apart
    best = None
    for scale in a0 * np.array([0.94, 0.97, 1.0, 1.03, 1.06]):
        for k in range(N_BLACK):  # the leftmost blob is black key k
            b = order[0] - scale * model[k]
            position = (order - b) / scale
            nearest = np.abs(position[:, None] - model[None, :]).argmin(axis=1)
            error = np.abs(position - model[nearest])
            ok = error < 0.25
            matched = len(set(nearest[ok]))
            cost = (matched, -float(error[ok].mean()) if ok.any() else 0.0)
            if best is None or cost > best[0]:
                best = (cost, scale, b)
    (matched, _), scale, b = best
    if matched < MIN_BLACK_MATCHED:
        return None
    # Least squares on the matched pairs.
    position = (xs - b) / scale
    nearest = np.abs(position[:, None] - model[None, :]).argmin(axis=1)
    ok = np.abs(position - model[nearest]) < 0.25
    a, b = np.polyfit(model[nearest[ok]], xs[ok], 1)
    return float(a), float(b), ok


PARTIAL = "partial"


def fit_keyboard(frame: np.ndarray) -> KeyboardFit | str | None:
    """The 88-key quad in this frame's pixels; PARTIAL when a key band with many black
    keys is seen but not a full 88-key keyboard; None when no keyboard is seen."""
    rect = _key_band(frame)
    if rect is None:
        return None
    to_strip, size = _strip_transform(rect)
    strip = cv2.warpPerspective(frame, to_strip, size, flags=cv2.INTER_LINEAR)
    blobs = _black_blobs(strip)
    top_fit = _match_black_keys(blobs[:, 0]) if len(blobs) >= MIN_BLACK_MATCHED else None
    if top_fit is None:  # key-shaped blobs of any scale: a keyboard, but not a full one?
        return PARTIAL if len(_black_blobs(strip, (0.2, 3.0))) >= MIN_BLACK_PARTIAL else None
    a_top, b_top, ok = top_fit
    used = blobs[ok]
    model = key_layout().centre[key_layout().black]
    position = (used[:, 0] - b_top) / a_top
    keys = model[np.abs(position[:, None] - model[None, :]).argmin(axis=1)]
    a_bot, b_bot = np.polyfit(keys, used[:, 1], 1)
    # Lines through the blobs' tops and bottoms, as functions of the model position.
    top_line = np.polyfit(keys, used[:, 2], 1)
    bottom_line = np.polyfit(keys, used[:, 3], 1)
    corners = []
    for end in (0.0, float(N_WHITE)):  # A0's left edge, C8's right edge
        top = np.array([a_top * end + b_top, np.polyval(top_line, end)])
        black_bottom = np.array([a_bot * end + b_bot, np.polyval(bottom_line, end)])
        front = top + (black_bottom - top) / BLACK_LENGTH  # black keys are 0.63 of the white length
        corners.append((top, front))
    (tl, bl), (tr, br) = corners
    corners = [tl, tr, br, bl]
    strip_quad = np.array(corners, np.float32)
    quad = cv2.perspectiveTransform(strip_quad[None], np.linalg.inv(to_strip))[0]
    residual = np.abs(np.polyval(np.polyfit(keys, used[:, 0], 1), keys) - used[:, 0]).mean() / STRIP_PX_PER_WHITE
    matched = len(set(keys.tolist()))
    return KeyboardFit(quad=quad.astype(float), score=matched / N_BLACK * max(0.0, 1 - residual), matched=matched)


# --- per video --------------------------------------------------------------------------
def sample_frames(path: str | Path, n: int = 24) -> tuple[list[np.ndarray], tuple[int, int]]:
    """About `n` frames spread over the video, and the frame size. Keyframes only when the
    file has enough of them (YouTube's are ~2 s apart: decoding them alone is fast),
    else every step-th frame of a full decode."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise KeyboardNotFound("no_keyboard", f"{path}: no video stream")
        stream = container.streams.video[0]
        thread_decoder(stream)
        stream.codec_context.skip_frame = "NONKEY"
        keyframes = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    if len(keyframes) >= min(n, 8):
        step = max(1, len(keyframes) // n)
        return keyframes[::step][:n], (keyframes[0].shape[1], keyframes[0].shape[0])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        thread_decoder(stream)
        total = stream.frames or int((float(container.duration or 0) / av.time_base) * float(stream.average_rate or 25))
        step = max(1, total // n) if total else 12
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(stream)) if i % step == step // 2]
    if not frames:
        raise KeyboardNotFound("no_keyboard", f"{path}: no decodable frames")
    return frames, (frames[0].shape[1], frames[0].shape[0])


def locate_in_frames(frames: list[np.ndarray], label: str = "video") -> KeyboardLocation:
    """Median quad over the frames where a full keyboard was fitted."""
    height, width = frames[0].shape[:2]
    if height > width:
        raise KeyboardNotFound("no_keyboard", f"{label}: portrait frame {width}x{height}: no top-view keyboard")
    scale = WORK_WIDTH / width if width > WORK_WIDTH else 1.0
    fits, fitted, partial = [], [], 0
    for index, frame in enumerate(frames):
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else frame
        fit = fit_keyboard(small)
        if isinstance(fit, KeyboardFit):
            fits.append(fit)
            fitted.append(index)
        partial += fit == PARTIAL
    if not fits and partial >= max(1, 0.2 * len(frames)):  # a crop shows in most frames, noise does not
        raise KeyboardNotFound("partial_keyboard", f"{label}: keys seen in {partial} of {len(frames)} sampled frames, "
                                                   "but never a full 88-key keyboard (cropped, or fewer keys)")
    if not fits:
        raise KeyboardNotFound("no_keyboard", f"{label}: no keyboard in {len(frames)} sampled frames")
    quad = np.median(np.stack([f.quad for f in fits]), axis=0) / scale
    margin = 0.02 * width
    if quad[:, 0].min() < -margin or quad[:, 0].max() > width + margin or quad[:, 1].min() < -margin \
            or quad[:, 1].max() > height + margin:
        raise KeyboardNotFound("partial_keyboard", f"{label}: the keyboard runs out of the frame")
    # Full confidence needs agreement of at least 3 frames.
    score = float(np.median([f.score for f in fits])) * min(1.0, len(fits) / 3)
    location = location_from_quad(quad, score, len(fits), len(frames))
    location.fitted = fitted
    return location


def quad_iou(a, b, shape: tuple[int, int]) -> float:
    """Intersection over union of two quads rasterised (1/16 px) in a frame of `shape` (h, w)."""
    masks = []
    for quad in (a, b):
        mask = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(mask, np.round(np.asarray(quad, float).reshape(4, 2) * 16).astype(np.int32), 1, shift=4)
        masks.append(mask.astype(bool))
    union = (masks[0] | masks[1]).sum()
    return float((masks[0] & masks[1]).sum() / union) if union else 0.0


def location_from_quad(quad, score: float, used: int, sampled: int, source: str = "detected") -> KeyboardLocation:
    quad = np.asarray(quad, float).reshape(4, 2)
    left, right = key_layout().normalised()
    return KeyboardLocation(
        quad=[[round(float(x), 2), round(float(y), 2)] for x, y in quad],
        bbox=[int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
              int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max()))],
        score=score, frames_used=used, frames_sampled=sampled, source=source,
        key_ranges=[[round(float(a), 5), round(float(b), 5)] for a, b in zip(left, right)])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def locate(path: str | Path, n_frames: int = 24) -> KeyboardLocation:
    """Locate the keyboard in a video (sampled frames) or in one image (a frame grab)."""
    path = Path(path)
    if not path.is_file():
        raise KeyboardNotFound("no_keyboard", f"{path}: no such file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise KeyboardNotFound("no_keyboard", f"{path}: not a readable image")
        return locate_in_frames([image], str(path))
    try:
        frames, _ = sample_frames(path, n_frames)
    except KeyboardNotFound:
        raise
    except Exception as error:  # PyAV's errors for corrupt or empty files
        raise KeyboardNotFound("no_keyboard", f"{path}: cannot decode video ({error})") from None
    return locate_in_frames(frames, str(path))


def manifest_crop_location(quad, crop_frame: tuple[int, int], size: tuple[int, int]) -> KeyboardLocation:
    """A manifest crop (in `crop_frame` pixels), scaled to the downloaded `size`."""
    sx, sy = size[0] / crop_frame[0], size[1] / crop_frame[1]
    scaled = np.asarray(quad, float).reshape(4, 2) * [sx, sy]
    return location_from_quad(scaled, 1.0, 0, 0, source="manifest")
