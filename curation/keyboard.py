"""Locate the full 88-key keyboard in a video: its quad in source pixels, in keyboard order.

The quad's corners are (A0 back, C8 back, C8 front, A0 front): "back" is the black keys'
end (the fallboard side), "front" the white keys' front edge. For the usual camera this
is TL, TR, BR, BL; for a camera on the player's far side (`orientation` "rotated") or a
mirrored video the corners follow the keyboard, so rectifying with the quad always puts
A0 at the crop's left and the black keys at its top.

The method, per sampled frame (OpenCV + NumPy, see ../shared/KEYBOARD.md), works
from the black keys, which are the one thing every keyboard shows whatever its light:
1. dark-key mask: a horizontal black-hat (closing minus image), so a black key counts by
   its contrast with the white keys beside it, not by an absolute level (stage light
   puts real white keys at V 100-140). Wide dark areas (the fallboard, letterboxing)
   give no black-hat; dim surroundings (a glossy fallboard mirroring the keys) are cut
   by requiring 0.6 of the local mean white level and 0.45 of its maximum (measured
   on bright areas taller than a glow line, which must not cut the keys under it);
2. rows: key-shaped blobs (narrow, tall, solid) are grouped into straight rows of
   similar height (RANSAC over blob pairs), a few rows per frame;
3. the 88-key model: along each row, a 1-D Hough vote over scale and offset matches the
   blobs to the 36 black-key centres (12 equal slots per octave), in both directions
   (A0 on the left or the right). Only a full 88 starts with the single A#0 and ends
   with B7-C8 after a group of three, so the ends fix the octave; blobs the model does
   not explain count against a fit;
4. geometry: each matched black key gives two points (its back and front end) in
   keyboard coordinates (key position in white keys, depth in black-key lengths); a
   RANSAC homography maps them to the frame (rotation, keystone, oblique views,
   upside-down and mirrored cameras alike). Which end of the black keys is their front
   is told by the thin dark gaps between the white keys, which continue beyond the
   fronts only (a body behind the keys may be as bright as they are). The white keys'
   front edge is found by scanning down the white-only zone for the brightness drop
   near where those gaps stop, the 0.63 black/white length ratio its prior;
5. checks: each end must show two of its five outermost black keys (the pattern repeats
   every octave, so a model slid by one would otherwise fit a 61-key keyboard), and
   its white keys, or lie outside the frame by at most CLIP_MAX_WHITE white keys, both
   ends together CLIP_MAX_BOTH (reported as `clipped_left` / `clipped_right`); the
   white keys' seams must not run on beyond an end (a longer row of keys: a slid fit, an
   open upright's hammers); a keyboard seen only in part (61/76 keys, a crop) is
   `partial_keyboard`. The black-key pattern is mirror-symmetric (about D and G#), so
   the two directions of a row can both fit, one slid by a few keys: a flipped reading
   (the far side and mirrored, which otherwise needs the strongest evidence) is taken
   when the seams just inside its ends confirm it better than the other reading's.
Per video, one weak fit (fewer than MIN_BLACK_STRONG keys) that no other sampled frame
confirms is a fluke (a title's letters); a keyboard seen in part in four times as many
frames as it was seen whole is partial, unless its full fits are sealed by seams at both
ends and confirmed (3 frames, or 2 strong ones); otherwise the fits of the sampled frames
are clustered (a camera that moves gives two clusters: the larger wins), their corners'
median is taken, and the keyboard is refitted on the per-pixel median of those frames
(hands move, the keyboard does not), the refit kept where most frames agree with it.
Frames that show only a partial keyboard at WORK_WIDTH are searched again at up to
FINE_WIDTH, and that keyboard is kept only where the first search saw keys.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from contract.piano import BLACK_LENGTH, N_BLACK, N_WHITE, key_layout
from contract.threads import thread_decoder
from contract.vocab import Failure

WORK_WIDTH = 960  # frames are downscaled to this width for the search
FINE_WIDTH = 1600  # and searched again at up to this width when only a partial keyboard shows at WORK_WIDTH
MIN_BLACK_MATCHED = 14  # of 36: hands may hide half the keys in a frame
MIN_BLACK_PARTIAL = 16  # matched in a frame that is not a full 88: a keyboard in part
MIN_MATCHED_SHARE = 0.45  # of the black keys inside the frame
MIN_BLACK_STRONG = 24  # with this many matched, an end's black keys may be hidden (by a hand),
MAX_HIDDEN_END = 7  # as many as a hand covers: more unseen from an end is an 88 fitted over a shorter row,
MAX_HIDDEN_BARE = 3  # and more than this needs a seam of the end's white keys in view (a hand shows some)
END_KEYS = 5  # each end must show 2 of its 5 outermost black keys: an octave-periodic pattern could slide
CLIP_MAX_WHITE = 1.3  # an end may lie this many white keys outside the frame (Paul Barton framing)
CLIP_MAX_BOTH = 1.95  # and both ends together this many (about one each): more is an 88 cropped, not framed tight
SEALED_SEAMS = 5  # of 6 (`KeyboardFit.seams`): the seams stop at both ends, as an 88's do
MIN_FRAMES_TO_CONFIRM = 6  # of a video's sampled frames: from this many, a weak fit needs a second frame
FEW_FRAMES = 0.25  # and weak fits without seams at their ends need this share of them
WEAK_FLIPPED = "black keys on the player's side with A0 on the left, on weak evidence (a flipped video?)"
FRONT = 1 / BLACK_LENGTH  # the white keys' front in black-key lengths from the back


class KeyboardNotFound(Failure):
    """A video's failure of class no_keyboard or partial_keyboard (`reason`); the message
    says what was seen."""

    @property
    def reason(self) -> str:
        return self.error_class


@dataclass(frozen=True)
class KeyboardFit:
    """One frame's answer: a full keyboard (`full`) or a keyboard seen only in part."""

    quad: np.ndarray  # (4, 2) A0 back, C8 back, C8 front, A0 front, in the fitted frame's pixels
    score: float  # share of the visible black keys matched, times fit quality
    matched: int  # black keys matched
    orientation: str
    clipped: tuple[float, float]  # white keys of the A0 / C8 end outside the frame
    full: bool = True
    keys_seen: int = 0  # for a partial keyboard: about how many keys were seen
    why: str = ""
    seams: int = 0  # white-key seams just inside the ends, less twice those just beyond (`_end_seams`)
    angle: float = 0.0  # the rotation of the frame it was found in


