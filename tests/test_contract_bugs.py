"""The corpus contract's bugs, each on a real build (real yt-dlp on file:// URLs, real Ray,
real basic-pitch) of a small manifest: two good synthetic videos, a download cut off
mid-file, a file of random bytes and a row with no URL, built at 10 fps with small shards.

- relabel keeps the build's configuration (fps, crop, shard sizes) whole, twice over;
- a transcriber exception on one video is a failed label row, the others complete;
- the label version changes with the backend's version and with our label logic;
- one error vocabulary: a corrupt download and a mid-file decode failure are `corrupt`
  (with a message, no traceback), a file without a video stream `no_video`, a row with
  no URL is `skipped`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.audio import write_flac
from synth.video import SynthConfig, make_video

BUILD_ARGS = ["--labeler", "basic-pitch", "--fps", "10", "--crop-size", "600x80", "--shard-samples", "40",
              "--rows-per-part", "30", "--num-cpus", "2"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> tuple[Path, Path]:
    media = tmp_path_factory.mktemp("contract_media")
    for name, seed in (("good1", 31), ("good2", 32)):
        make_video(media, name, seed, SynthConfig(seconds=5, width=640, height=360))
    # A download cut off mid-file, its index (moov) first: it probes, then decoding fails.
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(media / "good1.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(media / "whole.mp4")], check=True)
    whole = (media / "whole.mp4").read_bytes()
    (media / "cutoff.mp4").write_bytes(whole[: len(whole) // 2])
    (media / "noise.mp4").write_bytes(np.random.default_rng(3).integers(0, 255, 30000, np.uint8).tobytes())
    _audio_only(media / "audioonly.mp4")
    manifest = media / "manifest.csv"
    manifest.write_text("video_id,url,split\n" + "".join(
        f"{v},{(media / f'{v}.mp4').as_uri()},train\n" for v in ("good1", "good2", "cutoff", "noise", "audioonly")) + "nourl,,train\n")
    out = tmp_path_factory.mktemp("contract") / "corpus"
    result = _cli("build", str(manifest), "--out", str(out), *BUILD_ARGS)
    assert result.returncode == 1, result.stderr[-3000:]  # three videos fail
    return manifest, out


def _audio_only(path: Path) -> None:
    """An mp4 with one second of a tone and no video stream."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        tone = (0.1 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _copy(corpus: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    return copy


def _videos(corpus: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(corpus / "videos.parquet").to_pylist()}


def _shard_counts(corpus: Path, version: str) -> list[int]:
    return [json.loads(p.read_text())["count"] for p in sorted((corpus / "stats" / "wds" / version).glob("*_stats.json"))]


def test_relabel_keeps_the_builds_configuration(small_build, tmp_path):
    _, built = small_build
    corpus = _copy(built, tmp_path)
    before = json.loads((corpus / "corpus.json").read_text())
    first = before["default_label_version"]
    for threshold in ("0.4", "0.45"):
        result = _cli("relabel", str(corpus), "--labeler", "basic-pitch", "--param", f"onset_threshold={threshold}",
                      "--num-cpus", "2")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = json.loads((corpus / "corpus.json").read_text())
    assert after["config"] == before["config"]
    assert after["config"]["frames"]["fps"] == 10 and after["config"]["frames"]["crop_width"] == 600
    versions = [v for v in after["label_versions"] if v != first]
    assert len(versions) == 2
    for version in versions:
        assert json.loads((corpus / "labels" / version / "label.json").read_text())["fps"] == 10
        assert after["label_versions"][version]["fps"] == 10
        counts = _shard_counts(corpus, version)
        assert counts == _shard_counts(corpus, first) and max(counts) <= 40


def test_a_transcriber_failure_fails_that_video_and_the_others_complete(small_build, tmp_path):
    manifest, built = small_build
    corpus = _copy(built, tmp_path)
    version = json.loads((corpus / "corpus.json").read_text())["default_label_version"]
    # good2's audio, damaged: a rate no transcriber takes (basic-pitch raises AudioInputError).
    write_flac(corpus / "audio" / "good2.flac", np.zeros(3000, np.float32), 3000)
    # relabel refuses to publish a version without good2, names it and why, and keeps good1's work
    relabel = _cli("relabel", str(corpus), "--labeler", "basic-pitch", "--param", "onset_threshold=0.4",
                   "--num-cpus", "2")
    assert relabel.returncode == 2, relabel.stderr[-3000:]
    assert "good2: AudioInputError: sample rate 3000" in relabel.stderr
    new = [p for p in (corpus / ".work" / "labels").iterdir() if p.name != version]
    assert len(new) == 1 and (new[0] / "good1.parquet").is_file()
    assert new[0].name not in json.loads((corpus / "corpus.json").read_text())["label_versions"]
    assert not (corpus / "labels" / new[0].name / "label.json").exists()
    # the build, labelling good2 again: good2 fails as `labels`, good1 is in the shards
    for stale in (corpus / ".work" / "labels" / version).glob("good2.*"):
        stale.unlink()
    result = _cli("build", str(manifest), "--out", str(corpus), *BUILD_ARGS)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    rows = _videos(corpus)
    assert rows["good1"]["status"] == "ok" and rows["good1"]["label_status"] == "ok"
    assert (rows["good2"]["status"], rows["good2"]["error_class"], rows["good2"]["label_status"]) == \
        ("failed", "labels", "failed")
    assert "AudioInputError" in rows["good2"]["error"] and "3000" in rows["good2"]["error"]
    assert {v for p in (corpus / "stats" / "wds" / version).glob("*_stats.json")
            for v in json.loads(p.read_text())["videos"]} == {"good1"}


def test_the_label_version_covers_the_backend_version_and_our_label_logic():
    from labeling.transcribers import label_spec, label_version

    spec = label_spec("basic-pitch", {}, 25.0)
    assert label_version({**spec, "backend_version": "0.0.1"}) != label_version(spec)
    assert spec["label_logic"]  # our post-processing and roll convention, versioned
    assert label_version({**spec, "label_logic": spec["label_logic"] + "+changed"}) != label_version(spec)
    assert label_version(dict(spec)) == label_version(spec)


def test_one_error_vocabulary_corrupt_media_and_rows_without_url(small_build):
    _, corpus = small_build
    rows = _videos(corpus)
    for video in ("cutoff", "noise"):
        row = rows[video]
        assert (row["status"], row["error_class"]) == ("failed", "corrupt"), row["error"]
        assert row["error"].startswith("corrupt: ") and "Traceback" not in row["error"] and 'File "' not in row["error"]
    assert "decod" in rows["cutoff"]["error"]
    assert (rows["audioonly"]["status"], rows["audioonly"]["error_class"]) == ("failed", "no_video")
    assert (rows["nourl"]["status"], rows["nourl"]["error_class"]) == ("skipped", "no_url")
    totals = json.loads((corpus / "stats" / "summary.json").read_text())["totals"]
    assert totals["failed"] == {"corrupt": 2, "no_video": 1} and totals["skipped"] == {"no_url": 1}


def test_a_file_ffmpeg_opens_without_video_or_audio_is_not_readable_media(tmp_path):
    # Random bytes can parse as a lyrics (LRC) file: FFmpeg opens it with one subtitle stream.
    # Such a file is as unreadable to us as any other, and its message says so.
    from curation.probe import ProbeError, probe

    lyrics = tmp_path / "lyrics.mp4"
    lyrics.write_text("[00:01.00]one\n[00:02.00]two\n")
    with pytest.raises(ProbeError, match=r"lyrics\.mp4: not readable media \(no video or audio stream"):
        probe(lyrics)
