"""Decode a media file's audio track (PyAV) to mono float32 at a chosen rate: whole
(`load_audio`, for the transcribers), or streamed into a FLAC file with each video
frame's RMS (`audio_to_flac`, for the video stage: flat memory whatever the length)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from contract.atomic import atomic_path


class NoAudioError(ValueError):
    """The file has no audio stream (or it cannot be decoded); the message names the file."""


def _chunks(path: str | Path, sample_rate: int | None) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 chunk, rate) as the track decodes; NoAudioError naming the file."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = int(sample_rate or stream.codec_context.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in itertools.chain(container.decode(stream), [None]):  # None: flush
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False), rate
    except av.error.FFmpegError as error:
        raise NoAudioError(f"{path}: audio cannot be decoded ({error})") from None


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono samples, rate): the file's own rate unless `sample_rate` is given."""
    chunks, rate = [], sample_rate
    for chunk, rate in _chunks(path, sample_rate):
        chunks.append(chunk)
    if not chunks:
        raise NoAudioError(f"{path}: the audio stream is empty")
    return np.concatenate(chunks), rate


def audio_to_flac(media: str | Path, flac: Path, rate: int, n_frames: int, fps: float) -> np.ndarray:
    """The media's audio, resampled to mono `rate`, streamed into `flac`; returns the RMS
    over each frame's interval [k/fps, (k+1)/fps) (as `curation.frames.frame_rms`), the
    audio never held whole."""
    bounds = (np.arange(n_frames + 1) / fps * rate).astype(np.int64)
    squares, counts, position = np.zeros(n_frames), np.zeros(n_frames), 0
    with _flac_writer(flac, rate) as write:
        for chunk, _ in _chunks(media, rate):
            frame_of = np.searchsorted(bounds, np.arange(position, position + len(chunk)), side="right") - 1
            inside = (frame_of >= 0) & (frame_of < n_frames)
            squares += np.bincount(frame_of[inside], chunk[inside].astype(np.float64) ** 2, minlength=n_frames)
            counts += np.bincount(frame_of[inside], minlength=n_frames)
            write(chunk)
            position += len(chunk)
        if not position:
            raise NoAudioError(f"{media}: the audio stream is empty")
    return np.sqrt(np.divide(squares, counts, out=np.zeros(n_frames), where=counts > 0))


@contextmanager
def _flac_writer(path: Path, rate: int):
    """A function that appends float samples to a mono 16-bit FLAC, which appears under
    its name when the block ends (removed if it raises)."""
    with atomic_path(Path(path)) as part, av.open(str(part), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        written = [0]

        def write(audio: np.ndarray) -> None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for start in range(0, len(pcm), 1 << 16):
                frame = av.AudioFrame.from_ndarray(pcm[None, start:start + (1 << 16)], format="s16", layout="mono")
                frame.sample_rate, frame.pts = rate, written[0]
                written[0] += frame.samples
                container.mux(stream.encode(frame))

        yield write
        container.mux(stream.encode(None))


def write_flac(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Mono 16-bit FLAC, written to a temporary name and renamed (never half-written)."""
    with _flac_writer(Path(path), rate) as write:
        write(audio)