@dataclass
class KeyboardLocation:
    """The answer for one video."""

    quad: list[list[float]]  # A0 back, C8 back, C8 front, A0 front in source pixels
    bbox: list[int]  # x0, y0, x1, y1
    score: float
    frames_used: int
    frames_sampled: int
    source: str = "detected"  # detected | manifest
    key_ranges: list[list[float]] = field(default_factory=list)  # 88 x [x0, x1] in the rectified crop, 0..1
    fitted: list[int] = field(default_factory=list)  # indices of the frames the keyboard was fitted in
    orientation: str = "normal"  # normal | rotated (camera facing the player) | mirrored | flipped
    clipped_left: float = 0.0  # white keys of the A0 end outside the frame
    clipped_right: float = 0.0  # white keys of the C8 end outside the frame

    def to_json(self) -> dict:
        return {"bbox": self.bbox, "quad": self.quad, "score": round(self.score, 4), "source": self.source,
                "orientation": self.orientation, "clipped_left": round(self.clipped_left, 2),
                "clipped_right": round(self.clipped_right, 2),
                "frames_used": self.frames_used, "frames_sampled": self.frames_sampled, "key_ranges": self.key_ranges}


@dataclass(frozen=True)
class Blobs:
    """Key-shaped dark blobs of one frame (work pixels)."""

    cx: np.ndarray
    cy: np.ndarray
    height: np.ndarray
    width: np.ndarray  # mean width: area / height
    box: np.ndarray  # (n, 4) x, y, w, h
    label: np.ndarray  # component label of each blob
    labels: np.ndarray  # the label image
    beside: np.ndarray  # the white level beside each pixel (the horizontal closing, glow lines removed)

    def __len__(self) -> int:
        return len(self.cx)


# --- per frame: dark keys -------------------------------------------------------------------
def dark_key_mask(gray: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels darker than the white keys beside them (see the module docstring, step 1),
    and the white level beside each pixel; sizes follow `width`, the frame's (a turned
    frame's canvas is wider)."""
    width = width or gray.shape[1]
    k = max(9, int(0.028 * width)) | 1  # wider than a black key of a keyboard spanning the frame
    closed = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, 1)))
    blackhat = cv2.subtract(closed, gray)
    window = (k * 2 + 1, max(9, int(0.08 * width)) | 1)
    tall = cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((max(5, int(0.015 * width)) | 1, 1), np.uint8))
    local_mean = cv2.blur(tall, window)  # of bright things taller than a glow line drawn over the keys
    local_max = cv2.dilate(tall, cv2.getStructuringElement(cv2.MORPH_RECT, window))
    mask = (blackhat.astype(np.int16) > np.maximum(18, 0.3 * closed)) & (closed > 0.6 * local_mean) \
        & (closed > 0.45 * local_max) & (closed > 40)
    mask = mask.astype(np.uint8)
    # The 1-2 px gaps between white keys are not black keys; a highlight across a glossy
    # black key must not cut it in two; thin horizontal bridges (the shadowed back of the
    # white keys) must not join two.
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((max(3, int(0.02 * width)) | 1, 1), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((max(5, int(0.012 * width)) | 1, 1), np.uint8)), tall


