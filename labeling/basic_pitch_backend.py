"""basic-pitch through its bundled ONNX model, windows of many files in one session run.

Differences from basic-pitch's own `predict()` (0.4.0), each on purpose:
- windows of all files in a batch go through onnxruntime together (`batch_windows`),
  with the CUDA provider when onnxruntime has one;
- the stitched output is kept up to the audio's real end: 0.4.0 trims it at 86 frames/s
  while it runs at ~86.58, losing ~4 s per 10 minutes (../shared/FACTS.md);
- times come from basic-pitch's `model_frames_to_time`, never i/86;
- notes are restricted to A0..C8 and carry no pitch bends;
- thresholds tuned for piano on synthetic piano audio, and 2nd/3rd harmonics dropped.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from contract.extras import MissingExtra
from contract.threads import thread_budget
from labeling.events import NoteEvent, Transcription, check_audio, keep_piano_range, resample

RATE = 22050
FFT_HOP = 256
WINDOW = RATE * 2 - FFT_HOP  # 43844 samples
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP
HOP = WINDOW - OVERLAP

# Tuned for piano (see benchmarks/label_quality.py); basic-pitch's own defaults are
# onset 0.5, frame 0.3, minimum note 127.7 ms, melodia trick on.
# Why these: on piano, basic-pitch misses soft treble notes mostly because their note
# posterior stays below 0.3 even when the onset posterior peaks (a note must last
# `min_note_ms` above `frame_threshold`), so the frame threshold is low (0.2) and the onset
# threshold a little higher (0.55). Its false positives are chiefly harmonics of a louder
# note struck at the same moment: `harmonic_ratio` (ours) drops a note whose amplitude is
# below that fraction of a note an octave (2nd harmonic) or an octave and a fifth (3rd
# harmonic) lower, starting within 3 frames. Grid-searched on seeds 100-107 (8 x 30 s,
# FluidSynth piano) for onset F1, frame F1 as the tie-break (the frame rolls are what
# Video2Roll trains on): onset 0.862 / frame 0.771 vs 0.787 / 0.778 with basic-pitch's
# defaults (the previous settings, octave-only rule at 0.8, onset 0.5 / frame 0.35:
# 0.819 / 0.765). Held-out figures come from benchmarks/label_quality.py.
PIANO_PARAMS = {"onset_threshold": 0.55, "frame_threshold": 0.2, "min_note_ms": 40.0, "melodia_trick": False,
                "infer_onsets": False, "energy_tolerance": 11, "harmonic_ratio": 0.6}
HARMONIC_INTERVALS = (12, 19)
# The version of our post-processing above (stitching to the audio's end, the piano range,
# harmonic suppression): part of the label version; bump it when it changes the notes.
LOGIC = "basic-pitch-post/1"  # semitones above the fundamental of the 2nd and 3rd harmonics


def _import_basic_pitch():
    """basic-pitch logs a warning for each missing optional runtime (TF, CoreML, TFLite)."""
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # resampy's pkg_resources notice
            import basic_pitch
            from basic_pitch import note_creation
    finally:
        root.setLevel(level)
    return basic_pitch, note_creation


def onnx_model_path() -> Path:
    """The bundled model, found without importing basic-pitch: the driver hashes it for the
    label version, and the import (librosa, scikit-learn, ...) took 1.8 s of every build."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or spec.origin is None:
        raise MissingExtra("basic_pitch", "labeler basic-pitch")
    return Path(spec.origin).parent / "saved_models" / "icassp_2022" / "nmp.onnx"


def _drop_harmonics(events: list, ratio: float, within_frames: int = 3) -> list:
    """Drop (start, end, pitch, amp) events that look like the 2nd or 3rd harmonic of a louder note."""
    if ratio <= 0:
        return list(events)
    by_pitch: dict[int, list] = {}
    for event in events:
        by_pitch.setdefault(int(event[2]), []).append(event)
    return [e for e in events
            if not any(abs(e[0] - low[0]) <= within_frames and e[3] < ratio * low[3]
                       for interval in HARMONIC_INTERVALS for low in by_pitch.get(int(e[2]) - interval, ()))]


