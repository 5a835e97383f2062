"""Shard assembly as Ray tasks on 2 CPUs against the same assembly in turn in the driver, same run.

A corpus is built (`pianocorpus build`, basic-pitch) from `--videos` synthetic videos of
`--seconds` s; its work files are then copied `--copies` times under new video ids (the
frames and labels as they are, only the id changed), so the assembly has a corpus of many
parts and tars to write without rendering and transcribing each one. Both runs write the
frames parts, the labels parts and the WebDataset tars of that one split
(pipelines/shards.py) with the corpus's default shard sizes:
- anchor: Ray not started, every file written in turn by the driver (the assembly as it
  was: serial);
- ours: local Ray with `--cpus` CPUs, every file a Ray task.
Each is run `--runs` times, alternately, each after the disk has taken the writes of the
one before (sync). Printed: each one's best seconds, their ratio, also against the anchor less the seconds of its
measuring the samples (a pass the serial assembly before the tasks did not have: the goal,
>= 1.7x on 2 CPUs, is judged on this one), whether the files are byte for byte the same, and the driver's peak resident memory in our run for half of the
copies and for all (goal: flat in the number of frames).

    .venv/bin/python benchmarks/assembly_speed.py [--videos 4] [--seconds 25] [--copies 64] [--cpus 2] [--runs 2]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contract.config import ShardConfig
from contract.layout import CorpusLayout
from pipelines.shards import sample_sizes, write_frame_parts, write_label_parts, write_wds_shards
from synth.video import SynthConfig, make_video


def _built(folder: Path, videos: int, seconds: float) -> tuple[CorpusLayout, str]:
    media = folder / "media"
    media.mkdir()
    rows = ["video_id,url,split"]
    for i in range(videos):
        make_video(media, f"v{i}", 700 + i, SynthConfig(seconds=seconds, width=640, height=360, cut=False))
        rows.append(f"v{i},{(media / f'v{i}.mp4').as_uri()},train")
    (media / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = folder / "corpus"
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", str(media / "manifest.csv"), "--out", str(out),
                           "--labeler", "basic-pitch"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return CorpusLayout(out), json.loads((out / "corpus.json").read_text())["default_label_version"]


def _renamed(source: Path, target: Path, video_id: str) -> None:
    """A work file under another video id; a frames file's JPEGs made its own (the copy's
    id after the image's end: a JPEG decoder stops before it), as another video's are."""
    table = pq.read_table(source)
    table = table.set_column(table.schema.get_field_index("video_id"), "video_id",
                             pa.array([video_id] * table.num_rows, pa.string()))
    if "jpeg" in table.column_names:
        jpegs = [None if j is None else j + video_id.encode() for j in table.column("jpeg").to_pylist()]
        table = table.set_column(table.schema.get_field_index("jpeg"), "jpeg", pa.array(jpegs, pa.binary()))
    pq.write_table(table, target, compression="zstd")


def _copies(corpus: CorpusLayout, version: str, videos: int, copies: int, folder: Path) -> list[tuple[str, Path, Path]]:
    """(video id, frames file, label rolls file) of every copy, in id order."""
    out = []
    for c in range(copies):
        for i in range(videos):
            video_id = f"c{c:04d}_v{i}"
            frames, labels = folder / f"{video_id}.frames.parquet", folder / f"{video_id}.labels.parquet"
            _renamed(corpus.work.frames(f"v{i}"), frames, video_id)
            _renamed(corpus.work.label_rolls(version, f"v{i}"), labels, video_id)
            out.append((video_id, frames, labels))
    return out


def _assemble(videos: list[tuple[str, Path, Path]], out: Path, version: str) -> tuple[float, int, int]:
    """Seconds to write the split's frames parts, labels parts and tars; parts, tars."""
    layout, config = CorpusLayout(out), ShardConfig()
    began = time.perf_counter()
    write_frame_parts([frames for _, frames, _ in videos], layout.frames_dir("train"), config.rows_per_part)
    sources = {video_id: labels for video_id, _, labels in videos}
    parts = layout.frame_parts("train")
    write_label_parts(parts, sources, layout.label_parts_dir(version, "train"))
    tars = write_wds_shards(parts, sources, "train", version, layout, config)
    return time.perf_counter() - began, len(parts), len(tars)


