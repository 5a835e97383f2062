"""Decode a media file's audio track (PyAV) to mono float32 at a chosen rate."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from contract.atomic import atomic_path


class NoAudioError(ValueError):
    """The file has no audio stream (or it cannot be decoded); the message names the file."""


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono samples, rate): the file's own rate unless `sample_rate` is given."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = int(sample_rate or stream.codec_context.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as error:
        raise NoAudioError(f"{path}: audio cannot be decoded ({error})") from None
    if not chunks:
        raise NoAudioError(f"{path}: the audio stream is empty")
    return np.concatenate(chunks).astype(np.float32), rate


def write_flac(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Mono 16-bit FLAC, written to a temporary name and renamed (never half-written)."""
    with atomic_path(Path(path)) as part, av.open(str(part), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for start in range(0, len(pcm), 1 << 16):
            frame = av.AudioFrame.from_ndarray(pcm[None, start:start + (1 << 16)], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
