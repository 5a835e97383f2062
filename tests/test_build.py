"""End-to-end: real yt-dlp from a loopback server, real Ray (local), real basic-pitch.

The corpus is checked against the synthetic truth (kept frames, keyboard box, labels),
a killed build is resumed and compared byte for byte with an uninterrupted one, and
relabel is checked to leave frames and audio untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from curation.keyboard import quad_iou
from labeling.metrics import frame_scores
from labeling.midi import read_midi
from labeling.rolls import rolls_for_frames
from tests.conftest import GOOD


@pytest.fixture(scope="module")
def corpus(built_corpus):
    return built_corpus


def _tree_digest(root: Path, skip=(".work", ".cache", ".lock")) -> dict[str, str]:
    digests = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] not in skip:
            data = path.read_bytes()
            if rel.name == "corpus.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "created"}).encode()
            digests[str(rel)] = hashlib.sha256(data).hexdigest()
    return digests


def test_videos_table_has_every_row_with_failures_classified(corpus):
    out, stats = corpus
    rows = {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}
    assert set(rows) == {"vid-a", "vid-b", "vid-c", "gone", "broken", "mute", "nokeys"}
    assert all(rows[v]["status"] == "ok" for v in GOOD)
    classes = {v: (rows[v]["status"], rows[v]["error_class"]) for v in ("gone", "broken", "mute", "nokeys")}
    assert classes == {"gone": ("failed", "unavailable"), "broken": ("failed", "corrupt"),
                       "mute": ("failed", "no_audio"), "nokeys": ("failed", "no_keyboard")}
    assert "404" in rows["gone"]["error"] and "not readable media" in rows["broken"]["error"]
    assert stats["totals"]["ok"] == 3 and sum(stats["totals"]["failed"].values()) == 4


def test_the_summary_names_each_failed_video_with_its_error(corpus, capsys):
    from pipelines.cli import print_summary

    out, stats = corpus
    rows = {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}
    assert stats["failed_videos"] == {v: rows[v]["error"] for v in ("broken", "gone", "mute", "nokeys")}
    print_summary(stats, out)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  failed   ")]
    assert lines == [f"  failed   {v}: {rows[v]['error']}" for v in ("broken", "gone", "mute", "nokeys")]


def test_layout_matches_the_contract(corpus):
    out, stats = corpus
    version = stats["label_version"]
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["default_label_version"] == version and version in meta["label_versions"]
    assert json.loads((out / "labels" / version / "label.json").read_text())["backend"] == "basic-pitch"
    for v in GOOD:
        assert (out / "audio" / f"{v}.flac").is_file() and (out / "labels" / version / "midi" / f"{v}.mid").is_file()
    for split in ("train", "test"):
        assert sorted(p.name for p in (out / "frames" / split).iterdir())[0] == "part-00000.parquet"
        assert (out / "wds" / version / split / f"{split}-000000.tar").is_file()
        assert (out / "stats" / "wds" / version / f"{split}-000000_stats.json").is_file()
    assert (out / "stats" / "summary.json").is_file()
    assert not list(out.rglob("*.part"))


def test_frames_and_keyboard_agree_with_the_truth(corpus, served):
    out, _ = corpus
    _, truths, _ = served
    videos = {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}
    frames = pq.read_table(out / "frames" / "train").to_pandas()
    frames = pd.concat([frames, pq.read_table(out / "frames" / "test").to_pandas()])
    for v, truth in truths.items():
        mine = frames[frames.video_id == v].sort_values("frame")
        assert mine.frame.tolist() == list(range(truth["video"]["n_frames"]))
        assert (mine.kept.to_numpy() == np.array(truth["playing"])).mean() >= 0.98
        assert set(mine.drop_reason.dropna()) <= {"no_keyboard", "silent"}
        quad = np.array(videos[v]["kb_quad"]).reshape(4, 2)
        assert quad_iou(quad, truth["keyboard"]["quad"], (360, 640)) > 0.93
    jpeg = frames[frames.kept].jpeg.iloc[0]
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (100, 900, 3)


def test_labels_align_with_frames_and_follow_the_truth_midi(corpus, served):
    out, stats = corpus
    _, truths, media = served
    version = stats["label_version"]
    for split in ("train", "test"):
        frame_parts = sorted((out / "frames" / split).glob("part-*.parquet"))
        label_parts = sorted((out / "labels" / version / split).glob("part-*.parquet"))
        assert [p.name for p in frame_parts] == [p.name for p in label_parts]
        for fp, lp in zip(frame_parts, label_parts):
            f, lab = pq.read_table(fp, columns=["video_id", "frame"]), pq.read_table(lp, columns=["video_id", "frame"])
            assert f.to_pylist() == lab.to_pylist()
    labels = pq.read_table(out / "labels" / version / "train").to_pandas()
    mine = labels[labels.video_id == "vid-a"].sort_values("frame")
    truth_roll = rolls_for_frames(read_midi(media / "vid-a.mid"), len(mine), 25).frame
    assert frame_scores(truth_roll, np.stack(mine.frame_roll.to_numpy()))["f1"] > 0.6


def test_webdataset_shards_hold_the_kept_frames_with_their_rolls(corpus):
    import webdataset as wds

    out, stats = corpus
    version = stats["label_version"]
    shards = sorted(str(p) for p in (out / "wds" / version / "train").glob("*.tar"))
    assert len(shards) >= 2  # 150 samples a shard
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    kept = pq.read_table(out / "frames" / "train", filters=[("kept", "=", True)], columns=["video_id", "frame"])
    assert [s["__key__"] for s in samples] == [f"{v}_{f:06d}" for v, f in zip(*kept.to_pydict().values())]
    first = samples[0]
    rolls = np.load(io.BytesIO(first["rolls.npy"]))
    meta = json.loads(first["json"])
    assert rolls.shape == (4, 88) and meta["split"] == "train" and meta["label_version"] == version
    labels = pq.read_table(out / "labels" / version / "train").to_pandas()
    row = labels[(labels.video_id == meta["video_id"]) & (labels.frame == meta["frame"])].iloc[0]
    assert rolls[0].tolist() == [int(x) for x in row.frame_roll]
    assert "." not in first["__key__"]


def test_a_killed_build_resumes_to_the_same_corpus(corpus, served, tmp_path):
    """kill -9 mid-build, re-run (with another CPU count): byte-identical shards."""
    reference, _ = corpus
    manifest, _, _ = served
    out = tmp_path / "c"
    command = [sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(out),
               "--cache", str(reference.parent / "cache"), "--labeler", "basic-pitch", "--rows-per-part", "200",
               "--shard-samples", "150"]
    process = subprocess.Popen(command + ["--num-cpus", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / ".work" / "frames").glob("*.parquet")):
        time.sleep(0.2)
    assert list((out / ".work" / "frames").glob("*.parquet")), "the build made no progress before the kill"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "videos.parquet").exists()  # killed before the end
    ray_cli = Path(sys.executable).parent / "ray"  # Ray's processes went with the group; make sure
    if ray_cli.exists():
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True)
    finished = subprocess.run(command + ["--num-cpus", "2"], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 1, finished.stderr[-2000:]  # four videos fail, as in the reference
    assert _tree_digest(out) == _tree_digest(reference)
    # Our progress (videos, frames, seconds), the videos of the killed run counted apart; not Ray's rows.
    [last] = [line for line in finished.stderr.splitlines() if "build: " in line and line.endswith("(done)")]
    done, total = map(int, re.search(r"build: (\d+)/(\d+) videos", last).groups())
    assert done == total == len(pq.read_table(out / "videos.parquet")) and "from an earlier run" in last
    assert " row/s" not in finished.stderr and "row]" not in finished.stderr
    # Each transcriber actor says where it runs (no GPU here: basic-pitch on the CPU).
    assert re.search(r"label actor \d+ on node \w+: basic-pitch on cpu$", finished.stderr, re.M), finished.stderr[-2000:]


def test_videos_split_into_segments_give_the_same_corpus(corpus, served, tmp_path):
    """Each video's frame pass as segments of 1.5 s run as Ray tasks (seeks to the
    keyframe before each, joined in order): byte for byte the corpus of one pass a video."""
    reference, _ = corpus
    manifest, _, _ = served
    out = tmp_path / "segmented"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(out),
                             "--cache", str(reference.parent / "cache"), "--labeler", "basic-pitch",
                             "--rows-per-part", "200", "--shard-samples", "150", "--segment-seconds", "1.5",
                             "--num-cpus", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]  # the same four videos fail
    longest = pq.read_table(out / "videos.parquet").column("duration_s").to_pylist()
    assert max(d or 0 for d in longest) > 3  # some video had three segments or more
    assert _tree_digest(out) == _tree_digest(reference)


def test_a_two_node_cluster_builds_the_same_corpus_with_the_videos_on_the_second_node(corpus, served, tmp_path):
    """`build --address` on a Ray cluster of two raylets: the head has no CPUs, so every
    video task runs on the second node (each video's work state says which node it ran
    on); the corpus is byte for byte the local build's."""
    import ray
    from ray.cluster_utils import Cluster

    reference, _ = corpus
    manifest, _, _ = served
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        out = tmp_path / "clustered"
        result = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(out),
                                 "--cache", str(reference.parent / "cache"), "--labeler", "basic-pitch",
                                 "--rows-per-part", "200", "--shard-samples", "150", "--address", cluster.address],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # the same four videos fail
        assert _tree_digest(out) == _tree_digest(reference)
        ran_on = {json.loads(p.read_text())["node"] for p in (out / ".work" / "videos").glob("*.json")}
        assert ran_on == {worker.node_id} and worker.node_id != cluster.head_node.node_id
    finally:
        cluster.shutdown()


