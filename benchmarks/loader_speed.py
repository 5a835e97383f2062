"""The training readers' throughput against plain JPEG decoding of the same frames, same run,
and against what one CPU training step consumes.

Anchor: the split's kept JPEGs, already in memory, decoded to grayscale with OpenCV in a
plain loop (a sample needs one new decode: its window's other four frames are shared with
its neighbours). Ours: each reader (WebDataset tars, Parquet parts) through a DataLoader
with 2 workers, batches of 16, shuffle buffer 1000, over several epochs. Also: samples/s
of a training step (forward, backward, Adam) of the default model at 100x900 on this CPU.
Goal: the reader is not the bottleneck of a CPU training step (reader samples/s well
above the step's).

    make bench-loader        # or: .venv/bin/python benchmarks/loader_speed.py --corpus demo/corpus
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from training.data import open_split
from training.model import Video2Roll


def plain_decode_rate(corpus: str, split: str, passes: int) -> float:
    jpegs = [j for j in pq.read_table(f"{corpus}/frames/{split}", columns=["jpeg"],
                                      filters=[("kept", "=", True)]).column("jpeg").to_pylist()]
    started = time.perf_counter()
    for _ in range(passes):
        for jpeg in jpegs:
            cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return passes * len(jpegs) / (time.perf_counter() - started)


def reader_rate(corpus: str, split: str, reader: str, epochs: int, workers: int) -> float:
    dataset = open_split(corpus, split, reader, shuffle_buffer=1000)
    started, samples = time.perf_counter(), 0
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in DataLoader(dataset, batch_size=16, num_workers=workers):
            samples += len(batch["roll"])
    return samples / (time.perf_counter() - started)


def train_step_rate(steps: int = 5, batch: int = 16) -> float:
    model = Video2Roll()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    frames = torch.randint(0, 256, (batch, 5, 100, 900), dtype=torch.uint8)
    target = (torch.rand(batch, 88) < 0.05).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for step in range(steps + 1):
        if step == 1:  # the first step warms up
            started = time.perf_counter()
        loss = loss_fn(model(frames), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="demo/corpus")
    parser.add_argument("--split", default="train")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    anchor = plain_decode_rate(args.corpus, args.split, args.epochs)
    readers = {r: reader_rate(args.corpus, args.split, r, args.epochs, args.workers) for r in ("wds", "parquet")}
    step = train_step_rate()
    print(f"{args.corpus} split {args.split}, {args.epochs} epochs, {args.workers} DataLoader workers")
    print(f"plain JPEG decode loop (anchor):      {anchor:8.1f} samples/s")
    for name, rate in readers.items():
        print(f"{name:8s} reader, 5-frame samples:    {rate:8.1f} samples/s  ratio to anchor {rate / anchor:.2f}, "
              f"{rate / step:.1f}x the training step")
    print(f"CPU training step (100x900, batch 16): {step:8.1f} samples/s")
    slowest = min(readers.values())
    print(f"reader is {'not ' if slowest > 2 * step else ''}the bottleneck (slowest reader / step = {slowest / step:.1f})")


if __name__ == "__main__":
    main()
