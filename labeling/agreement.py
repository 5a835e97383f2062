"""Do a video's labels (from its audio) agree with its pictures? Per video, from the
visual press evidence of its kept frames (curation/presses.py) and its label onsets:

- the sync offset: the audio-video offset (seconds, positive = the audio late) that best
  lines the onsets up with the evidence, searched over +-`SEARCH_S` in `STEP_S` steps
  with the labels' own frame rule; each onset's frame changes at its own phase, so the
  score is a sum of one-frame boxes whose peak is the offset, read to a fraction of a
  frame as the centroid of the peak's top half. Each cell of evidence counts at most as
  a visible press (below): a few cells far above any press make no peak. The offset's
  confidence is the peak's height above what audio unrelated to the pictures would score
  (the mean of the kept frames' cells), in standard errors of a mean over that many onsets;
- agreement, after alignment: the share of onsets with evidence at their key within one
  frame (precision), the share of visible presses (evidence peaks above a threshold set
  from the video's own noise) with an onset there (recall), and their F1;
- flags: `av_mirrored` when the crop read mirrored lines up confidently and far better (a
  mirrored video under a crop in the wrong order), `av_key_shift` (+-12) when the keys
  read an octave off do (the pictured key = the label's + shift), `av_mismatch` when no
  reading lines the audio up with the pictures at any offset (another performance, a dub).
Fewer than MIN_ONSETS onsets on kept frames decide nothing: the figures are None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from curation.presses import press_evidence
from labeling.rolls import onset_frames

AV_LOGIC = "av/5"  # bump when anything below changes what is measured or shifted
SEARCH_S = 1.0
STEP_S = 0.002
MIN_ONSETS = 20
# The confidence (see `_confidence`) from which an offset (or another reading) is believed: on
# the tuning videos (seeds 9950-9969 and 12000-12023 matched, 12500-12519 mirrored) matched
# audio scored at least 26.4, swapped audio at most 12.6 (any reading), mirrored videos'
# mirrored reading at least 17.4.
CONFIDENT_Z = 15.0
# A mirrored or octave-shifted reading must be this many times as confident (and confident):
# on the same tuning videos the wrong reading of matched ones reached 0.53 of the right
# one's, the right (mirrored) reading of mirrored ones at least 1.45 times the wrong.
BETTER = 1.25
NOISE_Z = 6.0  # a visible press: evidence this many robust standard deviations above the noise,
MIN_PRESS = 16.0  # and at least this many gray levels
CURVE_STEP_S = 0.01  # the stored score curve (for the audit's plot)


@dataclass(frozen=True)
class Agreement:
    offset_s: float | None
    confidence: float | None
    applied_s: float  # the shift applied to the labels (0 unless confident and asked)
    precision: float | None
    recall: float | None
    score: float | None
    mismatch: bool | None
    mirrored: bool | None
    key_shift: int | None
    n_onsets: int
    curve: list[float] | None  # the score over offsets -SEARCH_S..+SEARCH_S in CURVE_STEP_S, peak 1

    @classmethod
    def unmeasured(cls, n_onsets: int) -> Agreement:
        return cls(None, None, 0.0, None, None, None, None, None, None, n_onsets, None)

    def record(self) -> dict:
        """The av_* fields of a label record and of videos.parquet."""
        return {f"av_{k}": v for k, v in asdict(self).items()}


def _offsets() -> np.ndarray:
    return np.round(np.arange(-SEARCH_S, SEARCH_S + STEP_S / 2, STEP_S), 6)


def offset_scores(evidence: np.ndarray, kept: np.ndarray, onsets: np.ndarray, keys: np.ndarray, fps: float,
                  offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate offset, the mean evidence at the onsets' keys in the frames the onsets
    fall in once the audio is moved back by that offset, over the onsets that fall on kept
    frames (a dropped frame shows no keys: it is no evidence either way), and how many do."""
    n = len(evidence)
    frames = onset_frames(onsets[None, :] - offsets[:, None], fps)
    seen = (frames >= 0) & (frames < n)
    seen[seen] = kept[frames[seen]]
    values = np.where(seen, evidence[np.clip(frames, 0, n - 1), keys[None, :]], 0.0)
    counts = seen.sum(axis=1)
    return values.sum(axis=1) / np.maximum(counts, 1), counts


def _peak(offsets: np.ndarray, scores: np.ndarray) -> float:
    """The offset of the highest peak: the centroid of its top half (above half way from
    the median to the peak)."""
    best = int(scores.argmax())
    half = float(np.median(scores)) + 0.5 * (scores[best] - float(np.median(scores)))
    lo = best
    while lo > 0 and scores[lo - 1] >= half:
        lo -= 1
    hi = best
    while hi < len(scores) - 1 and scores[hi + 1] >= half:
        hi += 1
    weights = scores[lo:hi + 1] - half
    return float((offsets[lo:hi + 1] * weights).sum() / weights.sum()) if weights.sum() > 0 else float(offsets[best])


def _confidence(scores: np.ndarray, counts: np.ndarray, evidence: np.ndarray, kept: np.ndarray) -> float:
    """The best offset's score above what audio unrelated to the pictures would score (the
    mean evidence of the kept frames), in standard errors of a mean over as many onsets as
    it was taken over; offsets that leave fewer than MIN_ONSETS onsets on kept frames are
    not candidates."""
    usable = counts >= MIN_ONSETS
    if not usable.any():
        return 0.0
    best = int(np.flatnonzero(usable)[scores[usable].argmax()])
    cells = evidence[kept]
    spread = float(cells.std()) / np.sqrt(counts[best]) + 1e-9
    return (float(scores[best]) - float(cells.mean())) / spread