class BasicPitchTranscriber:
    name = "basic-pitch"

    def __init__(self, batch_windows: int = 32, **params):
        import onnxruntime as ort

        unknown = set(params) - set(PIANO_PARAMS)
        if unknown:
            raise ValueError(f"unknown basic-pitch parameter(s) {sorted(unknown)}; known: {sorted(PIANO_PARAMS)}")
        self.params = {**PIANO_PARAMS, **params}
        self.batch_windows = batch_windows
        self.weights = onnx_model_path()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        options = ort.SessionOptions()
        options.intra_op_num_threads = thread_budget()  # 0: one per core
        self.session = ort.InferenceSession(str(self.weights), options, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        _, self._notes = _import_basic_pitch()

    # --- posteriors ----------------------------------------------------------------------
    def _windows(self, audio: np.ndarray) -> np.ndarray:
        padded = np.concatenate([np.zeros(OVERLAP // 2, np.float32), audio])
        starts = range(0, len(padded), HOP)
        out = np.zeros((len(starts), WINDOW), np.float32)
        for i, s in enumerate(starts):
            chunk = padded[s:s + WINDOW]
            out[i, :len(chunk)] = chunk
        return out

    def network(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """The ONNX model over (N, WINDOW, 1) windows, `batch_windows` at a time: note and
        onset posteriors (N, 172, 88) each (the contour output is not fetched: unused)."""
        outputs = {"note": [], "onset": []}
        for s in range(0, len(windows), self.batch_windows):
            note, onset = self.session.run(["StatefulPartitionedCall:1", "StatefulPartitionedCall:2"],
                                           {"serving_default_input_2:0": windows[s:s + self.batch_windows]})
            outputs["note"].append(note)
            outputs["onset"].append(onset)
        return {k: np.concatenate(v) for k, v in outputs.items()}

    def posteriors(self, audios: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Note/onset posteriors (T, 88) per 22.05 kHz audio, all windows batched together."""
        windows = [self._windows(a) for a in audios]
        merged = self.network(np.concatenate(windows)[..., None])
        results, first = [], 0
        half = OVERLAP_FRAMES // 2
        for audio, w in zip(audios, windows):
            per_file = {}
            for k, v in merged.items():
                frames = v[first:first + len(w), half:-half].reshape(-1, v.shape[-1])
                times = self._notes.model_frames_to_time(len(frames))
                per_file[k] = frames[times < len(audio) / RATE]
            results.append(per_file)
            first += len(w)
        return results

    # --- notes -----------------------------------------------------------------------------
    def _decode(self, post: dict[str, np.ndarray]) -> list[NoteEvent]:
        p = self.params
        min_frames = int(np.round(p["min_note_ms"] / 1000 * (RATE / FFT_HOP)))
        events = self._notes.output_to_notes_polyphonic(
            post["note"], post["onset"], onset_thresh=p["onset_threshold"], frame_thresh=p["frame_threshold"],
            min_note_len=min_frames, infer_onsets=p["infer_onsets"], max_freq=None, min_freq=None,
            melodia_trick=p["melodia_trick"], energy_tol=p["energy_tolerance"])
        times = self._notes.model_frames_to_time(len(post["note"]) + 1)
        events = _drop_harmonics(events, p["harmonic_ratio"])
        notes = [NoteEvent(float(times[s]), float(times[min(e, len(times) - 1)]), int(pitch),
                           int(np.clip(round(127 * amp), 1, 127))) for s, e, pitch, amp in events]
        return sorted(keep_piano_range(notes), key=lambda n: (n.onset, n.pitch))

    def transcribe_batch(self, clips: list[tuple[np.ndarray, int]]) -> list[Transcription]:
        audios = [resample(check_audio(a, sr), int(sr), RATE) for a, sr in clips]
        results = []
        for post in self.posteriors(audios):
            times = self._notes.model_frames_to_time(len(post["note"]))
            results.append(Transcription(notes=self._decode(post), onset_posterior=post["onset"],
                                         frame_posterior=post["note"], posterior_times=times))
        return results

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> Transcription:
        return self.transcribe_batch([(audio, sample_rate)])[0]
