"""Audio for the synthetic videos: a real piano soundfont through FluidSynth when it is
installed (Debian: fluidsynth + fluid-soundfont-gm), pretty_midi's additive synthesizer
otherwise. The truth file records which one made the sound."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import pretty_midi

SOUNDFONT_ENV = "PIANOCORPUS_SOUNDFONT"
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
AUDIO_BACKENDS = ("auto", "fluidsynth", "pretty_midi")


def find_soundfont() -> Path | None:
    """The soundfont FluidSynth would use: $PIANOCORPUS_SOUNDFONT, else Debian's GM font."""
    candidates = [os.environ.get(SOUNDFONT_ENV, "")] + list(SOUNDFONT_CANDIDATES)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def fluidsynth_ready() -> bool:
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def synthesize(midi: pretty_midi.PrettyMIDI, duration_s: float, sample_rate: int,
               backend: str = "auto") -> tuple[np.ndarray, dict]:
    """Mono float32 audio of exactly `duration_s`, peak-normalised, and how it was made."""
    if backend not in AUDIO_BACKENDS:
        raise ValueError(f"unknown audio backend {backend!r}; choose one of {AUDIO_BACKENDS}")
    if backend == "fluidsynth" and not fluidsynth_ready():
        raise RuntimeError("audio backend 'fluidsynth' asked for, but the fluidsynth program or a "
                           f"soundfont is missing (apt-get install fluidsynth fluid-soundfont-gm, or set ${SOUNDFONT_ENV})")
    if backend == "fluidsynth" or (backend == "auto" and fluidsynth_ready()):
        soundfont = find_soundfont()
        audio = _fluidsynth(midi, soundfont, sample_rate)
        source = {"source": "fluidsynth", "soundfont": soundfont.name}
    else:
        audio = midi.synthesize(fs=sample_rate).astype(np.float32)
        source = {"source": "pretty_midi", "soundfont": None}
    n = int(round(duration_s * sample_rate))
    audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio = audio * (0.7 / peak)
    return audio.astype(np.float32), source


def _fluidsynth(midi: pretty_midi.PrettyMIDI, soundfont: Path, sample_rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="pianocorpus-fs-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.write(str(mid))
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", str(sample_rate), "-T", "wav",
               "-O", "s16", "-F", str(wav), str(soundfont), str(mid)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        with wave.open(str(wav)) as w:
            channels, rate = w.getnchannels(), w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    if rate != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz, asked for {sample_rate} Hz")
    return pcm.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768.0
