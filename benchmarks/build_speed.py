"""End-to-end build speed and memory, from local 720p videos, basic-pitch labeler.

Prints seconds of video per wall second for the whole `pianocorpus build` (Ray start-up
included) on 2 CPUs (goal >= 5x real time), the same build pinned to 1 core and the
2-vs-1 speed-up (goal >= 1.6x) beside its anchor: the same per-video work (fetch, locate,
frame pass, audio; `curation.video.process_video`) without Ray, in one process pinned to
one core vs two processes pinned to a core each: what this machine gives that work, and
so the most the build could reach; and the peak RSS of the build's whole process tree (driver and
Ray workers) for 2 and for 8 videos (goal: flat in the number of videos). Timings are the best of
`--repeats` interleaved runs: identical builds differ by several seconds on these machines.

The default is 8 videos of 60 s: PianoYT's videos average 4.7 minutes (17.8 h in 228) and
Audeo's are whole preludes and fugues, so 30-s videos would weigh Ray's fixed cost (about
6 s on 2 cores, 10 s on 1, before the first video starts) far above what it is in a real build.
`--videos 4 --seconds 30` gives the small case. `--long 600` adds one video of that many
seconds (a recital among short pieces: the mixed corpus of the cluster issue, whose goal
for the 2-vs-1 speed-up is 1.8x: the long video's frame pass runs as segments).

    make bench-build        # or: .venv/bin/python benchmarks/build_speed.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from manifests.loader import load_manifest
from synth.video import SynthConfig, make_video


def run_build(manifest: Path, out: Path, cpus: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB of the process tree) of one build in a fresh process."""
    command = [sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(out),
               "--labeler", "basic-pitch", "--num-cpus", str(cpus)]
    started = time.perf_counter()
    # Pin the whole process tree to `cpus` cores: Ray's --num-cpus limits tasks, not the
    # threads inside them (threaded decoding would use the other core too).
    cores = set(sorted(os.sched_getaffinity(0))[:cpus])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: os.sched_setaffinity(0, cores))
    parent, peak = psutil.Process(process.pid), 0.0
    while process.poll() is None:
        try:
            tree = [parent] + parent.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"build failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - started, peak


def _process_pinned(manifest: Path, every: int, first: int, core: int, out: Path) -> None:
    from contract.config import BuildConfig
    from curation.video import process_video

    os.sched_setaffinity(0, {core})
    config = BuildConfig(out=out)
    for row in load_manifest(manifest).rows[first::every]:
        process_video(row, config.layout, config.fetch_options(), config.settings)


def plain_speedup(manifest: Path, tmp: Path) -> tuple[float, float]:
    """(1-core seconds, 2-core seconds) of the build's per-video work in plain processes."""
    def timed(jobs: list[tuple]) -> float:
        started = time.perf_counter()
        processes = [multiprocessing.Process(target=_process_pinned, args=(manifest, *job)) for job in jobs]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            if process.exitcode:
                raise SystemExit(f"plain per-video run failed ({process.exitcode})")
        return time.perf_counter() - started

    cores = sorted(os.sched_getaffinity(0))[:2]
    one = timed([(1, 0, cores[0], tmp / "p1")])
    two = timed([(2, 0, cores[0], tmp / "p2a"), (2, 1, cores[-1], tmp / "p2b")])
    return one, two


def render_videos(folder: Path, n: int, seconds: float) -> list[Path]:
    """Synthetic 720p videos v00.. (seeds 500..), rendered unless already in the folder."""
    config = SynthConfig(seconds=seconds, audio="auto")
    return [folder / f"v{i:02d}.mp4" if (folder / f"v{i:02d}.mp4").is_file()
            else make_video(folder, f"v{i:02d}", 500 + i, config).with_suffix(".mp4") for i in range(n)]


def manifest_of(videos: list[Path], path: Path) -> Path:
    path.write_text("video_id,url,split\n" + "".join(f"{v.stem},{v},train\n" for v in videos))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--long", type=float, default=0.0, metavar="SECONDS",
                        help="add one video this long (default none)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing; the best is reported")
    parser.add_argument("--media", type=Path, help="render the videos into this folder once and reuse them "
                                                   "(default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = render_videos((args.media or tmp / "media") / f"{args.seconds:g}s", max(8, args.videos), args.seconds)
        total = args.videos * args.seconds + args.long
        chosen = videos[: args.videos]
        if args.long:
            folder = (args.media or tmp / "media") / f"long-{args.long:g}s"
            long = folder / "long.mp4"
            chosen.append(long if long.is_file() else make_video(folder, "long", 499, SynthConfig(
                seconds=args.long, audio="auto")).with_suffix(".mp4"))
        manifest = manifest_of(chosen, tmp / "speed.csv")
        # Interleaved repeats, best of each: identical builds differ by several seconds here.
        runs = {1: [], 2: [], "plain": []}
        for r in range(args.repeats):
            for cpus in (2, 1):
                runs[cpus].append(run_build(manifest, tmp / f"c{cpus}-{r}", cpus)[0])
            runs["plain"].append(plain_speedup(manifest, tmp / f"p{r}"))
        two, one = min(runs[2]), min(runs[1])
        plain_one, plain_two = min(p[0] for p in runs["plain"]), min(p[1] for p in runs["plain"])
        _, rss2 = run_build(manifest_of(videos[:2], tmp / "m2.csv"), tmp / "r2", 2)
        _, rss8 = run_build(manifest_of(videos[:8], tmp / "m8.csv"), tmp / "r8", 2)
    goal = 1.8 if args.long else 1.6
    mixed = f" + one of {args.long:g} s" if args.long else ""
    print(f"{args.videos} videos x {args.seconds:g} s{mixed} of 1280x720 H.264 ({total:g} s of video), basic-pitch labels, "
          f"best of {args.repeats} (2 CPUs: {', '.join(f'{t:.1f}' for t in runs[2])} s; "
          f"1 CPU: {', '.join(f'{t:.1f}' for t in runs[1])} s)")
    print(f"2 CPUs: {two:6.1f} s wall = {total / two:5.2f}x real time (goal >= 5x: {'met' if total / two >= 5 else 'NOT met'})")
    print(f"1 CPU:  {one:6.1f} s wall = {total / one:5.2f}x real time")
    print(f"speed-up 2 vs 1 CPU: {one / two:.2f} (goal >= {goal:g}: {'met' if one / two >= goal else 'NOT met'})")
    print(f"anchor, the per-video work without Ray: 1 core {plain_one:.1f} s, 2 cores {plain_two:.1f} s, "
          f"speed-up {plain_one / plain_two:.2f}; the build reaches {(one / two) / (plain_one / plain_two):.0%} of it")
    print(f"peak RSS of the process tree: {rss2:.0f} MiB for 2 videos, {rss8:.0f} MiB for 8 videos "
          f"(ratio {rss8 / rss2:.2f})")


if __name__ == "__main__":
    main()
