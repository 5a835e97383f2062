"""The same build to local disk and to an S3 server on 127.0.0.1 (moto's standalone
server, started here): the real-time factor on S3 against local disk (goal >= 0.8).

Both builds run on 2 CPUs in a fresh process, from the same local videos, with a fresh
output (and, for S3, a fresh stage: what a new machine would have), alternated, best of
`--repeats`. The S3 server is a Python process on the same two cores: it competes with
the build for them, which a real object store does not.

    make bench-store        # or: .venv/bin/python benchmarks/store_speed.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.build_speed import manifest_of, render_videos
from tests.loopback import S3Server

GOAL = 0.8


def timed_build(manifest: Path, out: str, env: dict) -> float:
    command = [sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", out,
               "--labeler", "basic-pitch", "--num-cpus", "2"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if result.returncode != 0:
        raise SystemExit(f"build to {out} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the best is reported")
    parser.add_argument("--media", type=Path, help="render the videos into this folder once and reuse them")
    args = parser.parse_args()

    import fsspec

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmp = Path(tmp)
        media = args.media or tmp / "media"
        media.mkdir(parents=True, exist_ok=True)
        manifest = manifest_of(render_videos(media, args.videos, args.seconds), tmp / "manifest.csv")
        seconds = args.videos * args.seconds
        with S3Server() as server:
            env = server.env
            os.environ.update(env)
            fsspec.filesystem("s3").mkdir("bench")
            local, remote = [], []
            for run in range(args.repeats):
                out = tmp / f"local-{run}"
                local.append(timed_build(manifest, str(out), {}))
                shutil.rmtree(out)
                stage = tmp / f"stage-{run}"
                remote.append(timed_build(manifest, f"s3://bench/run-{run}", {**env, "PIANOCORPUS_STAGE": str(stage)}))
                shutil.rmtree(stage)
                print(f"run {run + 1}: local {local[-1]:.1f} s, S3 {remote[-1]:.1f} s", flush=True)
    best_local, best_s3 = min(local), min(remote)
    ratio = (seconds / best_s3) / (seconds / best_local)
    print(f"{args.videos} videos of {args.seconds:g} s, 2 CPUs, best of {args.repeats}:")
    print(f"  local disk   {best_local:6.1f} s  real-time factor {seconds / best_local:5.2f}x  (anchor)")
    print(f"  S3 (moto)    {best_s3:6.1f} s  real-time factor {seconds / best_s3:5.2f}x")
    print(f"  S3 / local   {ratio:.2f}  (goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
