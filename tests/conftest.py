"""Shared fixtures: synthetic videos rendered once per test session, and media decoding."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pretty_midi
import pytest

from synth.video import SynthConfig, make_video
from tests.loopback import MediaServer


class SynthVideo:
    """A rendered synthetic video with its truth, decoded on demand."""

    def __init__(self, truth_path: Path):
        self.truth_path = truth_path
        self.truth = json.loads(truth_path.read_text())
        self.mp4 = truth_path.with_suffix(".mp4")
        self.mid = truth_path.with_suffix(".mid")

    @property
    def notes(self) -> list[pretty_midi.Note]:
        midi = pretty_midi.PrettyMIDI(str(self.mid))
        return sorted((n for inst in midi.instruments for n in inst.notes), key=lambda n: (n.start, n.pitch))

    def frames(self) -> list[np.ndarray]:
        with av.open(str(self.mp4)) as container:
            return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]

    def audio(self) -> tuple[np.ndarray, int]:
        with av.open(str(self.mp4)) as container:
            rate = container.streams.audio[0].rate
            return np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)]), rate


@pytest.fixture(scope="session")
def synth_720p(tmp_path_factory) -> SynthVideo:
    """Default-size video with hands and a mid-video cut."""
    out = tmp_path_factory.mktemp("synth720")
    return SynthVideo(make_video(out, "v720", seed=11, config=SynthConfig(seconds=8, cut=True)))


@pytest.fixture(scope="session")
def synth_no_hands(tmp_path_factory) -> SynthVideo:
    """No hands, so every key's state can be read from the pixels."""
    out = tmp_path_factory.mktemp("synthnohands")
    return SynthVideo(make_video(out, "nohands", seed=5, config=SynthConfig(seconds=6, hands=False, cut=False)))


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """An H.264 mp4 of BGR frames (no audio)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))


# --- the end-to-end build, shared by the build and audit tests -------------------------------
GOOD = {"vid-a": ("train", 31), "vid-b": ("train", 32), "vid-c": ("test", 33)}


def _video_only(path: Path, frames: list[np.ndarray], audio: bool = False) -> None:
    """A small H.264 mp4, with a quiet tone as audio when asked (else no audio stream)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=44100, layout="mono") if audio else None
        for k, frame in enumerate(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
            if sound is not None:
                tone = (0.1 * np.sin(np.arange(1764) * 2 * np.pi * 440 / 44100)).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 44100, k * 1764
                container.mux(sound.encode(chunk))
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    media = tmp_path_factory.mktemp("media")
    truths = {}
    for name, (_, seed) in GOOD.items():
        truths[name] = json.loads(make_video(media, name, seed, SynthConfig(seconds=6, width=640, height=360)).read_text())
    (media / "corrupt.mp4").write_bytes(np.random.default_rng(5).integers(0, 256, 20000, np.uint8).tobytes())
    _video_only(media / "silentfilm.mp4", [np.full((180, 320, 3), 90, np.uint8)] * 25)
    rng = np.random.default_rng(1)
    _video_only(media / "noise.mp4", [rng.integers(0, 255, (180, 320, 3), np.uint8) for _ in range(25)], audio=True)
    files = {f"{n}.mp4": media / f"{n}.mp4" for n in list(GOOD) + ["corrupt", "silentfilm", "noise"]}
    with MediaServer(files) as server:
        manifest = media / "manifest.csv"
        rows = [f"{n},{server.url('video', n + '.mp4')},train" if GOOD[n][0] == "train" else
                f"{n},{server.url('video', n + '.mp4')},test" for n in GOOD]
        rows += [f"gone,{server.url('missing', 'x.mp4')},train", f"broken,{server.url('video', 'corrupt.mp4')},test",
                 f"mute,{server.url('video', 'silentfilm.mp4')},train", f"nokeys,{server.url('video', 'noise.mp4')},test"]
        manifest.write_text("video_id,url,split\n" + "\n".join(rows) + "\n")
        yield manifest, truths, media


@pytest.fixture(scope="session")
def built_corpus(served, tmp_path_factory):
    """The e2e build (real yt-dlp, Ray, basic-pitch) of 3 good and 4 broken videos; shared."""
    import ray

    from contract.config import BuildConfig, FetchOptions, LabelerConfig, RayConfig, ShardConfig
    from pipelines.build import build

    manifest, _, _ = served
    out = tmp_path_factory.mktemp("corpus") / "c"
    config = BuildConfig(out=out, cache=out.parent / "cache", labeler=LabelerConfig("basic-pitch"),
                         ray=RayConfig(num_cpus=2), shards=ShardConfig(rows_per_part=200, shard_samples=150),
                         fetch=FetchOptions(retries=0, socket_timeout_s=5))
    stats = build(manifest, config)
    ray.shutdown()
    return out, stats
