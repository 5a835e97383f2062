"""A Sight-to-Sound-style onset model (the PianoYT paper): 5 consecutive crops -> for each
key, whether a note starts in the centre frame.

Network: torchvision's ResNet-18 (no pretrained weights), its stem and stages 1-3, the
third without its downsampling (stride 8, so a 900-wide crop keeps 112 columns for the 88
keys: at stride 16, 56 columns, the synthetic benchmark's onset F1 was 0.30 after 10
epochs against 0.46 after 5), run on each frame with a second input channel holding the
key position: a horizontal ramp from 0 at the crop's left edge (A0) to 1 at its right
edge (C8), as the paper adds a slope over the keys to help the network tell them apart.
A 3D convolution over (time, height, width) then aggregates the 5 frames into one map,
read per key by the same heads as Video2Roll's (training/model.py).

Training: per-key BCE-with-logits against the corpus's onset roll at the centre frame,
with onsets weighted by `pos_weight` (default: negatives / positives over the train split's
samples, counted before training; the positive rate goes in every history line): an
onset is a rare event (one (sample, key) cell in 100 to 500 on the synthetic and demo
corpora), and unweighted, predicting none is nearly optimal.

Evaluation: per video, the onset probabilities on the frame timeline are peak-picked per
key (a frame at or above the threshold that is a maximum over its neighbours in time), each
peak is a note onset at frame / fps, and mir_eval matches them with the reference onsets
(the corpus's onset roll at the same samples' centres) within 50 ms and the same pitch; per
split, the matches are summed over videos (and the per-video figures averaged).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.piano import LOWEST_MIDI
from labeling.events import NoteEvent
from labeling.metrics import onset_count_scores, onset_scores
from training.data import corpus_fps, key_range, open_split, rows_by_video, timeline
from training.model import FUSED_CHANNELS, key_head, read_keys, unit_frames
from training.train import Fit, TrainConfig, per_sample_fit, predict, train_reader

log = logging.getLogger(__name__)
TOLERANCE_S = 0.05  # mir_eval's onset tolerance
TARGETS = ("frame", "onset")


class OnsetNet(nn.Module):
    def __init__(self, keys: str = "88", n_frames: int = 5, size: tuple[int, int] = (100, 900), head: str = "keys"):
        from torchvision.models import resnet18

        super().__init__()
        lo, hi = key_range(keys)
        self.keys, self.n_keys, self.n_frames, self.size, self.head_kind = keys, hi - lo, n_frames, tuple(size), head
        trunk = resnet18(weights=None)
        # two input channels: the picture and the key position
        self.stem = nn.Sequential(nn.Conv2d(2, 64, kernel_size=7, stride=2, padding=3, bias=False),
                                  trunk.bn1, trunk.relu, trunk.maxpool)
        trunk.layer3[0].conv1.stride = trunk.layer3[0].downsample[0].stride = (1, 1)  # keep stride 8
        self.stages = nn.Sequential(trunk.layer1, trunk.layer2, trunk.layer3)
        self.time = nn.Sequential(nn.Conv3d(256, FUSED_CHANNELS, (n_frames, 3, 3), padding=(0, 1, 1), bias=False),
                                  nn.BatchNorm3d(FUSED_CHANNELS), nn.ReLU(inplace=True))
        self.head = key_head(FUSED_CHANNELS, lo, hi, head)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (batch, 5, H, W), uint8 or float in [0, 1]; returns logits (batch, n_keys)."""
        frames = unit_frames(frames)
        batch, time, height, width = frames.shape
        ramp = torch.linspace(0, 1, width, device=frames.device).expand_as(frames)
        x = self.stages(self.stem(torch.stack([frames, ramp], dim=2).flatten(0, 1)))  # (batch x time, 256, h, w)
        x = x.unflatten(0, (batch, time)).transpose(1, 2)  # (batch, 256, time, h, w)
        return read_keys(self.head, self.head_kind, self.time(x)[:, :, 0])

    def spec(self) -> dict:
        return {"keys": self.keys, "n_frames": self.n_frames, "size": list(self.size), "head": self.head_kind}


def peak_onsets(probability: np.ndarray, threshold: float) -> np.ndarray:
    """(frames, keys) bool: where a key's probability reaches `threshold` and is a maximum
    over its neighbours in time (on a plateau, its last frame), so that a note whose onset
    the network spreads over several frames is struck once."""
    before = np.pad(probability, ((1, 0), (0, 0)), constant_values=-np.inf)[:-1]
    after = np.pad(probability, ((0, 1), (0, 0)), constant_values=-np.inf)[1:]
    return (probability >= threshold) & (probability >= before) & (probability > after)


