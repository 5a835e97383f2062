"""Roll2Midi, Audeo's second stage: Video2Roll's per-frame key probabilities over windows
of 2 s (50 frames at 25 fps) -> a refined frame roll with temporal structure.

Audeo's design, as a conditional GAN (pix2pix): a U-Net generator over the (keys x time)
roll, and a PatchGAN discriminator that tells real rolls from generated ones given the
probabilities they were made from; the generator's loss is a reconstruction term (BCE
against the pseudo-GT frame roll; the run's `train_loss`) plus `adversarial_weight` times
its GAN term. The generator adds its output to Video2Roll's own logits (its last layer
starts at zero), so it starts from Video2Roll's decisions and learns corrections.

Input: a Video2Roll run (`TrainConfig.source`: a run folder, whose newest numbered epoch is
taken, or a checkpoint file). That checkpoint runs once over each split the run uses,
through the corpus's readers (the same samples: the frames with two kept neighbours on
each side), and its probabilities, with the reference frame rolls, are cached in
RUN/video2roll/SPLIT-HASH.npz; a resumed run and `pianocorpus eval` read the same cache
and the same checkpoint (recorded in the run's checkpoints), so the gain shown is over
exactly the Video2Roll outputs the refiner learnt from.

Windows: each video's run of consecutive frames is cut in order into windows of `window`
frames; a run's last, shorter piece is padded with silence, and the padding is masked out
of the reconstruction loss and never reaches the metrics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contract.atomic import atomic_npy, atomic_write
from contract.piano import LOWEST_MIDI
from labeling.midi import write_midi
from labeling.rolls import roll_notes
from training.data import corpus_fps, key_range, key_slice, open_split, rows_by_video, timeline
from training.train import Fit, TrainConfig, descend, load_checkpoint, predict, scores

WINDOW = 50
EPS = 1e-3  # probabilities are clipped to [EPS, 1 - EPS] before the logit the generator adds to


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each normalised per sample (instance norm: no running
    statistics, so a network trained on a few windows behaves the same in eval mode)."""
    layers = []
    for channels in (c_in, c_out):
        layers += [nn.Conv2d(channels, c_out, 3, padding=1), nn.InstanceNorm2d(c_out, affine=True),
                   nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class Roll2Midi(nn.Module):
    """U-Net generator: probabilities (batch, keys, time) -> logits of the refined roll."""

    def __init__(self, keys: str = "88", window: int = WINDOW, channels: int = 16):
        super().__init__()
        if window < 4:
            raise ValueError(f"window {window}: at least 4 frames (the U-Net halves time twice)")
        lo, hi = key_range(keys)
        self.keys, self.n_keys, self.window, self.channels = keys, hi - lo, window, channels
        c = channels
        self.down = nn.ModuleList([_conv_block(1, c), _conv_block(c, 2 * c)])
        self.bottom = _conv_block(2 * c, 4 * c)
        self.up = nn.ModuleList([_conv_block(4 * c + 2 * c, 2 * c), _conv_block(2 * c + c, c)])
        self.out = nn.Conv2d(c, 1, 1)
        nn.init.zeros_(self.out.weight)  # at first the refined roll is Video2Roll's own
        nn.init.zeros_(self.out.bias)

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        x, skips = probabilities[:, None], []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[2:], mode="nearest"), skip], dim=1))
        return self.out(x)[:, 0] + torch.logit(probabilities.clamp(EPS, 1 - EPS))

    def spec(self) -> dict:
        return {"keys": self.keys, "window": self.window, "channels": self.channels}


