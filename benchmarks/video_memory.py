"""Peak memory of one video's task (`curation.video.process_video`: fetch, probe, locate,
audio to FLAC, frame pass) on 1080p videos of growing length, against the memory the
build reserves for it, same run.

The videos: 8 s of a synthetic 1080p performance with its audio, looped by stream copy
(no re-encode) to each length. Each task runs in its own process (no Ray, as a Ray task
runs it); its peak RSS is the process's `ru_maxrss`. Anchor: the shortest video's peak.
Goal: flat (ratio to the anchor near 1 at every length) and under the reservation
(`pipelines.build.VIDEO_STAGE_MEMORY`, 1 GiB).

    .venv/bin/python benchmarks/video_memory.py [--minutes 1 10 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg

from synth.video import SynthConfig, make_video


def looped(clip: Path, minutes: float, out: Path) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(clip),
                    "-t", str(minutes * 60), "-c", "copy", str(out)], check=True)
    return out


def _task(video: str, out: str, queue) -> None:
    from contract.config import BuildConfig
    from curation.video import process_video
    from manifests.schema import ManifestRow

    config = BuildConfig(out=Path(out))
    row = ManifestRow(video_id="v", url=Path(video).as_uri(), dataset="bench", split="train")
    result = process_video(row, config.layout, config.fetch_options(), config.settings)
    queue.put((result["status"], result["error"], result["n_frames"],
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def peak_mib(video: Path, out: Path) -> tuple[str, int, float]:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=_task, args=(str(video), str(out), queue))
    process.start()
    status, error, frames, peak = queue.get()
    process.join()
    if status != "ok":
        raise SystemExit(f"{video.name}: {error}")
    return status, frames, peak


def main() -> None:
    from pipelines.build import VIDEO_STAGE_MEMORY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    args = parser.parse_args()
    reserved = VIDEO_STAGE_MEMORY / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_video(tmp, "clip", 21, SynthConfig(seconds=8, width=1920, height=1080,
                                                       audio="pretty_midi")).with_suffix(".mp4")
        anchor = None
        print(f"{'minutes':>8s} {'frames':>8s} {'peak MiB':>9s} {'vs shortest':>12s} {'vs reserved':>12s}")
        for minutes in sorted(args.minutes):
            video = looped(clip, minutes, tmp / f"v{minutes:g}.mp4")
            _, frames, peak = peak_mib(video, tmp / f"corpus{minutes:g}")
            anchor = anchor or peak
            print(f"{minutes:8g} {frames:8d} {peak:9.0f} {peak / anchor:12.2f} {peak / reserved:12.2f}")
            video.unlink()


if __name__ == "__main__":
    main()
