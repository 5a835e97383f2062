"""Video2Roll, then Roll2Midi on its outputs, and the onset model, on a small synthetic
corpus (CPU).

The corpus is the tests' handmade one (tests/handmade_corpus.py: flat grey crops with a
dark bar per key down, two keys at a time moving up a scale, a rest every 8th frame),
written by the project's shard writers: tiny and far easier than real video, so the
figures say that the models train and what Roll2Midi adds over a weak Video2Roll, not
what they reach on real videos. The onset model's note-onset figures stand beside
Video2Roll's frame roll read as onsets (each run of frames at or above 0.4 starts a note),
scored the same way.

    PYTHONPATH=. .venv/bin/python benchmarks/seed_models.py [--out DIR] [--v2r-epochs 3] [--onset-epochs 3]

(Again with the same --out, each run resumes: finished ones are only evaluated.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from labeling.metrics import onset_scores
from labeling.rolls import roll_notes
from tests.handmade_corpus import write_corpus
from training.data import corpus_fps, open_split, rows_by_video, timeline
from training.onset import TARGETS, onset_notes, summarise
from training.train import TrainConfig, evaluate_checkpoint, load_checkpoint, predict, train

# 4 train videos (one with a dropped stretch), 1 test video, 25 fps
VIDEOS = {**{f"train-{i}": ("train", [True] * 120) for i in range(3)},
          "train-3": ("train", [True] * 50 + [False] * 6 + [True] * 64), "test-0": ("test", [True] * 120)}
SIZE = (25, 225)


def frame_row(name: str, m: dict) -> str:
    return (f"  {name:22s} {m['frames']:6d}  summed P {m['summed']['precision']:.3f} R {m['summed']['recall']:.3f} "
            f"F1 {m['summed']['f1']:.3f}   Audeo per-frame F1 {m['audeo']['f1']:.3f}")


def onset_row(name: str, m: dict) -> str:
    s = m["summed"]
    return (f"  {name:22s} {s['reference']:4d} ref {s['estimated']:4d} est  note onsets P {s['precision']:.3f} "
            f"R {s['recall']:.3f} F1 {s['f1']:.3f}")


def video2roll_onsets(checkpoint: Path, corpus: Path, split: str, threshold: float = 0.4) -> dict:
    """Video2Roll's frame roll read as note onsets (the first frame of each run at or above
    the threshold), scored against the onset roll as the onset model's evaluation does."""
    model, _ = load_checkpoint(checkpoint)
    dataset = open_split(corpus, split, size=model.size, targets=TARGETS)
    onsets, probability, ids, frames = predict(model, dataset, torch.device("cpu"), target="onset_roll")
    frames, videos, fps = np.asarray(frames), {}, corpus_fps(corpus)
    for video, rows in rows_by_video(ids).items():
        estimate = roll_notes(timeline(frames[rows], probability[rows]) >= threshold, fps)
        videos[video] = onset_scores(onset_notes(timeline(frames[rows], onsets[rows]), fps, 21), estimate)
    return summarise(videos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--v2r-epochs", type=int, default=3)
    parser.add_argument("--r2m-epochs", type=int, default=30)
    parser.add_argument("--onset-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: small networks on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.out or Path(tempfile.mkdtemp(prefix="seed-models-"))
    corpus = write_corpus(root / "corpus", VIDEOS, rows_per_part=100, shard_samples=100)
    common = dict(corpus=str(corpus), workers=0, batch_size=16, lr=3e-3)

    started = time.perf_counter()
    train(TrainConfig(out=str(root / "v2r"), epochs=args.v2r_epochs, size=SIZE, shuffle_buffer=200, **common),
          progress=False)
    v2r_s = time.perf_counter() - started
    started = time.perf_counter()
    train(TrainConfig(out=str(root / "r2m"), model="roll2midi", source=str(root / "v2r"), epochs=args.r2m_epochs,
                      window=50, **common), progress=False)
    r2m_s = time.perf_counter() - started
    result = evaluate_checkpoint(root / "r2m" / "last.pt", corpus, ["test"], device="cpu")
    started = time.perf_counter()
    train(TrainConfig(out=str(root / "onset"), model="onset", epochs=args.onset_epochs, size=SIZE, shuffle_buffer=200,
                      **common), progress=False)
    onset_s = time.perf_counter() - started
    onsets = evaluate_checkpoint(root / "onset" / "last.pt", corpus, ["test"], device="cpu")

    print(f"synthetic handmade corpus: {len(VIDEOS)} videos, {SIZE[1]}x{SIZE[0]} crops, CPU, "
          f"{args.threads} torch thread(s); work folder {root}")
    print(f"Video2Roll: {args.v2r_epochs} epochs in {v2r_s:.0f} s; Roll2Midi: {args.r2m_epochs} epochs in {r2m_s:.0f} s "
          f"(threshold {result['threshold']:g}, Video2Roll's {result['video2roll_threshold']:g})")
    test = result["splits"]["test"]
    print(frame_row("test video2roll", test["video2roll"]))
    print(frame_row("test roll2midi", test["roll2midi"]))
    print(f"onset model: {args.onset_epochs} epochs in {onset_s:.0f} s (peak threshold {onsets['threshold']:g}, "
          f"50 ms; onsets in {_history(root / 'onset')[-1]['positive_rate']:.4f} of the train (sample, key) cells)")
    print(onset_row("test video2roll", video2roll_onsets(root / "v2r" / "last.pt", corpus, "test")))
    print(onset_row("test onset model", onsets["splits"]["test"]))


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


if __name__ == "__main__":
    main()