class RollCritic(nn.Module):
    """PatchGAN discriminator on (probabilities, roll) pairs: a logit per patch of the
    (keys x time) roll saying whether it is a real roll for those probabilities."""

    def __init__(self, channels: int = 16):
        super().__init__()
        c = channels
        self.net = nn.Sequential(nn.Conv2d(2, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * c, affine=True),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * c, 1, 3, padding=1))

    def forward(self, probabilities: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
        return self.net(torch.stack([probabilities, roll], dim=1))


@dataclass(frozen=True)
class VideoRolls:
    """One video's samples, in reader order: frame numbers, Video2Roll's probabilities and
    the reference frame roll (both over the Video2Roll checkpoint's keys)."""

    frames: np.ndarray  # (n,) int
    probability: np.ndarray  # (n, keys) float32
    reference: np.ndarray  # (n, keys) bool


def source_checkpoint(source: str | None, previous: dict | None) -> Path:
    """The Video2Roll checkpoint a roll2midi run refines: the one it began with when it is
    resumed; else `source` itself, or a run folder's newest numbered epoch (a file that the
    source run's later epochs leave as it is)."""
    if previous is not None:
        return Path(previous["source_checkpoint"])
    if not source:
        raise ValueError("roll2midi refines a Video2Roll run: give --from RUN (its folder or a checkpoint)")
    path = Path(source)
    if path.is_dir():
        last = path / "last.pt"
        if not last.is_file():
            raise ValueError(f"{path}: no last.pt (not a train run's folder)")
        epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
        numbered = path / "checkpoints" / f"epoch-{epoch:03d}.pt"
        path = numbered if numbered.is_file() else last
    return path.resolve()


def cache_path(cache: Path, source: Path, corpus: str | Path, split: str, label_version: str) -> Path:
    """Where Video2Roll's outputs over a split are cached: named by what made them (either
    reader gives the same samples, so the reader is not part of it)."""
    made_of = json.dumps([str(corpus), split, label_version, str(source)])
    return cache / f"{split}-{hashlib.sha1(made_of.encode()).hexdigest()[:12]}.npz"


def cached_rolls(source: Path, corpus: str | Path, split: str, *, label_version: str, reader: str, cache: Path,
                 device: torch.device) -> dict[str, VideoRolls]:
    """Video2Roll's probabilities over a split, with the reference rolls, per video:
    computed once (`cache_path`), then read from there."""
    path = cache_path(cache, source, corpus, split, label_version)
    if not path.is_file():
        model, saved = load_checkpoint(source, device)
        if saved["kind"] != "video2roll":
            raise ValueError(f"{source}: a {saved['kind']} checkpoint; roll2midi refines a video2roll one")
        dataset = open_split(corpus, split, reader, label_version=label_version, keys=saved["keys"], size=model.size)
        reference, probability, ids, frames = predict(model, dataset, device)

        def save(part: Path) -> None:
            with open(part, "wb") as handle:  # a file object: numpy would add .npz to the temporary name
                np.savez(handle, video=np.array(ids, dtype=str), frame=np.array(frames, dtype=np.int64),
                         probability=probability.astype(np.float32), reference=reference)

        atomic_write(path, save)
    data = np.load(path)
    return {video: VideoRolls(data["frame"][rows], data["probability"][rows], data["reference"][rows])
            for video, rows in rows_by_video(data["video"]).items()}


def window_spans(frames: np.ndarray, length: int) -> list[tuple[int, int]]:
    """(first, stop) rows of a video's windows: each run of consecutive frame numbers cut in
    order into pieces of `length` rows (a run's last piece may be shorter)."""
    bounds = [0, *(np.flatnonzero(np.diff(frames) != 1) + 1).tolist(), len(frames)]
    return [(s, min(s + length, b)) for a, b in zip(bounds[:-1], bounds[1:]) for s in range(a, b, length)]


def stack_windows(video: VideoRolls, length: int, keys: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities, reference) as (windows, keys, length) and the mask (windows, length)
    of one video's windows, a short one padded with silence (mask 0)."""
    spans = window_spans(video.frames, length)
    n_keys = keys.stop - keys.start
    probability, reference = (np.zeros((len(spans), n_keys, length), np.float32) for _ in range(2))
    mask = np.zeros((len(spans), length), np.float32)
    for i, (a, b) in enumerate(spans):
        probability[i, :, :b - a] = video.probability[a:b, keys].T
        reference[i, :, :b - a] = video.reference[a:b, keys].T
        mask[i, :b - a] = 1
    return torch.from_numpy(probability), torch.from_numpy(reference), torch.from_numpy(mask)


@torch.no_grad()
def refine(model: Roll2Midi, video: VideoRolls, keys: slice, device: torch.device) -> np.ndarray:
    """The refined probabilities of one video's samples, (n, keys), window by window."""
    model.eval()
    out = np.zeros((len(video.frames), model.n_keys), np.float32)
    spans = window_spans(video.frames, model.window)
    if spans:
        probability = torch.sigmoid(model(stack_windows(video, model.window, keys)[0].to(device))).cpu().numpy()
        for (a, b), window in zip(spans, probability):
            out[a:b] = window[:, :b - a].T
    return out


def roll_metrics(model: Roll2Midi, by_split: dict[str, dict[str, VideoRolls]], keys: slice, *, threshold: float,
                 source_threshold: float, device: torch.device) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Frame metrics (`scores`) of the refined rolls at `threshold` and of Video2Roll alone
    at its own threshold, on the same samples, per split and overall; and the refined
    probabilities per split and video."""
    if not by_split:
        raise ValueError("no split to evaluate")
    result, refined, together = {"splits": {}}, {}, {"reference": [], "roll2midi": [], "video2roll": []}
    for split, videos in by_split.items():
        refined[split] = {v: refine(model, rolls, keys, device) for v, rolls in videos.items()}
        rows = {"reference": [r.reference[:, keys] for r in videos.values()],
                "roll2midi": [p >= threshold for p in refined[split].values()],
                "video2roll": [r.probability[:, keys] >= source_threshold for r in videos.values()]}
        rows = {k: np.concatenate(v) if v else np.zeros((0, model.n_keys), bool) for k, v in rows.items()}
        result["splits"][split] = {name: scores(rows["reference"], rows[name]) for name in ("roll2midi", "video2roll")}
        for k, v in rows.items():
            together[k].append(v)
    together = {k: np.concatenate(v) for k, v in together.items()}
    result["overall"] = {name: scores(together["reference"], together[name]) for name in ("roll2midi", "video2roll")}
    return result, refined


def write_listenable(refined: dict[str, dict[str, np.ndarray]], by_split: dict[str, dict[str, VideoRolls]],
                     folder: Path, *, keys: str, key_columns: slice, fps: float, threshold: float,
                     source_threshold: float) -> int:
    """Per split and video: the refined probabilities on the frame timeline
    (VIDEO.roll2midi.npy, frames x keys, column 0 = the key set's lowest key) and MIDI files of
    the refined and the Video2Roll rolls at their thresholds, to be listened to side by side.
    Returns how many videos were written."""
    lowest = LOWEST_MIDI + key_range(keys)[0]
    written = 0
    for split, videos in refined.items():
        for video, probability in videos.items():
            rolls = by_split[split][video]
            roll = timeline(rolls.frames, probability)
            atomic_npy(roll, folder / split / f"{video}.roll2midi.npy")
            alone = timeline(rolls.frames, rolls.probability[:, key_columns])
            for name, on in (("roll2midi", roll >= threshold), ("video2roll", alone >= source_threshold)):
                write_midi(roll_notes(on, fps, lowest_midi=lowest), folder / split / f"{video}.{name}.mid")
            written += 1
    return written


def _batches(windows: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> Iterator[dict]:
    """Batches of the windows in an order drawn from `seed` (one per epoch: a resumed run
    sees the order an uninterrupted one would)."""
    probability, reference, mask = windows
    order = torch.randperm(len(probability), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        yield {"probability": probability[rows], "reference": reference[rows], "mask": mask[rows]}


def fit(config: TrainConfig, device: torch.device, previous: dict | None) -> Fit:
    """Roll2Midi's training parts: windows of the cached Video2Roll outputs over the train
    split, shuffled per epoch; one step trains the critic, then the generator."""
    source = source_checkpoint(config.source, previous)
    _, source_saved = load_checkpoint(source)
    key_columns = key_slice(source_saved["keys"], config.keys)

    def rolls(split: str) -> dict[str, VideoRolls]:
        return cached_rolls(source, config.corpus, split, label_version=config.label_version, reader=config.reader,
                            cache=Path(config.out) / "video2roll", device=device)

    stacked = [stack_windows(video, config.window, key_columns) for video in rolls(config.train_split).values()]
    if not stacked:
        raise ValueError(f"{config.corpus}: no samples in split {config.train_split!r} to train roll2midi on")
    windows = tuple(torch.cat(parts) for parts in zip(*stacked))
    watched = {split: rolls(split) for split in config.eval_splits}
    model, critic = Roll2Midi(config.keys, config.window).to(device), RollCritic().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.5, 0.999))
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
    schedules = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=config.lr_decay) for o in (optimizer, critic_optimizer)]
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def step(batch: dict) -> dict:
        probability, reference, mask = (batch[k].to(device) for k in ("probability", "reference", "mask"))
        mask = mask[:, None, :]  # over every key
        logits = model(probability)
        fake = torch.sigmoid(logits) * mask
        real_score, fake_score = critic(probability, reference), critic(probability, fake.detach())
        critic_loss = descend(critic_optimizer, 0.5 * (bce(real_score, torch.ones_like(real_score)).mean()
                                                       + bce(fake_score, torch.zeros_like(fake_score)).mean()))
        reconstruction = (bce(logits, reference) * mask).sum() / (mask.sum() * model.n_keys)
        fooled = critic(probability, fake)
        adversarial = bce(fooled, torch.ones_like(fooled)).mean()
        descend(optimizer, reconstruction + config.adversarial_weight * adversarial)
        return {"loss": reconstruction.item(), "adversarial_loss": adversarial.item(),
                "discriminator_loss": critic_loss, "samples": len(probability)}

    def evaluate_now() -> dict:
        return roll_metrics(model, watched, key_columns, threshold=config.threshold,
                            source_threshold=source_saved["threshold"], device=device)[0]

    return Fit(model, {"optimizer": optimizer, "schedule": schedules[0], "discriminator": critic,
                       "discriminator_optimizer": critic_optimizer, "discriminator_schedule": schedules[1]},
               schedules, lambda epoch: _batches(windows, config.batch_size, config.seed * 1_000_003 + epoch),
               -(-len(windows[0]) // config.batch_size), step, evaluate_now, headline=_headline,
               saved={"source_checkpoint": str(source), "source_keys": source_saved["keys"],
                      "source_threshold": source_saved["threshold"]})


def _headline(metrics: dict) -> dict:
    return {"f1": metrics["roll2midi"]["summed"]["f1"], "audeo_f1": metrics["roll2midi"]["audeo"]["f1"],
            "video2roll_f1": metrics["video2roll"]["summed"]["f1"]}


def run_folder(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to (RUN/last.pt or RUN/checkpoints/epoch-NNN.pt)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def evaluate_saved(model: Roll2Midi, saved: dict, checkpoint: Path, corpus: str | Path, splits: list[str], *,
                   label_version: str, threshold: float, reader: str, device: torch.device, out: Path) -> dict:
    """`pianocorpus eval` of a roll2midi checkpoint: the refined rolls' frame metrics beside
    Video2Roll's alone on the same samples, and the rolls and MIDI files of each video in
    the folder named as `out` without its suffix."""
    source, key_columns = Path(saved["source_checkpoint"]), key_slice(saved["source_keys"], saved["keys"])
    by_split = {split: cached_rolls(source, corpus, split, label_version=label_version, reader=reader,
                                    cache=run_folder(checkpoint) / "video2roll", device=device) for split in splits}
    result, refined = roll_metrics(model, by_split, key_columns, threshold=threshold,
                                   source_threshold=saved["source_threshold"], device=device)
    folder = out.with_suffix("")
    videos = write_listenable(refined, by_split, folder, keys=saved["keys"], key_columns=key_columns,
                              fps=corpus_fps(corpus), threshold=threshold, source_threshold=saved["source_threshold"])
    result.update(label_version=label_version, keys=saved["keys"], threshold=threshold,
                  video2roll_threshold=saved["source_threshold"], video2roll_checkpoint=str(source),
                  outputs={"folder": str(folder), "videos": videos})
    return result