def onset_notes(onsets: np.ndarray, fps: float, lowest_midi: int) -> list[NoteEvent]:
    """A note per onset (frame k, key j -> k / fps s, pitch lowest_midi + j), one frame long:
    onset matching ignores offsets."""
    frames, keys = np.nonzero(onsets)
    return [NoteEvent(float(k / fps), float((k + 1) / fps), int(lowest_midi + j), 80) for k, j in zip(frames, keys)]


def video_onset_scores(frames: np.ndarray, reference: np.ndarray, probability: np.ndarray, *, threshold: float,
                       fps: float, lowest_midi: int) -> dict:
    """One video's onset scores (`onset_scores`) from its samples' reference onset rolls and
    onset probabilities, peak-picked on the video's frame timeline."""
    estimate = peak_onsets(timeline(frames, probability), threshold)
    return onset_scores(onset_notes(timeline(frames, reference), fps, lowest_midi),
                        onset_notes(estimate, fps, lowest_midi), TOLERANCE_S)


def summarise(videos: dict[str, dict]) -> dict:
    """A set of videos' figures: matches summed over them, and the per-video figures averaged."""
    total = {k: sum(v[k] for v in videos.values()) for k in ("matched", "reference", "estimated")}
    mean = {k: float(np.mean([v[k] for v in videos.values()])) if videos else float("nan")
            for k in ("precision", "recall", "f1")}
    return {"videos": len(videos), "summed": onset_count_scores(**total), "mean_per_video": mean}


def onset_metrics(model: OnsetNet, corpus: str | Path, splits: list[str], *, label_version: str, threshold: float,
                  device: torch.device, reader: str = "wds", workers: int = 0) -> dict:
    """Note-onset figures per video, per split and overall."""
    if not splits:
        raise ValueError(f"{corpus}: no split to evaluate")
    fps, lowest = corpus_fps(corpus), LOWEST_MIDI + key_range(model.keys)[0]
    result, every = {"splits": {}}, {}
    for split in splits:
        dataset = open_split(corpus, split, reader, label_version=label_version, keys=model.keys, size=model.size,
                             targets=TARGETS)
        reference, probability, ids, frames = predict(model, dataset, device, workers=workers, target="onset_roll")
        frames = np.asarray(frames)
        videos = {video: video_onset_scores(frames[rows], reference[rows], probability[rows], threshold=threshold,
                                            fps=fps, lowest_midi=lowest)
                  for video, rows in rows_by_video(ids).items()}
        result["splits"][split] = {**summarise(videos), "per_video": videos}
        every.update({(split, video): scores for video, scores in videos.items()})
    result["overall"] = summarise(every)
    return result


def fit(config: TrainConfig, device: torch.device, previous: dict | None) -> Fit:
    """The onset model's training parts: Video2Roll's, on the onset roll with the
    class-balanced BCE."""
    model = OnsetNet(config.keys, size=config.size, head=config.head).to(device)
    dataset = train_reader(config, targets=TARGETS)
    rate = float(dataset.centre_targets("onset").mean())
    pos_weight = config.pos_weight if config.pos_weight is not None else (1 - rate) / rate if rate else 1.0
    log.info("onsets: %.4f of the train split's (sample, key) cells; pos_weight %.1f", rate, pos_weight)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))

    def evaluate_now() -> dict:
        return onset_metrics(model, config.corpus, config.eval_splits, label_version=config.label_version,
                             threshold=config.threshold, device=device, reader=config.reader, workers=config.workers)

    return per_sample_fit(config, device, model, dataset, loss_fn, "onset_roll", evaluate_now,
                          headline=lambda m: {k: m["summed"][k] for k in ("precision", "recall", "f1")},
                          info={"positive_rate": rate, "pos_weight": pos_weight})


def evaluate_saved(model: OnsetNet, saved: dict, checkpoint: Path, corpus: str | Path, splits: list[str], *,
                   label_version: str, threshold: float, reader: str, device: torch.device, out: Path) -> dict:
    """`pianocorpus eval` of an onset checkpoint (`onset_metrics`)."""
    result = onset_metrics(model, corpus, splits, label_version=label_version, threshold=threshold, device=device,
                           reader=reader)
    result.update(label_version=label_version, keys=saved["keys"], threshold=threshold, onset_tolerance_s=TOLERANCE_S)
    return result
