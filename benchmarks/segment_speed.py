"""A long video's frame pass as segments in parallel against one task, on local Ray, same run.

One synthetic 1280x720 video (a keyframe every 2 s, as YouTube's are every few seconds)
goes through the frame pass inside a Ray task, as the build's video stage runs it:
anchor, in one pass (`--segment-seconds 0`); ours, as segments of `--segment` seconds,
one Ray task each, joined in order (curation/video.py: `_frame_batches`). Both within
Ray's thread budget of one thread a task. Goal (issue: a 10-minute video on 2 CPUs):
ours >= 1.6x faster. Best of `--runs`.

    .venv/bin/python benchmarks/segment_speed.py [--seconds 120] [--segment 30] [--cpus 2] [--runs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from contract.config import FrameConfig
from curation.frames import reference_crop
from curation.keyboard import locate_in_frames, sample_frames
from curation.video import _frame_batches
from manifests.schema import ManifestRow
from synth.video import SynthConfig, make_video


def _pass(media: str, quad, reference, config: FrameConfig, n_frames: int, segment_s: float | None) -> int:
    row = ManifestRow(video_id="bench", url="file:///bench.mp4", split="train")
    return sum(len(batch) for batch in _frame_batches(Path(media), quad, reference, config, None, row, n_frames,
                                                      segment_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--segment", type=float, default=30.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        mp4 = make_video(Path(tmp), "long", 31, SynthConfig(seconds=args.seconds, audio="pretty_midi")).with_suffix(".mp4")
        print(f"rendered a {args.seconds:g}-s 1280x720 video in {time.perf_counter() - started:.0f} s")
        config = FrameConfig()
        frames, _ = sample_frames(mp4)
        location = locate_in_frames(frames)
        reference = reference_crop(frames, location.quad, config)
        n_frames = int(round(args.seconds * config.fps))
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        task = ray.remote(num_cpus=1)(_pass)
        timings = {}
        for name, segment in (("one task (anchor)", None), (f"segments of {args.segment:g} s (ours)", args.segment)):
            best = float("inf")
            for _ in range(args.runs):
                began = time.perf_counter()
                count = ray.get(task.remote(str(mp4), location.quad, reference, config, n_frames, segment))
                best = min(best, time.perf_counter() - began)
            timings[name] = best
            print(f"{name:28s} {best:7.2f} s  ({count} frames, {count / best:.0f} frames/s)")
        ray.shutdown()
    anchor, ours = timings.values()
    print(f"speed-up {anchor / ours:.2f}x on {args.cpus} CPUs (goal >= 1.6x: {'met' if anchor / ours >= 1.6 else 'NOT met'})")


if __name__ == "__main__":
    main()