def _reading_confidence(evidence: np.ndarray, kept: np.ndarray, onsets: np.ndarray, keys: np.ndarray,
                        fps: float) -> float:
    """The confidence of the best offset of one reading of the keys (coarse steps: a comparison)."""
    coarse = np.round(np.arange(-SEARCH_S, SEARCH_S + 1e-9, 0.02), 6)
    return _confidence(*offset_scores(evidence, kept, onsets, keys, fps, coarse), evidence, kept)


def _press_threshold(evidence: np.ndarray) -> float:
    """The evidence of a visible press: NOISE_Z robust standard deviations above the
    video's own noise (the nonzero evidence), and at least MIN_PRESS; inf with no evidence."""
    valid = evidence[evidence > 0]
    if not valid.size:
        return float("inf")
    median = float(np.median(valid))
    return max(MIN_PRESS, median + NOISE_Z * 1.4826 * float(np.median(np.abs(valid - median))))


def _capped(evidence: np.ndarray) -> np.ndarray:
    """The evidence with each cell counted at most as a visible press: a few cells of a
    hand's shadow or a light change far above any press would otherwise lift the mean of
    whichever offset lands onsets on them (audio of another performance rose to a
    confident peak on three or four such cells; a matched video's peak moved 0.64 s)."""
    return np.minimum(evidence, _press_threshold(evidence))


def _agreement(evidence: np.ndarray, frames: np.ndarray, keys: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the onsets (at `frames`) against the visible presses."""
    n = len(evidence)
    threshold = _press_threshold(evidence)
    if not np.isfinite(threshold):
        return 0.0, 0.0, 0.0
    near = evidence.copy()  # the most evidence within one frame
    near[1:] = np.maximum(near[1:], evidence[:-1])
    near[:-1] = np.maximum(near[:-1], evidence[1:])
    inside = (frames >= 0) & (frames < n)
    seen = near[frames[inside], keys[inside]] >= threshold
    precision = float(seen.mean()) if seen.size else 0.0
    peaks = (evidence >= threshold) & (evidence >= np.roll(evidence, 1, 0)) & (evidence >= np.roll(evidence, -1, 0))
    labelled = np.zeros(evidence.shape, bool)
    for d in (-1, 0, 1):
        k = frames[inside] + d
        ok = (k >= 0) & (k < n)
        labelled[k[ok], keys[inside][ok]] = True
    recall = float(labelled[peaks].mean()) if peaks.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def check(levels: np.ndarray, onsets: np.ndarray, keys: np.ndarray, fps: float, align: bool) -> Agreement:
    """The offset, agreement and flags of one video (see the module docstring). `levels`:
    (n_frames, 2, 88), the key levels of each frame's crop as rectified and mirrored (NaN
    for dropped frames); `align`: whether a confident offset is to be applied to the labels."""
    onsets, keys = np.asarray(onsets, np.float64), np.asarray(keys, np.int64)
    kept = np.isfinite(levels[:, 0]).any(axis=1)
    frames = onset_frames(onsets, fps)
    inside = (frames >= 0) & (frames < len(levels))
    n_onsets = int(kept[frames[inside]].sum())
    if n_onsets < MIN_ONSETS:
        return Agreement.unmeasured(n_onsets)
    evidence = press_evidence(levels[:, 0])
    capped, mirrored_capped = _capped(evidence), _capped(press_evidence(levels[:, 1]))
    offsets = _offsets()
    scores, counts = offset_scores(capped, kept, onsets, keys, fps, offsets)
    scores = np.where(counts >= MIN_ONSETS, scores, 0.0)
    offset = _peak(offsets, scores)
    z = _confidence(scores, counts, capped, kept)
    confident = z >= CONFIDENT_Z
    # Other readings of the keys: the crop mirrored, the keys an octave off. The one that
    # lines up best is the crop's fault when it is confident and far better than the crop's
    # own reading of the same onsets on the same grid (a finer grid's maximum is higher by
    # chance alone).
    readings = [(True, 0, mirrored_capped, np.ones(len(keys), bool))]
    readings += [(False, shift, capped, (keys + shift >= 0) & (keys + shift < 88)) for shift in (-12, 12)]
    readings = [r for r in readings if r[3].sum() >= MIN_ONSETS]
    scores_of = [_reading_confidence(ev, kept, onsets[ok], keys[ok] + shift, fps) for _, shift, ev, ok in readings]
    best = int(np.argmax(scores_of))
    flip, shift, _, ok = readings[best]
    fault = scores_of[best] >= max(CONFIDENT_Z, BETTER * _reading_confidence(capped, kept, onsets[ok], keys[ok], fps))
    mirrored, key_shift = fault and flip, shift if fault else 0
    mismatch = not (confident or mirrored or key_shift)  # no reading lines the audio up with the pictures
    # A peak of a wrong reading (mirrored, an octave off) is no offset to shift by.
    applied = round(offset, 4) if align and confident and not mirrored and not key_shift else 0.0
    precision, recall, f1 = _agreement(evidence, onset_frames(onsets - applied, fps), keys)
    step = int(round(CURVE_STEP_S / STEP_S))
    peak = float(scores.max())
    curve = scores[::step] / peak if peak > 0 else scores[::step]
    return Agreement(round(offset, 4), round(z, 2), applied, round(precision, 4), round(recall, 4), round(f1, 4),
                     mismatch, bool(mirrored), key_shift, n_onsets, [round(float(v), 4) for v in curve])
