"""`locate` on a long 1080p video, against pure decoding of the frames it samples, same run.

The video: 8 s of a synthetic 1080p performance, looped to --minutes (5) and encoded
with a keyframe every 2 s, as YouTube's are. Anchor: `sample_frames` alone (seeking and
decoding the 24 sampled frames to BGR). Ours: the whole `locate` (sampling, then the
fits per frame, the median refit). Goal: `locate` <= 2 s on these 2 cores; the ratio
ours / anchor says how much of it is the locator's own work. Best of 3 runs each.

    .venv/bin/python benchmarks/locate_speed.py [--minutes 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from curation.keyboard import locate, sample_frames
from synth.video import SynthConfig, make_video


def long_video(folder: Path, minutes: float) -> Path:
    clip = make_video(folder, "clip", 21, SynthConfig(seconds=8, width=1920, height=1080, audio="pretty_midi"))
    with av.open(str(clip.with_suffix(".mp4"))) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    out = folder / "long.mp4"
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "50", "preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for k in range(int(minutes * 60 * 25)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frames[k % len(frames)], format="bgr24")))
        container.mux(stream.encode(None))
    return out


def best_seconds(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"encoding a {args.minutes:g}-minute 1080p video (keyframe every 2 s) ...", flush=True)
        video = long_video(Path(tmp), args.minutes)
        anchor = best_seconds(lambda: sample_frames(video))
        ours = best_seconds(lambda: locate(video))
    print(f"sample_frames alone, 24 frames (anchor): {anchor:.2f} s")
    print(f"locate (ours):                           {ours:.2f} s  "
          f"(goal <= 2 s: {'met' if ours <= 2 else 'NOT met'}); ratio ours / anchor {ours / anchor:.2f}")


if __name__ == "__main__":
    main()
