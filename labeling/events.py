"""What every transcriber returns, and the checks every input audio passes first."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contract.piano import HIGHEST_MIDI, LOWEST_MIDI


@dataclass(frozen=True)
class NoteEvent:
    onset: float  # seconds
    offset: float  # seconds, > onset
    pitch: int  # MIDI 21..108
    velocity: int  # 1..127

    # pretty_midi-style names, so rolls and metrics take either kind of note
    @property
    def start(self) -> float:
        return self.onset

    @property
    def end(self) -> float:
        return self.offset


@dataclass
class Transcription:
    """Note events, and the raw posteriors where the backend has them."""

    notes: list[NoteEvent]
    pedal: list[tuple[float, float]] = field(default_factory=list)  # sustain (CC64) down intervals, if known
    onset_posterior: np.ndarray | None = None  # (T, 88)
    frame_posterior: np.ndarray | None = None  # (T, 88)
    posterior_times: np.ndarray | None = None  # (T,) seconds


class AudioInputError(ValueError):
    """The audio cannot be transcribed; the message says why."""


MIN_RATE, MAX_RATE = 4000, 384000


def check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 in [-1, 1] (clipped), or AudioInputError naming the problem."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioInputError(f"expected mono audio (1-D array), got shape {audio.shape}")
    if audio.size == 0:
        raise AudioInputError("audio is empty")
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioInputError(f"sample rate {sample_rate!r} is not an integer in {MIN_RATE}..{MAX_RATE} Hz")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioInputError(f"expected float samples, got {audio.dtype}")
    if not np.isfinite(audio).all():
        raise AudioInputError(f"audio contains {int((~np.isfinite(audio)).sum())} NaN or infinite samples")
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality resampling (soxr), a no-op at the same rate."""
    if rate == target:
        return audio
    import soxr

    return soxr.resample(audio, rate, target, quality="HQ").astype(np.float32)


def keep_piano_range(notes: list[NoteEvent]) -> list[NoteEvent]:
    return [n for n in notes if LOWEST_MIDI <= n.pitch <= HIGHEST_MIDI and n.offset > n.onset]