def test_a_build_repeated_from_its_corpus_json_is_the_same_corpus(corpus, tmp_path):
    """`build --config CORPUS/corpus.json`: the manifest, the shard sizes and the labeler
    come from the record; the new corpus has the same config, labels and shards."""
    reference, _ = corpus
    out = tmp_path / "again"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", "--config", str(reference / "corpus.json"),
                             "--out", str(out), "--cache", str(reference.parent / "cache"), "--num-cpus", "2"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]  # the same four videos fail
    before, after = (json.loads((c / "corpus.json").read_text()) for c in (reference, out))
    assert after["config"] == before["config"] and after["manifest"] == before["manifest"]
    assert after["label_versions"] == before["label_versions"]
    shards = [{k: v for k, v in _tree_digest(c).items() if "wds/" in k or "labels/" in k} for c in (reference, out)]
    assert shards[0] and shards[0] == shards[1]


def test_relabel_writes_a_new_version_and_leaves_frames_and_audio_alone(corpus):
    out, stats = corpus
    before = {k: v for k, v in _tree_digest(out).items() if k.startswith(("frames/", "audio/"))}
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "relabel", str(out), "--labeler", "basic-pitch",
                             "--param", "onset_threshold=0.4", "--make-default", "--num-cpus", "2"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    after = _tree_digest(out)
    assert {k: v for k, v in after.items() if k.startswith(("frames/", "audio/"))} == before
    meta = json.loads((out / "corpus.json").read_text())
    versions = sorted(meta["label_versions"])
    assert len(versions) == 2 and stats["label_version"] in versions
    new = next(v for v in versions if v != stats["label_version"])
    assert meta["default_label_version"] == new
    assert meta["label_versions"][new]["params"]["onset_threshold"] == 0.4
    assert (out / "wds" / new / "train" / "train-000000.tar").is_file()


