"""Label quality metrics: note onsets (mir_eval) and frame-level scores over rolls."""

from __future__ import annotations

import numpy as np


def _intervals_pitches(notes) -> tuple[np.ndarray, np.ndarray]:
    intervals = np.array([[n.start, n.end] for n in notes], float).reshape(-1, 2)
    hz = np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes], float)
    return intervals, hz


def onset_scores(reference, estimate, tolerance_s: float = 0.05) -> dict:
    """Note-onset precision/recall/F1 (mir_eval: onset within 50 ms, pitch within 50 cents),
    with the counts they come from, so that files can be summed (`onset_count_scores`)."""
    import mir_eval

    ref_i, ref_p = _intervals_pitches(reference)
    est_i, est_p = _intervals_pitches(estimate)
    matched = 0
    if len(ref_i) and len(est_i):
        mir_eval.transcription.validate(ref_i, ref_p, est_i, est_p)
        matched = len(mir_eval.transcription.match_notes(ref_i, ref_p, est_i, est_p, onset_tolerance=tolerance_s,
                                                         offset_ratio=None))
    return onset_count_scores(matched, len(ref_i), len(est_i))


def onset_count_scores(matched: int, reference: int, estimated: int) -> dict:
    """Precision/recall/F1 of `matched` notes among `reference` and `estimated` ones (as
    mir_eval's); where either side has no note, all three are 1.0 if both are empty, else 0.0."""
    if not reference or not estimated:
        hit = float(reference == estimated)
        precision = recall = f1 = hit
    else:
        precision, recall = matched / estimated, matched / reference
        f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "matched": int(matched), "reference": int(reference),
            "estimated": int(estimated)}


def frame_scores(reference: np.ndarray, estimate: np.ndarray) -> dict:
    """TP/FP/FN summed over all frames and keys (as mir_eval.multipitch), with F1."""
    reference, estimate = np.asarray(reference, bool), np.asarray(estimate, bool)
    tp = int((reference & estimate).sum())
    fp = int((~reference & estimate).sum())
    fn = int((reference & ~estimate).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0 if fn == 0 else 0.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "accuracy": accuracy, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def frame_scores_per_frame(reference: np.ndarray, estimate: np.ndarray) -> dict:
    """Audeo's frame metrics: precision, recall, accuracy (TP/(TP+FP+FN)) and F1 computed
    for each frame over its keys, then averaged over frames; a score whose denominator is
    zero counts 1.0 (sklearn's average='samples', zero_division=1), so a frame where both
    rolls are empty scores 1.0 on all four and the averages rise with silence."""
    reference, estimate = np.asarray(reference, bool), np.asarray(estimate, bool)
    tp = (reference & estimate).sum(axis=1)
    fp = (~reference & estimate).sum(axis=1)
    fn = (reference & ~estimate).sum(axis=1)

    def mean_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
        if len(numerator) == 0:
            return float("nan")
        safe = np.where(denominator == 0, 1, denominator)
        return float(np.where(denominator == 0, 1.0, numerator / safe).mean())

    return {"precision": mean_ratio(tp, tp + fp), "recall": mean_ratio(tp, tp + fn),
            "accuracy": mean_ratio(tp, tp + fp + fn), "f1": mean_ratio(2 * tp, 2 * tp + fp + fn),
            "frames": int(len(tp))}
