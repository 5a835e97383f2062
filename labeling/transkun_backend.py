"""transkun 2.0.1: the piano-grade transcriber whose weights ship in its wheel (MIT).

Uses CUDA when torch sees a GPU, the CPU otherwise. transkun decodes a file's 16 s
segments in sequence (its CRF carries the state of every key from one segment into the
next), so a batch of files is transcribed one file after another; the model is loaded
once. Pedal events come back with a negative "pitch" (-64 sustain, -66, -67): they are
kept apart from key notes, the sustain ones as pedal intervals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labeling.events import NoteEvent, Transcription, check_audio, keep_piano_range, resample

SUSTAIN = -64
LABEL_PARAMS = {"segment_s": None, "hop_s": None}  # None: the model conf's 16 s / 8 s
# The version of our handling of its events (pedal apart, piano range, velocity clip):
# part of the label version; bump it when it changes the notes.
LOGIC = "transkun-events/1"


def pretrained_dir() -> Path:
    import transkun

    return Path(transkun.__file__).parent / "pretrained"


class TranskunTranscriber:
    name = "transkun"

    def __init__(self, device: str = "auto", segment_s: float | None = None, hop_s: float | None = None):
        import moduleconf
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.params = {"segment_s": segment_s, "hop_s": hop_s}
        self.weights = pretrained_dir() / "2.0.pt"
        conf = moduleconf.parseFromFile(str(pretrained_dir() / "2.0.conf"))
        model_class, config = conf["Model"].module.TransKun, conf["Model"].config
        # The checkpoint ships inside the installed wheel: a trusted file, not a download.
        checkpoint = torch.load(self.weights, map_location=self.device, weights_only=False)
        self.model = model_class(conf=config).to(self.device)
        self.model.load_state_dict(checkpoint.get("best_state_dict", checkpoint.get("state_dict")), strict=False)
        self.model.eval()
        self.rate = int(self.model.fs)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> Transcription:
        import torch

        audio = resample(check_audio(audio, sample_rate), int(sample_rate), self.rate)
        with torch.no_grad():
            events = self.model.transcribe(torch.from_numpy(audio[:, None]).to(self.device),
                                           stepInSecond=self.params["hop_s"],
                                           segmentSizeInSecond=self.params["segment_s"])
        notes = [NoteEvent(float(e.start), float(e.end), int(e.pitch), int(np.clip(e.velocity, 1, 127)))
                 for e in events if e.pitch > 0]
        pedal = sorted((float(e.start), float(e.end)) for e in events if e.pitch == SUSTAIN)
        return Transcription(notes=sorted(keep_piano_range(notes), key=lambda n: (n.onset, n.pitch)), pedal=pedal)

    def transcribe_batch(self, clips: list[tuple[np.ndarray, int]]) -> list[Transcription]:
        return [self.transcribe(audio, rate) for audio, rate in clips]