def _measuring(out: Path, version: str) -> float:
    """Seconds the plan's measuring of the samples takes in turn (the serial assembly before
    the tasks had no such pass)."""
    began = time.perf_counter()
    for part in CorpusLayout(out).frame_parts("train"):
        sample_sizes(part, "train", version, None)
    return time.perf_counter() - began


def _driver_peak(videos: list, out: Path, version: str) -> int:
    """The driver's peak resident memory (bytes, sampled every 10 ms) while it assembles
    (the results Ray hands back are mapped from its object store: tracemalloc misses them)."""
    page, peak, done = os.sysconf("SC_PAGE_SIZE"), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], int(Path("/proc/self/statm").read_text().split()[1]) * page)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _assemble(videos, out, version)
    finally:
        done.set()
        sampler.join()
    return peak[0]


def _same(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and \
        all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # (the memory measure's own process)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        return _peak_main(args)
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        corpus, version = _built(folder, args.videos, args.seconds)
        (folder / "copies").mkdir()
        videos = _copies(corpus, version, args.videos, args.copies, folder / "copies")
        frames = sum(pq.ParquetFile(f).metadata.num_rows for _, f, _ in videos)
        print(f"built {args.videos} x {args.seconds:g} s and copied it {args.copies} times: {len(videos)} videos, "
              f"{frames} frames, in {time.perf_counter() - started:.0f} s")
        serial = parallel = float("inf")
        for run in range(args.runs):  # alternated, each after the disk has taken the last one's writes
            os.sync()
            seconds, parts, tars = _assemble(videos, folder / f"serial{run}", version)
            serial = min(serial, seconds)
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
            os.sync()
            parallel = min(parallel, _assemble(videos, folder / f"parallel{run}", version)[0])
            ray.shutdown()
        measuring = _measuring(folder / "serial0", version)
        print(f"in turn in the driver (anchor): {serial:.1f} s for {parts} frames parts, {parts} labels parts, "
              f"{tars} tars ({1000 * serial / frames:.2f} ms a frame), of which {measuring:.1f} s measure the samples "
              f"for the plan (the serial code before had no such pass)")
        ratio, strict = serial / parallel, (serial - measuring) / parallel
        print(f"Ray tasks on {args.cpus} CPUs (ours, Ray's workers started cold): {parallel:.1f} s: {ratio:.2f}x, "
              f"{strict:.2f}x against the anchor less its measuring (goal >= 1.7x on 2 CPUs: "
              f"{'met' if strict >= 1.7 else 'NOT met'}); files byte for byte the same: "
              f"{_same(folder / 'serial0', folder / 'parallel0')}; best of {args.runs} each")
        half, whole = (_peak_elsewhere(folder, len(videos) * share // 2, version, args.cpus) for share in (1, 2))
        print(f"driver's peak resident memory (ours, each in a new process): {half / 2**20:.0f} MiB for half the "
              f"frames, {whole / 2**20:.0f} MiB for all ({whole / half:.2f}x for 2x the frames; goal: flat)")


def _peak_elsewhere(folder: Path, first: int, version: str, cpus: int) -> int:
    """`_driver_peak` of the first `first` copies, in a new process on a new local Ray."""
    done = subprocess.run([sys.executable, __file__, "--peak-of", str(folder), "--first", str(first), "--version", version,
                           "--cpus", str(cpus)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def _peak_main(args) -> None:
    import ray

    folder = Path(args.peak_of)
    copies = sorted((folder / "copies").glob("*.frames.parquet"))[:args.first]
    videos = [(p.name.split(".")[0], p, p.with_name(p.name.replace(".frames.", ".labels."))) for p in copies]
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(_driver_peak(videos, folder / f"peak-{args.first}", args.version))
    ray.shutdown()


if __name__ == "__main__":
    main()
