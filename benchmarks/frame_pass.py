"""The frame pass's throughput against pure PyAV decoding of the same 720p file, same run.

Anchor: decoding every frame to BGR numpy arrays with PyAV (threaded), nothing else.
Ours: the whole frame pass (decode at the corpus fps, rectify to 900x100, keyboard
check, JPEG-encode kept crops). Goal: ratio ours/anchor >= 0.6. Best of 3 runs each.

    .venv/bin/python benchmarks/frame_pass.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from contract.config import FrameConfig
from curation.frames import frame_pass, reference_crop
from curation.keyboard import locate_in_frames, sample_frames
from synth.video import SynthConfig, make_video


def pure_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="bgr24") is not None)


def best_rate(fn, runs: int = 3) -> float:
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - started))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    config = FrameConfig()
    with tempfile.TemporaryDirectory() as tmp:
        mp4 = make_video(Path(tmp), "bench", 99, SynthConfig(seconds=args.seconds, audio="pretty_midi")).with_suffix(".mp4")
        frames, _ = sample_frames(mp4)
        location = locate_in_frames(frames)
        reference = reference_crop(frames, location.quad, config)
        anchor = best_rate(lambda: pure_decode(mp4))
        ours = best_rate(lambda: sum(len(b) for b in frame_pass(mp4, location.quad, reference, config)))
    print(f"720p H.264, {args.seconds:g} s at 25 fps")
    print(f"pure PyAV decode to BGR (anchor): {anchor:7.1f} frames/s")
    print(f"frame pass (ours):                {ours:7.1f} frames/s")
    print(f"ratio {ours / anchor:.2f} (goal >= 0.6: {'met' if ours / anchor >= 0.6 else 'NOT met'})")


if __name__ == "__main__":
    main()
