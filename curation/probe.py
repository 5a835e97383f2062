"""Container facts of a media file (PyAV): duration, fps, size, audio rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_rate: int | None = None


class ProbeError(ValueError):
    """The file is not media we can read; the message names the file."""


def probe(path: str | Path) -> MediaInfo:
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                formats = container.format.name
                raise ProbeError(f"{path}: not readable media (no video or audio stream; read as {formats})")
            duration = container.duration / av.time_base if container.duration else 0.0
            if not duration:
                streams = [s for s in (video, audio) if s is not None and s.duration]
                duration = max((float(s.duration * s.time_base) for s in streams), default=0.0)
            return MediaInfo(
                duration_s=float(duration), has_video=video is not None, has_audio=audio is not None,
                width=video.codec_context.width if video else None,
                height=video.codec_context.height if video else None,
                fps=float(video.average_rate) if video is not None and video.average_rate else None,
                audio_rate=audio.codec_context.sample_rate if audio else None)
    except av.error.FFmpegError as error:
        raise ProbeError(f"{path}: not readable media ({error})") from None
