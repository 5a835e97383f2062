"""Shared fixtures: synthetic videos rendered once per test session, and media decoding."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pretty_midi
import pytest

from curation.synthetic import SynthConfig, make_video


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