def test_ray_gives_tasks_a_thread_budget_and_is_stopped_only_by_the_command_that_started_it():
    """The stages size their thread pools from OMP_NUM_THREADS, which Ray sets to a task's
    CPUs; the build stops a Ray it started while it writes the shards, never the caller's."""
    import ray

    from contract.threads import thread_budget
    from pipelines.build import ray_stopping

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        budget = ray.remote(num_cpus=1)(thread_budget)
        assert ray.get(budget.remote()) == 1
        assert ray.get(budget.options(num_cpus=2).remote()) == 2
        with ray_stopping(started_here=False):
            pass
        assert ray.is_initialized()
        with ray_stopping(started_here=True):
            pass
        assert not ray.is_initialized()
    finally:
        ray.shutdown()


def test_transcriber_actors_fill_the_gpus_at_their_share_and_fall_back_to_cpu_actors():
    from contract.config import RayConfig
    from pipelines.build import actor_pool

    assert actor_pool("transkun", gpus=2, cpus=16, gpus_per_actor=0.25) == (8, 0.25)  # four a GPU
    assert actor_pool("transkun", gpus=1, cpus=16, gpus_per_actor=1.0) == (1, 1.0)
    assert actor_pool("transkun", gpus=3, cpus=16, gpus_per_actor=0.4) == (7, 0.4)
    assert actor_pool("transkun", gpus=0, cpus=8, gpus_per_actor=0.25) == (2, 0)  # no GPU: CPU actors
    assert actor_pool("basic-pitch", gpus=4, cpus=2, gpus_per_actor=1.0) == (1, 0)
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="gpus_per_actor"):
            RayConfig(gpus_per_actor=bad)


def test_videos_of_known_length_start_longest_first_and_the_others_keep_their_order(tmp_path):
    """A long recital started last is the whole build's tail (on 2 CPUs a 600-s video last
    among eight of 30 s: 107 s, first: 90 s), so the videos whose length is known before
    they are fetched (local files, start/end, a cached download) start longest first."""
    from manifests.schema import ManifestRow
    from pipelines.build import expected_seconds, longest_first
    from synth.video import SynthConfig, make_video

    small = dict(width=320, height=180, cut=False, audio="pretty_midi")
    short = make_video(tmp_path, "short", 1, SynthConfig(seconds=3, **small)).with_suffix(".mp4")
    long = make_video(tmp_path, "long", 2, SynthConfig(seconds=6, **small)).with_suffix(".mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cached.info.json").write_text(json.dumps({"duration": 3.5}))
    rows = [ManifestRow("remote", "https://example.invalid/a", "train"),
            ManifestRow("short", short.as_uri(), "train"),
            ManifestRow("broken", (tmp_path / "broken.mp4").as_uri(), "train"),
            ManifestRow("long", long.as_uri(), "train"),
            ManifestRow("cached", "https://example.invalid/b", "train"),
            ManifestRow("cut", "https://example.invalid/c", "train", start_s=10.0, end_s=14.0)]
    assert abs(expected_seconds(rows[3], cache) - 6) < 0.1 and expected_seconds(rows[0], cache) is None
    assert [rows[i].video_id for i in longest_first(rows, cache)] == ["long", "cut", "cached", "short", "remote",
                                                                      "broken"]