def key_blobs(mask: np.ndarray, beside: np.ndarray) -> Blobs:
    """Connected dark blobs shaped like black keys: narrow, tall, solid. Each is cut to
    its longest run of rows beside bright white keys: a glossy fallboard's mirror image
    of a key continues the key's black, but beside it lie the dimmer mirrored whites."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=4)
    x, y, w, h, area = (stats[1:, i].astype(np.int64) for i in range(5))
    mean_width = area / np.maximum(h, 1)
    keep = ((mean_width >= 2.0) & (mean_width <= 0.03 * mask.shape[1]) & (h >= 2.2 * mean_width)
            & (h >= 6) & (h <= 0.4 * mask.shape[0]) & (area >= 0.4 * w * h))
    rows = []
    for i in np.flatnonzero(keep):
        bx, bw = int(x[i]), int(w[i])
        pixels = labels[y[i]:y[i] + h[i], bx:bx + bw] == i + 1
        start, bh = _lit_rows(pixels, beside[y[i]:y[i] + h[i], bx:bx + bw])
        pixels = pixels[start:start + bh]
        by = int(y[i]) + start
        count = int(pixels.sum())
        if bh < 6 or count == 0 or bh < 2.2 * count / bh:
            continue
        ys, xs = np.nonzero(pixels)
        rows.append((xs.mean() + bx, ys.mean() + by, bh, count / bh, bx, by, bw, bh, i + 1))
    table = np.array(rows, float).reshape(-1, 9)
    return Blobs(cx=table[:, 0], cy=table[:, 1], height=table[:, 2], width=table[:, 3],
                 box=table[:, 4:8].astype(np.int64), label=table[:, 8].astype(np.int64), labels=labels, beside=beside)


def _lit_rows(pixels: np.ndarray, beside: np.ndarray) -> tuple[int, int]:
    """First row and length of the blob's longest run of rows whose white level beside
    is at least half the blob's brightest (`pixels`: the blob in its box), after cutting
    off the dimmer side of a clean step (the mirror line of a glossy fallboard)."""
    level = np.where(pixels, beside, 0).max(axis=1).astype(float)
    offset, stop = _mirror_step(level)
    level = level[offset:stop]
    good = level >= 0.5 * np.percentile(level, 90)  # a lid's shadow dims less
    if good.all():
        return offset, len(good)
    best, run, best_start, start = 0, 0, 0, 0
    for r, ok in enumerate(good):
        run, start = (run + 1, start) if ok else (0, r + 1)
        if run > best:
            best, best_start = run, start
    return offset + best_start, best


def _mirror_step(level: np.ndarray) -> tuple[int, int]:
    """The rows to keep, [start, stop): all of them, or the brighter side of a step where
    the white level beside the blob falls to under 0.7 of itself and stays there (two flat
    runs, each at least a quarter of the blob): a black key running into its own mirror
    image, whose whites are dimmer. A gradient or a hand's edge is no such step."""
    n = len(level)
    if n < 12 or level.min() >= 0.7 * level.max():  # most blobs: no step possible
        return 0, n
    k = np.arange(n // 4, n - n // 4 + 1)
    total, squares = np.r_[0.0, np.cumsum(level)], np.r_[0.0, np.cumsum(level ** 2)]
    mean_a, mean_b = total[k] / k, (total[-1] - total[k]) / (n - k)
    std_a = np.sqrt(np.maximum(squares[k] / k - mean_a ** 2, 0))
    std_b = np.sqrt(np.maximum((squares[-1] - squares[k]) / (n - k) - mean_b ** 2, 0))
    low, high = np.minimum(mean_a, mean_b), np.maximum(mean_a, mean_b)
    step = (high > 0) & (low < 0.7 * high) & (np.maximum(std_a, std_b) < 0.2 * (high - low))
    if not step.any():
        return 0, n
    best = int(np.flatnonzero(step)[np.argmin((low / np.maximum(high, 1e-9))[step])])
    return (0, int(k[best])) if mean_a[best] > mean_b[best] else (int(k[best]), n)


def blob_rows(blobs: Blobs, max_rows: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Index sets of blobs lying on one straight row with similar heights, best first."""
    rows: list[np.ndarray] = []
    free = np.ones(len(blobs), bool)
    rng = np.random.default_rng(seed)
    for _ in range(max_rows):
        candidates = np.flatnonzero(free)
        if len(candidates) < MIN_BLACK_MATCHED:
            break
        inliers = _best_row(blobs, candidates, rng)
        if inliers is None or len(inliers) < MIN_BLACK_MATCHED:
            break
        rows.append(inliers)
        free[inliers] = False
    return rows


def _best_row(blobs: Blobs, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Seed lines through blob pairs; a blob is on a pair's row when it lies near the line
    and its height is near the height interpolated between the pair's (a camera that
    looks along the keyboard makes the far keys smaller)."""
    n = len(candidates)
    i, j = np.triu_indices(n, 1)
    if len(i) > 4000:
        pick = rng.choice(len(i), 4000, replace=False)
        i, j = i[pick], j[pick]
    a, b = candidates[i], candidates[j]
    dx, dy = blobs.cx[b] - blobs.cx[a], blobs.cy[b] - blobs.cy[a]
    ok = (np.abs(dx) > 3 * np.median(blobs.width[candidates])) & (np.abs(dy) < 0.7 * np.abs(dx)) \
        & (np.abs(np.log(blobs.height[a] / blobs.height[b])) < 0.9)
    if not ok.any():
        return None
    a, b, dx, dy = a[ok], b[ok], dx[ok], dy[ok]
    length = np.hypot(dx, dy)
    px, py = blobs.cx[candidates], blobs.cy[candidates]
    along = ((px[None] - blobs.cx[a][:, None]) * dx[:, None] + (py[None] - blobs.cy[a][:, None]) * dy[:, None]) \
        / length[:, None] ** 2  # 0 at a, 1 at b
    expected = np.maximum(blobs.height[a][:, None] + along * (blobs.height[b] - blobs.height[a])[:, None], 1.0)
    distance = np.abs((px[None] - blobs.cx[a][:, None]) * -dy[:, None] + (py[None] - blobs.cy[a][:, None]) * dx[:, None]) \
        / length[:, None]
    inlier = (distance < 0.2 * expected) & (np.abs(np.log(blobs.height[candidates][None] / expected)) < 0.35)
    best = int(inlier.sum(axis=1).argmax())
    members = candidates[inlier[best]]
    # Refit the line and the height trend on the members and take them again.
    for _ in range(2):
        if len(members) < 4:
            return members
        vx, vy, x0, y0 = cv2.fitLine(np.column_stack([blobs.cx[members], blobs.cy[members]]).astype(np.float32),
                                     cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        t_members = (blobs.cx[members] - x0) * vx + (blobs.cy[members] - y0) * vy
        trend = _height_trend(t_members, blobs.height[members])
        t = (px - x0) * vx + (py - y0) * vy
        expected = np.maximum(np.polyval(trend, t), 1.0)
        distance = np.abs((px - x0) * -vy + (py - y0) * vx)
        members = candidates[(distance < 0.2 * expected) & (np.abs(np.log(blobs.height[candidates] / expected)) < 0.35)]
    return members


def _height_trend(t: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Black-key length as a linear function of the position along the row (robust: the
    fit is redone without the blobs it explains worst, such as keys a hand half covers)."""
    trend = np.polyfit(t, height, 1)
    keep = np.abs(height - np.polyval(trend, t)) <= np.percentile(np.abs(height - np.polyval(trend, t)), 80)
    return np.polyfit(t[keep], height[keep], 1) if keep.sum() >= 3 else trend


# --- per frame: the 88-key model along a row -------------------------------------------------
@dataclass(frozen=True)
class RowFit:
    keys: np.ndarray  # (m,) index 0..35 of the black key each matched blob is
    blobs: np.ndarray  # (m,) blob indices
    extra: int  # blobs of the row that no black key explains
    direction: int  # +1: A0 at the row's low-t end
    scale: float
    offset: float


def _black_centres() -> np.ndarray:
    layout = key_layout()
    return layout.centre[layout.black]


def fit_row(t: np.ndarray) -> list[RowFit]:
    """Best match of positions t (along the row, work px) to the 36 black-key centres.

    Votes over scale (white-key width, from the blobs' own spacing +-15 %) and offset;
    the best few votes are scored exactly: matched keys, minus half of the blobs left
    unexplained. The best fit of each direction, the better first (the checks may
    refuse the first: two directions of a partly hidden keyboard can score alike)."""
    order = np.argsort(t)
    ts = t[order]
    gaps = np.diff(ts)
    small = gaps[gaps <= np.percentile(gaps, 40) * 1.25]
    if len(small) == 0 or np.median(small) <= 0:
        return []
    s0 = float(np.median(small)) / (7 / 6)  # neighbours inside a group are 7/6 white keys apart
    scales = s0 * (1 + np.arange(-0.16, 0.1601, 0.004))
    model = _black_centres()
    fits = []
    for direction in (1, -1):
        best = None
        offsets = ts[None, :, None] - direction * scales[:, None, None] * model[None, None, :]
        bin_width = 0.08 * s0
        lo = offsets.min()
        bins = ((offsets - lo) / bin_width).astype(np.int64)
        n_bins = int(bins.max()) + 1
        flat = (np.arange(len(scales))[:, None, None] * n_bins + bins).ravel()
        votes = np.bincount(flat, minlength=len(scales) * n_bins).reshape(len(scales), n_bins).astype(float)
        kernel = np.ones(3)
        votes = np.apply_along_axis(lambda v: np.convolve(v, kernel, "same"), 1, votes) if n_bins > 3 else votes
        top = np.argsort(votes.ravel())[::-1][:12]
        for flat_index in top:
            si, bi = divmod(int(flat_index), n_bins)
            fit = _score_row(ts, order, scales[si], lo + (bi + 0.5) * bin_width, direction, model)
            if fit is not None and (best is None or _row_cost(fit) > _row_cost(best)):
                best = fit
        if best is not None:
            fits.append(best)
    return sorted(fits, key=_row_cost, reverse=True)


def _row_cost(fit: RowFit) -> tuple[float, int]:
    return (len(fit.keys) - 0.5 * fit.extra, -fit.extra)


def _closest_per_key(nearest: np.ndarray, error: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Mask of the blobs kept: of those within tolerance (`ok`), the closest to each key."""
    order = np.lexsort((error, nearest))
    order = order[ok[order]]
    _, first = np.unique(nearest[order], return_index=True)
    keep = np.zeros(len(nearest), bool)
    keep[order[first]] = True
    return keep


def _score_row(ts: np.ndarray, order: np.ndarray, scale: float, offset: float, direction: int,
               model: np.ndarray) -> RowFit | None:
    """Match blobs to keys, then refit the key positions and match again: first a line,
    then (from 10 keys on) a quadratic, so lens bow and residual perspective are
    followed outwards from where the vote matched."""
    fit = np.array([direction * scale, offset])
    for _ in range(4):
        predicted = np.polyval(fit, model)
        spacing = np.abs(np.polyval(np.polyder(fit), model))
        if np.any(spacing <= 0.2 * scale):
            return None
        nearest = np.abs(ts[:, None] - predicted[None, :]).argmin(axis=1)
        error = np.abs(ts - predicted[nearest]) / spacing[nearest]  # in white keys
        ok = error < 0.25
        if ok.sum() < 4:
            return None
        keep = _closest_per_key(nearest, error, ok)
        fit = np.polyfit(model[nearest[keep]], ts[keep], 2 if keep.sum() >= 10 else 1)
        if len(fit) == 2 and np.sign(fit[0]) != direction:
            return None
    linear = np.polyfit(model[nearest[keep]], ts[keep], 1)
    if np.sign(linear[0]) != direction:
        return None
    return RowFit(keys=nearest[keep], blobs=order[keep], extra=int((~keep).sum()), direction=direction,
                  scale=abs(float(linear[0])), offset=float(linear[1]))


# --- per frame: geometry -----------------------------------------------------------------
def _blob_ends(blobs: Blobs, index: np.ndarray, front_down: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) back and front end points of the blobs (the x of their end fifths)."""
    backs, fronts = [], []
    for i in index:
        x, y, w, h = blobs.box[i]
        mask = blobs.labels[y:y + h, x:x + w] == blobs.label[i]
        cols = np.arange(x, x + w) + 0.5
        part = max(1, h // 5)
        ends = []
        for rows, y_end in ((mask[:part], y), (mask[-part:], y + h)):
            ends.append((float((rows * cols).sum() / max(rows.sum(), 1)), float(y_end)))
        top, bottom = ends
        backs.append(top if front_down else bottom)
        fronts.append(bottom if front_down else top)
    return np.array(backs), np.array(fronts)


def _front_is_down(gray: np.ndarray, blobs: Blobs, row: np.ndarray, normal: np.ndarray, keys: np.ndarray,
                   members: np.ndarray, white_px: float) -> bool:
    """Whether the black keys' fronts are their image-down ends (along `normal`). The white
    keys continue beyond the fronts, with a dark gap between each two; beyond the backs
    is the fallboard or the body, which may be as bright (a white digital piano, a glow
    line) but has no such gaps, and its mirror image of the keys is dimmer. So the side
    whose white-key gaps show more contrast wins; brightness decides when neither shows any."""
    contrast = []
    for down in (True, False):
        backs, fronts = _blob_ends(blobs, row[members], down)
        homography, _ = _key_homography(_black_centres()[keys], backs, fronts, white_px)
        contrast.append(_gap_contrast(gray, homography) if homography is not None else 0.0)
    if abs(contrast[0] - contrast[1]) >= 4:
        return contrast[0] > contrast[1]
    return _brighter_below(gray, blobs, row, normal)


def _gap_contrast(gray: np.ndarray, homography: np.ndarray) -> float:
    """How much darker the white keys' boundaries are than their middles where only white
    keys are (1.12-1.45 black-key lengths from the back)."""
    profile = _gap_profile(gray, homography, np.linspace(1.12, 1.45, 6))
    return float(np.median(profile))


def _gap_profile(gray: np.ndarray, homography: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per depth v: the seam dips at the white-key boundaries (`_seam_dips`) as their 60th
    percentile (a hand may cover a third of them); 0 where nothing is in the frame."""
    deepest = _seam_dips(gray, homography, np.arange(1, N_WHITE), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # keys outside the frame are NaN
        profile = np.nanpercentile(deepest, 60, axis=0)
    return np.nan_to_num(profile, nan=0.0)


def _seam_dips(gray: np.ndarray, homography: np.ndarray, boundaries: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(boundaries, depths): the deepest narrow dip within 0.24 white keys of each white-key
    boundary (an extrapolated fit drifts) at each depth v; NaN outside the frame. A dip is
    a sample darker than both samples 0.21 white keys either side of it: a thin gap is
    one, a black key is not (0.2 inside it is black too)."""
    step, reach, side = 0.03, 8, 7  # in samples: the dip's search (0.24) and its shoulders (0.21)
    offsets = np.arange(-(reach + side), reach + side + 1) * step
    boundary = np.asarray(boundaries, float)[:, None, None] + 0 * v[None, :, None] + offsets[None, None, :]
    depth = np.broadcast_to(v[None, :, None], boundary.shape)
    values = _sample(gray, homography, boundary, depth)
    centre = values[:, :, side:-side]
    dips = np.fmin(values[:, :, :-2 * side], values[:, :, 2 * side:]) - centre
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(dips, axis=2)


def _end_seams(gray: np.ndarray, homography: np.ndarray) -> list[tuple[int, int]]:
    """Per end (A0, C8): of the 3 white-key boundaries just inside it, how many show a seam,
    and of the 2 just beyond it (where keys would continue), how many do. The black-key
    pattern is mirror-symmetric (about D and G#), so a keyboard read the wrong way round
    fits all but its ends, slid by a few keys: seams then run on past one end and stop
    short of the other. A seam is a dip of at least 0.4 of the keyboard's typical one."""
    v = np.linspace(1.12, 1.45, 6)
    ends = [1, 2, 3, N_WHITE - 3, N_WHITE - 2, N_WHITE - 1, -2, -1, N_WHITE + 1, N_WHITE + 2]  # inside, then beyond
    middle = list(range(8, N_WHITE - 7, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        all_dips = _seam_dips(gray, homography, np.array(ends + middle), v)
        typical = np.nanmedian(all_dips[len(ends):])
        dips = np.nanmedian(all_dips[:len(ends)], axis=1)
    seam = dips >= max(6.0, 0.4 * typical) if np.isfinite(typical) else np.zeros(len(dips), bool)
    return [(int(seam[0:3].sum()), int(seam[6:8].sum())), (int(seam[3:6].sum()), int(seam[8:10].sum()))]


def _brighter_below(gray: np.ndarray, blobs: Blobs, row: np.ndarray, normal: np.ndarray) -> bool:
    """Whether it is brighter just beyond the blobs' image-down ends than beyond their upper ends."""
    h = blobs.height[row]
    values = []
    for sign in (1, -1):
        reach = h / 2 + 0.25 * h
        x = blobs.cx[row] + sign * normal[0] * reach
        y = blobs.cy[row] + sign * normal[1] * reach
        inside = (x >= 0) & (x < gray.shape[1] - 1) & (y >= 0) & (y < gray.shape[0] - 1)
        values.append(float(np.median(gray[y[inside].astype(int), x[inside].astype(int)])) if inside.any() else 0.0)
    return values[0] >= values[1]


def _orientation(u: np.ndarray, front: np.ndarray) -> str:
    """u: image direction from A0 to C8; front: image direction from the back to the front."""
    mirrored = u[0] * front[1] - u[1] * front[0] < 0
    if not mirrored:
        return "normal" if u[0] >= 0 else "rotated"
    return "mirrored" if u[0] < 0 else "flipped"


def _to_image(homography: np.ndarray, points) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(points, np.float64).reshape(1, -1, 2), homography)[0]


def _sample(gray: np.ndarray, homography: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gray values at keyboard coordinates (m, v); NaN outside the frame."""
    xy = _to_image(homography, np.column_stack([m.ravel(), v.ravel()]))
    x, y = xy[:, 0], xy[:, 1]
    inside = (x >= 0) & (x <= gray.shape[1] - 1) & (y >= 0) & (y <= gray.shape[0] - 1)
    out = np.full(len(x), np.nan)
    out[inside] = gray[np.round(y[inside]).astype(int), np.round(x[inside]).astype(int)]
    return out.reshape(m.shape)


def _white_centres() -> np.ndarray:
    layout = key_layout()
    return layout.centre[~layout.black]


def _front_edge(gray: np.ndarray, homography: np.ndarray) -> float:
    """Depth (black-key lengths) of the white keys' front: a clear drop in the white keys'
    median brightness below the black keys (the strongest, or of several the one nearest
    to where the gaps between the white keys stop); the 0.63 ratio when no clear drop."""
    v = np.arange(1.05, 2.3, 0.01)
    m = _white_centres()[::2]
    values = _sample(gray, homography, m[None, :].repeat(len(v), 0), v[:, None].repeat(len(m), 1))
    if np.isnan(values).all(axis=1).any():  # part of the scan outside the frame
        return FRONT
    profile = np.nanmedian(values, axis=1)
    profile = np.convolve(profile, np.ones(5) / 5, "same")
    white = float(np.median(profile[(v > 1.08) & (v < 1.3)]))
    drop = profile[:-6] - profile[6:]  # brightness lost over 0.06 black-key lengths
    search = (v[:-6] > 1.3) & (v[:-6] < 2.0)
    if not search.any():
        return FRONT
    peak = np.r_[False, (drop[1:-1] >= drop[:-2]) & (drop[1:-1] >= drop[2:]), False]
    candidates = np.flatnonzero(search & peak & (drop >= 0.15 * white))
    if not len(candidates):
        return FRONT
    strongest = drop[candidates].max()
    candidates = candidates[drop[candidates] >= 0.5 * strongest]
    gaps_end = _gaps_end(gray, homography)
    if gaps_end is None:
        k = candidates[drop[candidates].argmax()]
    else:  # of two clear drops (a white body's own edge below the keys'), the one where the gaps stop
        k = candidates[np.abs(v[candidates] + 0.03 - gaps_end).argmin()]
    return float(v[k] + 0.03)


def _gaps_end(gray: np.ndarray, homography: np.ndarray) -> float | None:
    """Depth where the dark gaps between the white keys stop (the keys' front), when they
    show clearly: a body as bright as the keys below them (a white digital piano) makes
    no brightness drop there, and its own lower edge would be taken for the front."""
    v = np.arange(1.1, 2.1, 0.03)
    profile = _gap_profile(gray, homography, v)
    reference = float(np.median(profile[v < 1.3]))
    if reference < 8:
        return None
    weak = np.flatnonzero((v > 1.3) & (profile < reference / 3))
    return float(v[weak[0]]) if len(weak) else None


def _clipped(homography: np.ndarray, front: float, size: tuple[int, int]) -> tuple[float, float]:
    """White keys of each end that lie outside the frame, measured half way down the keys."""
    width, height = size
    m = np.arange(0, N_WHITE + 1e-9, 0.05)
    xy = _to_image(homography, np.column_stack([m, np.full(len(m), front / 2)]))
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)
    if not inside.any():
        return float(N_WHITE), float(N_WHITE)
    first, last = np.flatnonzero(inside)[[0, -1]]
    return float(m[first]), float(N_WHITE - m[last])


def _end_whites(gray: np.ndarray, homography: np.ndarray) -> list[bool | None]:
    """Per end (A0, C8): do its white keys (A0 B0, B7 C8) look like the white keys a few
    keys inward (which must look white themselves), and reach a third of the middle's
    white? None when the end is outside
    the frame. A 61- or 76-key keyboard fitted as an 88 puts these on the body; mostly
    compared with their neighbours, because light falls off smoothly towards the ends."""
    v = np.linspace(1.15, 1.45, 4)
    middle = _sample(gray, homography, _white_centres()[None, 10:42].repeat(4, 0), v[:, None].repeat(32, 1))
    white = float(np.nanmedian(middle)) if np.isfinite(middle).any() else 0.0
    answers: list[bool | None] = []
    for end, inward in (((0.2, 1.8), (4.2, 7.8)), ((N_WHITE - 1.8, N_WHITE - 0.2), (N_WHITE - 7.8, N_WHITE - 4.2))):
        values = [_sample(gray, homography, np.linspace(*span, 5)[None, :].repeat(4, 0), v[:, None].repeat(5, 1))
                  for span in (end, inward)]
        if np.isfinite(values[0]).mean() < 0.5 or not np.isfinite(values[1]).any():
            answers.append(None)
        else:
            level, inward_level = float(np.nanmedian(values[0])), float(np.nanmedian(values[1]))
            answers.append(level >= 0.5 * inward_level and level >= 0.35 * white and inward_level >= 0.3 * white)
    return answers


def _black_in_frame(homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per black key of the model: is its centre inside the frame?"""
    xy = _to_image(homography, np.column_stack([_black_centres(), np.full(N_BLACK, 0.5)]))
    return (xy[:, 0] >= 0) & (xy[:, 0] < size[0]) & (xy[:, 1] >= 0) & (xy[:, 1] < size[1])


def _hidden_from_ends(matched_keys: set[int], in_frame: np.ndarray) -> tuple[int, int]:
    """Per end (A0, C8): the black keys in the frame that are not matched before the first
    matched one from that end."""
    seen = np.zeros(N_BLACK, bool)
    seen[list(matched_keys)] = True
    runs = []
    for order in (np.arange(N_BLACK), np.arange(N_BLACK)[::-1]):
        first = int(np.argmax(seen[order])) if seen.any() else N_BLACK
        runs.append(int(in_frame[order[:first]].sum()))
    return runs[0], runs[1]


ANGLES = (0.0, 30.0, -30.0)  # the black-hat follows keys within about 15 degrees of vertical


def fit_keyboard(frame: np.ndarray, angles: tuple[float, ...] = ANGLES) -> KeyboardFit | None:
    """The keyboard in this frame (full or partial), or None when no keyboard is seen.
    The frame is searched as it is and, when no full keyboard shows, turned by each
    further angle (measured to hold for a camera rotated by up to about 30 degrees)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    best: KeyboardFit | None = None
    for angle in angles:
        turned, to_frame = _turned(gray, angle)
        blobs = key_blobs(*dark_key_mask(turned, gray.shape[1]))
        for row in blob_rows(blobs):
            fit = _fit_on_row(turned, blobs, row, gray, to_frame, angle)
            if fit is not None and (best is None or _rank(fit) > _rank(best)):
                best = fit
        if best is not None and best.full:
            break
    return best


def _rank(fit: KeyboardFit) -> tuple[bool, bool, int]:
    """Full fits first; of those, one whose seams stop at both ends: a glossy fallboard's
    mirror image of the keys fits the 88-key model as well, but its seams are faint."""
    return fit.full, fit.seams >= SEALED_SEAMS, fit.matched


def _turned(gray: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame rotated by `angle` degrees on a canvas that holds all of it, and the
    homography back to the frame."""
    if angle == 0:
        return gray, np.eye(3)
    h, w = gray.shape
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float) @ rotation.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    rotation[:, 2] -= lo
    size = (int(np.ceil(hi[0] - lo[0])), int(np.ceil(hi[1] - lo[1])))
    turned = cv2.warpAffine(gray, rotation, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return turned, np.linalg.inv(np.vstack([rotation, [0, 0, 1]]))


def _row_positions(t: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, float]:
    """Positions along the row in units of the local black-key length (u = integral of
    dt / h(t)), in which the keys are evenly spaced even when perspective shrinks the far
    end; and the median key length in pixels."""
    slope, intercept = _height_trend(t, height)
    h_mid = float(np.median(height))
    span = float(t.max() - t.min()) if len(t) else 0.0
    h_lo, h_hi = intercept + slope * t.min(), intercept + slope * t.max()
    if abs(slope) * span < 0.05 * h_mid or min(h_lo, h_hi) <= 0.2 * h_mid:
        return t / h_mid, h_mid
    return np.log((intercept + slope * t) / h_mid) / slope, h_mid


def _fit_on_row(turned: np.ndarray, blobs: Blobs, row: np.ndarray, gray: np.ndarray, to_frame: np.ndarray,
                angle: float) -> KeyboardFit | None:
    """The 88-key model on one row of blobs (found in `turned`), checked in the frame."""
    points = np.column_stack([blobs.cx[row], blobs.cy[row]])
    vx, vy, x0, y0 = cv2.fitLine(points.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    d = np.array([vx, vy]) if vx >= 0 else -np.array([vx, vy])
    normal = np.array([-d[1], d[0]])  # image-down for a level row
    u, key_length = _row_positions((points - [x0, y0]) @ d, blobs.height[row])
    fits = [_fit_direction(turned, blobs, row, gray, to_frame, angle, row_fit, key_length, normal)
            for row_fit in fit_row(u) if len(row_fit.keys) >= 8]
    fits = [f for f in fits if f is not None]
    full = next((f for f in fits if f.full), None)
    return _confirmed_flip(fits, full) or full or (fits[0] if fits else None)


def _confirmed_flip(fits: list[KeyboardFit], full: KeyboardFit | None) -> KeyboardFit | None:
    """A flipped reading refused only for weak evidence, when the white keys' seams confirm
    its ends: at both (seams just inside, none beyond), or better than the full reading of
    the other direction does. The black-key pattern is mirror-symmetric (about D and G#):
    the wrong direction fits all but the ends, slid by a few keys, so its ends fall where
    no seams are, or seams run on beyond them."""
    for fit in fits:
        if fit.why != WEAK_FLIPPED or fit.matched < MIN_BLACK_STRONG:
            continue
        if fit.seams >= SEALED_SEAMS or (full is not None and fit.matched >= full.matched and fit.seams >= full.seams + 2):
            return replace(fit, full=True, why="")
    return None


def _fit_direction(turned: np.ndarray, blobs: Blobs, row: np.ndarray, gray: np.ndarray, to_frame: np.ndarray,
                   angle: float, row_fit: RowFit, key_length: float, normal: np.ndarray) -> KeyboardFit | None:
    """The homography from one match of the row's blobs to the black keys, refined by
    matching again through it (it models perspective exactly; the tolerance of 0.35
    white keys takes lens bow), then the checks."""
    white_px = row_fit.scale * key_length  # a white key's width in pixels, about
    keys, members = row_fit.keys, row_fit.blobs
    front_down = _front_is_down(turned, blobs, row, normal, keys, members, white_px)
    backs, fronts = _blob_ends(blobs, row, front_down)
    centres = (backs + fronts) / 2
    for _ in range(3):
        homography, _ = _key_homography(_black_centres()[keys], backs[members], fronts[members], white_px)
        if homography is None:
            return None
        keys, members = _match_through(homography, centres)
    if len(keys) < 4:
        return None
    homography, residual = _key_homography(_black_centres()[keys], backs[members], fronts[members], white_px)
    if homography is None:
        return None
    extra = len(row) - len(members)
    return _checked_fit(gray, to_frame @ homography, set(keys.tolist()), extra, residual, len(row), angle)


def _key_homography(model: np.ndarray, backs: np.ndarray, fronts: np.ndarray, white_px: float):
    """Keyboard (key position, depth in black-key lengths) to image: RANSAC, then least
    squares on its inliers (RANSAC's pick rests on 4 points); and the inliers' mean
    reprojection error in white keys."""
    keyboard_points = np.concatenate([np.column_stack([model, np.zeros(len(model))]),
                                      np.column_stack([model, np.ones(len(model))])])
    image_points = np.concatenate([backs, fronts])
    if len(keyboard_points) < 8:
        return None, None
    homography, inliers = cv2.findHomography(keyboard_points, image_points, cv2.RANSAC,
                                             ransacReprojThreshold=max(1.5, 0.35 * white_px))
    if homography is None:
        return None, None
    used = inliers.ravel().astype(bool)
    if used.sum() >= 8:
        homography = cv2.findHomography(keyboard_points[used], image_points[used], 0)[0]
    residual = float(np.abs(_to_image(homography, keyboard_points[used]) - image_points[used]).mean()) / white_px
    return homography, residual


def _match_through(homography: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each black key's nearest blob (by its centre) within 0.35 white keys, in keyboard
    coordinates: (key indices, blob indices)."""
    try:
        position = _to_image(np.linalg.inv(homography), centres)
    except np.linalg.LinAlgError:
        return np.zeros(0, int), np.zeros(0, int)
    model = _black_centres()
    nearest = np.abs(position[:, 0, None] - model[None, :]).argmin(axis=1)
    error = np.abs(position[:, 0] - model[nearest])
    ok = (error < 0.35) & (np.abs(position[:, 1] - 0.5) < 0.5)
    members = np.flatnonzero(_closest_per_key(nearest, error, ok))
    return nearest[members], members


def _checked_fit(gray: np.ndarray, homography: np.ndarray, matched_keys: set[int], extra: int, residual: float,
                 n_seen: int, angle: float) -> KeyboardFit | None:
    """The quad, and whether it is a full 88-key keyboard in view (else why not)."""
    size = (gray.shape[1], gray.shape[0])
    matched = len(matched_keys)
    front = _front_edge(gray, homography)
    quad = _to_image(homography, [[0, 0], [N_WHITE, 0], [N_WHITE, front], [0, front]])
    orientation = _orientation(quad[1] - quad[0], quad[3] - quad[0])
    clipped = _clipped(homography, front, size)
    in_frame = _black_in_frame(homography, size)
    visible = max(1, int(in_frame.sum()))
    score = min(1.0, matched / visible) * max(0.0, 1 - residual)
    whites = _end_whites(gray, homography)
    low_seen = len(matched_keys & set(range(END_KEYS)))
    high_seen = len(matched_keys & set(range(N_BLACK - END_KEYS, N_BLACK)))
    # An end's black keys may be under a hand, or too small to see at the far end of a
    # strong keystone, when its white keys show and either the rest is clear and a hand
    # explains them (`handy`: up to an octave or so unseen, and beyond a few keys some of
    # the end's seams between the fingers; else a row of fewer keys, a 61 before a light
    # wall, with the 88 slid over it) or the white keys' seams stop exactly at the end
    # (all 3 just inside, none beyond).
    end_seams = _end_seams(gray, homography)
    sealed = [inside == 3 and beyond == 0 for inside, beyond in end_seams]
    hidden = _hidden_from_ends(matched_keys, in_frame)
    strong = matched >= MIN_BLACK_STRONG
    handy = [strong and n <= MAX_HIDDEN_END and (n <= MAX_HIDDEN_BARE or inside > 0)
             for n, (inside, _) in zip(hidden, end_seams)]
    low_end = low_seen >= 2 or (whites[0] is True and (handy[0] or sealed[0]))
    high_end = high_seen >= 2 or (whites[1] is True and (handy[1] or sealed[1]))
    why = ""
    if matched < MIN_BLACK_MATCHED or matched < MIN_MATCHED_SHARE * visible:
        why = f"{matched} of {visible} visible black keys matched"
    elif extra > max(3, 0.3 * matched):
        why = f"{extra} key-like blobs that an 88-key keyboard does not explain"
    elif any(beyond == 2 for _, beyond in end_seams):
        why = "the white keys' seams run on beyond an end (more keys in the row than 88: a slid fit, an open piano's hammers)"
    elif not (low_end and high_end):
        why = "an end's black keys not seen (a keyboard of fewer keys, or the model slid an octave)"
    elif max(clipped) > CLIP_MAX_WHITE:
        why = f"{max(clipped):.1f} white keys of an end outside the frame"
    elif sum(clipped) > CLIP_MAX_BOTH:
        why = f"{clipped[0]:.1f} + {clipped[1]:.1f} white keys of the two ends outside the frame"
    elif False in whites:
        why = "no white keys at an end (fewer than 88 keys?)"
    elif orientation == "flipped" and (not strong or min(low_seen, high_seen) < 2):
        # the far side and mirrored at once: rare, and the answer of a key-like row (an open
        # upright's hammers) read from the wrong side, so it needs the strongest evidence;
        # every other check passed (`_confirmed_flip` may still take it)
        why = WEAK_FLIPPED
    if why and matched < MIN_BLACK_PARTIAL:  # a row of text or stripes, not a keyboard
        return None
    seams = sum(inside - 2 * beyond for inside, beyond in end_seams)
    return KeyboardFit(quad=quad, score=score, matched=matched, orientation=orientation, clipped=clipped,
                       full=not why, keys_seen=int(round(n_seen * 88 / 36)), why=why, angle=angle, seams=seams)


# --- per video --------------------------------------------------------------------------
def sample_frames(path: str | Path, n: int = 24) -> tuple[list[np.ndarray], tuple[int, int]]:
    """`n` frames spread evenly over the video, and the frame size. Each comes from a seek
    to its slot's centre: the first frame decoded at or after the slot's start is taken,
    so a long video with keyframes every few seconds costs one decode per sample and a
    short one with few keyframes still gets `n` distinct frames."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise KeyboardNotFound("no_keyboard", f"{path}: no video stream")
        stream = container.streams.video[0]
        thread_decoder(stream)
        base = float(stream.time_base)
        start = float(stream.start_time or 0) * base
        duration = float(stream.duration) * base if stream.duration else \
            (float(container.duration) / av.time_base if container.duration else 0.0)
        frames: list[np.ndarray] = []
        if duration > 0:
            slot = duration / n
            for j in range(n):
                target = start + (j + 0.5) * slot
                container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.pts * base >= target - slot / 2:
                        frames.append(frame.to_ndarray(format="bgr24"))
                        break
        if not frames:  # no duration known: evenly spaced frames of a full decode
            container.seek(0)
            frames = _evenly_spaced(container.decode(stream), n)
    if not frames:
        raise KeyboardNotFound("no_keyboard", f"{path}: no decodable frames")
    return frames, (frames[0].shape[1], frames[0].shape[0])


def _evenly_spaced(decoded, n: int) -> list[np.ndarray]:
    """About `n` to 2n frames spread over a stream of unknown length, holding no more than
    2n at a time: every step-th frame is kept, and when 2n are held, every other one is
    dropped and the step doubles (memory stays flat however long the video)."""
    kept, step = [], 1
    for i, frame in enumerate(decoded):
        if i % step == 0:
            kept.append(frame.to_ndarray(format="bgr24"))
            if len(kept) >= 2 * n:
                kept, step = kept[::2], step * 2
    return kept


def _work_scale(frame: np.ndarray, width: int = WORK_WIDTH) -> float:
    return width / frame.shape[1] if frame.shape[1] > width else 1.0


def _consistent(fits: list[KeyboardFit], width: float) -> list[int]:
    """Indices of the largest group of fits whose corners agree (within 2 % of the width)."""
    quads = np.stack([f.quad for f in fits])
    distance = np.abs(quads[:, None] - quads[None]).max(axis=(2, 3))
    agree = distance < 0.02 * width
    best = int(agree.sum(axis=1).argmax())
    return [int(i) for i in np.flatnonzero(agree[best])]


def locate_in_frames(frames: list[np.ndarray], label: str = "video") -> KeyboardLocation:
    """Median quad over the largest group of frames where the same full keyboard was fitted.
    A keyboard seen only in part at the working width is searched again finer: the far end
    of a strong keystone, or keys leaning towards a camera looking along the keyboard, can
    merge or vanish at 960 pixels and show at the source's width (up to FINE_WIDTH)."""
    height, width = frames[0].shape[:2]
    if height > width:
        raise KeyboardNotFound("no_keyboard", f"{label}: portrait frame {width}x{height}: no top-view keyboard")
    seen: list[np.ndarray] = []
    try:
        return _locate_at(frames, label, WORK_WIDTH, seen)
    except KeyboardNotFound as coarse:
        if coarse.reason != "partial_keyboard" or width <= WORK_WIDTH:
            raise
        try:
            location = _locate_at(frames, label, FINE_WIDTH)
        except KeyboardNotFound:
            raise coarse from None
        if not _where_seen(location.quad, seen, (height, width)):
            raise coarse from None  # another row than the keys seen (an open upright's hammers)
        return location


def _where_seen(quad, partial_quads: list[np.ndarray], shape: tuple[int, int]) -> bool:
    """Whether the finer search found its keyboard where the coarse one saw keys in part."""
    return any(quad_iou(quad, other, shape) >= 0.5 for other in partial_quads)


def _locate_at(frames: list[np.ndarray], label: str, work_width: int,
               seen: list[np.ndarray] | None = None) -> KeyboardLocation:
    """`locate_in_frames` with the frames searched at `work_width` (or their own, if
    smaller); the quads of partial fits (source pixels) are added to `seen`."""
    height, width = frames[0].shape[:2]
    scale = _work_scale(frames[0], work_width)
    small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else f
             for f in frames]
    fits, fitted, partial = [], [], []
    angles = ANGLES
    for index, frame in enumerate(small):
        fit = fit_keyboard(frame, angles)
        if fit is not None and fit.full:
            angles = (fit.angle,) + tuple(a for a in ANGLES if a != fit.angle)  # the camera stays put
            fits.append(fit)
            fitted.append(index)
        elif fit is not None:
            partial.append(fit)
    if seen is not None:
        seen.extend(p.quad / scale for p in partial)
    group = _consistent(fits, small[0].shape[1]) if fits else []
    weak = bool(group) and max(fits[i].matched for i in group) < MIN_BLACK_STRONG
    sealed = bool(group) and np.median([fits[i].seams for i in group]) >= SEALED_SEAMS
    if len(frames) >= MIN_FRAMES_TO_CONFIRM and weak and (len(group) == 1 or (
            not sealed and len(group) < FEW_FRAMES * len(frames))):
        # one weak fit that no other frame confirms, or a few with no white keys' seams at
        # their ends: a title's letters (shown in a few frames alike), a pattern
        fits, fitted, group = [], [], []
    # A crop shows in most frames, noise does not; a full fit in a few frames of many
    # partial ones is a fluke (a hand or the light making a 76-key keyboard look whole),
    # unless the white keys' seams stop at both their ends and 3 or more agree, or 2 that
    # each match most black keys (a lid's shadow or four hands spoil the other frames).
    confirmed = sealed and (len(group) >= 3 or (len(group) == 2 and
                                                 min(fits[i].matched for i in group) >= MIN_BLACK_STRONG))
    if (not fits and len(partial) >= max(1, 0.2 * len(frames))) or (len(partial) >= 4 * max(1, len(fits))
                                                                     and not confirmed):
        keys_seen = int(np.median([p.keys_seen for p in partial]))
        raise KeyboardNotFound("partial_keyboard", f"{label}: a keyboard of about {keys_seen} keys seen in {len(partial)} of "
                                                   f"{len(frames)} sampled frames, but never a full 88-key keyboard "
                                                   f"({partial[0].why})")
    if not fits:
        raise KeyboardNotFound("no_keyboard", f"{label}: no keyboard in {len(frames)} sampled frames")
    fits = [fits[i] for i in group]
    fitted = [fitted[i] for i in group]
    refit = _refit_on_median([small[i] for i in fitted], angles) if len(fitted) >= 3 else None
    quad = np.median(np.stack([f.quad for f in fits]), axis=0)
    if refit is not None and _agreeing(refit.quad, fits, 0.01 * small[0].shape[1]) >= len(fits) / 2:
        quad = refit.quad
    quad = quad / scale
    # Full confidence needs agreement of at least 3 frames.
    score = float(np.median([f.score for f in fits])) * min(1.0, len(fits) / 3)
    location = location_from_quad(quad, score, len(fits), len(frames))
    location.fitted = fitted
    location.orientation = _orientation(quad[1] - quad[0], quad[3] - quad[0])  # the group's fits share it
    location.clipped_left, location.clipped_right = _clipped_quad(quad, (width, height))
    return location


def _agreeing(quad: np.ndarray, fits: list[KeyboardFit], tolerance: float) -> int:
    """How many of the frames' fits have every corner within `tolerance` of `quad`. The
    refit on the median frame is taken only where most frames agree with it: hands that
    stay over the keys' fronts survive the median, and a light body's lower edge below
    them can then be read as the keys' front (a digital piano's white key slip)."""
    return int(sum(np.abs(f.quad - quad).max() < tolerance for f in fits))


def _refit_on_median(frames: list[np.ndarray], angles: tuple[float, ...]) -> KeyboardFit | None:
    """The keyboard fitted on the per-pixel median of the frames: the hands mostly gone."""
    fit = fit_keyboard(np.median(np.stack(frames), axis=0).astype(np.uint8), angles[:1])
    return fit if fit is not None and fit.full else None


def _clipped_quad(quad: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """White keys of the A0 and C8 ends outside the frame, for a quad in source pixels."""
    homography = cv2.getPerspectiveTransform(
        np.array([[0, 0], [N_WHITE, 0], [N_WHITE, 1], [0, 1]], np.float32), np.asarray(quad, np.float32))
    left, right = _clipped(homography, 1.0, size)
    return round(left, 2), round(right, 2)


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
